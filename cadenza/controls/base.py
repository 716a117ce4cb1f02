"""``ControlSet``: the time-varying controls with per-frame masks, on the canonical frame grid.

This is the one in-memory form of controls that extraction, creator files, the data corpus,
the generator, the evaluation and the web page all exchange:

- ``melody``   (T, 12) float32 one-hot pitch class per frame (a row of zeros where unvoiced);
- ``dynamics`` (T,)    float32 level in dBFS (``20*log10(RMS)`` of a 2048-sample Hann frame,
  smoothed over about 1 s, floored at -100 dB);
- ``rhythm``   (T, 2)  float32 beat and downbeat activations in [0, 1];
- any control added with ``registry.register_control``, of its registered frame shape;
- one mask per control, (T,) float32 with 1 = given, 0 = free. A control that is not given
  at all has an all-zero mask; values under a zero mask carry no meaning and are zeroed.

Event-level forms are kept beside the frames when known, so a creator's CSV round-trips
exactly and evaluation can use beat times: ``melody_notes`` (K, 3) rows of
``start_s, end_s, midi_pitch``; ``dynamics_points`` (K, 2) rows of ``time_s, db``;
``beats`` (K, 2) rows of ``time_s, is_downbeat``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cadenza.audio.format import FRAME_RATE, time_to_frame
from cadenza.controls.registry import CONTROL_NAMES, CONTROLS, ControlSpec, control_names
from cadenza.errors import CadenzaError
from cadenza.fsutil import atomic_path

# the frame-level fields of the shipped controls, every control's values then its mask (cadenza/controls/registry.py)
FRAME_FIELDS: tuple[str, ...] = tuple(f for name in CONTROL_NAMES for f in (name, f"{name}_mask"))
DB_FLOOR = -100.0
DB_CEIL = 6.0  # a full-scale square wave reads 0 dBFS; allow a little headroom for creator curves
NPZ_FORMAT_VERSION = 1
BEAT_WIDTH_FRAMES = 1  # activation spreads to ±1 frame around each beat (≈ ±12 ms) with weights 0.5


def frame_fields() -> tuple[str, ...]:
    """Values then mask of every registered control (read now, so controls added later count)."""
    return tuple(f for spec in CONTROLS.values() for f in spec.npz_frame_keys)


def event_fields() -> tuple[str, ...]:
    """The event-level field of every registered control (``melody_notes``, ``dynamics_points``, ``beats``…)."""
    return tuple(spec.events for spec in CONTROLS.values())


def _empty(rows: int) -> np.ndarray:
    return np.zeros((0, rows), dtype=np.float64)


def _keep_events(spec: ControlSpec, events: np.ndarray, t0: float, t1: float) -> np.ndarray:
    """Events of ``spec`` that touch [t0, t1] s, intervals clipped to it (a copy)."""
    if spec.event_kind == "intervals":
        out = events[(events[:, 1] > t0) & (events[:, 0] <= t1)].copy()
        out[:, 0], out[:, 1] = np.maximum(out[:, 0], t0), np.minimum(out[:, 1], t1)
        return out
    return events[(events[:, 0] >= t0 - 1e-9) & (events[:, 0] <= t1 + 1e-9)].copy()


@dataclass(init=False, eq=False)
class ControlSet:
    """Every registered control (melody, dynamics, rhythm, …) with masks for ``n_frames`` frames.

    Why a dict and not one field per control: a new control is a new registry entry, not a new
    field here. ``cs.melody``, ``cs.melody_mask`` and ``cs.melody_notes`` (any registered
    name, its mask, its events) still read and write like attributes, keyword construction
    ``ControlSet(n, melody=..., melody_mask=...)`` works, and positional arguments follow the
    old field order (each control's values and mask, then each control's events). Controls not
    passed start free (all-zero mask).
    """

    n_frames: int
    frames: dict[str, np.ndarray] = field(default_factory=dict)  # name and name_mask of every control
    events: dict[str, np.ndarray] = field(default_factory=dict)  # each control's event rows, by its events field

    def __init__(
        self, n_frames: int, *positional: Any, frames: dict | None = None, events: dict | None = None, **named: Any
    ) -> None:
        order = (*frame_fields(), *event_fields())
        if len(positional) > len(order):
            raise CadenzaError(f"ControlSet takes at most {len(order)} arrays after n_frames, got {len(positional)}")
        by_position = dict(zip(order, positional))
        twice = sorted(set(by_position) & set(named))
        if twice:
            raise CadenzaError(f"ControlSet got '{twice[0]}' twice (by position and by name)")
        given = {**(frames or {}), **(events or {}), **by_position, **named}  # replace(cs, melody=...) overrides frames
        unknown = sorted(set(given) - set(order))
        if unknown:
            raise CadenzaError(f"unknown control field '{unknown[0]}'", f"registered controls: {', '.join(control_names())}")
        object.__setattr__(self, "n_frames", n_frames)
        object.__setattr__(self, "frames", {})
        object.__setattr__(self, "events", {})
        T = int(n_frames) if isinstance(n_frames, (int, np.integer)) else 0
        for spec in CONTROLS.values():
            self.frames[spec.name] = given.get(spec.name, np.zeros(spec.frame_shape(T), np.float32))
            self.frames[spec.mask_field] = given.get(spec.mask_field, np.zeros(T, np.float32))
            self.events[spec.events] = given.get(spec.events, _empty(spec.event_cols))
        self.validate()

    def __getattr__(self, name: str) -> np.ndarray:
        # only reached when ordinary lookup fails: a registered control's values, mask or events
        if not name.startswith("__") and name not in ("frames", "events"):
            d = self.__dict__
            if name in d.get("frames", {}):
                return d["frames"][name]
            if name in d.get("events", {}):
                return d["events"][name]
        raise AttributeError(f"ControlSet has no attribute or control '{name}'")

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self.__dict__.get("frames", {}):
            self.frames[name] = value
        elif name in self.__dict__.get("events", {}):
            self.events[name] = value
        else:
            object.__setattr__(self, name, value)

    # ------------------------------------------------------------------ construction
    @classmethod
    def empty(cls, n_frames: int) -> "ControlSet":
        """No control given anywhere (every mask zero)."""
        from cadenza.limits import check_frames

        if isinstance(n_frames, (int, np.integer)) and n_frames <= 0:
            raise CadenzaError(f"a control set needs at least one frame, got {n_frames}")
        return cls(check_frames(n_frames))  # checked before allocating (T, 12) arrays

    def copy(self) -> "ControlSet":
        """An independent copy (arrays copied)."""
        return ControlSet(self.n_frames, frames={k: v.copy() for k, v in self.frames.items()}, events={k: v.copy() for k, v in self.events.items()})

    def validate(self) -> "ControlSet":
        """Check shapes, ranges and finiteness; raise ``CadenzaError`` saying which control is off."""
        T = int(self.n_frames)
        for spec in CONTROLS.values():
            for name, shape in ((spec.name, spec.frame_shape(T)), (spec.mask_field, (T,))):
                value = np.asarray(self.frames[name], dtype=np.float32)
                if value.shape != shape:
                    raise CadenzaError(
                        f"control '{name}' has shape {value.shape}, expected {shape}",
                        "every control must have one row per spectrogram frame (hop 256 at 22.05 kHz)",
                    )
                if not np.isfinite(value).all():
                    raise CadenzaError(f"control '{name}' contains NaN or infinite values")
                self.frames[name] = value
        for spec in CONTROLS.values():
            if not np.isin(self.frames[spec.mask_field], (0.0, 1.0)).all():
                raise CadenzaError(f"mask '{spec.mask_field}' must contain only 0 (free) and 1 (given)")
        for spec in CONTROLS.values():
            spec.check(self.frames[spec.name], self.frames[spec.mask_field])
        for spec in CONTROLS.values():
            # values under a zero mask mean nothing: zero them so equal controls compare equal
            mask = self.frames[spec.mask_field]
            self.frames[spec.name] = self.frames[spec.name] * mask.reshape(T, *([1] * len(spec.shape)))
            self.events[spec.events] = np.asarray(self.events[spec.events], dtype=np.float64).reshape(-1, spec.event_cols)
        return self

    # ------------------------------------------------------------------ queries
    @property
    def duration(self) -> float:
        return (self.n_frames - 1) / FRAME_RATE

    def given(self) -> list[str]:
        """Names of the controls that are given on at least one frame."""
        return [spec.name for spec in CONTROLS.values() if self.frames[spec.mask_field].any()]

    def pitch_classes(self) -> np.ndarray:
        """(T,) int pitch class per frame, -1 where free or unvoiced."""
        pc = self.melody.argmax(axis=1)
        return np.where(self.melody.sum(axis=1) > 0.5, pc, -1)

    def beat_times(self) -> np.ndarray:
        return self.beats[:, 0].copy()

    def downbeat_times(self) -> np.ndarray:
        return self.beats[self.beats[:, 1] > 0.5, 0].copy()

    # ------------------------------------------------------------------ combination
    def select(self, names: list[str] | tuple[str, ...]) -> "ControlSet":
        """Keep only the named controls; the others become free (mask 0)."""
        unknown = set(names) - set(CONTROLS)
        if unknown:
            raise CadenzaError(f"unknown control(s) {sorted(unknown)}", f"choose from {', '.join(CONTROLS)}")
        out = self.copy()
        for name in CONTROLS:
            if name not in names:
                out = out.with_control(name, None)
        return out

    def with_control(self, name: str, other: "ControlSet | None") -> "ControlSet":
        """Copy with control ``name`` taken from ``other`` (or cleared when ``other`` is None)."""
        if name not in CONTROLS:
            raise CadenzaError(f"unknown control '{name}'", f"choose from {', '.join(CONTROLS)}")
        src = other if other is not None else ControlSet.empty(self.n_frames)
        if src.n_frames != self.n_frames:
            raise CadenzaError(f"cannot combine controls of {src.n_frames} and {self.n_frames} frames")
        spec = CONTROLS[name]
        out = self.copy()
        for key in spec.npz_frame_keys:
            out.frames[key] = src.frames[key].copy()
        out.events[spec.events] = src.events[spec.events].copy()
        return out.validate()

    def merge(self, other: "ControlSet") -> "ControlSet":
        """Each control from ``other`` where ``other`` gives it at all, else from ``self``."""
        out = self
        for name in other.given():
            out = out.with_control(name, other)
        return out

    def fit_length(self, n_frames: int) -> "ControlSet":
        """Crop or pad (with free frames) to ``n_frames``; events past the end are dropped."""
        if n_frames == self.n_frames:
            return self.copy()
        T = min(n_frames, self.n_frames)
        out = ControlSet.empty(n_frames)
        for name in out.frames:
            out.frames[name][:T] = self.frames[name][:T]
        end = (n_frames - 1) / FRAME_RATE
        for spec in CONTROLS.values():
            ev = self.events[spec.events]
            if spec.event_kind == "intervals":
                kept = ev[ev[:, 0] < end].copy()
                kept[:, 1] = np.minimum(kept[:, 1], end + 1 / FRAME_RATE)
            else:
                kept = ev[ev[:, 0] <= end].copy()
            out.events[spec.events] = kept
        return out.validate()

    def slice_frames(self, start: int, stop: int) -> "ControlSet":
        """Frames [start, stop) as a new set; event times shift so the slice starts at 0 s."""
        if not 0 <= start < stop <= self.n_frames:
            raise CadenzaError(f"invalid frame slice [{start}, {stop}) of {self.n_frames} frames")
        t0, t1 = start / FRAME_RATE, (stop - 1) / FRAME_RATE
        events = {}
        for spec in CONTROLS.values():
            ev = self.events[spec.events]
            if spec.event_kind == "intervals":
                kept = ev[(ev[:, 1] > t0) & (ev[:, 0] <= t1)].copy()
                kept[:, :2] = np.clip(kept[:, :2] - t0, 0, None)
            else:
                kept = ev[(ev[:, 0] >= t0) & (ev[:, 0] <= t1)].copy()
                kept[:, 0] -= t0
            events[spec.events] = kept
        return ControlSet(stop - start, frames={k: v[start:stop] for k, v in self.frames.items()}, events=events)

    def restrict_to_span(self, name: str, start: float, end: float | None) -> "ControlSet":
        """Copy with control ``name`` kept only on frames whose centre lies in [start, end] s; its events likewise."""
        spec = CONTROLS[name]
        t = np.arange(self.n_frames) / FRAME_RATE
        end = t[-1] if end is None else end
        inside = ((t >= start - 1e-9) & (t <= end + 1e-9)).astype(np.float32)
        out = self.copy()
        out.frames[spec.mask_field] = out.frames[spec.mask_field] * inside
        if len(out.events[spec.events]):
            out.events[spec.events] = _keep_events(spec, out.events[spec.events], start, end)
        return out.validate()

    # ------------------------------------------------------------------ tensors
    def as_arrays(self) -> dict[str, np.ndarray]:
        """The frame-level arrays, for models and caches."""
        return {name: self.frames[name] for name in frame_fields()}

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike) -> Path:
        """Write an ``.npz`` atomically (no pickles inside): each control's values, mask and events."""
        path = Path(path)
        with atomic_path(path, suffix=".tmp.npz") as tmp:  # numpy would append .npz to any other name
            np.savez_compressed(
                tmp, format_version=np.int64(NPZ_FORMAT_VERSION), n_frames=np.int64(self.n_frames),
                **{k: self.events[k] for k in event_fields()}, **self.as_arrays(),
            )
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ControlSet":
        """Read an ``.npz`` written by ``save`` (pickles refused); a control it lacks is free."""
        path = Path(path)
        if not path.exists():
            raise CadenzaError(f"{path}: no such controls file", "make one with 'cadenza controls extract' or 'cadenza controls make'")
        from cadenza.limits import MAX_FRAMES, check_control_npz, check_frames

        check_control_npz(path, frame_fields(), event_fields())  # sizes from the headers, before anything is decompressed
        try:
            with np.load(path, allow_pickle=False) as z:
                version = int(z["format_version"])
                if version > NPZ_FORMAT_VERSION:
                    raise CadenzaError(f"{path}: controls format v{version} is newer than this Cadenza (v{NPZ_FORMAT_VERSION})", "upgrade cadenza")
                n_frames = check_frames(z["n_frames"], f"{path}: n_frames", MAX_FRAMES)
                for name in CONTROL_NAMES:  # the shipped three are in every file Cadenza ever wrote
                    z[name]
                present = {k: z[k] for k in (*frame_fields(), *event_fields()) if k in z.files}
                return cls(n_frames, **present)
        except CadenzaError:
            raise
        except Exception as exc:
            raise CadenzaError(
                f"{path}: not a valid Cadenza controls file ({type(exc).__name__}: {exc})",
                "make one with 'cadenza controls extract' or 'cadenza controls make'",
            ) from None


def check_melody(values: np.ndarray, mask: np.ndarray) -> None:
    """Melody rows are one-hot pitch classes (or all zero where unvoiced)."""
    if (values < 0).any() or (values > 1).any() or (values.sum(axis=1) > 1 + 1e-5).any():
        raise CadenzaError("melody must be one-hot per frame (values in [0, 1], at most one pitch class per frame)")


def check_dynamics(values: np.ndarray, mask: np.ndarray) -> None:
    """Given dynamics are dBFS levels between ``DB_FLOOR`` and ``DB_CEIL``."""
    given = mask > 0
    if given.any() and ((values[given] < DB_FLOOR - 1e-3) | (values[given] > DB_CEIL)).any():
        lo, hi = values[given].min(), values[given].max()
        raise CadenzaError(
            f"dynamics out of range: {lo:.1f} to {hi:.1f} dB",
            f"dynamics are dBFS levels between {DB_FLOOR:g} and {DB_CEIL:g} (e.g. -30 quiet, -10 loud)",
        )


def check_rhythm(values: np.ndarray, mask: np.ndarray) -> None:
    """Beat and downbeat activations lie in [0, 1]."""
    if (values < 0).any() or (values > 1).any():
        raise CadenzaError("rhythm activations must lie in [0, 1]")


def melody_from_array(arr: np.ndarray, n_frames: int) -> ControlSet:
    """(T,) pitch classes with -1 = free → a melody control (the other form an array can take)."""
    if not np.isin(arr, np.arange(-1, 12)).all():
        raise CadenzaError("melody pitch classes must be integers -1 (free) or 0-11 (C..B)")
    pc = arr.astype(np.int64)
    onehot = np.zeros((len(pc), 12), np.float32)
    onehot[np.arange(len(pc))[pc >= 0], pc[pc >= 0]] = 1
    return ControlSet(n_frames, melody=onehot, melody_mask=(pc >= 0).astype(np.float32))


def dynamics_summary(cs: ControlSet) -> dict[str, Any]:
    vals = cs.dynamics[cs.dynamics_mask > 0]
    return {"range_db": [round(float(vals.min()), 2), round(float(vals.max()), 2)]}


def rhythm_summary(cs: ControlSet) -> dict[str, Any]:
    return {"beats": int(len(cs.beats))}


def beats_to_activations(beats: np.ndarray, n_frames: int, width: int = BEAT_WIDTH_FRAMES) -> np.ndarray:
    """(K, 2) beat times + downbeat flags → (T, 2) beat/downbeat activations in [0, 1].

    Each beat sets its nearest frame to 1 and the ``width`` frames either side to 0.5, so a
    beat a fraction of a frame off still overlaps (as smoothed targets do in beat trackers).
    """
    act = np.zeros((n_frames, 2), dtype=np.float32)
    beats = np.asarray(beats, dtype=np.float64).reshape(-1, 2)
    if len(beats) == 0:
        return act
    frames = time_to_frame(beats[:, 0])
    for col, sel in ((0, np.ones(len(beats), bool)), (1, beats[:, 1] > 0.5)):
        f = frames[sel]
        for offset in range(-width, width + 1):
            idx = f + offset
            ok = (idx >= 0) & (idx < n_frames)
            value = 1.0 if offset == 0 else 0.5
            np.maximum.at(act[:, col], idx[ok], value)
    return act
