"""Exact score controls, the TinySoundFont renderer and the corpus catalogue."""

from __future__ import annotations

import numpy as np
import pretty_midi
import pytest

from cadenza.audio.format import FRAME_RATE, SAMPLE_RATE, num_frames
from cadenza.data.corpus import find_work, list_works, select_works, slugify, split_for
from cadenza.data.render import add_room, render_midi, resolve_soundfont, timgm6mb_path
from cadenza.data.score_controls import runs_to_notes, score_controls, top_voice
from cadenza.errors import CadenzaError


# ------------------------------------------------------------------ score controls
def test_top_voice_takes_the_highest_sounding_note() -> None:
    notes = np.array([[0.0, 1.0, 48], [0.5, 1.5, 67], [0.25, 0.75, 72]])
    top = top_voice(notes, num_frames(2 * SAMPLE_RATE))
    t = np.arange(len(top)) / FRAME_RATE
    expect = np.where(t < 0.25, 48, np.where(t < 0.75, 72, np.where(t < 1.5, 67, -1)))
    # frame centres exactly on a boundary belong to the note that starts there
    assert (top == expect).mean() > 0.99
    assert top[-1] == -1 and top[0] == 48


def test_runs_to_notes_round_trips_a_frame_track() -> None:
    track = np.array([-1, -1, 60, 60, 60, 64, 64, -1, 67])
    notes = runs_to_notes(track)
    np.testing.assert_allclose(notes[:, 2], [60, 64, 67])
    np.testing.assert_allclose(notes[:, 0] * FRAME_RATE, [2, 5, 8])
    np.testing.assert_allclose(notes[:, 1] * FRAME_RATE, [5, 7, 9])


def test_score_controls_shift_to_the_clip_start() -> None:
    notes = np.array([[0.0, 2.0, 60], [2.0, 4.0, 69]])  # C then A
    beats = np.array([[t, float(i % 4 == 0)] for i, t in enumerate(np.arange(0, 4, 0.5))])
    n = SAMPLE_RATE  # a 1 s clip starting at 1.5 s
    cs = score_controls(notes, beats, 1.5, n)
    assert cs.n_frames == num_frames(n)
    pcs = cs.pitch_classes()
    t = np.arange(cs.n_frames) / FRAME_RATE + 1.5
    assert (pcs[t < 1.99] == 0).all() and (pcs[t > 2.01] == 9).all()
    np.testing.assert_allclose(cs.beat_times(), [0.0, 0.5])  # 1.0 s lies past the last frame centre
    np.testing.assert_allclose(cs.downbeat_times(), [0.5])  # the beat at 2.0 s
    assert cs.rhythm[np.rint(0.5 * FRAME_RATE).astype(int), 1] == 1.0
    assert cs.dynamics_mask.sum() == 0  # left to the audio


# ------------------------------------------------------------------ renderer
def _one_note(pitch: int, program: int = 0, start: float = 0.1, end: float = 0.9) -> pretty_midi.PrettyMIDI:
    midi = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=program)
    inst.notes.append(pretty_midi.Note(100, pitch, start, end))
    midi.instruments.append(inst)
    return midi


def test_render_plays_the_right_pitch_and_is_repeatable() -> None:
    sf = timgm6mb_path()
    audio = render_midi(_one_note(69, program=73), sf, duration=1.0, tail=0.5)  # flute A4
    assert audio.dtype == np.float32 and len(audio) == int(1.5 * SAMPLE_RATE)
    seg = audio[int(0.3 * SAMPLE_RATE) : int(0.8 * SAMPLE_RATE)]
    spec = np.abs(np.fft.rfft(seg * np.hanning(len(seg))))
    freqs = np.fft.rfftfreq(len(seg), 1 / SAMPLE_RATE)
    peak = freqs[np.argmax(spec)]
    assert abs(12 * np.log2(peak / 440.0)) < 0.5 or abs(12 * np.log2(peak / 880.0)) < 0.5
    assert np.sqrt(np.mean(audio[: int(0.09 * SAMPLE_RATE)] ** 2)) < 1e-4  # silent before the note
    render_midi(_one_note(40, program=33), sf, duration=1.0)  # something else in between
    again = render_midi(_one_note(69, program=73), sf, duration=1.0, tail=0.5)
    np.testing.assert_array_equal(audio, again)


def test_drums_render_on_channel_ten() -> None:
    midi = pretty_midi.PrettyMIDI()
    kit = pretty_midi.Instrument(program=0, is_drum=True)
    kit.notes.append(pretty_midi.Note(120, 36, 0.5, 0.6))
    midi.instruments.append(kit)
    audio = render_midi(midi, timgm6mb_path(), duration=1.0)
    before, after = audio[: int(0.45 * SAMPLE_RATE)], audio[int(0.5 * SAMPLE_RATE) : int(0.7 * SAMPLE_RATE)]
    assert np.abs(before).max() < 1e-4 < np.abs(after).max()


def test_room_adds_a_tail_and_zero_wet_is_identity() -> None:
    x = np.zeros(SAMPLE_RATE, np.float32)
    x[100] = 1.0
    assert add_room(x, np.random.default_rng(0), 0.0, 1.0) is x
    wet = add_room(x, np.random.default_rng(0), 0.3, 1.0)
    assert np.abs(wet[SAMPLE_RATE // 2 :]).max() > 0


def test_soundfont_choice() -> None:
    path, name = resolve_soundfont(None, prefer_large=False)
    assert name == "TimGM6mb" and path.is_file()
    with pytest.raises(CadenzaError, match="not found"):
        resolve_soundfont("/nonexistent/font.sf2", prefer_large=False)


# ------------------------------------------------------------------ corpus
def test_works_are_many_unique_and_selection_spreads_over_collections() -> None:
    works = list_works()
    assert len(works) > 10_000
    assert len({w.work_id for w in works}) == len(works)
    assert len({w.slug for w in works}) == len(works)
    picked = select_works(20, seed=0)
    assert picked == select_works(20, seed=0)
    assert picked != select_works(20, seed=1)
    assert len({w.collection for w in picked}) == 20  # round-robin: one per collection first
    assert all(w.size <= 5000 for w in select_works(10, 0, max_size=5000))
    first = select_works(3, 0, held_out_first=True)
    assert [split_for(w.work_id) for w in first[:2]] == ["valid", "test"]
    rest = [w for w in select_works(20, 0, held_out_first=True) if w not in first[:2]]
    assert rest == [w for w in picked if w not in first[:2]][: len(rest)]  # otherwise the same order


def test_split_is_by_work_and_near_90_5_5() -> None:
    works = list_works()
    splits = [split_for(w.work_id) for w in works]
    share = {s: splits.count(s) / len(splits) for s in ("train", "valid", "test")}
    assert 0.87 < share["train"] < 0.93 and 0.03 < share["valid"] < 0.07 and 0.03 < share["test"] < 0.07
    assert split_for("bach/bwv1.6") == split_for("bach/bwv1.6")


def test_ids_and_errors() -> None:
    assert slugify("essenFolksong/altdeu10#12") == "essenFolksong_altdeu10-n12"
    assert find_work("bach/bwv1.6").collection == "bach"
    with pytest.raises(CadenzaError, match="no work"):
        find_work("bach/nope")


def _stripties_rows(part) -> np.ndarray:
    """The reference: music21's own stripTies, then the same rows _part_notes makes."""
    from music21 import chord, note

    rows = []
    for el in part.stripTies(inPlace=False).flatten().notes:
        if float(el.quarterLength) <= 0:
            continue
        pitches = [el.pitch.midi] if isinstance(el, note.Note) else [p.midi for p in el.pitches] if isinstance(el, chord.Chord) else []
        rows += [(float(el.offset), float(el.quarterLength), p) for p in pitches]
    arr = np.array(rows, dtype=np.float64).reshape(-1, 3)
    return arr[np.lexsort((arr[:, 2], arr[:, 0]))]


def test_tie_merge_equals_music21_stripties() -> None:
    """The read-only tie merge (40x faster than stripTies on large works) gives the same notes on
    the awkward cases: chains across bars, a continue tie, a repeated start, tied chords, a stop
    tie with no start, ties broken by a rest or a pitch change, and a grace note."""
    from music21 import chord, meter, note, stream, tie

    from cadenza.data.score import _part_notes

    def n(pitch, ql, kind=None, grace=False):
        el = note.Note(pitch, quarterLength=ql)
        if kind:
            el.tie = tie.Tie(kind)
        return el.getGrace() if grace else el

    def c(pitches, ql, kind=None):
        el = chord.Chord(pitches, quarterLength=ql)
        if kind:
            el.tie = tie.Tie(kind)
        return el

    bars = [
        [n("C4", 2, "start"), n("C4", 2, "continue")],
        [n("C4", 1, "stop"), n("D4", 1, "start"), n("D4", 1, "start"), n("D4", 1, "stop")],
        [c(["E4", "G4"], 2, "start"), c(["E4", "G4"], 2, "stop")],
        [n("F4", 1, "stop"), n("A4", 1, "start"), note.Rest(quarterLength=1), n("A4", 1)],
        [n("B4", 1, "start"), n("C5", 1, "stop"), n("G4", 0, grace=True), n("E4", 1, "start"), n("E4", 1)],
    ]
    part = stream.Part()
    for i, notes in enumerate(bars):
        m = stream.Measure(number=i + 1)
        if i == 0:
            m.append(meter.TimeSignature("4/4"))
        for el in notes:
            m.append(el)
        part.append(m)
    ours, ref = _part_notes(part), _stripties_rows(part)
    np.testing.assert_array_equal(ours, ref)
    assert ours[0].tolist() == [0.0, 5.0, 60.0]  # C4: start, continue, stop over two bars → one note
    assert len(ours) < len(part.flatten().notes) + 1  # chains were merged (the chord counts twice)
