"""From a music21 score to plain arrays: notes per part, the beat grid, key and meter.

Everything downstream (arrangement, rendering, exact controls) works on ``ScoreData``, which
holds only numbers and strings, so it is cheap to test and independent of music21's object
model. Times here are in quarter notes from the start of the piece.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cadenza.errors import CadenzaError

# Scale steps of the church modes, for harmonising tunes in their own mode.
MODE_STEPS: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "ionian": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "aeolian": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "lydian": (0, 2, 4, 6, 7, 9, 11),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "locrian": (0, 1, 3, 5, 6, 8, 10),
}
MINOR_LIKE = frozenset({"minor", "aeolian", "dorian", "phrygian", "locrian"})


@dataclass
class PartNotes:
    """One part: (K, 3) rows of onset_q, duration_q, midi pitch (chords give several rows)."""

    name: str
    notes: np.ndarray

    @property
    def is_chordal(self) -> bool:
        """True when two notes start together (a keyboard part, a chord track)."""
        on = self.notes[:, 0]
        return len(on) > 1 and len(np.unique(on)) < len(on)


@dataclass
class ScoreData:
    """The parts of a piece, its beat grid and its key, in quarter notes."""

    parts: list[PartNotes]
    beats_q: np.ndarray  # (B,) beat onsets in quarter notes
    downbeat: np.ndarray  # (B,) bool, True at the first beat of a bar
    beat_q: float  # length of one beat of the first meter, in quarters (1.5 for 6/8)
    beats_per_bar: int
    meter: str  # e.g. "4/4"
    tonic_pc: int
    mode: str  # "major", "minor", "dorian", ...
    end_q: float
    metronome_bpm: float | None = None  # quarter-note BPM from the score, if marked
    title: str | None = None
    composer: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def n_notes(self) -> int:
        return int(sum(len(p.notes) for p in self.parts))

    @property
    def is_monophonic(self) -> bool:
        """One part without chords: a tune that needs an accompaniment."""
        return len(self.parts) == 1 and not self.parts[0].is_chordal

    @property
    def minor(self) -> bool:
        return self.mode in MINOR_LIKE

    def bar_starts(self) -> np.ndarray:
        return self.beats_q[self.downbeat]


def _tied_durations(flat) -> tuple[dict[int, object], set[int]]:
    """music21's ``stripTies`` decisions, read-only: {id of a tie chain's first element: its
    summed quarterLength} and the ids of the elements merged into it.

    ``stripTies`` copies the whole part and removes each merged note with a recursive search,
    which made it half of a corpus build's time. This walks the same sequence (the flattened
    notes and rests of non-zero length) with the same rules (``matchByPitch=True``: a stop tie,
    or a continuation of the same pitch(es) after a connected element) and only records
    the result, so the notes come out identical.
    """
    from music21 import chord, note
    from music21.common.numberTools import opFrac

    seq = [el for el in flat.notesAndRests if el.quarterLength > 0]
    merged: dict[int, object] = {}
    absorbed: set[int] = set()
    connected: list[int] = []

    def same_pitches(last, cur) -> bool:
        if isinstance(last, chord.Chord) or isinstance(cur, chord.Chord):
            if isinstance(cur, note.Note) or not (hasattr(last, "pitches") and hasattr(cur, "pitches")):
                return False
            if len(last.pitches) != len(cur.pitches):
                return False
            return all(a.step == b.step and a.isEnharmonic(b) for a, b in zip(last.pitches, cur.pitches))
        return hasattr(last, "pitch") and hasattr(cur, "pitch") and last.pitch == cur.pitch

    def ends_chain(i: int, el) -> bool:
        tie = getattr(el, "tie", None)
        if tie is not None and tie.type == "stop" and not isinstance(el, chord.Chord):
            return True
        return i > 0 and (i - 1) in connected and same_pitches(seq[i - 1], el)

    for i, el in enumerate(seq):
        tie = getattr(el, "tie", None)
        end = None
        if tie is not None and tie.type == "start":
            connected = [i] if not connected or (i - 1) not in connected else connected + [i]
            end = False
        elif tie is not None and tie.type == "continue":
            connected = connected + [i] if connected and ends_chain(i, el) else [i]
            end = False
        if end is None:
            end = ends_chain(i, el)
        if end:
            connected.append(i)
            if len(connected) >= 2:
                total = 0
                for q in connected[1:]:
                    total += seq[q].quarterLength
                    absorbed.add(id(seq[q]))
                first = seq[connected[0]]
                merged[id(first)] = opFrac(merged.get(id(first), first.quarterLength) + total)
            connected = []
    return merged, absorbed


def _part_notes(part) -> np.ndarray:
    """Tied notes merged, grace notes and unpitched events dropped."""
    from music21 import chord, note

    rows: list[tuple[float, float, int]] = []
    if part.hasPartLikeStreams() or part.hasVoices():  # stripTies recurses there: keep its own path
        flat, merged, absorbed = part.stripTies(inPlace=False).flatten(), {}, set()
    else:
        flat = part.flatten()
        merged, absorbed = _tied_durations(flat)
    for el in flat.notes:
        if id(el) in absorbed:
            continue
        dur = float(merged.get(id(el), el.quarterLength))
        if dur <= 0:
            continue
        if isinstance(el, note.Note):
            pitches = [el.pitch.midi]
        elif isinstance(el, chord.Chord):
            pitches = [p.midi for p in el.pitches]
        else:  # Unpitched / PercussionChord
            continue
        off = float(el.offset)
        rows.extend((off, dur, int(p)) for p in pitches)
    arr = np.array(rows, dtype=np.float64).reshape(-1, 3)
    return arr[np.lexsort((arr[:, 2], arr[:, 0]))] if len(arr) else arr


def _beat_grid(part, end_q: float) -> tuple[np.ndarray, np.ndarray, float, int, str]:
    """Beat onsets and downbeat flags from the measures of ``part``.

    Tracks the position in the bar across measures, so a pickup bar or a bar split at a
    repeat sign continues the previous bar instead of inventing a downbeat.
    """
    from music21 import meter, stream

    measures = list(part.getElementsByClass(stream.Measure))
    first_ts = part.recurse().getElementsByClass(meter.TimeSignature).first()
    if first_ts is None:
        first_ts = meter.TimeSignature("4/4")
    beat_q0 = float(first_ts.beatDuration.quarterLength)
    beats_per_bar0 = int(first_ts.beatCount)
    if not measures:
        bar_q = float(first_ts.barDuration.quarterLength)
        beats = np.arange(0.0, end_q, beat_q0)
        return beats, np.isclose(np.mod(beats, bar_q), 0.0), beat_q0, beats_per_bar0, first_ts.ratioString
    ts = first_ts
    all_beats: list[np.ndarray] = []
    all_down: list[np.ndarray] = []
    pos = 0.0  # quarters into the current bar at the start of the next measure
    eps = 1e-6
    for i, m in enumerate(measures):
        if m.timeSignature is not None:
            ts = m.timeSignature
        bar_q = float(ts.barDuration.quarterLength)
        beat_q = float(ts.beatDuration.quarterLength)
        dur = float(m.duration.quarterLength)
        if dur <= eps:
            continue
        if i == 0 and dur < bar_q - eps:
            pos = bar_q - dur  # anacrusis: the bar's end is aligned with the first downbeat
        elif pos >= bar_q - eps or pos <= eps:
            pos = 0.0
        # beats of this measure are where (pos + t) is a multiple of beat_q, t in [0, dur)
        first = (-pos) % beat_q
        t = np.arange(first, dur - eps, beat_q) if first < dur - eps else np.zeros(0)
        phase = np.mod(pos + t, bar_q)
        all_beats.append(float(m.offset) + t)
        all_down.append(np.isclose(phase, 0.0, atol=1e-6) | np.isclose(phase, bar_q, atol=1e-6))
        pos += dur
    beats = np.concatenate(all_beats) if all_beats else np.zeros(0)
    down = np.concatenate(all_down) if all_down else np.zeros(0, bool)
    order = np.argsort(beats, kind="stable")
    return beats[order], down[order], beat_q0, beats_per_bar0, first_ts.ratioString


def _key_of(score, abc_key: str | None) -> tuple[int, str]:
    """(tonic pitch class, mode): an explicit ABC mode wins, else music21's key analysis."""
    from music21 import key as m21key

    explicit = None
    for k in score.recurse().getElementsByClass(m21key.Key):
        explicit = k
        break
    if explicit is not None and abc_key and explicit.mode in MODE_STEPS and explicit.mode not in ("major", "minor"):
        return int(explicit.tonic.pitchClass), str(explicit.mode)
    try:
        k = score.analyze("key")
        return int(k.tonic.pitchClass), "minor" if k.mode == "minor" else "major"
    except Exception:  # analysis fails on empty or atonal fragments; fall back to the signature
        if explicit is not None:
            mode = explicit.mode if explicit.mode in MODE_STEPS else "major"
            return int(explicit.tonic.pitchClass), mode
        return 0, "major"


def score_data(score, abc: dict[str, str] | None = None) -> ScoreData:
    """Convert a parsed music21 score (see ``corpus.load_work``) into ``ScoreData``."""
    from music21 import tempo

    parts = []
    for i, part in enumerate(score.parts):
        notes = _part_notes(part)
        if len(notes):
            parts.append(PartNotes(str(part.partName or f"part{i + 1}"), notes))
    if not parts:
        raise CadenzaError("score has no pitched notes")
    end_q = float(max((p.notes[:, 0] + p.notes[:, 1]).max() for p in parts))
    beats, down, beat_q, bpb, meter_str = _beat_grid(score.parts[0], end_q)
    keep = beats < end_q
    beats, down = beats[keep], down[keep]
    if len(beats) < 2:
        raise CadenzaError("score too short for a beat grid")
    tonic, mode = _key_of(score, (abc or {}).get("K"))
    mm = score.recurse().getElementsByClass(tempo.MetronomeMark).first()
    bpm = None
    if mm is not None:
        try:
            bpm = float(mm.getQuarterBPM()) if mm.number is not None or mm.getQuarterBPM() else None
        except Exception:
            bpm = None
    md = score.metadata
    title = (md.title if md is not None else None) or (abc or {}).get("T")
    composer = (md.composer if md is not None else None) or (abc or {}).get("C")
    return ScoreData(
        parts=parts, beats_q=beats, downbeat=down, beat_q=beat_q, beats_per_bar=max(bpb, 1), meter=meter_str,
        tonic_pc=tonic, mode=mode, end_q=end_q, metronome_bpm=bpm, title=title, composer=composer,
        extra=dict(abc or {}),
    )
