"""Creator control files (v1): CSV ↔ ControlSet round trips, MIDI, shapes, grids and errors."""

from pathlib import Path

import numpy as np
import pretty_midi
import pytest

from cadenza.audio.format import FRAME_RATE, frames_for_duration
from cadenza.controls.base import ControlSet
from cadenza.controls.files import (
    FADE_FLOOR_DB,
    ControlFileWarning,
    dynamics_shape,
    load_csvs,
    parse_meter,
    read_dynamics,
    read_melody,
    read_rhythm,
    rhythm_from_bpm,
    save_csvs,
    stretch_rhythm,
    write_dynamics_csv,
    write_melody_csv,
    write_rhythm_csv,
)
from cadenza.errors import CadenzaError

T6 = frames_for_duration(6.0)  # 517 frames

MELODY = "start,end,pitch\n0,0.5,C4\n0.5,0.75,F#3\n1.25,2,A#2\n2.5,3.123457,G9\n"
DYNAMICS = "time,db\n0,-40\n1.5,-20.25\n3,-35.5\n4.000001,-6\n"
RHYTHM = "time,downbeat\n0.1,1\n0.6,0\n1.1,0\n1.6,1\n2.1,0\n2.6,0\n"


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _frame(t: float) -> int:
    return int(np.ceil(t * FRAME_RATE - 1e-4))


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    "name, text, reader, writer",
    [
        ("melody.csv", MELODY, read_melody, write_melody_csv),
        ("dynamics.csv", DYNAMICS, read_dynamics, write_dynamics_csv),
        ("rhythm.csv", RHYTHM, read_rhythm, write_rhythm_csv),
    ],
)
def test_canonical_csv_round_trips_byte_for_byte(tmp_path: Path, name: str, text: str, reader, writer) -> None:
    src = _write(tmp_path, name, text)
    cs = reader(src, T6)
    out = writer(cs, tmp_path / "out" / name)
    assert out.read_bytes() == src.read_bytes()
    # ... and through the .npz form as well
    npz = cs.save(tmp_path / "c.npz")
    again = writer(ControlSet.load(npz), tmp_path / "again.csv")
    assert again.read_bytes() == src.read_bytes()


def test_save_and_load_csvs_merge_the_three(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name, text in (("melody.csv", MELODY), ("dynamics.csv", DYNAMICS), ("rhythm.csv", RHYTHM)):
        _write(src, name, text)
    cs = load_csvs(src, T6)
    assert cs.given() == ["melody", "dynamics", "rhythm"]
    written = save_csvs(cs, tmp_path / "dst")
    assert sorted(p.name for p in written) == ["dynamics.csv", "melody.csv", "rhythm.csv"]
    for p in written:
        assert p.read_bytes() == (src / p.name).read_bytes()
    assert sorted(p.name for p in (tmp_path / "dst").iterdir()) == ["dynamics.csv", "melody.csv", "rhythm.csv"]  # no temp files left


def test_save_csvs_writes_only_given_controls(tmp_path: Path) -> None:
    cs = ControlSet.empty(T6).merge(read_melody("C4:1", T6))
    assert [p.name for p in save_csvs(cs, tmp_path)] == ["melody.csv"]
    assert save_csvs(ControlSet.empty(10), tmp_path / "none") == []
    only = load_csvs(tmp_path, T6)
    assert only.given() == ["melody"]
    assert load_csvs(tmp_path).n_frames == _frame(0.5)  # length from the content when none is given


def test_load_csvs_errors(tmp_path: Path) -> None:
    with pytest.raises(CadenzaError, match="no such folder"):
        load_csvs(tmp_path / "missing", 10)
    with pytest.raises(CadenzaError, match="holds none of"):
        load_csvs(tmp_path, 10)


def test_frames_without_events_write_derived_rows_that_read_back(tmp_path: Path) -> None:
    T = 200
    pcs = np.full(T, -1)
    pcs[10:40], pcs[40:41], pcs[100:150] = 2, 7, 11
    melody = np.zeros((T, 12), np.float32)
    melody[pcs >= 0, pcs[pcs >= 0]] = 1
    dyn = np.zeros(T, np.float32)
    dyn[20:120] = np.linspace(-50, -10, 100)
    rhythm = np.zeros((T, 2), np.float32)
    rhythm[[30, 73], 0] = 1
    rhythm[[29, 31, 72, 74], 0] = 0.5
    rhythm[30, 1] = 1
    rmask = np.zeros(T, np.float32)
    rmask[25:90] = 1
    cs = ControlSet(T, melody, (pcs >= 0).astype(np.float32), dyn, (dyn != 0).astype(np.float32), rhythm, rmask)
    paths = save_csvs(cs, tmp_path)
    assert len(paths) == 3
    lines = (tmp_path / "melody.csv").read_text().splitlines()
    def t(frame: int) -> str:
        return f"{frame / FRAME_RATE:.6f}".rstrip("0")

    assert lines[1:] == [f"{t(10)},{t(40)},D4", f"{t(40)},{t(41)},G4", f"{t(100)},{t(150)},B4"]
    back = load_csvs(tmp_path, T)
    np.testing.assert_array_equal(back.melody, cs.melody)
    np.testing.assert_array_equal(back.melody_mask, cs.melody_mask)
    np.testing.assert_array_equal(back.dynamics_mask, cs.dynamics_mask)
    np.testing.assert_allclose(back.dynamics, cs.dynamics, atol=1e-4)
    np.testing.assert_allclose(back.beat_times(), [30 / FRAME_RATE, 73 / FRAME_RATE], atol=1e-6)
    np.testing.assert_allclose(back.downbeat_times(), [30 / FRAME_RATE], atol=1e-6)


def test_dynamics_with_gaps_cannot_become_one_csv(tmp_path: Path) -> None:
    T = 50
    mask = np.zeros(T, np.float32)
    mask[5:10] = mask[20:30] = 1
    cs = ControlSet(T, np.zeros((T, 12), np.float32), np.zeros(T, np.float32), mask * -20, mask,
                    np.zeros((T, 2), np.float32), np.zeros(T, np.float32))
    with pytest.raises(CadenzaError, match="2 separate spans"):
        write_dynamics_csv(cs, tmp_path / "d.csv")


# ---------------------------------------------------------------- melody


def test_note_string_at_120_bpm_puts_pitch_classes_on_the_right_frames() -> None:
    cs = read_melody("C4:1 E4:0.5 R:0.5 G#3:2", T6, bpm=120.0)
    pc = cs.pitch_classes()
    assert (pc[0:_frame(0.5)] == 0).all()
    assert (pc[_frame(0.5):_frame(0.75)] == 4).all()
    assert (pc[_frame(0.75):_frame(1.0)] == -1).all() and not cs.melody_mask[_frame(0.75):_frame(1.0)].any()
    assert (pc[_frame(1.0):_frame(2.0)] == 8).all()
    assert not cs.melody_mask[_frame(2.0):].any()
    np.testing.assert_allclose(cs.melody_notes[:, 2], [60, 64, 56])


def test_note_string_start_offset_and_tempo() -> None:
    cs = read_melody("D4:2", 300, bpm=60.0, start=1.0)
    assert not cs.melody_mask[:_frame(1.0)].any()
    assert cs.melody_mask[_frame(1.0):_frame(3.0)].all()
    assert not cs.melody_mask[_frame(3.0):].any()


def test_partial_melody_leaves_frames_outside_rows_free(tmp_path: Path) -> None:
    cs = read_melody(_write(tmp_path, "m.csv", "start,end,pitch\n1,2,60\n4,5,Eb4\n"), T6)
    mask = cs.melody_mask
    assert mask.sum() == (_frame(2) - _frame(1)) + (_frame(5) - _frame(4))
    assert not mask[: _frame(1)].any() and not mask[_frame(2):_frame(4)].any() and not mask[_frame(5):].any()
    assert (cs.melody[mask == 0] == 0).all()
    assert (cs.pitch_classes()[_frame(4):_frame(5)] == 3).all()


def test_row_end_is_exclusive_on_frame_centres(tmp_path: Path) -> None:
    # a boundary exactly on frame 10's centre: frame 10 belongs to the second row, not the first
    t = 10 / FRAME_RATE
    text = f"start,end,pitch\n0,{t:.6f},C4\n{t:.6f},{20 / FRAME_RATE:.6f},D4\n"
    cs = read_melody(_write(tmp_path, "m.csv", text), 30)
    assert list(cs.pitch_classes()[8:22]) == [0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, -1, -1]


def _midi(path: Path, notes: list[tuple[int, float, float]], drums: list[tuple[int, float, float]] = ()) -> Path:
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=0)
    inst.notes = [pretty_midi.Note(velocity=90, pitch=p, start=s, end=e) for p, s, e in notes]
    pm.instruments.append(inst)
    if drums:
        kit = pretty_midi.Instrument(program=0, is_drum=True)
        kit.notes = [pretty_midi.Note(velocity=90, pitch=p, start=s, end=e) for p, s, e in drums]
        pm.instruments.append(kit)
    pm.write(str(path))
    return path


def test_midi_highest_note_wins_and_drums_are_ignored(tmp_path: Path) -> None:
    # a held C4 (0-2 s) under a passing G4 (0.5-1 s), then silence, then A3; a loud drum on top throughout
    path = _midi(tmp_path / "tune.mid", [(60, 0.0, 2.0), (67, 0.5, 1.0), (57, 3.0, 3.5)], drums=[(100, 0.0, 4.0)])
    cs = read_melody(path, T6)
    pc = cs.pitch_classes()
    assert (pc[0:_frame(0.5)] == 0).all()
    assert (pc[_frame(0.5):_frame(1.0)] == 7).all()
    assert (pc[_frame(1.0):_frame(2.0)] == 0).all()
    assert (pc[_frame(2.0):_frame(3.0)] == -1).all() and not cs.melody_mask[_frame(2.0):_frame(3.0)].any()
    assert (pc[_frame(3.0):_frame(3.5)] == 9).all()
    np.testing.assert_allclose(cs.melody_notes, [[0, 0.5, 60], [0.5, 1, 67], [1, 2, 60], [3, 3.5, 57]], atol=1e-6)
    # the top line writes out as a melody.csv that reads back to the same frames
    back = read_melody(write_melody_csv(cs, tmp_path / "m.csv"), T6)
    np.testing.assert_array_equal(back.melody, cs.melody)


def test_midi_top_line_matches_a_brute_force_per_frame(tmp_path: Path, rng: np.random.Generator) -> None:
    starts = rng.uniform(0, 4, 40)
    notes = [(int(p), float(s), float(s + d)) for p, s, d in zip(rng.integers(40, 80, 40), starts, rng.uniform(0.05, 1.0, 40))]
    path = _midi(tmp_path / "poly.mid", notes)
    cs = read_melody(path, T6)
    read_back = [(n.pitch, n.start, n.end) for n in pretty_midi.PrettyMIDI(str(path)).instruments[0].notes]
    p, s, e = (np.array(x) for x in zip(*read_back))
    t = np.arange(T6)[:, None] / FRAME_RATE
    sounding = (s[None] <= t) & (t < e[None])
    top = np.where(sounding.any(axis=1), np.where(sounding, p[None], -1).max(axis=1) % 12, -1)
    np.testing.assert_array_equal(cs.pitch_classes(), top)


def test_midi_errors(tmp_path: Path) -> None:
    with pytest.raises(CadenzaError, match="no pitched notes"):
        read_melody(_midi(tmp_path / "drums.mid", [], drums=[(36, 0, 1)]), 100)
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"not a midi file")
    with pytest.raises(CadenzaError, match="cannot read MIDI"):
        read_melody(bad, 100)
    with pytest.raises(CadenzaError, match="no such MIDI file"):
        read_melody(tmp_path / "missing.mid", 100)


# ---------------------------------------------------------------- dynamics


def test_dynamics_interpolates_between_breakpoints(tmp_path: Path) -> None:
    cs = read_dynamics(_write(tmp_path, "d.csv", "time,db\n1,-40\n2,-20\n4,-30\n"), T6)
    given = np.flatnonzero(cs.dynamics_mask)
    np.testing.assert_allclose(cs.dynamics[given], np.interp(given / FRAME_RATE, [1, 2, 4], [-40, -20, -30]), atol=1e-4)
    for t, want in ((1.0, -40.0), (1.5, -30.0), (2.0, -20.0), (3.0, -25.0), (3.5, -27.5), (4.0, -30.0)):
        f = min(max(int(round(t * FRAME_RATE)), given[0]), given[-1])
        assert cs.dynamics[f] == pytest.approx(want, abs=0.25)
    assert not cs.dynamics_mask[: _frame(1)].any() and not cs.dynamics_mask[int(4 * FRAME_RATE) + 1:].any()
    assert cs.dynamics_mask[_frame(1): int(4 * FRAME_RATE) + 1].all()


@pytest.mark.parametrize("curve", ["linear", "tanh", "cosine"])
def test_shapes_are_monotone_and_span_the_range(curve: str) -> None:
    up = dynamics_shape("crescendo", T6, start_db=-35, range_db=12, curve=curve)
    v = up.dynamics[up.dynamics_mask > 0]
    assert up.dynamics_mask.all()
    assert np.all(np.diff(v) >= 0) and v[0] == pytest.approx(-35) and v[-1] == pytest.approx(-23, abs=1e-3)
    down = read_dynamics(f"decrescendo:-20:10:{curve}", T6)
    v = down.dynamics
    assert np.all(np.diff(v) <= 0) and v[0] == pytest.approx(-20) and v[-1] == pytest.approx(-30, abs=1e-3)
    swell = dynamics_shape("swell", T6, start_db=-30, range_db=15, curve=curve)
    v, mid = swell.dynamics, T6 // 2
    assert np.all(np.diff(v[: mid + 1]) >= 0) and np.all(np.diff(v[mid:]) <= 0)
    assert v.max() == pytest.approx(-15, abs=1e-2) and v[0] == pytest.approx(-30) and v[-1] == pytest.approx(-30, abs=1e-2)
    fade = dynamics_shape("fade", T6, start_db=-20, curve=curve)
    assert np.all(np.diff(fade.dynamics) <= 0) and fade.dynamics[-1] == pytest.approx(FADE_FLOOR_DB, abs=1e-3)


def test_curve_kinds_differ_in_shape() -> None:
    mid = {c: dynamics_shape("crescendo", T6, curve=c).dynamics[T6 // 4] for c in ("linear", "tanh", "cosine")}
    # a quarter of the way: the linear ramp is a quarter up, the S-curves less
    assert mid["linear"] == pytest.approx(-30 + 15 * 0.25, abs=0.05)
    assert mid["cosine"] < mid["linear"] and mid["tanh"] < mid["linear"]


def test_flat_shape_on_a_partial_span_round_trips(tmp_path: Path) -> None:
    cs = dynamics_shape("flat", T6, start_db=-25, start=2.0, end=3.0)
    assert cs.dynamics_mask.sum() == int(3 * FRAME_RATE) - _frame(2) + 1
    assert set(cs.dynamics[cs.dynamics_mask > 0]) == {-25.0}
    path = write_dynamics_csv(cs, tmp_path / "d.csv")
    back = read_dynamics(path, T6)
    np.testing.assert_array_equal(back.dynamics_mask, cs.dynamics_mask)
    np.testing.assert_array_equal(back.dynamics, cs.dynamics)
    assert write_dynamics_csv(back, tmp_path / "d2.csv").read_bytes() == path.read_bytes()


@pytest.mark.parametrize(
    "kwargs, problem",
    [({"shape": "wobble"}, "unknown dynamics shape 'wobble'"), ({"shape": "crescendo", "curve": "cubic"}, "unknown dynamics curve"),
     ({"shape": "crescendo", "start_db": -10, "range_db": 20}, "out of range"), ({"shape": "swell", "range_db": 0}, "range-db must be positive"),
     ({"shape": "fade", "start_db": -70}, "fade floor"), ({"shape": "flat", "start_db": -120}, "out of range"),
     ({"shape": "flat", "start": 9.0}, "after the end of the clip"), ({"shape": "flat", "start": 3.0, "end": 2.0}, "not after start"),
     ({"shape": "flat", "start": -1.0}, "negative")],
)
def test_bad_shapes(kwargs: dict, problem: str) -> None:
    with pytest.raises(CadenzaError, match=problem):
        dynamics_shape(n_frames=T6, **kwargs)


def test_bad_shape_specs() -> None:
    with pytest.raises(CadenzaError, match="unknown dynamics shape 'boom'"):
        read_dynamics("boom:-30", T6)
    with pytest.raises(CadenzaError, match="not a number"):
        read_dynamics("swell:loud", T6)
    with pytest.raises(CadenzaError, match="too many fields"):
        read_dynamics("swell:-30:10:linear:x", T6)


# ---------------------------------------------------------------- rhythm


@pytest.mark.parametrize("meter, per_bar", [("4", 4), ("4/4", 4), ("3", 3), ("3/4", 3), ("6/8", 2), ("12/8", 4), (2, 2)])
def test_bpm_meter_grids(meter: str, per_bar: int) -> None:
    cs = rhythm_from_bpm(120, meter, T6)
    times = cs.beat_times()
    assert len(times) == 12  # 0, 0.5, ..., 5.5 s inside a 5.99 s clip
    np.testing.assert_allclose(np.diff(times), 0.5)
    down = cs.downbeat_times()
    np.testing.assert_allclose(np.diff(down), 0.5 * per_bar)
    assert down[0] == 0.0 and len(down) == int(np.ceil(12 / per_bar))
    assert parse_meter(meter) == per_bar
    # activations and mask: peak on each beat's frame, mask to half a beat after the last
    assert (cs.rhythm[np.rint(times * FRAME_RATE).astype(int), 0] == 1).all()
    assert cs.rhythm_mask[: int(np.rint(5.75 * FRAME_RATE)) + 1].all() and not cs.rhythm_mask[int(np.rint(5.75 * FRAME_RATE)) + 1:].any()


def test_grid_with_start_and_end_is_partial() -> None:
    cs = rhythm_from_bpm(100, "3/4", T6, start=1.0, end=4.0)
    np.testing.assert_allclose(cs.beat_times(), 1.0 + 0.6 * np.arange(6))
    np.testing.assert_allclose(cs.downbeat_times(), [1.0, 2.8])
    first = int(np.rint(FRAME_RATE)) - 1
    assert not cs.rhythm_mask[:first].any() and cs.rhythm_mask[first]
    assert not cs.rhythm_mask[int(np.rint(4.3 * FRAME_RATE)) + 1:].any()


def test_stretch_template() -> None:
    base = rhythm_from_bpm(120, 4, T6)
    slow = stretch_rhythm(base, 1.2)  # beats stretched past the clip's end are dropped quietly
    np.testing.assert_allclose(np.diff(slow.beat_times()), 0.6)
    assert slow.n_frames == T6 and slow.beat_times()[-1] <= 6.0
    np.testing.assert_allclose(np.diff(slow.downbeat_times()), 2.4)
    fast = stretch_rhythm(base.beats, 0.8, T6)
    np.testing.assert_allclose(np.diff(fast.beat_times()), 0.4)
    for bad in (0.1, 3.0, float("nan")):
        with pytest.raises(CadenzaError, match="stretch factor"):
            stretch_rhythm(base, bad)


def test_single_beat_gives_only_its_own_activation(tmp_path: Path) -> None:
    cs = read_rhythm(_write(tmp_path, "r.csv", "time,downbeat\n1,1\n"), T6)
    f = int(np.rint(FRAME_RATE))
    assert list(np.flatnonzero(cs.rhythm_mask)) == [f - 1, f, f + 1]
    assert cs.rhythm[f, 0] == 1 and cs.rhythm[f, 1] == 1


def test_save_csvs_skips_a_given_control_with_nothing_to_write(tmp_path: Path) -> None:
    # as extraction produces for silence: melody given but unvoiced everywhere, rhythm given with no beat
    T = 40
    ones = np.ones(T, np.float32)
    cs = ControlSet(T, np.zeros((T, 12), np.float32), ones, ones * -100, ones, np.zeros((T, 2), np.float32), ones)
    with pytest.warns(ControlFileWarning) as record:
        written = save_csvs(cs, tmp_path)
    assert [p.name for p in written] == ["dynamics.csv"]
    assert {str(w.message).split(": the ")[1].split(" is")[0] for w in record} == {"melody", "rhythm"}


@pytest.mark.parametrize("bpm, problem", [(0, "positive"), (-60, "positive"), (500, "absurd")])
def test_bad_bpm(bpm: float, problem: str) -> None:
    with pytest.raises(CadenzaError, match=problem):
        rhythm_from_bpm(bpm, 4, T6)


@pytest.mark.parametrize("meter", ["5/8", "1", "8", "4/3", "waltz", ""])
def test_unknown_meter(meter: str) -> None:
    with pytest.raises(CadenzaError, match="unknown meter"):
        rhythm_from_bpm(120, meter, T6)


# ---------------------------------------------------------------- bad files


@pytest.mark.parametrize(
    "name, text, problem",
    [
        ("melody.csv", "start,end,pitch\n0,1,H4\n", r"line 2: unknown note 'H4'"),
        ("melody.csv", "start,end,pitch\n1,2,C4\n0,0.5,D4\n", r"line 3: rows out of order"),
        ("melody.csv", "start,end,pitch\n0,1,C4\n0.5,2,D4\n", r"line 3: row overlaps the previous row"),
        ("melody.csv", "start,end,pitch\n1,1,C4\n", r"line 2: .*zero or negative duration"),
        ("melody.csv", "start,end,pitch\n2,1,C4\n", r"line 2: .*zero or negative duration"),
        ("melody.csv", "start,end,pitch\n-1,1,C4\n", r"line 2: start -1 s is negative"),
        ("melody.csv", "start,stop,pitch\n0,1,C4\n", r"line 1: wrong or missing header"),
        ("melody.csv", "0,1,C4\n1,2,D4\n", r"line 1: wrong or missing header"),
        ("melody.csv", "start,end,pitch\n0,one,C4\n", r"line 2: end 'one' is not a number"),
        ("melody.csv", "start,end,pitch\n0,1\n", r"line 2: expected 3 fields"),
        ("melody.csv", "", r"file is empty"),
        ("melody.csv", "\n# only a comment\n", r"file is empty"),
        ("melody.csv", "start,end,pitch\n", r"no rows after the header"),
        ("melody.csv", "start,end,pitch\nnan,1,C4\n", r"line 2: start is nan"),
        ("melody.csv", "start,end,pitch\n0,1,200\n", r"line 2: MIDI pitch 200 is outside"),
        ("dynamics.csv", "time,db\n0,-30\n0,-20\n", r"line 3: times out of order"),
        ("dynamics.csv", "time,db\n1,-30\n0.5,-20\n", r"line 3: times out of order"),
        ("dynamics.csv", "time,db\n0,-30\n1,12\n", r"line 3: level 12 dB is out of range"),
        ("dynamics.csv", "time,db\n0,-130\n", r"line 2: level -130 dB is out of range"),
        ("dynamics.csv", "time,db\n0,NaN\n", r"line 2: db is NaN"),
        ("dynamics.csv", "time,level\n0,-30\n", r"line 1: wrong or missing header"),
        ("dynamics.csv", "time,db\n0,loud\n", r"line 2: db 'loud' is not a number"),
        ("rhythm.csv", "time,downbeat\n0,1\n0.5,2\n", r"line 3: downbeat must be 0 or 1"),
        ("rhythm.csv", "time,downbeat\n0,1\n0.5,0\n0.5,0\n", r"line 4: beat times out of order"),
        ("rhythm.csv", "time,downbeat\n-0.5,1\n0,0\n", r"line 2: time -0.5 s is negative"),
        ("rhythm.csv", "time,beat\n0,1\n", r"line 1: wrong or missing header"),
        ("rhythm.csv", "time,downbeat\n0,inf\n", r"line 2: downbeat is inf"),
    ],
)
def test_bad_files_name_the_line_and_problem(tmp_path: Path, name: str, text: str, problem: str) -> None:
    path = _write(tmp_path, name, text)
    reader = {"melody.csv": read_melody, "dynamics.csv": read_dynamics, "rhythm.csv": read_rhythm}[name]
    with pytest.raises(CadenzaError, match=problem) as err:
        reader(path, T6)
    assert str(path) in err.value.message
    assert err.value.hint


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(CadenzaError, match="no such melody file"):
        read_melody(tmp_path / "nope.csv", 10)
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(CadenzaError, match="is a folder"):
        read_rhythm(tmp_path / "dir.csv", 10)
    with pytest.raises(CadenzaError, match="unsupported melody file type"):
        read_melody(tmp_path / "dir.csv" / ".." / "tune.txt", 10)


def test_comments_blank_lines_and_spaces_are_tolerated(tmp_path: Path) -> None:
    text = "# my tune\nStart, End, Pitch\n\n0 , 0.5 , c4\n# bridge\n0.5,1,61\n"
    cs = read_melody(_write(tmp_path, "m.csv", text), 100)
    np.testing.assert_allclose(cs.melody_notes, [[0, 0.5, 60], [0.5, 1, 61]])
    assert write_melody_csv(cs, tmp_path / "c.csv").read_text() == "start,end,pitch\n0,0.5,C4\n0.5,1,C#4\n"


# ---------------------------------------------------------------- controls outside the clip


def test_control_entirely_outside_the_clip_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CadenzaError, match="after the end of the clip"):
        read_melody(_write(tmp_path, "m.csv", "start,end,pitch\n10,11,C4\n"), T6)
    with pytest.raises(CadenzaError, match="after the end of the clip"):
        read_dynamics(_write(tmp_path, "d.csv", "time,db\n7,-30\n8,-20\n"), T6)
    with pytest.raises(CadenzaError, match="after the end of the clip"):
        read_rhythm(_write(tmp_path, "r.csv", "time,downbeat\n7,1\n7.5,0\n"), T6)
    with pytest.raises(CadenzaError, match="after the end of the clip"):
        read_melody("R:20 C4:1", T6)


def test_control_partly_outside_the_clip_warns_and_drops_the_rest(tmp_path: Path) -> None:
    with pytest.warns(ControlFileWarning, match="1 note"):
        cs = read_melody(_write(tmp_path, "m.csv", "start,end,pitch\n5,6.5,C4\n7,8,D4\n"), T6)
    np.testing.assert_allclose(cs.melody_notes, [[5, 6.5, 60]])
    assert cs.melody_mask[_frame(5):].all()
    with pytest.warns(ControlFileWarning, match="1 breakpoint"):
        cs = read_dynamics(_write(tmp_path, "d.csv", "time,db\n5,-30\n7,-10\n8,-20\n"), T6)
    assert len(cs.dynamics_points) == 2  # the first point past the end still shapes the last frames
    assert cs.dynamics[-1] == pytest.approx(-30 + 20 * ((T6 - 1) / FRAME_RATE - 5) / 2, abs=1e-3)
    with pytest.warns(ControlFileWarning, match="2 beat"):
        cs = read_rhythm(_write(tmp_path, "r.csv", "time,downbeat\n5,1\n5.5,0\n6.5,0\n7,1\n"), T6)
    assert len(cs.beats) == 2


def test_clip_length_from_duration_or_content(tmp_path: Path) -> None:
    path = _write(tmp_path, "m.csv", "start,end,pitch\n0,2,C4\n")
    assert read_melody(path, duration=6.0).n_frames == T6
    assert read_melody(path).n_frames == _frame(2.0)
    with pytest.raises(CadenzaError, match="both n_frames and duration"):
        read_melody(path, 10, duration=1.0)
    with pytest.raises(CadenzaError, match="positive number of frames"):
        read_melody(path, 0)
    with pytest.raises(CadenzaError, match="clip length is unknown"):
        dynamics_shape("flat")


def test_a_note_string_longer_than_a_file_name_is_read_as_notes() -> None:
    """stat() of a 600-character string fails with 'File name too long'; it is a spec, not a file."""
    notes = " ".join(["C4:0.25", "E4:0.25", "G4:0.5"] * 40)
    assert len(notes) > 300
    cs = read_melody(notes, frames_for_duration(6.0), bpm=120)
    assert cs.melody_mask.sum() > 0 and cs.pitch_classes()[cs.melody_mask > 0][0] == 0
