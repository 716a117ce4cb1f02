"""Arrangement: harmony, tempo grid, drums and determinism on hand-made scores (no music21 parse)."""

from __future__ import annotations

import numpy as np

from cadenza.data.arrange import DRUM_KICK, DRUM_SNARE, arrange, drum_notes, harmonize
from cadenza.data.score import PartNotes, ScoreData


def tune(meter: str = "4/4", beat_q: float = 1.0, bpb: int = 4, pickup: float = 0.0) -> ScoreData:
    """Four bars: C E G C | G B D G | F A C F | C E G C (quarters), optionally after a pickup."""
    pitches = [60, 64, 67, 72, 67, 71, 74, 79, 65, 69, 72, 77, 60, 64, 67, 72]
    notes = np.array([[pickup + i, 1.0, p] for i, p in enumerate(pitches)], dtype=np.float64)
    if pickup:
        notes = np.vstack([[0.0, pickup, 67], notes])
    end = pickup + 16.0
    beats = np.arange(-pickup, end, beat_q) + pickup
    beats = beats[beats >= 0]
    down = np.isclose(np.mod(beats - pickup, beat_q * bpb), 0.0)
    return ScoreData(
        parts=[PartNotes("melody", notes)], beats_q=beats, downbeat=down, beat_q=beat_q, beats_per_bar=bpb,
        meter=meter, tonic_pc=0, mode="major", end_q=end,
    )


def test_harmonize_picks_the_chord_the_melody_spells() -> None:
    sd = tune()
    roots, chords = harmonize(sd.parts[0].notes, np.array([0.0, 4.0, 8.0, 12.0, 16.0]), 0, "major")
    assert roots.tolist() == [0, 7, 5, 0]  # I V IV I
    assert chords[1].tolist() == [7, 11, 2]  # G B D as root, third, fifth


def test_harmonize_minor_uses_a_major_dominant() -> None:
    notes = np.array([[0, 1, 69], [1, 1, 72], [2, 1, 76], [4, 1, 64], [5, 1, 68], [6, 1, 71], [8, 2, 69]], float)
    roots, chords = harmonize(notes, np.array([0.0, 4.0, 8.0, 10.0]), 9, "minor")
    assert roots.tolist()[:2] == [9, 4]
    assert 8 in chords[1].tolist()  # G# leading tone


def test_beats_follow_the_tempo_and_pickup() -> None:
    sd = tune(pickup=1.0)
    arr = arrange(sd, np.random.default_rng(0), max_seconds=60.0, drum_probability=0.0)
    spb = 60.0 / arr.bpm
    np.testing.assert_allclose(np.diff(arr.beats[:, 0]), spb, atol=1e-9)
    down_times = arr.beats[arr.beats[:, 1] > 0, 0]
    np.testing.assert_allclose(down_times[0], spb * 1.0)  # after the one-beat pickup
    np.testing.assert_allclose(np.diff(down_times), 4 * spb)
    assert 60 <= arr.bpm <= 160
    assert arr.accompaniment is not None and arr.roles == ["melody", "harmony", "bass"]
    # the melody is transposed as a whole and kept singable
    mel = np.array([n.pitch for n in arr.midi.instruments[0].notes])
    assert 58 <= np.median(mel) <= 82
    assert (mel - np.array([67] + [60, 64, 67, 72, 67, 71, 74, 79, 65, 69, 72, 77, 60, 64, 67, 72]) == arr.transpose).all()


def test_same_generator_same_music_other_generator_other_music() -> None:
    sd = tune()
    a = arrange(sd, np.random.default_rng(5), 30.0)
    b = arrange(sd, np.random.default_rng(5), 30.0)
    c = arrange(sd, np.random.default_rng(6), 30.0)
    notes = lambda x: [(n.start, n.end, n.pitch, n.velocity) for i in x.midi.instruments for n in i.notes]  # noqa: E731
    assert notes(a) == notes(b)
    assert notes(a) != notes(c)


def test_window_caps_the_length() -> None:
    sd = tune()
    arr = arrange(sd, np.random.default_rng(1), max_seconds=3.0)
    assert arr.duration <= 3.0 + 1e-6
    assert (arr.beats[:, 0] < 3.0).all()


def test_drum_patterns_fit_the_meter() -> None:
    spq = 0.5
    beats = np.arange(8) * spq  # 2 bars of 4/4
    down = np.arange(8) % 4 == 0
    rows = drum_notes(beats, down, 1.0, 4, spq, "backbeat", np.random.default_rng(0))
    kick = rows[rows[:, 2] == DRUM_KICK, 0]
    snare = rows[rows[:, 2] == DRUM_SNARE, 0]
    np.testing.assert_allclose(kick, beats[np.arange(8) % 2 == 0])  # beats 1 and 3
    np.testing.assert_allclose(snare, beats[np.arange(8) % 2 == 1])  # backbeat 2 and 4
    # 6/8: two dotted-quarter beats per bar, kick on 1, snare on 2, hats on the eighths
    beats68 = np.arange(4) * 0.75
    rows = drum_notes(beats68, np.arange(4) % 2 == 0, 1.5, 2, 0.5, "backbeat", np.random.default_rng(0))
    np.testing.assert_allclose(rows[rows[:, 2] == DRUM_KICK, 0], [0.0, 1.5])
    np.testing.assert_allclose(rows[rows[:, 2] == DRUM_SNARE, 0], [0.75, 2.25])
    hats = rows[~np.isin(rows[:, 2], [DRUM_KICK, DRUM_SNARE, 49]), 0]
    np.testing.assert_allclose(np.diff(hats), 0.25)
