"""Shared plumbing for the creator control files (format v1).

Every creator file is a small CSV with a fixed header. This module holds what the three
formats share, so they behave the same way: how numbers are written (so a canonical file
round-trips byte for byte), how files are written (atomically), how rows are read (with line
numbers for error messages) and the one rule that maps times in seconds onto spectrogram
frames.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np

from cadenza.audio.format import FRAME_RATE
from cadenza.errors import CadenzaError
from cadenza import fsutil
from cadenza.limits import MAX_CONTROL_FILE_BYTES, MAX_DURATION_S, MAX_FRAMES, check_events, check_file_size, check_frames

FORMAT_VERSION = 1
TIME_DECIMALS = 6  # microseconds: finer than a frame (11.6 ms) by four orders of magnitude
EPS_FRAMES = 1e-4  # tolerance when a boundary time sits on a frame centre (covers the 6-decimal rounding)


class ControlFileWarning(UserWarning):
    """Something in a control file was ignored (e.g. events past the end of the clip)."""


def warn(message: str) -> None:
    """Warn once about ignored content; the CLI prints these in yellow."""
    warnings.warn(message, ControlFileWarning, stacklevel=3)


def fmt_number(x: float) -> str:
    """Write a number with at most 6 decimals and no trailing zeros (``0.5``, ``1``, ``-30``)."""
    s = f"{float(x):.{TIME_DECIMALS}f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def quantize(values: np.ndarray | float) -> np.ndarray:
    """Round times/levels to what a CSV can hold, so generated events equal their written form."""
    return np.round(np.asarray(values, dtype=np.float64), TIME_DECIMALS) + 0.0  # + 0.0 turns -0.0 into 0.0


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write text via a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    if path.exists() and path.is_dir():
        raise CadenzaError(f"{path}: is a folder", "give a file name ending in .csv")
    return fsutil.atomic_write_text(path, text)


def write_table(path: str | os.PathLike, header: tuple[str, ...], rows: list[list[str]]) -> Path:
    """Write a header plus rows of already-formatted fields, one line each, ``\\n`` endings."""
    lines = [",".join(header)] + [",".join(r) for r in rows]
    return atomic_write_text(path, "\n".join(lines) + "\n")


def read_table(path: str | os.PathLike, header: tuple[str, ...], kind: str) -> list[tuple[int, list[str]]]:
    """Read a control CSV: check the header, return ``(line_number, fields)`` for each data row.

    Blank lines and lines starting with ``#`` are skipped (so a creator may annotate a file).
    Fields are stripped of surrounding spaces. The header is compared case-insensitively.
    """
    path = Path(path)
    expected = ",".join(header)
    if not path.exists():
        raise CadenzaError(f"{path}: no such {kind} file", "check the path")
    if path.is_dir():
        raise CadenzaError(f"{path}: is a folder, not a {kind} file", f"pass a .csv file with header '{expected}'")
    check_file_size(path, MAX_CONTROL_FILE_BYTES, f"{kind} file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise CadenzaError(f"{path}: not UTF-8 text", f"a {kind} file is a plain-text CSV with header '{expected}'") from None
    content = [(i + 1, line.strip()) for i, line in enumerate(text.splitlines())]
    content = [(n, line) for n, line in content if line and not line.startswith("#")]
    if not content:
        raise CadenzaError(f"{path}: file is empty", f"the first line must be the header '{expected}', then one row per line")
    first_line, head = content[0]
    got = [f.strip().lower() for f in head.split(",")]
    if got != list(header):
        raise CadenzaError(
            f"{path}, line {first_line}: wrong or missing header '{head}' (expected '{expected}')",
            f"the first line of a {kind} file must be exactly '{expected}'",
        )
    rows: list[tuple[int, list[str]]] = []
    for n, line in content[1:]:
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != len(header):
            raise CadenzaError(
                f"{path}, line {n}: expected {len(header)} fields ({expected}), found {len(fields)}: '{line}'",
                "write one value per column, separated by commas",
            )
        rows.append((n, fields))
    check_events(str(path), len(rows))
    if not rows:
        raise CadenzaError(f"{path}: no rows after the header '{expected}'", f"add at least one {kind} row")
    return rows


def parse_number(text: str, where: str, column: str) -> float:
    """Parse a finite float, or raise naming the place and column."""
    try:
        value = float(text)
    except ValueError:
        raise CadenzaError(f"{where}: {column} '{text}' is not a number", f"write {column} as a plain number, e.g. 1.5") from None
    if math.isnan(value) or math.isinf(value):
        raise CadenzaError(f"{where}: {column} is {text} (NaN or infinite)", f"write {column} as a finite number")
    return value


def first_frame_at_or_after(seconds: np.ndarray | float) -> np.ndarray:
    """Index of the first frame whose centre time ``i / FRAME_RATE`` is ≥ ``seconds``."""
    return np.ceil(np.asarray(seconds, dtype=np.float64) * FRAME_RATE - EPS_FRAMES).astype(np.int64)


def last_frame_at_or_before(seconds: np.ndarray | float) -> np.ndarray:
    """Index of the last frame whose centre time is ≤ ``seconds``."""
    return np.floor(np.asarray(seconds, dtype=np.float64) * FRAME_RATE + EPS_FRAMES).astype(np.int64)


def frame_seconds(frames: np.ndarray | int) -> np.ndarray:
    """Centre time of frames, rounded as a CSV holds it."""
    return quantize(np.asarray(frames, dtype=np.float64) / FRAME_RATE)


def check_n_frames(n_frames: int | None, what: str) -> int:
    """Validate a frame count given by the caller: 1 to ``MAX_FRAMES`` (the longest clip allowed)."""
    if n_frames is None or isinstance(n_frames, bool) or not isinstance(n_frames, (int, np.integer)) or int(n_frames) <= 0:
        raise CadenzaError(
            f"{what}: the clip length must be a positive number of frames, got {n_frames!r}",
            "pass n_frames (e.g. frames_for_duration(6.0) = 517) or a duration in seconds",
        )
    return check_frames(n_frames, f"{what}: n_frames")


def resolve_frames(n_frames: int | None, duration: float | None, what: str, fallback: int | None = None) -> int:
    """Frames from ``n_frames`` or ``duration`` (seconds), else ``fallback`` (the content's own extent).

    Every path is bounded by ``MAX_FRAMES`` before anything of that length is allocated: a
    duration of 1e9 s, or a CSV whose last event lies a year in, is an error, not a memory blow-up.
    """
    from cadenza.audio.format import frames_for_duration

    if n_frames is not None and duration is not None:
        raise CadenzaError(f"{what}: both n_frames and duration given", "give only one of them")
    if duration is not None:
        if isinstance(duration, bool) or not (isinstance(duration, (int, float)) and math.isfinite(duration) and duration > 0):
            raise CadenzaError(f"{what}: duration must be a positive number of seconds, got {duration!r}", "e.g. 6.0")
        if duration > MAX_DURATION_S:
            raise CadenzaError(f"{what}: duration {duration:g} s is too long", f"clips are at most {MAX_DURATION_S:g} s")
        return frames_for_duration(float(duration))
    if n_frames is None:
        if fallback is None:
            raise CadenzaError(f"{what}: the clip length is unknown", "pass n_frames or a duration in seconds")
        if fallback > MAX_FRAMES:
            raise CadenzaError(
                f"{what}: its events run to {fallback / FRAME_RATE:,.0f} s, longer than the longest clip ({MAX_DURATION_S:g} s)",
                "check the times (seconds from the start), or give a shorter --duration to crop",
            )
        return max(1, int(fallback))
    return check_n_frames(n_frames, what)
