"""Note names, MIDI numbers and typed note strings."""

import numpy as np
import pytest

from cadenza.controls.notes import check_bpm, midi_to_note, note_to_midi, parse_note_string, parse_pitch
from cadenza.errors import CadenzaError


@pytest.mark.parametrize(
    "name, midi",
    [("C4", 60), ("F#3", 54), ("Bb2", 46), ("B#3", 60), ("Cb4", 59), ("c#5", 73), ("bb3", 58), ("A4", 69),
     ("E♭4", 63), ("F♯2", 42), ("C-1", 0), ("G9", 127), ("Cx4", 62), ("Dbb4", 60)],
)
def test_note_names(name: str, midi: int) -> None:
    assert note_to_midi(name) == midi


@pytest.mark.parametrize("bad", ["H4", "C", "4", "C#", "Cb", "C4.5", "", "Z#3", "C##x4"])
def test_unknown_notes_are_refused(bad: str) -> None:
    with pytest.raises(CadenzaError, match="unknown note"):
        note_to_midi(bad)


def test_out_of_midi_range() -> None:
    with pytest.raises(CadenzaError, match="outside the MIDI range"):
        note_to_midi("G#9")
    with pytest.raises(CadenzaError, match="outside 0-127"):
        parse_pitch("128")
    with pytest.raises(CadenzaError, match="outside 0-127"):
        parse_pitch("-1")


def test_parse_pitch_accepts_numbers_and_names() -> None:
    assert parse_pitch("60") == 60
    assert parse_pitch(" 61 ") == 61
    assert parse_pitch("62.0") == 62
    assert parse_pitch("D4") == 62


def test_midi_to_note_is_canonical_and_inverts() -> None:
    assert midi_to_note(61) == "C#4"
    assert midi_to_note(46) == "A#2"
    assert midi_to_note(0) == "C-1"
    for m in range(128):
        assert note_to_midi(midi_to_note(m)) == m
    with pytest.raises(CadenzaError):
        midi_to_note(200)


def test_note_string_times_and_rests() -> None:
    rows = parse_note_string("C4:0.5 D4:0.5 R:1 E4:1 G4", bpm=120.0, start=1.0)
    # 120 bpm → 0.5 s per beat; the rest leaves 2.0-2.5 s uncovered; a bare note lasts one beat
    expected = np.array([[1.0, 1.25, 60], [1.25, 1.5, 62], [2.0, 2.5, 64], [2.5, 3.0, 67]])
    np.testing.assert_allclose(rows, expected)


def test_note_string_at_odd_tempo_is_rounded_to_microseconds() -> None:
    rows = parse_note_string("C4:1 D4:1", bpm=70.0)
    assert rows[0, 1] == round(60 / 70, 6)
    assert rows[1, 1] == round(120 / 70, 6)


@pytest.mark.parametrize(
    "spec, problem",
    [("", "empty"), ("C4:0", "positive"), ("C4:-1", "positive"), ("C4:abc", "not a number"), ("C4:", "missing duration"),
     ("H4:1", "unknown note 'H4'"), ("R:1 R:2", "only rests"), ("C4:nan", "positive")],
)
def test_bad_note_strings(spec: str, problem: str) -> None:
    with pytest.raises(CadenzaError, match=problem):
        parse_note_string(spec)


def test_bad_note_string_names_the_token() -> None:
    with pytest.raises(CadenzaError) as err:
        parse_note_string("C4:1 D4:1 H4:1")
    assert "note 3" in err.value.message and "H4" in err.value.message
    assert err.value.hint


@pytest.mark.parametrize("bpm, problem", [(0, "positive"), (-10, "positive"), (401, "absurd"), (float("nan"), "positive"), ("x", "not a number")])
def test_bad_bpm(bpm: object, problem: str) -> None:
    with pytest.raises(CadenzaError, match=problem):
        check_bpm(bpm)  # type: ignore[arg-type]
