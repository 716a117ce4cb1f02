"""Trainable tasks: the adapter interface that lets one runner train every Cadenza model.

Each family defines its task where its training code lives and registers it there with
``@register_task(name)`` (``cadenza.registry``): ``GeneratorTask`` in ``cadenza/train/generator.py``,
``VocoderTask`` in ``…/vocoder.py``, ``BeatsTask`` in ``…/beats.py``, ``ClapTask`` in ``…/clap.py``.
This module imports none of them (it used to, and each imported the runner back: a cycle of
five modules); ``get_task`` and ``TASKS`` find them through the registry.

Each task reuses its model's own LightningModule (losses, schedules, EMA — nothing copied) and
tells the runner five things:

- ``build_module(config)`` — the ``nn.Module`` (a LightningModule) to train;
- ``train_data(config)`` — a ``DataSpec``: the dataset, its collate and per-device batch size
  (map-style datasets are sharded by the runner's deterministic sampler; endless iterables are
  sharded by striding their stream);
- ``optimizers(module, config)`` — ``([optimizer, ...], [scheduler, ...])``;
- ``train_step(module, batch, optimizers, schedulers, fabric)`` — backward through
  ``fabric.backward`` and the optimizer steps (one optimizer, or two for the GAN vocoder),
  returning float logs;
- ``export(module, config, progress)`` — ``(state_dict, model-folder config)`` to ship.

Optional: ``prepare(module, spec, config)`` (once, before a fresh run: data statistics),
``validate(module, config) -> {name: float}`` (held-out metrics on a fixed set; the runner logs them
as ``val_<name>`` and picks "best" by ``val_<track>``), ``samples`` (cheap images/audio every N
steps) and ``defaults`` (config sections the task's shipped configs may lack, e.g. ``data.source``
so a synthetic set can be chosen by override).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.data import Dataset, IterableDataset

from cadenza.errors import CadenzaError


@dataclass
class DataSpec:
    """A task's training data as the runner needs it."""

    dataset: Dataset | IterableDataset
    batch_size: int  # per device
    collate: Callable | None = None
    prebatched: bool = False  # the dataset already yields whole batches (the runner must not batch again)


def deep_merge(defaults: dict, config: dict) -> dict:
    """``config`` over ``defaults`` (nested dicts merged; config values win)."""
    out = copy.deepcopy(defaults)
    for key, val in config.items():
        out[key] = deep_merge(out[key], val) if isinstance(val, dict) and isinstance(out.get(key), dict) else copy.deepcopy(val)
    return out


class Task:
    """Base adapter: single optimizer + optional scheduler, ``training_step`` returns the loss."""

    name = "task"
    config_kind = "task"
    track = "loss"  # the log key whose mean picks the best checkpoint
    manual_grad_sync = False  # True: the step does several backward passes; grads are all-reduced before each optimizer step
    val_best: str | None = None  # the validate() key that picks "best" (default: track)
    val_higher_is_better = False
    fsdp_methods: dict[str, tuple[str, ...]] = {}  # child -> methods besides forward that use its weights (gathered under FSDP)
    defaults: dict = {}

    def build_module(self, config: dict) -> torch.nn.Module:
        raise CadenzaError(f"task '{self.name}' cannot build a module")

    def train_data(self, config: dict, module: Any = None) -> DataSpec:
        raise CadenzaError(f"task '{self.name}' has no training data")

    def optimizers(self, module: Any, config: dict) -> tuple[list[torch.optim.Optimizer], list[Any]]:
        """From the module's own ``configure_optimizers`` (dict, optimizer, or list of optimizers)."""
        out = module.configure_optimizers()
        if isinstance(out, dict):
            sched = out.get("lr_scheduler")
            sched = sched["scheduler"] if isinstance(sched, dict) else sched
            return [out["optimizer"]], [sched] if sched is not None else []
        if isinstance(out, (list, tuple)):
            return list(out), []
        return [out], []

    def grad_clip(self, config: dict) -> float:
        return float(config.get("train", {}).get("grad_clip", 0.0) or 0.0)

    def train_step(self, module: Any, batch: Any, optimizers: list, schedulers: list, fabric: Any) -> dict[str, float]:
        """One optimizer step: ``training_step`` (through the strategy wrapper) → backward → clip → step."""
        (opt,) = optimizers
        loss = module.training_step(batch, 0)
        fabric.backward(loss)
        clip = self.grad_clip(self._config(module))
        if clip:
            fabric.clip_gradients(module, opt, max_norm=clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        self.after_step(_inner(module))
        for sched in schedulers:
            sched.step()
        logs = dict(getattr(_inner(module), "last_log", {}) or {})
        logs.setdefault("loss", float(loss.detach()))
        return logs

    def after_step(self, module: Any) -> None:
        """Hook run right after the weights change (step counters, EMA)."""

    def prepare(self, module: Any, spec: DataSpec, config: dict) -> None:
        """Once before a fresh run (not on resume: the checkpoint holds the result)."""

    def validate(self, module: Any, config: dict) -> dict[str, float]:
        """Metrics on a fixed held-out set ({} = none). Runs under ``no_grad``; RNGs are restored after."""
        return {}

    def export(self, module: Any, config: dict, progress: Any) -> tuple[dict[str, torch.Tensor], dict]:
        return module.state_dict(), {**config, "trained": {"steps": progress.step}}

    def samples(self, module: Any, batch: Any, folder: Path, step: int) -> list[Path]:
        """Cheap artefacts to look at (images/audio); none by default."""
        return []

    @staticmethod
    def _config(module: Any) -> dict:
        return _inner(module).config


def _inner(module: Any) -> Any:
    """The user's module behind Fabric's / DDP's wrappers."""
    return getattr(module, "_original_module", None) or getattr(module, "module", module)


def step_of(module: Any) -> int:
    """The module's own step counter (an int attribute or a 0-d buffer)."""
    val = getattr(_inner(module), "step_count", 0)
    return int(val.item()) if torch.is_tensor(val) else int(val)


def set_step(module: Any, step: int) -> None:
    inner = _inner(module)
    if not hasattr(inner, "step_count"):
        return
    if torch.is_tensor(inner.step_count):
        inner.step_count.fill_(int(step))
    else:
        inner.step_count = int(step)


# The runner's own config sections, under every task's defaults (here, not in runner.py, so
# loading a task's config never imports the runner: tasks are below the runner in the layers).
RUNNER_DEFAULTS: dict[str, Any] = {
    "launch": {
        "accelerator": "cpu",
        "devices": 1,
        "num_nodes": 1,
        "strategy": "auto",
        "precision": "32-true",
        "compile": False,
        "compile_backend": "inductor",
        "num_workers": 0,
        "find_unused_parameters": True,
        "threads": None,
    },
    "checkpoint": {"every_steps": 100, "keep_last": 3},
    "log": {"every_steps": None, "samples_every_steps": 0, "val_every_steps": None, "progress": True},
}


class _TaskTable(Mapping[str, Task]):
    """``TASKS``: a read-only view of the registry's tasks, filled on first use.

    A mapping rather than a dict built at import so importing this module imports no family.
    """

    def _all(self) -> dict[str, Task]:
        from cadenza.registry import tasks

        return tasks()

    def __getitem__(self, name: str) -> Task:
        return get_task(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    def __contains__(self, name: object) -> bool:
        return name in self._all()


TASKS: Mapping[str, Task] = _TaskTable()


def get_task(name: str) -> Task:
    """The registered task ``name`` (CadenzaError listing the choices otherwise)."""
    from cadenza.registry import get_task as registry_get_task

    return registry_get_task(name)


def load_task_config(task: Task, name_or_path: str, overrides: list[str] | None = None) -> dict:
    """A shipped config or JSON path with the task's and the runner's defaults filled in, then overrides."""
    import json

    from cadenza.config import apply_overrides, resolve_config_path

    path = resolve_config_path(task.config_kind, name_or_path)
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CadenzaError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
    from cadenza.limits import check_config

    if not isinstance(raw, dict):
        raise CadenzaError(f"{path}: a config is a JSON object, not a {type(raw).__name__}", "see cadenza/configs/ for examples")
    check_config(raw, str(path))  # the file's own numbers; overrides are checked one by one as they apply
    return apply_overrides(deep_merge(deep_merge(RUNNER_DEFAULTS, task.defaults), raw), overrides)
