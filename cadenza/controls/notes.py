"""Note names ↔ MIDI numbers, and the typed note-string form of a melody.

Creators write pitches the way musicians do (``C4``, ``F#3``, ``Bb2``, ``c#5``, ``E♭4``), or
as MIDI numbers (``60``). Middle C is ``C4`` = 60 (scientific pitch notation, as pretty_midi
and most DAWs). Accidentals are applied arithmetically, so enharmonic spellings across an
octave boundary work: ``B#3`` = 60 and ``Cb4`` = 59.

A note string is a whitespace-separated list of ``PITCH:BEATS`` tokens, e.g.
``"C4:0.5 D4:0.5 E4:1 R:1 G4:2"``: durations in beats at a given tempo, ``R`` (or ``rest``)
for a rest, which leaves that span free. A token without ``:BEATS`` lasts one beat.
"""

from __future__ import annotations

import math
import re

import numpy as np

from cadenza.errors import CadenzaError

_LETTERS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_ACCIDENTALS = {"#": 1, "♯": 1, "b": -1, "♭": -1, "x": 2, "𝄪": 2, "𝄫": -2}
_NOTE_RE = re.compile(r"^(?P<letter>[A-Ga-g])(?P<acc>(?:#|♯|b|♭|x|𝄪|𝄫){0,2})(?P<octave>-?\d+)$")
_SHARP_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_REST_TOKENS = {"r", "rest", "-"}
MAX_BPM = 400.0

PITCH_HINT = "write a letter A-G, an optional # or b, and an octave (C4 = middle C, F#3, Bb2), or a MIDI number 0-127"


def note_to_midi(name: str) -> int:
    """MIDI number of a note name such as ``C4`` (60), ``F#3`` (54) or ``Bb2`` (46)."""
    text = str(name).strip()
    m = _NOTE_RE.match(text)
    if m is None:
        raise CadenzaError(f"unknown note '{text}'", PITCH_HINT)
    offset = sum(_ACCIDENTALS[ch] for ch in m.group("acc"))
    midi = 12 * (int(m.group("octave")) + 1) + _LETTERS[m.group("letter").upper()] + offset
    if not 0 <= midi <= 127:
        raise CadenzaError(f"note '{text}' is MIDI {midi}, outside the MIDI range 0-127", "use an octave between -1 and 9")
    return midi


def parse_pitch(text: str) -> int:
    """A pitch written as a note name or as a whole MIDI number 0-127."""
    text = str(text).strip()
    if re.fullmatch(r"[+-]?\d+(\.0*)?", text):
        value = int(float(text))
        if not 0 <= value <= 127:
            raise CadenzaError(f"MIDI pitch {text} is outside 0-127", PITCH_HINT)
        return value
    return note_to_midi(text)


def midi_to_note(midi: int | float) -> str:
    """Canonical name of a MIDI number: sharps, upper case (61 → ``C#4``)."""
    value = int(round(float(midi)))
    if not 0 <= value <= 127:
        raise CadenzaError(f"MIDI pitch {midi} is outside 0-127", "melody pitches must be MIDI notes 0-127")
    return f"{_SHARP_NAMES[value % 12]}{value // 12 - 1}"


def check_bpm(bpm: float, what: str = "tempo") -> float:
    """A tempo in (0, 400] beats per minute."""
    try:
        value = float(bpm)
    except (TypeError, ValueError):
        raise CadenzaError(f"{what}: bpm '{bpm}' is not a number", "e.g. --bpm 120") from None
    if not math.isfinite(value) or value <= 0:
        raise CadenzaError(f"{what}: bpm must be positive, got {bpm}", "musical tempos are about 40-240 bpm, e.g. 120")
    if value > MAX_BPM:
        raise CadenzaError(f"{what}: bpm {bpm} is absurdly fast (more than {MAX_BPM:g})", "musical tempos are about 40-240 bpm")
    return value


def parse_note_string(spec: str, bpm: float = 120.0, start: float = 0.0) -> np.ndarray:
    """``"C4:0.5 D4:0.5 R:1 E4:1"`` → (K, 3) rows of ``start_s, end_s, midi`` (rests leave gaps).

    Times are exact multiples of the beat, starting at ``start`` seconds, rounded to
    microseconds as a CSV holds them.
    """
    bpm = check_bpm(bpm, "note string")
    if not math.isfinite(start) or start < 0:
        raise CadenzaError(f"note string: start offset {start} s is negative or not finite", "give a start time ≥ 0 s")
    tokens = str(spec).replace(",", " ").split()
    if not tokens:
        raise CadenzaError("note string is empty", 'write notes like "C4:1 E4:1 G4:2" (pitch:beats)')
    beat = 60.0 / bpm
    pitches: list[int] = []
    beats: list[float] = []
    for i, token in enumerate(tokens, start=1):
        where = f"note string, note {i} ('{token}')"
        name, sep, dur = token.partition(":")
        if sep and not dur:
            raise CadenzaError(f"{where}: missing duration after ':'", "write pitch:beats, e.g. C4:0.5")
        length = 1.0
        if dur:
            try:
                length = float(dur)
            except ValueError:
                raise CadenzaError(f"{where}: duration '{dur}' is not a number", "durations are in beats, e.g. C4:0.5") from None
            if not math.isfinite(length) or length <= 0:
                raise CadenzaError(f"{where}: duration must be a positive number of beats, got {dur}", "e.g. C4:1")
        if name.strip().lower() in _REST_TOKENS:
            pitch = -1
        else:
            try:
                pitch = parse_pitch(name)
            except CadenzaError as err:
                raise CadenzaError(f"{where}: {err.message}", err.hint) from None
        pitches.append(pitch)
        beats.append(length)
    onsets = np.concatenate([[0.0], np.cumsum(beats)])
    starts = start + onsets[:-1] * beat
    ends = start + onsets[1:] * beat
    keep = np.asarray(pitches) >= 0
    if not keep.any():
        raise CadenzaError("note string has only rests", 'add at least one pitched note, e.g. "R:1 C4:1"')
    rows = np.stack([starts, ends, np.asarray(pitches, dtype=np.float64)], axis=1)[keep]
    rows[:, :2] = np.round(rows[:, :2], 6) + 0.0
    return rows
