"""``cadenza.fsutil``: atomic writes leave normal permissions, and a failed write leaves no trace."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from cadenza.fsutil import atomic_path, atomic_write_bytes, atomic_write_text, current_umask, default_file_mode


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield 0o027
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_current_umask_reads_without_changing(umask_027) -> None:
    assert current_umask() == 0o027
    assert current_umask() == 0o027  # still the same: reading did not reset it
    assert default_file_mode() == 0o640


def test_written_file_has_the_umask_mode_not_mkstemp_0600(tmp_path, umask_027) -> None:
    out = atomic_write_text(tmp_path / "sub" / "a.txt", "hello\n")
    assert out.read_text() == "hello\n"
    assert _mode(out) == 0o640  # what open(path, "w") would give; mkstemp alone gives 0o600
    os.umask(0o002)
    assert _mode(atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")) == 0o664


def test_failure_mid_write_keeps_old_file_and_leaves_no_temp(tmp_path) -> None:
    target = tmp_path / "data.json"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="disk on fire"):
        with atomic_path(target) as tmp:
            tmp.write_text("half of the new")
            raise RuntimeError("disk on fire")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.json"]


def test_project_writers_use_it(tmp_path, umask_027) -> None:
    """Audio, controls, CSV, JSON and checkpoints all come out with the umask mode."""
    import torch

    from cadenza.audio import save_audio
    from cadenza.checkpoint import save_model_folder
    from cadenza.config import write_json_atomic
    from cadenza.controls import ControlSet
    from cadenza.controls.files import save_csvs
    from cadenza.controls.plot import demo_signal

    cs = ControlSet.empty(20)
    cs.dynamics, cs.dynamics_mask = np.linspace(-40, -10, 20).astype(np.float32), np.ones(20, np.float32)
    written = [
        save_audio(tmp_path / "a.wav", demo_signal(0.5)),
        save_audio(tmp_path / "a.flac", demo_signal(0.5)),
        cs.save(tmp_path / "c.npz"),
        write_json_atomic(tmp_path / "x.json", {"a": 1}),
        *save_csvs(cs, tmp_path / "csv"),
        save_model_folder(tmp_path / "model", {"w": torch.zeros(2)}, {"name": "t"}) / "model.safetensors",
    ]
    for path in written:
        assert _mode(path) == 0o640, path
    assert not [p for p in tmp_path.rglob(".*") if p.is_file()]  # no temp file left behind
