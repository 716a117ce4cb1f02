"""Training checkpoints: exact optimizer/scheduler/RNG round trips, retention, and damaged folders never loaded."""

import json
import random

import numpy as np
import pytest
import torch

from cadenza.errors import CadenzaError
from cadenza.train.state import CheckpointManager, Progress, capture_rng, join_tree, restore_rng, split_tree


def _trained_adamw(steps: int = 3):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    opt = torch.optim.AdamW([{"params": net[0].parameters(), "weight_decay": 0.1}, {"params": net[2].parameters(), "weight_decay": 0.0}], lr=1e-2, betas=(0.8, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s))
    for _ in range(steps):
        opt.zero_grad()
        net(torch.randn(5, 4)).square().mean().backward()
        opt.step()
        sched.step()
    return net, opt, sched


def _save(manager: CheckpointManager, net, opt, sched, step: int, track: float | None = None, extra=None):
    return manager.save(net.state_dict(), [opt.state_dict()], [sched.state_dict()], [capture_rng(net)], Progress(step=step, epoch=1, batch_in_epoch=2), {"name": "t"}, extra, track)


def test_optimizer_and_scheduler_state_round_trip_exactly(tmp_path):
    net, opt, sched = _trained_adamw()
    manager = CheckpointManager(tmp_path)
    _save(manager, net, opt, sched, step=3)
    loaded = manager.load()
    assert loaded is not None and loaded.progress.step == 3 and loaded.progress.batch_in_epoch == 2
    # a fresh optimizer restored from the checkpoint takes exactly the same next step as the original
    net2, opt2, sched2 = _trained_adamw(steps=0)
    net2.load_state_dict(loaded.model)
    opt2.load_state_dict(loaded.optimizers[0])
    sched2.load_state_dict(loaded.schedulers[0])
    a, b = opt.state_dict(), opt2.state_dict()
    assert a["param_groups"] == b["param_groups"]  # betas stay a tuple, lr, weight decay per group
    for pid, st in a["state"].items():
        for key, val in st.items():
            assert torch.equal(val, b["state"][pid][key]), (pid, key)
    assert sched2.state_dict() == sched.state_dict() and sched2.get_last_lr() == sched.get_last_lr()
    x = torch.randn(5, 4)
    for n, o, s in ((net, opt, sched), (net2, opt2, sched2)):
        o.zero_grad()
        n(x).square().mean().backward()
        o.step()
        s.step()
    for p, q in zip(net.parameters(), net2.parameters()):
        assert torch.equal(p, q)


def test_tree_split_keeps_types():
    tensors: dict = {}
    obj = {"t": (1, 2.5), 3: [torch.arange(3)], "a": np.arange(4, dtype=np.uint32), "n": None}
    back = join_tree(json.loads(json.dumps(split_tree(obj, "x", tensors))), tensors)
    assert back["t"] == (1, 2.5) and torch.equal(back[3][0], torch.arange(3)) and back["n"] is None
    assert back["a"].dtype == np.uint32 and back["a"].tolist() == [0, 1, 2, 3]
    with pytest.raises(CadenzaError, match="cannot store"):
        split_tree({"f": object()}, "x", {})


def test_rng_states_restore_every_stream():
    gen_module = torch.nn.Linear(1, 1)
    gen_module.generator = torch.Generator().manual_seed(5)
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    state = capture_rng(gen_module)
    tensors: dict = {}
    state = join_tree(json.loads(json.dumps(split_tree(state, "rng", tensors))), tensors)  # through the checkpoint format
    first = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(2, generator=gen_module.generator))
    restore_rng(state, gen_module)
    again = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(2, generator=gen_module.generator))
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1]) and first[2] == again[2] and torch.equal(first[3], again[3])


def test_keep_last_k_and_best(tmp_path):
    net, opt, sched = _trained_adamw(1)
    manager = CheckpointManager(tmp_path, keep_last=2)
    for step, loss in [(1, 5.0), (2, 1.0), (3, 4.0), (4, 3.0), (5, 2.0)]:
        _save(manager, net, opt, sched, step, track=loss)
    names = [p.name for p in manager.folders()]
    assert names == ["step-000000002", "step-000000004", "step-000000005"]  # best (2) + last two
    assert manager.best()["step"] == 2 and manager.latest().name == "step-000000005"
    assert manager.load().progress.step == 5
    with pytest.raises(CadenzaError, match="keep_last"):
        CheckpointManager(tmp_path, keep_last=0)


def test_best_by_a_validation_metric_replaces_an_older_training_loss_best(tmp_path):
    net, opt, sched = _trained_adamw(1)
    manager = CheckpointManager(tmp_path, keep_last=5)
    _save(manager, net, opt, sched, 1, track=0.1)
    best = json.loads((tmp_path / "checkpoints" / "best.json").read_text())
    best.pop("metric")  # a best.json written before metrics were recorded (a training loss)
    (tmp_path / "checkpoints" / "best.json").write_text(json.dumps(best))
    progress = lambda step: Progress(step=step)  # noqa: E731
    for step, f1 in [(2, 0.5), (3, 0.9), (4, 0.7)]:  # F1: higher is better, and not comparable with the old loss
        manager.save(net.state_dict(), [opt.state_dict()], [sched.state_dict()], [capture_rng(net)], progress(step), {}, track=f1, metric="val_f1", higher_is_better=True)
    assert manager.best() == {"name": "step-000000003", "value": 0.9, "step": 3, "metric": "val_f1", "higher_is_better": True}
    manager.save(net.state_dict(), [opt.state_dict()], [sched.state_dict()], [capture_rng(net)], progress(5), {}, track=0.2)
    assert manager.best()["step"] == 5 and manager.best()["metric"] == "loss"  # the metric changed again: replaced


def test_damaged_or_interrupted_checkpoints_are_skipped(tmp_path):
    net, opt, sched = _trained_adamw(1)
    manager = CheckpointManager(tmp_path, keep_last=5)
    _save(manager, net, opt, sched, 1)
    _save(manager, net, opt, sched, 2)
    newest = _save(manager, net, opt, sched, 3)
    # truncate the newest weights: same name, fewer bytes → checksum mismatch → the previous one is used
    data = (newest / "model.safetensors").read_bytes()
    (newest / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.warns(UserWarning, match="step-000000003.*does not match"):
        loaded = manager.load()
    assert loaded.progress.step == 2
    # an interrupted write (no COMPLETE marker) is never loaded either
    (tmp_path / "checkpoints" / "step-000000002" / "COMPLETE").unlink()
    with pytest.warns(UserWarning, match="interrupted"):
        assert manager.load().progress.step == 1
    # a leftover temp folder from a killed writer is ignored and cleared on the next save
    stale = tmp_path / "checkpoints" / ".tmp-step-000000009-99999999"
    stale.mkdir()
    assert all(p.name != stale.name for p in manager.folders())
    _save(manager, net, opt, sched, 4)
    assert not stale.exists()
