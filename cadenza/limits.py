"""The limits every input must respect, and the small checks that enforce them.

One validation layer for the CLI, the Python API (``Cadenza``) and the studio server: each
entry point calls these checks *before* allocating anything, so a bad value costs a
one-line ``CadenzaError`` (naming the argument, with a hint) instead of a traceback from deep
inside, a hang or an out-of-memory kill. The numbers are deliberately readable; the studio's
own, tighter per-request caps (``cadenza.app.config.Limits``) default to values drawn from here.

=====================  ======================================================
what                   limit
=====================  ======================================================
generated audio        0 < duration ≤ 600 s (10 min, ≈ 51,680 frames)
sample rates           1,000 to 384,000 Hz, whole numbers
audio files read       ≤ 2 GiB, ≤ 3 h, ≤ 64 channels
control files read     ≤ 64 MiB (CSV, .npz, MIDI); ≤ 100,000 notes/points/beats
sampler steps          1 to 1,000
seeds                  whole numbers 0 to 2**63 - 1 (SQLite's and torch's range)
guidance scales        0 to 30 (``cfg`` and any other guidance scale)
tempo                  0 < bpm ≤ 400
batches                ≤ 64 seeds at once
training steps         1 to 100,000,000; other counts in configs 0 to 1,000,000,000
=====================  ======================================================
"""

from __future__ import annotations

import math
import numbers
import operator
import os
from pathlib import Path
from typing import Any, Collection, Sequence

import numpy as np

from cadenza.audio.format import FRAME_RATE, HOP_LENGTH
from cadenza.errors import CadenzaError

MAX_DURATION_S = 600.0
MAX_FRAMES = int(MAX_DURATION_S * FRAME_RATE) + 2  # frames_for_duration(MAX_DURATION_S) plus a rounding margin
MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 384_000
MAX_AUDIO_FILE_BYTES = 2 * 1024**3
MAX_AUDIO_FILE_S = 3 * 3600.0
MAX_AUDIO_CHANNELS = 64
MAX_CONTROL_FILE_BYTES = 64 * 1024**2
MAX_EVENTS = 100_000  # notes of a melody, breakpoints of a dynamics curve, beats of a rhythm
MIN_STEPS, MAX_STEPS = 1, 1000
MAX_SEED = 2**63 - 1
MAX_GUIDANCE = 30.0
MAX_BPM = 400.0
MAX_SEEDS = 64
MAX_PROMPT_CHARS = 2000
MAX_TRAIN_STEPS = 100_000_000
MAX_CONFIG_COUNT = 1_000_000_000
MAX_PAGE_OFFSET = 2**62  # SQLite's OFFSET is a signed 64-bit integer


def _shown(value: Any) -> str:
    """A value as an error message shows it: short, one line."""
    text = repr(value) if isinstance(value, str) else str(value)
    text = " ".join(text.split())
    return text if len(text) <= 40 else text[:37] + "..."


def _is_bool(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_))


def check_int(name: str, value: Any, lo: int | None = None, hi: int | None = None, hint: str | None = None) -> int:
    """A whole number in ``[lo, hi]``: ints, integral floats (``4.0``) and digit strings are accepted.

    Refused: bools, fractions, NaN/inf, text that is not a number, and anything out of range;
    the check never builds a huge object (a 10,000-digit string is refused by its length).
    """
    span = f"between {lo:,} and {hi:,}" if lo is not None and hi is not None else (f"at least {lo:,}" if lo is not None else f"at most {hi:,}")
    hint = hint or f"give a whole number {span}"
    if _is_bool(value) or value is None:
        raise CadenzaError(f"{name}: {_shown(value)} is not a whole number", hint)
    if isinstance(value, str):
        text = value.strip()
        if len(text) > 40:
            raise CadenzaError(f"{name}: {_shown(value)} is not a whole number", hint)
        try:
            value = int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                raise CadenzaError(f"{name}: {_shown(text)} is not a number", hint) from None
    shown = f"{value:g}" if isinstance(value, float) else _shown(value)
    if isinstance(value, numbers.Integral):
        out = int(value)
    elif isinstance(value, numbers.Real):
        f = float(value)
        if not math.isfinite(f) or f != math.floor(f):
            raise CadenzaError(f"{name}: {shown} is not a whole number", hint)
        out = int(f)
    else:
        try:
            out = operator.index(value)  # e.g. a 0-d integer tensor
        except TypeError:
            raise CadenzaError(f"{name}: a {type(value).__name__} is not a whole number", hint) from None
    if (lo is not None and out < lo) or (hi is not None and out > hi):
        raise CadenzaError(f"{name}: {shown} is out of range", hint)
    return out


def check_float(
    name: str, value: Any, lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, unit: str = "",
    hint: str | None = None,
) -> float:
    """A finite real number in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``); numeric strings are accepted."""
    low = "" if lo is None else (f"more than {lo:g}{unit}" if lo_open else f"at least {lo:g}{unit}")
    high = "" if hi is None else f"at most {hi:g}{unit}"
    hint = hint or f"give a number {' and '.join(p for p in (low, high) if p)}".strip()
    if _is_bool(value) or value is None:
        raise CadenzaError(f"{name}: {_shown(value)} is not a number", hint)
    if isinstance(value, str):
        text = value.strip()
        try:
            value = float(text) if len(text) <= 64 else None
        except ValueError:
            value = None
        if value is None:
            raise CadenzaError(f"{name}: {_shown(text)} is not a number", hint)
    try:
        out = float(value)
    except (TypeError, ValueError, OverflowError):
        raise CadenzaError(f"{name}: a {type(value).__name__} is not a number", hint) from None
    if not math.isfinite(out):
        raise CadenzaError(f"{name}: {_shown(value)} is not a finite number", hint)
    if (lo is not None and (out < lo or (lo_open and out <= lo))) or (hi is not None and out > hi):
        raise CadenzaError(f"{name}: {out:g}{unit} is out of range", hint)
    return out


def check_duration(value: Any, name: str = "duration", max_s: float = MAX_DURATION_S) -> float:
    """Seconds of audio to make: a finite number in (0, ``max_s``]."""
    return check_float(name, value, 0.0, max_s, lo_open=True, unit=" s", hint=f"give a duration of more than 0 and at most {max_s:g} seconds")


def check_frames(value: Any, name: str = "n_frames", max_frames: int = MAX_FRAMES) -> int:
    """A clip length in frames: 1 to ``max_frames`` (the longest allowed duration)."""
    return check_int(
        name, value, 1, max_frames,
        hint=f"clips are at most {MAX_DURATION_S:g} s ({max_frames:,} frames at {FRAME_RATE:.2f} frames/s)",
    )


def check_sample_rate(value: Any, name: str = "sample_rate") -> int:
    """A sample rate in whole Hz between ``MIN_SAMPLE_RATE`` and ``MAX_SAMPLE_RATE``."""
    return check_int(name, value, MIN_SAMPLE_RATE, MAX_SAMPLE_RATE, hint=f"give the rate in Hz, {MIN_SAMPLE_RATE:,} to {MAX_SAMPLE_RATE:,} (e.g. 22050 or 44100)")


def check_steps(value: Any, name: str = "steps") -> int:
    """Sampler steps: 1 to ``MAX_STEPS``."""
    return check_int(name, value, MIN_STEPS, MAX_STEPS, hint=f"give {MIN_STEPS} to {MAX_STEPS} steps; 15-25 is typical")


def check_guidance(value: Any, name: str = "cfg", hint: str | None = None) -> float:
    """A classifier-free guidance scale: 0 to ``MAX_GUIDANCE``."""
    return check_float(name, value, 0.0, MAX_GUIDANCE, hint=hint or f"use 0 to {MAX_GUIDANCE:g}: 1 is no guidance, 3 is typical")


def check_seed(value: Any, name: str = "seed") -> int:
    """One seed: a whole number 0 to ``MAX_SEED``."""
    return check_int(name, value, 0, MAX_SEED, hint="give a whole number from 0 to 2**63 - 1, e.g. seed=0")


def check_seeds(value: Any, name: str = "seed") -> list[int]:
    """A seed or a list of them (one output each): 1 to ``MAX_SEEDS`` seeds, each checked."""
    if isinstance(value, (str, bytes)) or np.ndim(value) == 0 and not isinstance(value, (list, tuple)):
        return [check_seed(value, name)]
    if isinstance(value, np.ndarray):
        value = value.tolist()
    try:
        items = list(value)
    except TypeError:
        raise CadenzaError(f"{name} must be a whole number or a list of them, got a {type(value).__name__}", "e.g. seed=0 or seed=[0, 1, 2]") from None
    if not items:
        raise CadenzaError(f"{name}: no seeds given", "pass seed=0 or a list of seeds")
    if len(items) > MAX_SEEDS:
        raise CadenzaError(f"{name}: {len(items)} seeds is too many at once", f"give at most {MAX_SEEDS} seeds per call")
    return [check_seed(s, f"{name}[{i}]") for i, s in enumerate(items)]


def check_text(value: Any, name: str = "prompt", max_chars: int = MAX_PROMPT_CHARS) -> str:
    """A text field (a prompt): a string of at most ``max_chars`` characters."""
    if not isinstance(value, str):
        raise CadenzaError(f"{name} must be a string, got {type(value).__name__}", "pass text such as 'calm piano'")
    if len(value) > max_chars:
        raise CadenzaError(f"{name}: {len(value):,} characters is too long", f"keep it under {max_chars:,} characters")
    return value


def check_choice(value: Any, choices: Sequence[str], name: str) -> str:
    """One of ``choices`` (a string), else an error listing them."""
    if not isinstance(value, str) or value not in choices:
        raise CadenzaError(f"unknown {name} {_shown(value)}", f"choose one of {', '.join(choices)}")
    return value


def check_count(name: str, value: Any, lo: int = 1, hi: int = MAX_CONFIG_COUNT, hint: str | None = None) -> int:
    """A count a user gives (works, workers, clips): a whole number, never negative, never absurd."""
    return check_int(name, value, lo, hi, hint=hint)


def check_events(name: str, n: int, max_events: int = MAX_EVENTS) -> int:
    """How many notes / breakpoints / beats one control may hold."""
    if n > max_events:
        raise CadenzaError(f"{name}: {n:,} events is too many", f"a control holds at most {max_events:,} notes, breakpoints or beats")
    return n


def check_file_size(path: str | os.PathLike, max_bytes: int = MAX_CONTROL_FILE_BYTES, kind: str = "file") -> int:
    """The size of a file to read whole, refused past ``max_bytes`` before reading a byte."""
    import stat

    try:
        st = Path(path).stat()
    except OSError:
        return 0  # missing files are the reader's to report, with its own message
    if stat.S_ISDIR(st.st_mode):
        return 0  # likewise folders
    if not stat.S_ISREG(st.st_mode):  # /dev/zero, a FIFO: no size to trust, and reading may never end
        raise CadenzaError(f"{path}: not a regular file", f"give a {kind} on disk")
    size = st.st_size
    if size > max_bytes:
        raise CadenzaError(f"{path}: {size / 2**20:,.1f} MiB is too large for a {kind}", f"a {kind} may be at most {max_bytes / 2**20:,.0f} MiB")
    return size


def check_audio_header(path: str | os.PathLike, frames: int, sample_rate: int, channels: int, target_rate: int) -> None:
    """What an audio file's header promises, checked before decoding: rate, channels, length (after resampling too)."""
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise CadenzaError(
            f"{path}: sample rate {sample_rate:,} Hz is out of range",
            f"audio must be sampled at {MIN_SAMPLE_RATE:,} to {MAX_SAMPLE_RATE:,} Hz; resample the file",
        )
    if not 1 <= channels <= MAX_AUDIO_CHANNELS:
        raise CadenzaError(f"{path}: {channels} channels is out of range", f"audio may have 1 to {MAX_AUDIO_CHANNELS} channels")
    seconds = frames / sample_rate
    if seconds > MAX_AUDIO_FILE_S:
        raise CadenzaError(f"{path}: {seconds / 3600:.1f} h of audio is too long", f"files may be at most {MAX_AUDIO_FILE_S / 3600:g} h; cut it into parts")
    if target_rate and not MIN_SAMPLE_RATE <= target_rate <= MAX_SAMPLE_RATE:
        raise CadenzaError(f"target sample rate {target_rate:,} Hz is out of range", f"use {MIN_SAMPLE_RATE:,} to {MAX_SAMPLE_RATE:,} Hz")


def check_samples(n_samples: int, name: str = "audio", max_s: float = MAX_AUDIO_FILE_S, sample_rate: int = 22050) -> int:
    """An in-memory waveform's length, bounded like a file's."""
    if n_samples > max_s * sample_rate:
        raise CadenzaError(f"{name}: {n_samples / sample_rate / 3600:.1f} h of audio is too long", f"at most {max_s / 3600:g} h at a time")
    return n_samples


def frames_to_samples(n_frames: int) -> int:
    """Samples of a clip of ``n_frames`` frames (the canonical hop)."""
    return (int(n_frames) - 1) * HOP_LENGTH


# ---------------------------------------------------------------------------------- configs
# Config keys whose integer values are counts (never negative) and their upper bounds; any other
# integer key is bounded by MAX_CONFIG_COUNT in size. Keys are matched by their last part.
STEP_KEYS = ("max_steps",)
SIGNED_INT_KEYS = ("devices",)  # Lightning's devices=-1 means "all"
NON_NEGATIVE_FLOAT_SUFFIXES = ("minutes", "lr", "prob", "ratio", "decay", "dropout", "seconds", "_s", "clip")


def check_config_value(key: str, old: Any, new: Any) -> Any:
    """An override's value, checked against what the config held at ``key``: type, then range.

    Integers stay integers (``1e3`` is taken as 1000, ``1e30`` and ``2.5`` are refused), numbers
    must be finite, counts are not negative, and nothing is absurdly large (``max_steps`` at most
    ``MAX_TRAIN_STEPS``), so an override can never make a run hang or allocate without bound.
    """
    last = key.strip().split(".")[-1]
    if isinstance(new, float) and not math.isfinite(new):
        raise CadenzaError(f"override '{key}={new}': not a finite number", f"e.g. {key}={old if old is not None else 1}")
    if isinstance(old, bool) or isinstance(new, bool):
        return new
    if isinstance(old, int) and isinstance(new, (int, float)):
        if last in STEP_KEYS:
            return check_int(f"override '{key}'", new, 1, MAX_TRAIN_STEPS, hint=f"give 1 to {MAX_TRAIN_STEPS:,} steps, e.g. {key}={old}")
        lo = -1 if last in SIGNED_INT_KEYS else (None if old < 0 else 0)
        return check_int(f"override '{key}'", new, lo, MAX_CONFIG_COUNT, hint=f"give a whole number {'' if lo is None else f'from {lo} '}up to {MAX_CONFIG_COUNT:,}, e.g. {key}={old}")
    if isinstance(old, float) and isinstance(new, (int, float)):
        if abs(new) > 1e12:
            raise CadenzaError(f"override '{key}={new}': absurdly large", f"e.g. {key}={old}")
        if new < 0 <= old and last.endswith(NON_NEGATIVE_FLOAT_SUFFIXES):
            raise CadenzaError(f"override '{key}={new}': must not be negative", f"e.g. {key}={old}")
    return new


# ---------------------------------------------------------------------------------- control sets
MAX_NPZ_MEMBERS = 64  # headers read per file: far more than 2 + 3 arrays per registered control
MAX_NPZ_MEMBER_BYTES = 64 * MAX_FRAMES * 8  # the largest legitimate member (melody, float64) with room to spare


def npz_shapes(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """Shapes of the arrays in an ``.npz``, read from each member's header without loading any data.

    A compressed archive can expand a few kilobytes into gigabytes, so a control file is judged
    by what its headers promise before ``np.load`` materialises anything.
    """
    import zipfile

    shapes: dict[str, tuple[int, ...]] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist()[:MAX_NPZ_MEMBERS]:
                if not info.filename.endswith(".npy"):
                    continue
                with zf.open(info) as fh:
                    version = np.lib.format.read_magic(fh)
                    reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                    shape, _, dtype = reader(fh)
                if dtype.hasobject:
                    raise CadenzaError(f"{path}: '{info.filename}' holds Python objects", "control files hold numbers only")
                shapes[info.filename[:-4]] = tuple(int(s) for s in shape)
    except CadenzaError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise CadenzaError(f"{path}: not a valid controls file ({type(exc).__name__})", "make one with 'cadenza controls extract' or 'cadenza controls make'") from None
    return shapes


def check_control_npz(path: str | os.PathLike, frame_keys: Collection[str], event_keys: Collection[str]) -> None:
    """A controls ``.npz`` whose arrays are all of sane size: frames ≤ ``MAX_FRAMES``, events ≤ ``MAX_EVENTS``.

    ``frame_keys`` / ``event_keys`` name the members of each kind (every registered control's
    values and mask, and its events: ``ControlSet.load`` passes them, this layer knows no control).
    """
    check_file_size(path, MAX_CONTROL_FILE_BYTES, "controls file")
    for name, shape in npz_shapes(path).items():
        rows = shape[0] if shape else 1
        size = int(np.prod(shape, dtype=np.float64)) if shape else 1
        if name in frame_keys and rows > MAX_FRAMES:
            raise CadenzaError(f"{path}: '{name}' has {rows:,} frames, more than {MAX_DURATION_S:g} s", f"controls cover at most {MAX_FRAMES:,} frames")
        if name in event_keys and rows > MAX_EVENTS:
            raise CadenzaError(f"{path}: '{name}' holds {rows:,} events", f"a control holds at most {MAX_EVENTS:,} notes, breakpoints or beats")
        if size * 8 > MAX_NPZ_MEMBER_BYTES:
            raise CadenzaError(f"{path}: '{name}' is too large ({size:,} values)", "this is not a controls file written by Cadenza")


def check_config(config: dict, where: str = "config") -> dict:
    """Every number of a whole config (a file, not only overrides): finite, and ``max_steps`` 1 to ``MAX_TRAIN_STEPS``.

    A config file written by hand can hold ``"max_steps": 1e30`` as easily as an override can.
    """
    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{path}.{key}" if path else str(key))
        elif isinstance(node, list):
            for i, value in enumerate(node[:10_000]):
                walk(value, f"{path}[{i}]")
        elif isinstance(node, float) and not math.isfinite(node):
            raise CadenzaError(f"{where}: {path} is {node}", "give a finite number")
        elif path.split(".")[-1] in STEP_KEYS and node is not None and not _is_bool(node):
            check_int(f"{where}: {path}", node, 1, MAX_TRAIN_STEPS, hint=f"give 1 to {MAX_TRAIN_STEPS:,} steps")

    walk(config, "")
    return config


MAX_THREADS = 1024


def check_threads(value: Any, name: str = "threads") -> int | None:
    """CPU threads for torch: None or 0 (torch's choice) up to ``MAX_THREADS`` (a million would each be an OS thread)."""
    if value is None:
        return None
    return check_int(name, value, 0, MAX_THREADS, hint="0 lets torch choose; e.g. --threads 2")
