import numpy as np
import pytest

from cadenza.audio import FRAME_RATE
from cadenza.controls import ControlSet, beats_to_activations
from cadenza.errors import CadenzaError


def _full(T: int = 50) -> ControlSet:
    cs = ControlSet.empty(T)
    cs.melody[np.arange(T), np.arange(T) % 12] = 1
    cs.melody_mask[:] = 1
    cs.dynamics[:] = np.linspace(-40, -10, T)
    cs.dynamics_mask[:] = 1
    beats = np.array([[0.0, 1], [0.1, 0], [0.2, 0], [0.3, 0], [0.4, 1]])
    cs.rhythm[:] = beats_to_activations(beats, T)
    cs.rhythm_mask[:] = 1
    cs.beats = beats
    return cs.validate()


def test_empty_has_nothing_given():
    cs = ControlSet.empty(10)
    assert cs.given() == [] and (cs.pitch_classes() == -1).all()


def test_validate_rejects_wrong_shapes_and_ranges():
    cs = _full()
    with pytest.raises(CadenzaError, match="shape"):
        ControlSet(10, cs.melody, cs.melody_mask, cs.dynamics, cs.dynamics_mask, cs.rhythm, cs.rhythm_mask)
    bad = _full()
    bad.dynamics[3] = 20.0
    with pytest.raises(CadenzaError, match="dynamics out of range"):
        bad.validate()
    bad = _full()
    bad.melody[0, :2] = 1
    with pytest.raises(CadenzaError, match="one-hot"):
        bad.validate()
    bad = _full()
    bad.rhythm_mask[0] = 0.5
    with pytest.raises(CadenzaError, match="only 0"):
        bad.validate()
    bad = _full()
    bad.dynamics[0] = np.nan
    with pytest.raises(CadenzaError, match="NaN"):
        bad.validate()


def test_values_under_zero_mask_are_zeroed():
    cs = _full()
    cs.dynamics_mask[:10] = 0
    cs.validate()
    assert (cs.dynamics[:10] == 0).all() and (cs.dynamics[10:] != 0).all()


def test_select_with_control_and_merge():
    cs = _full()
    only = cs.select(["melody"])
    assert only.given() == ["melody"] and len(only.beats) == 0
    merged = ControlSet.empty(cs.n_frames).merge(only)
    np.testing.assert_array_equal(merged.melody, cs.melody)
    with pytest.raises(CadenzaError, match="unknown control"):
        cs.select(["tempo"])


def test_fit_length_and_slice():
    cs = _full(100)
    longer = cs.fit_length(150)
    assert longer.n_frames == 150 and longer.melody_mask[100:].sum() == 0
    shorter = cs.fit_length(20)
    assert shorter.n_frames == 20 and (shorter.beats[:, 0] <= 19 / FRAME_RATE).all()
    part = cs.slice_frames(10, 30)
    np.testing.assert_array_equal(part.melody, cs.melody[10:30])
    assert part.beats[0, 0] == pytest.approx(cs.beats[2, 0] - 10 / FRAME_RATE)


def test_npz_roundtrip(tmp_path):
    cs = _full()
    path = cs.save(tmp_path / "c.npz")
    back = ControlSet.load(path)
    for name, arr in cs.as_arrays().items():
        np.testing.assert_array_equal(getattr(back, name), arr)
    np.testing.assert_array_equal(back.beats, cs.beats)
    assert list(tmp_path.iterdir()) == [path]


def test_load_errors(tmp_path):
    with pytest.raises(CadenzaError, match="no such controls file"):
        ControlSet.load(tmp_path / "missing.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(CadenzaError, match="not a valid"):
        ControlSet.load(junk)


def test_beat_activations():
    act = beats_to_activations(np.array([[0.5, 1], [1.0, 0]]), 100)
    f1, f2 = round(0.5 * FRAME_RATE), round(1.0 * FRAME_RATE)
    assert act[f1, 0] == 1 and act[f1, 1] == 1 and act[f2, 0] == 1 and act[f2, 1] == 0
    assert act[f1 + 1, 0] == 0.5 and act.sum(axis=0)[0] == pytest.approx(4.0)
