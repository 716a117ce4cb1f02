"""Front door for creator-made controls: the versioned CSV formats (v1) ↔ ``ControlSet``.

Three small files, documented in ``docs/control-formats.md``:

- ``melody.csv``   ``start,end,pitch``  notes in seconds, pitch as ``C4``/``F#3``/``Bb2`` or MIDI 0-127;
- ``dynamics.csv`` ``time,db``          breakpoints in dBFS, linearly interpolated;
- ``rhythm.csv``   ``time,downbeat``    beats, 1 on the first beat of each bar.

Melodies may also come from a ``.mid`` file or a typed note string, dynamics from a shape
spec (``swell:-35:20``), rhythm from a tempo and meter. Every reader takes the clip length as
``n_frames`` (or ``duration=`` seconds); when both are left out the length is the content's
own extent. Reading then writing a canonical file gives the same bytes.
"""

from __future__ import annotations

import os
from pathlib import Path

from cadenza.controls._csvio import FORMAT_VERSION, ControlFileWarning, resolve_frames, warn
from cadenza.controls.base import ControlSet
from cadenza.controls.dynamics_files import (
    CURVES,
    DEFAULT_RANGE_DB,
    DEFAULT_START_DB,
    DYNAMICS_HEADER,
    FADE_FLOOR_DB,
    SHAPES,
    dynamics_from_points,
    dynamics_rows,
    dynamics_shape,
    parse_dynamics_csv,
    parse_shape_spec,
    read_dynamics_csv,
    write_dynamics_csv,
)
from cadenza.controls.melody_files import (
    MELODY_HEADER,
    MIDI_EXTENSIONS,
    melody_from_notes,
    melody_rows,
    midi_top_line,
    parse_melody_csv,
    read_melody_csv,
    read_melody_midi,
    read_melody_notes,
    write_melody_csv,
)
from cadenza.controls.rhythm_files import (
    RHYTHM_HEADER,
    beat_grid,
    parse_meter,
    parse_rhythm_csv,
    read_rhythm_csv,
    rhythm_from_beats,
    rhythm_from_bpm,
    rhythm_rows,
    stretch_rhythm,
    write_rhythm_csv,
)
from cadenza.errors import CadenzaError

MELODY_CSV = "melody.csv"
DYNAMICS_CSV = "dynamics.csv"
RHYTHM_CSV = "rhythm.csv"
CSV_NAMES = {"melody": MELODY_CSV, "dynamics": DYNAMICS_CSV, "rhythm": RHYTHM_CSV}

__all__ = [
    "CSV_NAMES", "CURVES", "ControlFileWarning", "DEFAULT_RANGE_DB", "DEFAULT_START_DB", "DYNAMICS_CSV", "DYNAMICS_HEADER",
    "FADE_FLOOR_DB", "FORMAT_VERSION", "MELODY_CSV", "MELODY_HEADER", "RHYTHM_CSV", "RHYTHM_HEADER", "SHAPES",
    "beat_grid", "dynamics_from_points", "dynamics_shape", "load_csvs", "melody_from_notes", "midi_top_line",
    "parse_dynamics_csv", "parse_melody_csv", "parse_meter", "parse_rhythm_csv", "parse_shape_spec", "read_dynamics",
    "read_melody", "read_rhythm", "rhythm_from_beats", "rhythm_from_bpm", "save_csvs", "stretch_rhythm",
    "write_dynamics_csv", "write_melody_csv", "write_rhythm_csv",
]


def _is_file_arg(value: str | os.PathLike, suffixes: tuple[str, ...]) -> bool:
    """A ``Path``, an existing file, or a string ending in one of ``suffixes`` names a file; anything else is a spec."""
    if isinstance(value, os.PathLike):
        return True
    text = str(value).strip()
    if text.lower().endswith(suffixes):
        return True
    try:
        return Path(text).is_file()
    except OSError:  # e.g. a long note string is "File name too long" to stat(): not a file, a spec
        return False


def read_melody(
    path_or_spec: str | os.PathLike,
    n_frames: int | None = None,
    bpm: float = 120.0,
    *,
    start: float = 0.0,
    duration: float | None = None,
) -> ControlSet:
    """A melody from ``melody.csv``, a ``.mid``/``.midi`` file, or a note string such as ``"C4:1 E4:1 G4:2"``.

    ``bpm`` and ``start`` (seconds) apply to note strings only (durations there are in beats).
    """
    if _is_file_arg(path_or_spec, (".csv", *MIDI_EXTENSIONS)):
        path = Path(path_or_spec)
        if path.suffix.lower() in MIDI_EXTENSIONS:
            return read_melody_midi(path, n_frames, duration)
        if path.suffix.lower() != ".csv":
            raise CadenzaError(f"{path}: unsupported melody file type '{path.suffix or '(none)'}'", "use a melody.csv, a .mid file, or a note string")
        return read_melody_csv(path, n_frames, duration)
    return read_melody_notes(str(path_or_spec), n_frames, bpm, start, duration)


def read_dynamics(
    path_or_spec: str | os.PathLike,
    n_frames: int | None = None,
    *,
    duration: float | None = None,
    start: float = 0.0,
    end: float | None = None,
    curve: str = "linear",
    start_db: float = DEFAULT_START_DB,
    range_db: float = DEFAULT_RANGE_DB,
) -> ControlSet:
    """Dynamics from ``dynamics.csv`` or a shape spec ``shape[:start_db[:range_db[:curve]]]`` (e.g. ``swell:-35:20``).

    The keyword arguments apply to shape specs only; fields in the spec take precedence.
    """
    if _is_file_arg(path_or_spec, (".csv",)):
        path = Path(path_or_spec)
        if path.suffix.lower() != ".csv":
            raise CadenzaError(f"{path}: unsupported dynamics file type '{path.suffix or '(none)'}'", "use a dynamics.csv or a shape such as swell:-35:20")
        return read_dynamics_csv(path, n_frames, duration)
    kwargs = {"start_db": start_db, "range_db": range_db, "curve": curve, **parse_shape_spec(str(path_or_spec))}
    return dynamics_shape(n_frames=n_frames, start=start, end=end, duration=duration, **kwargs)


def read_rhythm(path: str | os.PathLike, n_frames: int | None = None, *, duration: float | None = None) -> ControlSet:
    """A rhythm from ``rhythm.csv`` (for a tempo grid use ``rhythm_from_bpm``)."""
    return read_rhythm_csv(path, n_frames, duration)


_WRITERS = {"melody": write_melody_csv, "dynamics": write_dynamics_csv, "rhythm": write_rhythm_csv}
_ROWS = {"melody": melody_rows, "dynamics": dynamics_rows, "rhythm": rhythm_rows}
_EVENT_WORDS = {"melody": "notes", "dynamics": "levels", "rhythm": "beats"}
_READERS = {"melody": read_melody_csv, "dynamics": read_dynamics_csv, "rhythm": read_rhythm_csv}


def save_csvs(cs: ControlSet, folder: str | os.PathLike) -> list[Path]:
    """Write ``melody.csv``, ``dynamics.csv`` and ``rhythm.csv`` into ``folder`` for the controls that are given.

    Returns the paths written (possibly none). A control that is given but has nothing a CSV
    can hold (no voiced frame, no beat) is skipped with a ``ControlFileWarning``. Each write
    is atomic.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise CadenzaError(f"{folder}: exists and is not a folder", "give a folder path for the CSV files")
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in cs.given():
        if len(_ROWS[name](cs)) == 0:  # e.g. a melody extracted from silence: given, but no note to write
            warn(f"{folder / CSV_NAMES[name]}: the {name} is given but holds no {_EVENT_WORDS[name]}; not written")
            continue
        written.append(_WRITERS[name](cs, folder / CSV_NAMES[name]))
    return written


def load_csvs(folder: str | os.PathLike, n_frames: int | None = None, *, duration: float | None = None) -> ControlSet:
    """Read whichever of ``melody.csv``, ``dynamics.csv``, ``rhythm.csv`` exist in ``folder`` into one ``ControlSet``.

    Without ``n_frames``/``duration`` the clip is as long as the longest of the files needs.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CadenzaError(f"{folder}: no such folder", "give the folder that holds melody.csv / dynamics.csv / rhythm.csv")
    present = {name: folder / fname for name, fname in CSV_NAMES.items() if (folder / fname).is_file()}
    if not present:
        raise CadenzaError(f"{folder}: holds none of {', '.join(CSV_NAMES.values())}", "write them with 'cadenza controls make' or save_csvs")
    if n_frames is None and duration is None:
        n_frames = max(_READERS[name](path).n_frames for name, path in present.items())
    T = resolve_frames(n_frames, duration, str(folder))
    out = ControlSet.empty(T)
    for name, path in present.items():
        out = out.with_control(name, _READERS[name](path, T))
    return out
