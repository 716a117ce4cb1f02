"""Creator dynamics: ``dynamics.csv`` (v1) breakpoints and named shapes → ``ControlSet``.

Levels are the extraction's definition: dBFS RMS level, between -100 and +6 dB (about -30
is quiet, -10 loud). A CSV holds breakpoints ``time,db``; frames whose centre lies between
the first and last breakpoint get the linearly interpolated level (mask 1), frames outside
stay free. Shapes are the paper's created curves (linear, tanh, cosine) for crescendo,
decrescendo, swell, fade and flat, placed on any span of the clip.
"""

from __future__ import annotations

import math
import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from cadenza.audio.format import FRAME_RATE, time_to_frame
from cadenza.controls._csvio import (
    first_frame_at_or_after,
    fmt_number,
    frame_seconds,
    last_frame_at_or_before,
    parse_number,
    quantize,
    read_table,
    resolve_frames,
    warn,
    write_table,
)
from cadenza.controls.base import DB_CEIL, DB_FLOOR, ControlSet
from cadenza.errors import CadenzaError

DYNAMICS_HEADER = ("time", "db")
SHAPES = ("crescendo", "decrescendo", "swell", "fade", "flat")
CURVES = ("linear", "tanh", "cosine")
FADE_FLOOR_DB = -60.0  # where a fade ends: quiet enough to read as silence in a mix, still inside the training range
TANH_SHARPNESS = 2.5  # tanh curve: 0 → 1 over the span with the steepest change in the middle
DEFAULT_START_DB = -30.0
DEFAULT_RANGE_DB = 15.0
DB_HINT = f"levels are dBFS RMS between {DB_FLOOR:g} and {DB_CEIL:g} (about -30 quiet, -10 loud)"


def _check_db(value: float, where: str) -> None:
    if not DB_FLOOR <= value <= DB_CEIL:
        raise CadenzaError(f"{where}: level {fmt_number(value)} dB is out of range", DB_HINT)


def parse_dynamics_csv(path: str | os.PathLike) -> np.ndarray:
    """Read and validate ``dynamics.csv`` → (K, 2) ``time, db`` rows."""
    rows = read_table(path, DYNAMICS_HEADER, "dynamics")
    out = np.zeros((len(rows), 2), dtype=np.float64)
    for k, (line, (t_text, db_text)) in enumerate(rows):
        where = f"{path}, line {line}"
        t = parse_number(t_text, where, "time")
        db = parse_number(db_text, where, "db")
        if t < 0:
            raise CadenzaError(f"{where}: time {t_text} s is negative", "times are seconds from the start of the clip, ≥ 0")
        if k > 0 and t <= out[k - 1, 0]:
            raise CadenzaError(
                f"{where}: times out of order (time {t_text} s is not after the previous {fmt_number(out[k - 1, 0])} s)",
                "times must be strictly increasing, one breakpoint per line",
            )
        _check_db(db, where)
        out[k] = (t, db)
    return out


def dynamics_from_points(
    points: np.ndarray, n_frames: int | None = None, source: str = "dynamics", duration: float | None = None
) -> ControlSet:
    """Breakpoints (K, 2) ``time, db`` (strictly increasing) → a dynamics-only ``ControlSet``.

    A single breakpoint sets only its nearest frame. Breakpoints past the end of the clip
    that cannot affect it are dropped with a warning; a curve that misses the clip entirely
    is an error.
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(points) == 0:
        raise CadenzaError(f"{source}: no breakpoints", "give at least one time,db row")
    times, dbs = points[:, 0], points[:, 1]
    if len(points) == 1:
        f0 = f1 = int(time_to_frame(times[0]))
    else:
        f0, f1 = int(first_frame_at_or_after(times[0])), int(last_frame_at_or_before(times[-1]))
    T = resolve_frames(n_frames, duration, source, fallback=f1 + 1)
    if f0 >= T:
        raise CadenzaError(
            f"{source}: the curve starts at {fmt_number(times[0])} s, after the end of the clip ({fmt_number((T - 1) / FRAME_RATE)} s)",
            "shift the breakpoints earlier or make the clip longer",
        )
    if f0 > f1:
        raise CadenzaError(
            f"{source}: the breakpoints span less than one frame ({1000 / FRAME_RATE:.1f} ms), so they set no level",
            "spread the breakpoints further apart",
        )
    past = times > (T - 1) / FRAME_RATE
    if past.sum() > 1:  # the first point past the end still shapes the last frames; the rest are dead weight
        keep = ~past
        keep[int(np.argmax(past))] = True
        warn(f"{source}: {int((~keep).sum())} breakpoint(s) lie after the end of the clip and are ignored")
        points = points[keep]
    frames = np.arange(f0, min(f1, T - 1) + 1)
    dynamics = np.zeros(T, dtype=np.float32)
    mask = np.zeros(T, dtype=np.float32)
    dynamics[frames] = np.interp(frames / FRAME_RATE, points[:, 0], points[:, 1])
    mask[frames] = 1.0
    return replace(ControlSet.empty(T), dynamics=dynamics, dynamics_mask=mask, dynamics_points=points.copy())


def read_dynamics_csv(path: str | os.PathLike, n_frames: int | None = None, duration: float | None = None) -> ControlSet:
    """``dynamics.csv`` → ``ControlSet`` (clip length from ``n_frames``/``duration``, else the last breakpoint)."""
    return dynamics_from_points(parse_dynamics_csv(path), n_frames, str(path), duration)


def _ramp(u: np.ndarray, curve: str) -> np.ndarray:
    """A monotone 0 → 1 ramp over u ∈ [0, 1] in the named curve kind."""
    if curve == "linear":
        return u
    if curve == "cosine":
        return (1.0 - np.cos(np.pi * u)) / 2.0
    k = TANH_SHARPNESS
    return 0.5 + 0.5 * np.tanh(k * (2.0 * u - 1.0)) / np.tanh(k)


def check_shape(shape: str, curve: str = "linear") -> tuple[str, str]:
    """Normalise and validate a shape and curve name."""
    s, c = str(shape).strip().lower(), str(curve).strip().lower()
    if s not in SHAPES:
        raise CadenzaError(f"unknown dynamics shape '{shape}'", f"choose one of {', '.join(SHAPES)} (e.g. swell:-35:20)")
    if c not in CURVES:
        raise CadenzaError(f"unknown dynamics curve '{curve}'", f"choose one of {', '.join(CURVES)}")
    return s, c


def shape_levels(shape: str, u: np.ndarray, start_db: float, range_db: float, curve: str = "linear") -> np.ndarray:
    """Levels in dB of a named shape at positions ``u`` ∈ [0, 1] along its span."""
    shape, curve = check_shape(shape, curve)
    u = np.clip(np.asarray(u, dtype=np.float64), 0.0, 1.0)
    if shape == "crescendo":
        return start_db + range_db * _ramp(u, curve)
    if shape == "decrescendo":
        return start_db - range_db * _ramp(u, curve)
    if shape == "swell":
        return start_db + range_db * _ramp(1.0 - np.abs(2.0 * u - 1.0), curve)
    if shape == "fade":
        return start_db + (FADE_FLOOR_DB - start_db) * _ramp(u, curve)
    return np.full_like(u, float(start_db))


def dynamics_shape(
    shape: str,
    n_frames: int | None = None,
    start_db: float = DEFAULT_START_DB,
    range_db: float = DEFAULT_RANGE_DB,
    start: float = 0.0,
    end: float | None = None,
    curve: str = "linear",
    duration: float | None = None,
) -> ControlSet:
    """A named dynamics curve over ``[start, end]`` seconds (default: the whole clip) → ``ControlSet``.

    ``crescendo`` rises from ``start_db`` by ``range_db``; ``decrescendo`` falls by it;
    ``swell`` rises by it to the middle of the span and falls back; ``fade`` falls from
    ``start_db`` to -60 dB (``range_db`` unused); ``flat`` holds ``start_db``. Frames outside
    the span stay free. The curve is kept as one breakpoint per frame, so it writes out as
    a ``dynamics.csv`` that reads back to the same levels.
    """
    shape, curve = check_shape(shape, curve)
    where = f"dynamics shape '{shape}'"
    T = resolve_frames(n_frames, duration, where)
    for name, value in (("start-db", start_db), ("range-db", range_db), ("start", start)):
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise CadenzaError(f"{where}: {name} must be a finite number, got {value!r}")
    _check_db(start_db, f"{where}: start-db")
    if shape in ("crescendo", "decrescendo", "swell") and range_db <= 0:
        raise CadenzaError(f"{where}: range-db must be positive, got {fmt_number(range_db)}", "e.g. --range-db 15 (the paper used 6 to 15 dB)")
    if shape == "fade" and start_db <= FADE_FLOOR_DB:
        raise CadenzaError(f"{where}: start-db {fmt_number(start_db)} is already at or below the fade floor {FADE_FLOOR_DB:g} dB", "start the fade louder, e.g. -20")
    top = start_db + range_db if shape in ("crescendo", "swell") else start_db
    bottom = start_db - range_db if shape == "decrescendo" else start_db
    _check_db(top, f"{where}: peak")
    _check_db(bottom, f"{where}: lowest level")
    clip_end = (T - 1) / FRAME_RATE
    end = clip_end if end is None else end
    if not isinstance(end, (int, float)) or not math.isfinite(end):
        raise CadenzaError(f"{where}: end must be a finite number, got {end!r}")
    if start < 0:
        raise CadenzaError(f"{where}: start {fmt_number(start)} s is negative", "times are seconds from the start of the clip")
    f0 = int(first_frame_at_or_after(start))
    if f0 >= T:
        raise CadenzaError(
            f"{where}: starts at {fmt_number(start)} s, after the end of the clip ({fmt_number(clip_end)} s)",
            "give a start inside the clip or a longer duration",
        )
    if end <= start:
        raise CadenzaError(f"{where}: end {fmt_number(end)} s is not after start {fmt_number(start)} s", "give start < end")
    f1 = min(int(last_frame_at_or_before(end)), T - 1)
    if f1 < f0:
        raise CadenzaError(f"{where}: the span {fmt_number(start)}-{fmt_number(end)} s covers no frame", "make the span longer")
    frames = np.arange(f0, f1 + 1)
    times = frame_seconds(frames)
    levels = quantize(shape_levels(shape, (frames / FRAME_RATE - start) / (end - start), start_db, range_db, curve))
    dynamics = np.zeros(T, dtype=np.float32)
    mask = np.zeros(T, dtype=np.float32)
    dynamics[frames] = levels
    mask[frames] = 1.0
    return replace(ControlSet.empty(T), dynamics=dynamics, dynamics_mask=mask, dynamics_points=np.stack([times, levels], axis=1))


def parse_shape_spec(spec: str) -> dict:
    """``shape[:start_db[:range_db[:curve]]]`` (e.g. ``swell:-35:20``) → keyword arguments for ``dynamics_shape``."""
    parts = [p.strip() for p in str(spec).strip().split(":")]
    if not parts[0]:
        raise CadenzaError("empty dynamics shape", f"choose one of {', '.join(SHAPES)}, e.g. crescendo or swell:-35:20")
    if len(parts) > 4:
        raise CadenzaError(f"dynamics spec '{spec}' has too many fields", "write shape[:start_db[:range_db[:curve]]], e.g. swell:-35:20:cosine")
    out: dict = {"shape": parts[0]}
    for name, text in zip(("start_db", "range_db"), parts[1:3]):
        if text:
            out[name] = parse_number(text, f"dynamics spec '{spec}'", name.replace("_", "-"))
    if len(parts) == 4 and parts[3]:
        out["curve"] = parts[3]
    check_shape(out["shape"], out.get("curve", "linear"))
    return out


def dynamics_rows(cs: ControlSet, path: str | os.PathLike = "dynamics.csv") -> np.ndarray:
    """Breakpoints to write: the kept ``dynamics_points``, or one per given frame."""
    if len(cs.dynamics_points):
        return cs.dynamics_points
    idx = np.flatnonzero(cs.dynamics_mask > 0)
    if len(idx) == 0:
        return np.zeros((0, 2))
    gaps = int((np.diff(idx) > 1).sum())
    if gaps:
        raise CadenzaError(
            f"{path}: the dynamics are given on {gaps + 1} separate spans; a dynamics.csv (v1) holds one span",
            "save the controls as .npz to keep the gaps, or select one span",
        )
    return np.stack([frame_seconds(idx), cs.dynamics[idx].astype(np.float64)], axis=1)


def write_dynamics_csv(cs: ControlSet, path: str | os.PathLike) -> Path:
    """Write the dynamics as ``dynamics.csv`` (atomic)."""
    points = dynamics_rows(cs, path)
    if len(points) == 0:
        raise CadenzaError(f"{path}: this control set has no dynamics to write", "give dynamics (or skip dynamics.csv)")
    return write_table(path, DYNAMICS_HEADER, [[fmt_number(t), fmt_number(db)] for t, db in points])
