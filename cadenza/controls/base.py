"""``ControlSet``: the three time-varying controls with per-frame masks, on the canonical frame grid.

This is the one in-memory form of controls that extraction, creator files, the data corpus,
the generator, the evaluation and the web page all exchange:

- ``melody``   (T, 12) float32 one-hot pitch class per frame (a row of zeros where unvoiced);
- ``dynamics`` (T,)    float32 level in dBFS (``20*log10(RMS)`` of a 2048-sample Hann frame,
  smoothed over about 1 s, floored at -100 dB);
- ``rhythm``   (T, 2)  float32 beat and downbeat activations in [0, 1];
- one mask per control, (T,) float32 with 1 = given, 0 = free. A control that is not given
  at all has an all-zero mask; values under a zero mask carry no meaning and are zeroed.

Event-level forms are kept beside the frames when known, so a creator's CSV round-trips
exactly and evaluation can use beat times: ``melody_notes`` (K, 3) rows of
``start_s, end_s, midi_pitch``; ``dynamics_points`` (K, 2) rows of ``time_s, db``;
``beats`` (K, 2) rows of ``time_s, is_downbeat``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from cadenza.audio.format import FRAME_RATE, time_to_frame
from cadenza.controls.registry import CONTROL_NAMES, CONTROLS
from cadenza.errors import CadenzaError
from cadenza.fsutil import atomic_path

# the frame-level fields of a ControlSet, every control's values then its mask (cadenza/controls/registry.py)
FRAME_FIELDS: tuple[str, ...] = tuple(f for name in CONTROL_NAMES for f in (name, f"{name}_mask"))
DB_FLOOR = -100.0
DB_CEIL = 6.0  # a full-scale square wave reads 0 dBFS; allow a little headroom for creator curves
NPZ_FORMAT_VERSION = 1
BEAT_WIDTH_FRAMES = 1  # activation spreads to ±1 frame around each beat (≈ ±12 ms) with weights 0.5


def _empty(rows: int) -> np.ndarray:
    return np.zeros((0, rows), dtype=np.float64)


@dataclass
class ControlSet:
    """Melody, dynamics and rhythm controls with masks for ``n_frames`` frames."""

    n_frames: int
    melody: np.ndarray
    melody_mask: np.ndarray
    dynamics: np.ndarray
    dynamics_mask: np.ndarray
    rhythm: np.ndarray
    rhythm_mask: np.ndarray
    melody_notes: np.ndarray = field(default_factory=lambda: _empty(3))
    dynamics_points: np.ndarray = field(default_factory=lambda: _empty(2))
    beats: np.ndarray = field(default_factory=lambda: _empty(2))

    # ------------------------------------------------------------------ construction
    @classmethod
    def empty(cls, n_frames: int) -> "ControlSet":
        """No control given anywhere (every mask zero)."""
        from cadenza.limits import check_frames

        if isinstance(n_frames, (int, np.integer)) and n_frames <= 0:
            raise CadenzaError(f"a control set needs at least one frame, got {n_frames}")
        n_frames = check_frames(n_frames)  # before allocating (T, 12) arrays
        z = np.zeros(n_frames, dtype=np.float32)
        return cls(
            n_frames=n_frames,
            melody=np.zeros((n_frames, 12), np.float32),
            melody_mask=z.copy(),
            dynamics=z.copy(),
            dynamics_mask=z.copy(),
            rhythm=np.zeros((n_frames, 2), np.float32),
            rhythm_mask=z.copy(),
        )

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> "ControlSet":
        """Check shapes, ranges and finiteness; raise ``CadenzaError`` saying which control is off."""
        T = int(self.n_frames)
        expected = {f: shape for spec in CONTROLS.values() for f, shape in ((spec.name, spec.frame_shape(T)), (spec.mask_field, (T,)))}
        for name, shape in expected.items():
            value = np.asarray(getattr(self, name), dtype=np.float32)
            if value.shape != shape:
                raise CadenzaError(
                    f"control '{name}' has shape {value.shape}, expected {shape}",
                    "every control must have one row per spectrogram frame (hop 256 at 22.05 kHz)",
                )
            if not np.isfinite(value).all():
                raise CadenzaError(f"control '{name}' contains NaN or infinite values")
            object.__setattr__(self, name, value)
        for name in (spec.mask_field for spec in CONTROLS.values()):
            if not np.isin(getattr(self, name), (0.0, 1.0)).all():
                raise CadenzaError(f"mask '{name}' must contain only 0 (free) and 1 (given)")
        if (self.melody < 0).any() or (self.melody > 1).any() or (self.melody.sum(axis=1) > 1 + 1e-5).any():
            raise CadenzaError("melody must be one-hot per frame (values in [0, 1], at most one pitch class per frame)")
        given = self.dynamics_mask > 0
        if given.any() and ((self.dynamics[given] < DB_FLOOR - 1e-3) | (self.dynamics[given] > DB_CEIL)).any():
            lo, hi = self.dynamics[given].min(), self.dynamics[given].max()
            raise CadenzaError(
                f"dynamics out of range: {lo:.1f} to {hi:.1f} dB",
                f"dynamics are dBFS levels between {DB_FLOOR:g} and {DB_CEIL:g} (e.g. -30 quiet, -10 loud)",
            )
        if (self.rhythm < 0).any() or (self.rhythm > 1).any():
            raise CadenzaError("rhythm activations must lie in [0, 1]")
        # values under a zero mask mean nothing: zero them so equal controls compare equal
        self.melody = self.melody * self.melody_mask[:, None]
        self.dynamics = self.dynamics * self.dynamics_mask
        self.rhythm = self.rhythm * self.rhythm_mask[:, None]
        self.melody_notes = np.asarray(self.melody_notes, dtype=np.float64).reshape(-1, 3)
        self.dynamics_points = np.asarray(self.dynamics_points, dtype=np.float64).reshape(-1, 2)
        self.beats = np.asarray(self.beats, dtype=np.float64).reshape(-1, 2)
        return self

    # ------------------------------------------------------------------ queries
    @property
    def duration(self) -> float:
        return (self.n_frames - 1) / FRAME_RATE

    def given(self) -> list[str]:
        """Names of the controls that are given on at least one frame."""
        return [n for n in CONTROL_NAMES if getattr(self, f"{n}_mask").any()]

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
        unknown = set(names) - set(CONTROL_NAMES)
        if unknown:
            raise CadenzaError(f"unknown control(s) {sorted(unknown)}", f"choose from {', '.join(CONTROL_NAMES)}")
        out = replace(self)
        for name in CONTROL_NAMES:
            if name not in names:
                out = out.with_control(name, None)
        return out

    def with_control(self, name: str, other: "ControlSet | None") -> "ControlSet":
        """Copy with control ``name`` taken from ``other`` (or cleared when ``other`` is None)."""
        if name not in CONTROL_NAMES:
            raise CadenzaError(f"unknown control '{name}'", f"choose from {', '.join(CONTROL_NAMES)}")
        src = other if other is not None else ControlSet.empty(self.n_frames)
        if src.n_frames != self.n_frames:
            raise CadenzaError(f"cannot combine controls of {src.n_frames} and {self.n_frames} frames")
        events = CONTROLS[name].events
        return replace(
            self,
            **{name: getattr(src, name).copy(), f"{name}_mask": getattr(src, f"{name}_mask").copy(), events: getattr(src, events).copy()},
        )

    def merge(self, other: "ControlSet") -> "ControlSet":
        """Each control from ``other`` where ``other`` gives it at all, else from ``self``."""
        out = self
        for name in other.given():
            out = out.with_control(name, other)
        return out

    def fit_length(self, n_frames: int) -> "ControlSet":
        """Crop or pad (with free frames) to ``n_frames``; events past the end are dropped."""
        if n_frames == self.n_frames:
            return replace(self)
        T = min(n_frames, self.n_frames)
        out = ControlSet.empty(n_frames)
        for name in FRAME_FIELDS:
            getattr(out, name)[:T] = getattr(self, name)[:T]
        end = (n_frames - 1) / FRAME_RATE
        out.melody_notes = self.melody_notes[self.melody_notes[:, 0] < end].copy()
        out.melody_notes[:, 1] = np.minimum(out.melody_notes[:, 1], end + 1 / FRAME_RATE)
        out.dynamics_points = self.dynamics_points[self.dynamics_points[:, 0] <= end].copy()
        out.beats = self.beats[self.beats[:, 0] <= end].copy()
        return out.validate()

    def slice_frames(self, start: int, stop: int) -> "ControlSet":
        """Frames [start, stop) as a new set; event times shift so the slice starts at 0 s."""
        if not 0 <= start < stop <= self.n_frames:
            raise CadenzaError(f"invalid frame slice [{start}, {stop}) of {self.n_frames} frames")
        t0, t1 = start / FRAME_RATE, (stop - 1) / FRAME_RATE
        notes = self.melody_notes[(self.melody_notes[:, 1] > t0) & (self.melody_notes[:, 0] <= t1)].copy()
        notes[:, :2] = np.clip(notes[:, :2] - t0, 0, None)
        pts = self.dynamics_points[(self.dynamics_points[:, 0] >= t0) & (self.dynamics_points[:, 0] <= t1)].copy()
        pts[:, 0] -= t0
        beats = self.beats[(self.beats[:, 0] >= t0) & (self.beats[:, 0] <= t1)].copy()
        beats[:, 0] -= t0
        return ControlSet(
            stop - start,
            self.melody[start:stop], self.melody_mask[start:stop],
            self.dynamics[start:stop], self.dynamics_mask[start:stop],
            self.rhythm[start:stop], self.rhythm_mask[start:stop],
            notes, pts, beats,
        )

    # ------------------------------------------------------------------ tensors
    def as_arrays(self) -> dict[str, np.ndarray]:
        """The frame-level arrays, for models and caches."""
        return {name: getattr(self, name) for name in FRAME_FIELDS}

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike) -> Path:
        """Write an ``.npz`` atomically (no pickles inside)."""
        path = Path(path)
        with atomic_path(path, suffix=".tmp.npz") as tmp:  # numpy would append .npz to any other name
            np.savez_compressed(
                tmp, format_version=np.int64(NPZ_FORMAT_VERSION), n_frames=np.int64(self.n_frames),
                melody_notes=self.melody_notes, dynamics_points=self.dynamics_points, beats=self.beats,
                **self.as_arrays(),
            )
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ControlSet":
        """Read an ``.npz`` written by ``save`` (pickles refused)."""
        path = Path(path)
        if not path.exists():
            raise CadenzaError(f"{path}: no such controls file", "make one with 'cadenza controls extract' or 'cadenza controls make'")
        from cadenza.limits import MAX_FRAMES, check_control_npz, check_frames

        check_control_npz(path)  # sizes from the headers, before anything is decompressed
        try:
            with np.load(path, allow_pickle=False) as z:
                version = int(z["format_version"])
                if version > NPZ_FORMAT_VERSION:
                    raise CadenzaError(f"{path}: controls format v{version} is newer than this Cadenza (v{NPZ_FORMAT_VERSION})", "upgrade cadenza")
                return cls(
                    check_frames(z["n_frames"], f"{path}: n_frames", MAX_FRAMES), z["melody"], z["melody_mask"], z["dynamics"], z["dynamics_mask"],
                    z["rhythm"], z["rhythm_mask"], z["melody_notes"], z["dynamics_points"], z["beats"],
                )
        except CadenzaError:
            raise
        except Exception as exc:
            raise CadenzaError(
                f"{path}: not a valid Cadenza controls file ({type(exc).__name__}: {exc})",
                "make one with 'cadenza controls extract' or 'cadenza controls make'",
            ) from None


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
