"""The inputs issue 20 found hanging or blowing up memory: each is now one ``error:`` line with a hint, within seconds."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from cadenza.cli import main

FAST_S = 20.0  # far above what any of these takes (well under a second each, plus imports); the old code ran minutes


def _refused(args: list[str], capsys, needle: str) -> str:
    t0 = time.perf_counter()
    rc = main(args)
    elapsed = time.perf_counter() - t0
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, err
    assert "Traceback" not in out + err and lines[0].startswith("error: ") and lines[1].startswith("hint: "), err
    assert needle in lines[0], lines[0]
    assert elapsed < FAST_S
    return lines[0]


@pytest.mark.parametrize("args,needle", [
    (["controls", "make", "dynamics", "--shape", "bogus"], "unknown dynamics shape 'bogus'"),
    (["controls", "make", "dynamics", "--shape", "flat", "--duration", "1e9"], "duration 1e+09 s is too long"),
    (["controls", "make", "rhythm", "--duration", "1e9"], "duration 1e+09 s is too long"),
    (["controls", "make", "melody", "--notes", "C4:1e9"], "longer than the longest clip"),
    (["controls", "make", "all", "--meter", "4", "--duration", "1e9"], "too long"),
    (["train", "generator", "debug", "train.max_steps=1e30"], "1e+30 is out of range"),
    (["train", "generator", "debug", "train.max_steps=-5"], "-5 is out of range"),
    (["data", "build", "--limit-works", "-1"], "--limit-works: -1 is out of range"),
    (["data", "build", "--workers", "0"], "--workers: 0 is out of range"),
    (["data", "build", "--max-clips", "-3"], "--max-clips: -3 is out of range"),
    (["data", "cache", "nowhere", "--threads", "1000000"], "--threads: 1000000 is out of range"),
    (["eval", "nowhere", "--limit", "-1"], "--limit: -1 is out of range"),
    (["eval", "nowhere", "--max-figures", "-3"], "--max-figures: -3 is out of range"),
])
def test_absurd_values_are_refused_at_once(args: list[str], needle: str, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    name = "o.csv" if args[0] == "controls" and args[2] != "all" else "o.npz" if args[0] == "controls" else "run"
    out = [] if args[:2] == ["data", "cache"] else ["--out", str(tmp_path / ("run" if args[0] == "eval" else name))]
    _refused([*args, *out], capsys, needle)
    assert not (tmp_path / "o.csv").exists() and not (tmp_path / "run").exists()


def test_rhythm_template_with_huge_times(tmp_path: Path, capsys) -> None:
    template = tmp_path / "t.csv"
    template.write_text("time,downbeat\n0,1\n0.5,0\n1e12,0\n")
    _refused(["controls", "make", "rhythm", "--template", str(template), "--out", str(tmp_path / "r.csv")], capsys, "longer than the longest clip")
    # a --duration crops the template instead: a valid, short result
    assert main(["controls", "make", "rhythm", "--template", str(template), "--duration", "2", "--out", str(tmp_path / "r.csv")]) == 0
    assert (tmp_path / "r.csv").read_text().count("\n") == 3  # header + the two beats inside 2 s


def test_dynamics_csv_with_huge_times(tmp_path: Path, capsys) -> None:
    curve = tmp_path / "d.csv"
    curve.write_text("time,db\n0,-20\n1e15,-20\n")
    _refused(["controls", "make", "dynamics", "--csv", str(curve), "--out", str(tmp_path / "o.npz")], capsys, "longer than the longest clip")


def test_data_index_on_a_folder_of_odd_files(tmp_path: Path, capsys) -> None:
    """Each odd file is skipped with its reason (a 1 Hz file would have been resampled to 2.2 billion samples)."""
    src = tmp_path / "songs"
    src.mkdir()
    sf.write(src / "one_hz.wav", np.zeros(100_000, np.int16), 1, subtype="PCM_16")
    sf.write(src / "many_channels.wav", np.zeros((100, 70), np.int16), 8000, subtype="PCM_16")
    (src / "text.mp3").write_text("not audio at all\n" * 100)
    (src / "empty.flac").write_bytes(b"")
    (src / "notes.txt").write_text("a sidecar without audio")
    t = np.arange(3 * 22050) / 22050
    sf.write(src / "good.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 22050)
    t0 = time.perf_counter()
    rc = main(["data", "index", str(src), "--out", str(tmp_path / "ds"), "--clip-seconds", "2", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 0 and time.perf_counter() - t0 < 60, err
    assert "one_hz.wav: " in err and "sample rate 1 Hz is out of range" in " ".join(err.split())
    assert "70 channels is out of range" in " ".join(err.split())
    assert "1 clips from 1 files" in " ".join(err.split())
