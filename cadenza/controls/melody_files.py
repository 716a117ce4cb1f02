"""Creator melodies: ``melody.csv`` (v1), MIDI files and typed note strings → ``ControlSet``.

All three forms reduce to the same event list, rows of ``start_s, end_s, midi_pitch``
(sorted, non-overlapping), and one rasterisation rule turns events into frames: frame ``i``
belongs to a row when its centre time ``i * 256 / 22050`` lies in ``[start, end)``. Frames
inside a row get that pitch class (one-hot, mask 1); frames outside every row stay free
(mask 0). The events are kept on the ``ControlSet`` (``melody_notes``) so writing it back
gives the same CSV.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from cadenza.audio.format import FRAME_RATE
from cadenza.controls._csvio import (
    first_frame_at_or_after,
    fmt_number,
    frame_seconds,
    parse_number,
    quantize,
    read_table,
    resolve_frames,
    warn,
    write_table,
)
from cadenza.controls.base import ControlSet
from cadenza.controls.notes import midi_to_note, parse_note_string, parse_pitch
from cadenza.errors import CadenzaError

MELODY_HEADER = ("start", "end", "pitch")
MIDI_EXTENSIONS = (".mid", ".midi")


def parse_melody_csv(path: str | os.PathLike) -> np.ndarray:
    """Read and validate ``melody.csv`` → (K, 3) ``start, end, midi`` rows."""
    rows = read_table(path, MELODY_HEADER, "melody")
    out = np.zeros((len(rows), 3), dtype=np.float64)
    prev_end, prev_start = 0.0, -1.0
    for k, (line, (s_text, e_text, p_text)) in enumerate(rows):
        where = f"{path}, line {line}"
        start = parse_number(s_text, where, "start")
        end = parse_number(e_text, where, "end")
        if start < 0:
            raise CadenzaError(f"{where}: start {s_text} s is negative", "times are seconds from the start of the clip, ≥ 0")
        if end <= start:
            raise CadenzaError(
                f"{where}: end {e_text} s is not after start {s_text} s (zero or negative duration)",
                "each row needs start < end",
            )
        if k > 0 and start < prev_start:
            raise CadenzaError(f"{where}: rows out of order (start {s_text} s is before the previous row's start)", "sort rows by start time")
        if k > 0 and start < prev_end:
            raise CadenzaError(
                f"{where}: row overlaps the previous row (starts at {s_text} s, previous ends at {fmt_number(prev_end)} s)",
                "a melody is one note at a time: end the previous row at or before this start",
            )
        try:
            pitch = parse_pitch(p_text)
        except CadenzaError as err:
            raise CadenzaError(f"{where}: {err.message}", err.hint) from None
        out[k] = (start, end, pitch)
        prev_start, prev_end = start, end
    return out


def melody_from_notes(notes: np.ndarray, n_frames: int | None = None, source: str = "melody", duration: float | None = None) -> ControlSet:
    """Events (K, 3) ``start, end, midi`` (sorted, non-overlapping) → a melody-only ``ControlSet``.

    Rows that start after the last frame are dropped with a warning; a melody that covers
    no frame of the clip at all is an error (it would silently control nothing).
    """
    notes = np.asarray(notes, dtype=np.float64).reshape(-1, 3)
    if len(notes) == 0:
        raise CadenzaError(f"{source}: no notes", "give at least one note")
    start_f = first_frame_at_or_after(notes[:, 0])
    end_f = first_frame_at_or_after(notes[:, 1])
    T = resolve_frames(n_frames, duration, source, fallback=int(end_f.max()))
    inside_clip = start_f < T
    if not inside_clip.any():
        raise CadenzaError(
            f"{source}: every note starts after the end of the clip ({fmt_number((T - 1) / FRAME_RATE)} s)",
            "shift the notes earlier or make the clip longer",
        )
    if not inside_clip.all():
        warn(f"{source}: {int((~inside_clip).sum())} note(s) start after the end of the clip and are ignored")
        notes, start_f, end_f = notes[inside_clip], start_f[inside_clip], end_f[inside_clip]
    frames = np.arange(T)
    row = np.searchsorted(start_f, frames, side="right") - 1
    safe = np.clip(row, 0, None)
    inside = (row >= 0) & (frames < end_f[safe])
    if not inside.any():
        raise CadenzaError(
            f"{source}: the notes are too short to cover any frame (a frame is {1000 / FRAME_RATE:.1f} ms)",
            "make notes longer than about 12 ms",
        )
    melody = np.zeros((T, 12), dtype=np.float32)
    pcs = np.mod(notes[safe, 2].astype(np.int64), 12)
    melody[frames[inside], pcs[inside]] = 1.0
    return replace(ControlSet.empty(T), melody=melody, melody_mask=inside.astype(np.float32), melody_notes=notes.copy())


def read_melody_csv(path: str | os.PathLike, n_frames: int | None = None, duration: float | None = None) -> ControlSet:
    """``melody.csv`` → ``ControlSet`` (clip length from ``n_frames``/``duration``, else the last note's end)."""
    return melody_from_notes(parse_melody_csv(path), n_frames, str(path), duration)


def midi_top_line(path: str | os.PathLike, until: float | None = None) -> np.ndarray:
    """The highest sounding note at every moment of a MIDI file (drums ignored) → (K, 3) events.

    The file's note boundaries cut time into elementary spans; in each span the highest
    sounding pitch wins (the earlier-starting note on ties), and consecutive spans of the
    same note join up, so a held note under a passing higher note resumes afterwards.
    Notes starting after ``until`` seconds (the end of the clip) are skipped.
    """
    import pretty_midi

    path = Path(path)
    if not path.exists():
        raise CadenzaError(f"{path}: no such MIDI file", "check the path")
    from cadenza.limits import MAX_CONTROL_FILE_BYTES, check_file_size

    check_file_size(path, MAX_CONTROL_FILE_BYTES, "MIDI file")
    try:
        pm = pretty_midi.PrettyMIDI(str(path))
    except Exception as exc:
        raise CadenzaError(f"{path}: cannot read MIDI ({type(exc).__name__}: {exc})", "export a standard MIDI file (.mid)") from None
    notes = [(n.start, n.end, n.pitch) for inst in pm.instruments if not inst.is_drum for n in inst.notes if n.end > n.start]
    if notes and until is not None:
        notes = [n for n in notes if n[0] <= until] or [min(notes)]  # keep one so "outside the clip" is reported
    if not notes:
        raise CadenzaError(f"{path}: no pitched notes (only drums or an empty file)", "use a MIDI file with a melody track")
    from cadenza.limits import MAX_EVENTS as MAX_EVENTS_SPANS, check_events

    check_events(str(path), len(notes))
    ev = np.asarray(sorted(notes), dtype=np.float64)  # sorted by start, then end, then pitch
    n = len(ev)
    bounds = np.unique(np.concatenate([ev[:, 0], ev[:, 1]]))
    lo, hi = bounds[:-1], bounds[1:]
    # each note covers the elementary spans [first, last); expand those (note, span) pairs
    first = np.searchsorted(bounds, ev[:, 0])
    count = np.searchsorted(bounds, ev[:, 1]) - first
    if int(count.sum()) > 100 * MAX_EVENTS_SPANS:  # thousands of notes held over each other: pairs grow as their square
        raise CadenzaError(f"{path}: too many overlapping notes to find the top line", "export the melody track alone")
    note_of = np.repeat(np.arange(n), count)
    span_of = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count) + np.repeat(first, count)
    # priority: higher pitch wins; among equal pitches the earliest-starting note (smallest index)
    priority = ev[:, 2].astype(np.int64) * (n + 1) + (n - 1 - np.arange(n))
    best = np.full(len(lo), -1, dtype=np.int64)
    np.maximum.at(best, span_of, priority[note_of])
    sounding = best >= 0
    lo, hi, top = lo[sounding], hi[sounding], (n - 1) - best[sounding] % (n + 1)
    # join consecutive spans of the same note
    new = np.ones(len(top), dtype=bool)
    new[1:] = (top[1:] != top[:-1]) | (lo[1:] != hi[:-1])
    group = np.cumsum(new) - 1
    starts = lo[new]
    ends = np.zeros(len(starts))
    np.maximum.at(ends, group, hi)
    out = np.stack([quantize(starts), quantize(ends), ev[top[new], 2]], axis=1)
    return out[out[:, 1] > out[:, 0]]


def read_melody_midi(path: str | os.PathLike, n_frames: int | None = None, duration: float | None = None) -> ControlSet:
    """A ``.mid`` file's top line → ``ControlSet`` (frames without a note stay free)."""
    until = None
    if n_frames is not None or duration is not None:
        until = resolve_frames(n_frames, duration, str(path)) / FRAME_RATE
    return melody_from_notes(midi_top_line(path, until), n_frames, str(path), duration)


def read_melody_notes(
    spec: str, n_frames: int | None = None, bpm: float = 120.0, start: float = 0.0, duration: float | None = None
) -> ControlSet:
    """A typed note string (``"C4:1 E4:1 R:1 G4:2"``, beats at ``bpm``) → ``ControlSet``."""
    return melody_from_notes(parse_note_string(spec, bpm, start), n_frames, "note string", duration)


def melody_rows(cs: ControlSet) -> np.ndarray:
    """Events to write: the kept ``melody_notes``, or run-length runs of the frames (octave 4)."""
    if len(cs.melody_notes):
        return cs.melody_notes
    pc = cs.pitch_classes()
    voiced = pc >= 0
    if not voiced.any():
        return np.zeros((0, 3))
    change = np.ones(len(pc), dtype=bool)
    change[1:] = pc[1:] != pc[:-1]
    run_start = np.flatnonzero(change)
    run_end = np.append(run_start[1:], len(pc))
    keep = voiced[run_start]
    s, e = run_start[keep], run_end[keep]
    return np.stack([frame_seconds(s), frame_seconds(e), 60.0 + pc[s]], axis=1)


def write_melody_csv(cs: ControlSet, path: str | os.PathLike) -> Path:
    """Write the melody as ``melody.csv`` (atomic). Frames given as unvoiced cannot be expressed and are left out."""
    notes = melody_rows(cs)
    if len(notes) == 0:
        raise CadenzaError(f"{path}: this control set has no melody to write", "give a melody (or skip melody.csv)")
    rows = [[fmt_number(s), fmt_number(e), midi_to_note(p)] for s, e, p in notes]
    return write_table(path, MELODY_HEADER, rows)
