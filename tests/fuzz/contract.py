"""Malformed inputs generated from the input contract (types, ranges, encodings, truncations, paths).

Each argument kind has a pool of *good* values (kept small so a valid combination runs in a
fraction of a second with the debug generator) and a pool of *bad* ones: wrong types, out of
range, not finite, absurdly large, badly encoded, truncated, path-like. ``Draw`` picks from them
with a seeded generator, so every run of the suite sends the same cases.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

HUGE_INT = "9" * 60
GOOD = {
    "duration": ["0.5", "1"],
    "steps": ["1", "2"],
    "seed": ["0", "7", str(2**63 - 1)],
    "cfg": ["0", "1.5", "3"],
    "bpm": ["60", "120", "90.5"],
    "meter": ["3", "4", "6/8"],
    "db": ["-30", "-20"],
    "range_db": ["6", "15"],
    "time": ["0", "0.25"],
    "stretch": ["0.9", "1.1"],
    "notes": ["C4:1 E4:1 G4:2", "R:1 D4:0.5", "60:1 62:1"],
    "shape": ["crescendo", "swell:-35:20:cosine", "flat"],
    "curve": ["linear", "tanh", "cosine"],
    "prompt": ["calm piano", "", "fast ♫ folk"],
}
NUMBER_BAD = [
    "abc", "", " ", "nan", "NaN", "inf", "-inf", "1e400", "-1e400", "1e9", "1e30", "-1", "-0.5", "0", HUGE_INT, "-" + HUGE_INT,
    "0x10", "1_000", "١٢", "1,5", "\x00", "1\n2", "٣.٥", "∞", "1e-400", "true", "None", "[1]", "{}", "9" * 5000,
]
TEXT_BAD = [
    "", " ", "\x00", "\x00" * 10, "H4:1", "C4:1e9", "C4:-1", "C4", ":", "::::", "C4:nan", "C4:1 " * 3000, "Ω" * 2000, "\ud800".encode("utf-8", "surrogatepass").decode("utf-8", "replace"),
    "bogus", "crescendo:1e16", "swell:-35:1e9:cosine", "fade:-80", "flat:abc", "crescendo:-30:15:zigzag", "a:b:c:d:e",
    "../../etc/passwd", "/dev/zero", "C:\\Windows\\x.csv", "%2e%2e%2fx.csv", "x.csv\n", "∅.mid", "0" * 300,
]
METER_BAD = ["0", "1", "99", "5/3", "6/0", "abc", "", "4/4/4", "-4", "1e9", "\x00", "7/8"]


def wav_bytes(seconds: float = 0.5, sr: int = 22050, channels: int = 1, subtype: str = "PCM_16") -> bytes:
    t = np.arange(int(seconds * sr)) / sr
    x = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    data = np.stack([x] * channels, axis=1) if channels > 1 else x
    buf = io.BytesIO()
    sf.write(buf, data, sr, format="WAV", subtype=subtype)
    return buf.getvalue()


def odd_audio_files() -> dict[str, bytes]:
    """Audio-looking files that are not what they claim: truncated, mis-rated, empty, random, text."""
    good = wav_bytes()
    one_hz = io.BytesIO()
    sf.write(one_hz, np.zeros(50_000, np.int16), 1, format="WAV", subtype="PCM_16")
    rng = np.random.default_rng(0)
    return {
        "good.wav": good,
        "truncated.wav": good[: len(good) // 3],
        "header_only.wav": good[:44],
        "one_hz.wav": one_hz.getvalue(),
        "many_channels.wav": wav_bytes(0.05, 8000, channels=80),
        "random.wav": rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "text.mp3": b"this is not audio\n" * 50,
        "riff_lies.wav": b"RIFF\xff\xff\xff\x7fWAVEfmt " + good[16:200],
        "empty.flac": b"",
        "nan.wav": _nan_wav(),
    }


def _nan_wav() -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.full(2000, np.nan, np.float32), 22050, format="WAV", subtype="FLOAT")
    return buf.getvalue()


@dataclass
class Draw:
    """Seeded choices over the pools; ``bad`` is the chance that any one argument is malformed."""

    seed: int
    bad: float = 0.35
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def pick(self, seq: list[Any]) -> Any:
        return seq[self.rng.randrange(len(seq))]

    def value(self, kind: str, bad_pool: list[str] | None = None) -> tuple[str, bool]:
        """(value, is_bad) for an argument of ``kind``."""
        if self.chance(self.bad):
            return self.pick(bad_pool if bad_pool is not None else NUMBER_BAD), True
        return self.pick(GOOD[kind]), False

    def bad_value(self, bad_pool: list[str] | None = None) -> str:
        return self.pick(bad_pool if bad_pool is not None else NUMBER_BAD)

    def python_value(self, kind: str) -> Any:
        """A value as a Python caller might pass it: good ones as numbers, bad ones of any type."""
        if self.chance(self.bad):
            return self.pick([
                None, "abc", "", "nan", float("nan"), float("inf"), -1, -1e9, 1e9, 1e308, 2**64, -(2**70), 10**30, True, [1], {"a": 1},
                (1, 2), object(), b"1", np.float64("nan"), np.array([1, 2]), complex(1, 1), "1e400", "9" * 5000, 0.5 + 1e-13,
            ])
        good = self.pick(GOOD[kind])
        return float(good) if kind in ("duration", "cfg", "bpm") else int(good) if kind in ("steps", "seed") else good


def write_files(folder: Path, files: dict[str, bytes]) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, data in files.items():
        (folder / name).write_bytes(data)
        out[name] = folder / name
    return out
