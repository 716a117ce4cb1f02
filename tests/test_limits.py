"""The shared validation layer (``cadenza.limits``): every check names its argument, gives a hint, and never allocates."""

from __future__ import annotations

import io
import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest

from cadenza import limits as L
from cadenza.config import apply_overrides, load_config
from cadenza.controls.base import ControlSet
from cadenza.errors import CadenzaError


@pytest.mark.parametrize("check,value,expected", [
    (L.check_seed, 0, 0), (L.check_seed, "17", 17), (L.check_seed, 3.0, 3), (L.check_seed, 2**63 - 1, 2**63 - 1),
    (L.check_steps, np.int64(4), 4), (L.check_duration, "1.5", 1.5), (L.check_guidance, 0, 0.0),
    (L.check_sample_rate, 44100, 44100), (L.check_frames, 517, 517),
])
def test_good_values_pass_and_are_normalised(check, value, expected) -> None:
    out = check(value)
    assert out == expected and type(out) is type(expected)


@pytest.mark.parametrize("check,value,needle", [
    (L.check_seed, "abc", "seed: 'abc' is not a number"),
    (L.check_seed, "None", "seed: 'None' is not a number"),
    (L.check_seed, None, "seed: None is not a whole number"),
    (L.check_seed, 2**64, "seed: 18446744073709551616 is out of range"),
    (L.check_seed, -1, "seed: -1 is out of range"),
    (L.check_seed, True, "not a whole number"),
    (L.check_seed, "9" * 5000, "is not a whole number"),  # refused by length, before int() parses 5,000 digits
    (L.check_seed, [1], "a list is not a whole number"),
    (L.check_steps, "abc", "steps: 'abc' is not a number"),
    (L.check_steps, 2.5, "steps: 2.5 is not a whole number"),
    (L.check_steps, 0, "steps: 0 is out of range"),
    (L.check_steps, float("inf"), "steps: inf is not a whole number"),
    (L.check_duration, "abc", "duration: 'abc' is not a number"),
    (L.check_duration, 1e9, "duration: 1e+09 s is out of range"),
    (L.check_duration, 0, "duration: 0 s is out of range"),
    (L.check_duration, float("nan"), "is not a finite number"),
    (L.check_duration, object(), "duration: a object is not a number"),
    (L.check_guidance, "x", "cfg: 'x' is not a number"),
    (L.check_guidance, 31, "cfg: 31 is out of range"),
    (L.check_sample_rate, 1e12, "sample_rate: 1e+12 is out of range"),
    (L.check_sample_rate, 22050.5, "not a whole number"),
    (L.check_frames, 10**9, "n_frames: 1000000000 is out of range"),
    (L.check_threads, 10**6, "threads: 1000000 is out of range"),
])
def test_bad_values_are_one_error_naming_the_argument(check, value, needle) -> None:
    with pytest.raises(CadenzaError, match=None) as info:
        check(value)
    assert needle in info.value.message, info.value.message
    assert info.value.hint


def test_seed_lists() -> None:
    assert L.check_seeds(3) == [3] and L.check_seeds([1, "2"]) == [1, 2] and L.check_seeds(np.arange(3)) == [0, 1, 2]
    with pytest.raises(CadenzaError, match=r"seed\[1\]: 'a' is not a number"):
        L.check_seeds([0, "a"])
    with pytest.raises(CadenzaError, match="no seeds"):
        L.check_seeds([])
    with pytest.raises(CadenzaError, match="too many"):
        L.check_seeds(range(L.MAX_SEEDS + 1))


@pytest.mark.parametrize("override,needle", [
    ("train.max_steps=1e30", "1e+30 is out of range"),
    ("train.max_steps=-1", "-1 is out of range"),
    ("train.max_steps=0", "0 is out of range"),
    ("train.max_steps=2.5", "2.5 is not a whole number"),
    ("data.batch_size=-4", "-4 is out of range"),
    ("data.num_workers=1e12", "is out of range"),
    ("train.lr=NaN", "not a finite number"),
    ("train.lr=Infinity", "not a finite number"),
    ("train.max_minutes=-1", "must not be negative"),
    ("train.max_minutes=1e300", "absurdly large"),
])
def test_overrides_are_checked_for_type_and_range(override: str, needle: str) -> None:
    with pytest.raises(CadenzaError) as info:
        load_config("generator", "debug", [override])
    assert needle in str(info.value) and info.value.hint


def test_good_overrides_still_apply() -> None:
    cfg = load_config("generator", "debug", ["train.max_steps=1e3", "train.lr=0.01", "data.batch_size=2", "train.init_from=runs/x"])
    assert cfg["train"]["max_steps"] == 1000 and isinstance(cfg["train"]["max_steps"], int)
    assert cfg["train"]["lr"] == 0.01 and cfg["data"]["batch_size"] == 2
    assert apply_overrides({"launch": {"devices": 1}}, ["launch.devices=-1"])["launch"]["devices"] == -1  # Lightning's "all"


def test_a_config_file_with_absurd_steps_is_refused(tmp_path: Path) -> None:
    from cadenza.train.tasks import get_task, load_task_config

    cfg = json.loads((Path(L.__file__).parent / "configs" / "generator" / "debug.json").read_text())
    cfg["train"]["max_steps"] = 1e30
    path = tmp_path / "big.json"
    path.write_text(json.dumps(cfg))
    with pytest.raises(CadenzaError, match=r"train\.max_steps: 1e\+30 is out of range"):
        load_task_config(get_task("generator"), str(path))


def _npz_claiming(path: Path, name: str, shape: tuple[int, ...]) -> Path:
    """A valid controls file whose member ``name`` has a header promising ``shape`` (and almost no data)."""
    buf = io.BytesIO()
    ControlSet.empty(8).save(path)
    with zipfile.ZipFile(path) as zf:
        members = {i.filename: zf.read(i.filename) for i in zf.infolist()}
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": shape})
    members[f"{name}.npy"] = b"\x93NUMPY\x01\x00" + header.getvalue()[8:] + b"\0" * 64
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for member, data in members.items():
            zf.writestr(member, data)
    path.write_bytes(buf.getvalue())
    return path


def test_npz_with_a_huge_notes_array_is_refused_from_its_header(tmp_path: Path) -> None:
    path = _npz_claiming(tmp_path / "huge.npz", "melody_notes", (10**9, 3))  # 24 GB promised in a few hundred bytes
    assert path.stat().st_size < 10_000
    with pytest.raises(CadenzaError, match=r"'melody_notes' holds 1,000,000,000 events"):
        ControlSet.load(path)


def test_npz_with_real_but_too_many_events_is_refused(tmp_path: Path) -> None:
    cs = ControlSet.empty(8)
    cs.beats = np.zeros((L.MAX_EVENTS + 1, 2))
    path = cs.save(tmp_path / "many.npz")
    with pytest.raises(CadenzaError, match="events"):
        ControlSet.load(path)
    cs.beats = np.zeros((3, 2))
    assert ControlSet.load(cs.save(tmp_path / "ok.npz")).n_frames == 8


def test_npz_frames_past_the_longest_clip_are_refused(tmp_path: Path) -> None:
    path = _npz_claiming(tmp_path / "long.npz", "melody", (10**8, 12))
    with pytest.raises(CadenzaError, match="frames"):
        ControlSet.load(path)


def test_a_control_set_longer_than_the_limit_is_refused_before_allocating() -> None:
    with pytest.raises(CadenzaError, match="n_frames: 1000000000 is out of range"):
        ControlSet.empty(10**9)  # (1e9, 12) float32 would be 48 GB


def test_non_regular_files_are_refused_before_reading(tmp_path: Path) -> None:
    from cadenza.controls.files import read_rhythm

    with pytest.raises(CadenzaError, match="not a regular file"):
        L.check_file_size("/dev/zero")
    fifo = tmp_path / "rhythm.csv"
    import os

    os.mkfifo(fifo)
    with pytest.raises(CadenzaError, match="not a regular file"):
        read_rhythm(fifo)  # reading would block forever


def test_limits_are_consistent() -> None:
    from cadenza.app.config import Limits
    from cadenza.audio import frames_for_duration

    assert frames_for_duration(L.MAX_DURATION_S) <= L.MAX_FRAMES
    assert Limits().max_duration_s <= L.MAX_DURATION_S and Limits().max_steps <= L.MAX_STEPS
    assert math.isclose(L.MAX_SEED, 2**63 - 1)
