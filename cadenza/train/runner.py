"""One training loop for every Cadenza model, on Lightning Fabric: 1 CPU to N nodes × M GPUs.

``fit(task, config, out)`` builds the task's module, wraps it with Fabric (``ddp`` — gloo on CPU,
nccl on GPU —, ``fsdp`` — FSDP2, CPU or GPU — or ``auto``; ``32-true`` / ``bf16-mixed``; optional
``torch.compile``) and runs plain optimizer steps until ``train.max_steps`` (or
``train.max_minutes``), validating on the task's fixed held-out set when it has one.

Why these choices:

- **Exact resume.** Map-style data goes through ``DeterministicBatchSampler``: the order of an
  epoch depends only on (seed, epoch), each rank takes a disjoint slice of every global batch, and
  a resume skips exactly the batches already consumed. Endless iterable datasets (the vocoder,
  beat and CLAP streams, seeded themselves) are sharded by striding the stream and skipped the
  same way. Every RNG (torch, numpy, python, the module's own generators) is saved per rank.
- **Safe checkpoints.** ``cadenza.train.state.CheckpointManager``: safetensors + JSON folders,
  renamed into place atomically, verified by checksum on load, last K + best (by the validation
  metric when the task has one, else the training loss) kept; full state dicts even under FSDP.
- **Logging without accounts.** CSV always (``OUT/logs``), TensorBoard when installed
  (``OUT/tb``), a JSONL copy (``OUT/train_log.jsonl``), a rich progress bar on rank 0, and
  optional task samples (``log.samples_every_steps``, e.g. generator mel images in ``OUT/samples``).

The effective batch is per-device batch × world size; it is written to ``OUT/run.json`` and logged.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import json
import logging
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, Sampler

from cadenza.checkpoint import save_model_folder
from cadenza.config import write_json_atomic
from cadenza.errors import CadenzaError
from cadenza.registry import stamp_for_task
from cadenza.train.state import CheckpointManager, Progress, capture_rng, module_generators, restore_rng
from cadenza.train.tasks import RUNNER_DEFAULTS, DataSpec, Task, deep_merge, get_task, set_step, step_of

STRATEGIES = ("auto", "ddp", "ddp_spawn", "fsdp", "single_device")
PRECISIONS = ("32-true", "32", "bf16-mixed", "bf16-true", "16-mixed", "64-true")
ACCELERATORS = ("cpu", "gpu", "cuda", "mps", "auto")


# --------------------------------------------------------------------------------------- data order
class DeterministicBatchSampler(Sampler[list[int]]):
    """Batches of dataset indices for one rank, a pure function of (seed, epoch, rank, world).

    Every epoch is one permutation of ``range(n)`` (``torch.randperm`` seeded with seed and
    epoch), cut into global batches of ``batch_size × world`` indices; rank r takes the r-th
    slice of each, so ranks never see the same sample in an epoch. ``start_batch`` skips the
    batches already consumed, which is what makes a resume exact.
    """

    def __init__(self, n: int, batch_size: int, rank: int = 0, world: int = 1, seed: int = 0, shuffle: bool = True) -> None:
        if n < batch_size * world:
            raise CadenzaError(
                f"the data set has {n} items, fewer than one global batch ({batch_size} per device × {world} devices)",
                "lower the batch size or the number of devices, or use more data",
            )
        self.n, self.batch_size, self.rank, self.world, self.seed, self.shuffle = n, batch_size, rank, world, seed, shuffle
        self.epoch, self.start_batch = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = int(epoch), int(start_batch)

    def epoch_order(self, epoch: int) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.n)
        g = torch.Generator().manual_seed(int(self.seed) * 1_000_003 + int(epoch))
        return torch.randperm(self.n, generator=g)

    def __len__(self) -> int:
        return self.n // (self.batch_size * self.world) - self.start_batch

    def __iter__(self) -> Iterator[list[int]]:
        per_epoch = self.n // (self.batch_size * self.world)
        order = self.epoch_order(self.epoch)[: per_epoch * self.batch_size * self.world]
        mine = order.view(per_epoch, self.world, self.batch_size)[:, self.rank]  # (batches, batch_size)
        for row in mine[self.start_batch :]:
            yield row.tolist()


class StridedStream(IterableDataset):
    """Rank r's share of an endless deterministic stream: items r, r+W, r+2W, … after ``skip`` of its own."""

    def __init__(self, stream: IterableDataset, rank: int, world: int, skip: int = 0) -> None:
        super().__init__()
        self.stream, self.rank, self.world, self.skip = stream, rank, world, skip

    def __iter__(self) -> Iterator[Any]:
        return itertools.islice(iter(self.stream), self.rank + self.skip * self.world, None, self.world)


# --------------------------------------------------------------------------------------- helpers
def _parse_devices(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return value


def _strategy(lc: dict, task: Task) -> Any:
    name = str(lc.get("strategy", "auto"))
    if name not in STRATEGIES:
        raise CadenzaError(f"launch.strategy '{name}' is not supported", f"choose one of {', '.join(STRATEGIES)}")
    if name in ("ddp", "ddp_spawn"):
        from lightning.fabric.strategies import DDPStrategy

        # gloo on CPU, nccl on GPU: Fabric picks the backend from the accelerator
        return DDPStrategy(start_method="spawn" if name == "ddp_spawn" else "popen", find_unused_parameters=bool(lc.get("find_unused_parameters", True)))
    if name == "fsdp":
        from lightning.fabric.strategies import ModelParallelStrategy

        # FSDP2 (torch's fully_shard) through Lightning's ModelParallelStrategy: unlike Fabric's
        # FSDPStrategy (FSDP1, which Fabric refuses off GPU) it runs on CPU over gloo as well
        return ModelParallelStrategy(functools.partial(shard_children, methods=task.fsdp_methods), data_parallel_size=_world(lc), tensor_parallel_size=1)
    return name


def _compile_children(module: torch.nn.Module, backend: str) -> None:
    """``torch.compile`` every child that holds parameters, in place (``nn.Module.compile``).

    In place, not ``torch.compile(module)``: the state-dict keys keep their names (no
    ``_orig_mod.`` prefix), so checkpoints and exported models are the same as without compile
    and a run may be resumed with compile switched on or off. ``launch.compile_backend`` is
    ``inductor`` (generated C++/OpenMP on CPU) or e.g. ``aot_eager`` / ``eager`` (tracing without
    code generation: seconds instead of minutes, what the tests use).
    """
    for child in module.children():
        if any(True for _ in child.parameters()):
            child.compile(backend=backend)


def _world(lc: dict) -> int:
    """Processes in the run, known before Fabric starts them (FSDP2's mesh needs it up front)."""
    devices = lc.get("devices", 1)
    if isinstance(devices, (list, tuple)):
        per_node = len(devices)
    elif isinstance(devices, int) and devices > 0:
        per_node = devices
    else:  # "auto" / -1: every visible GPU
        per_node = max(torch.cuda.device_count(), 1) if lc.get("accelerator") != "cpu" else 1
    return per_node * int(lc.get("num_nodes", 1))


def shard_children(module: torch.nn.Module, mesh: Any, methods: dict[str, tuple[str, ...]] | None = None) -> torch.nn.Module:
    """FSDP2: shard every direct child of the task's module that holds parameters, data-parallel only.

    The runner calls ``training_step``, not ``forward``, so the module itself is never sharded as a
    root; each child (the generator's net and its EMA copy) is its own FSDP2 unit, gathered in its
    own ``forward`` and sharded along dim 0 over the data-parallel ranks. ``methods`` names a
    child's other methods that read its parameters (the task's ``fsdp_methods``, e.g. the
    generator's ``net.drop_text``); they gather like ``forward`` does. A child whose forward is never
    called (an EMA) stays sharded, and element-wise updates between equally sharded children
    (``torch._foreach_*`` on DTensors) work shard by shard.
    """
    from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

    dp = mesh["data_parallel"]
    for name, child in module.named_children():
        if any(True for _ in child.parameters()):
            fully_shard(child, mesh=dp)
            for method in (methods or {}).get(name, ()):
                register_fsdp_forward_method(child, method)
    return module


def _check_launch(lc: dict) -> None:
    if str(lc["precision"]) not in PRECISIONS:
        raise CadenzaError(f"launch.precision '{lc['precision']}' is not supported", f"choose one of {', '.join(PRECISIONS)}")
    if str(lc["accelerator"]) not in ACCELERATORS:
        raise CadenzaError(f"launch.accelerator '{lc['accelerator']}' is not known", f"choose one of {', '.join(ACCELERATORS)}")
    if lc["accelerator"] in ("gpu", "cuda") and not torch.cuda.is_available():
        raise CadenzaError("launch.accelerator=gpu but torch sees no CUDA device", "use --accelerator cpu, or install a CUDA build of torch")
    if int(lc["num_nodes"]) < 1:
        raise CadenzaError(f"launch.num_nodes={lc['num_nodes']}: must be 1 or more", "e.g. --num-nodes 2")


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _loggers(out: Path) -> list[Any]:
    from lightning.fabric.loggers import CSVLogger

    version = len(list((out / "logs").glob("version_*"))) if (out / "logs").is_dir() else 0
    loggers: list[Any] = [CSVLogger(str(out), name="logs", version=version, flush_logs_every_n_steps=10)]
    try:
        import tensorboard  # noqa: F401
        from lightning.fabric.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(str(out), name="tb", version=version))
    except ImportError:
        pass
    return loggers


def weights_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes (identical weights ⇔ equal digests)."""
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(f"{key}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _average_grads_hook(world: int):
    """An optimizer step pre-hook averaging its gradients over ranks (for multi-backward steps)."""
    import torch.distributed as dist

    def hook(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
                    p.grad.div_(world)

    return hook


# --------------------------------------------------------------------------------------- entry point
def fit(
    task: str | Task,
    config: dict,
    out: str | os.PathLike,
    resume: bool = False,
    accelerator: str | None = None,
    devices: Any = None,
    num_nodes: int | None = None,
    strategy: str | None = None,
    precision: str | None = None,
) -> Path | None:
    """Train ``task`` per ``config`` into ``out``; returns the exported model folder ``out/model`` (None on ranks > 0).

    Keyword launch settings override the config's ``launch`` section (as the CLI flags do).
    Under several processes every rank calls this; Fabric starts the other local ranks itself
    when it was not launched by torchrun/SLURM.
    """
    task = get_task(task) if isinstance(task, str) else task
    flags = {"accelerator": accelerator, "devices": devices, "num_nodes": num_nodes, "strategy": strategy, "precision": precision}
    config = deep_merge(deep_merge(RUNNER_DEFAULTS, task.defaults), config)
    config["launch"].update({k: v for k, v in flags.items() if v is not None})
    lc = config["launch"]
    lc["devices"] = _parse_devices(lc["devices"])
    _check_launch(lc)
    out = Path(out)
    if not resume and CheckpointManager(out).folders():
        raise CadenzaError(f"{out} already holds a training run", "pass --resume to continue it, or choose a new --out folder")
    if lc["strategy"] == "fsdp" and task.manual_grad_sync:
        raise CadenzaError(f"--strategy fsdp does not support the {task.name}'s multi-backward step", "use --strategy ddp")
    logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    # FSDP2 warns on every step that the net returns a view; the losses never modify it in place
    # (an FSDP run equals a DDP run bit for bit: tests/train/test_runner.py)
    warnings.filterwarnings("ignore", message=".*returned a view tensor.*")
    fabric = L.Fabric(
        accelerator=lc["accelerator"], devices=lc["devices"], num_nodes=int(lc["num_nodes"]), strategy=_strategy(lc, task),
        precision=lc["precision"], loggers=_loggers(out),
    )
    return fabric.launch(_run, task, config, out, resume)


def _run(fabric: L.Fabric, task: Task, config: dict, out: Path, resume: bool) -> Path | None:
    rank, world = fabric.global_rank, fabric.world_size
    t, lc = config["train"], config["launch"]
    seed = int(t.get("seed", 0))
    threads = lc.get("threads") or t.get("threads")
    if threads:
        torch.set_num_threads(int(threads))
    ckpt_cfg, log_cfg = config["checkpoint"], config["log"]
    manager = CheckpointManager(out, int(ckpt_cfg.get("keep_last", 3)))
    loaded = manager.load() if resume else None
    if resume and loaded is None and rank == 0:
        print(f"no usable checkpoint in {out}; starting fresh", file=sys.stderr, flush=True)

    # ---- model, optimizers (identical on every rank: same seed; DDP also broadcasts rank 0's weights)
    L.seed_everything(seed, verbose=False)
    module = task.build_module(config)
    if loaded is not None:
        try:
            module.load_state_dict(loaded.model)
        except RuntimeError as exc:
            raise CadenzaError(
                f"{loaded.folder} does not fit the model this config builds ({str(exc).splitlines()[0]})",
                "resume with the run's own config (OUT/config.json) and change only training settings",
            ) from None
        set_step(module, loaded.progress.step)
    spec: DataSpec = task.train_data(config, module)
    if loaded is None:
        task.prepare(module, spec, config)  # e.g. data statistics that become buffers (a resume has them)
    if lc.get("compile"):
        _compile_children(module, str(lc.get("compile_backend") or "inductor"))
    fsdp = str(lc["strategy"]) == "fsdp"
    fmodule = fabric.setup_module(module)
    opts, scheds = task.optimizers(module, config)
    if loaded is not None:
        _load_optim_states(module, fmodule, opts, scheds, loaded, fsdp)
    fopts = fabric.setup_optimizers(*opts)
    fopts = list(fopts) if isinstance(fopts, (list, tuple)) else [fopts]
    module._fabric_optimizers = fopts  # so manual-optimisation modules' self.optimizers() finds them
    if task.manual_grad_sync and world > 1:
        for opt in opts:
            opt.register_step_pre_hook(_average_grads_hook(world))

    # ---- per-rank randomness: resumed exactly, else seeded by rank
    if loaded is not None and rank < len(loaded.rng):
        restore_rng(loaded.rng[rank], module)
    else:
        if loaded is not None and rank == 0:
            warnings.warn(f"the checkpoint holds RNG states for {len(loaded.rng)} ranks, not {world}: reseeding", stacklevel=1)
        L.seed_everything(seed + rank, verbose=False)
        for g in module_generators(module).values():
            g.manual_seed(g.initial_seed() + 1_000_003 * rank)

    # ---- data
    progress = loaded.progress if loaded is not None else Progress()
    batch_size = int(spec.batch_size)
    global_batch = batch_size * world
    iterable = isinstance(spec.dataset, IterableDataset)
    sampler = None
    if not iterable:
        sampler = DeterministicBatchSampler(len(spec.dataset), batch_size, rank, world, seed)

    def epoch_loader(epoch: int, start: int) -> Iterator[Any]:
        if iterable:
            skip = start if spec.prebatched else start * batch_size
            stream = StridedStream(spec.dataset, rank, world, skip)
            loader = DataLoader(stream, batch_size=None if spec.prebatched else batch_size, collate_fn=spec.collate, num_workers=0)
        else:
            sampler.set_epoch(epoch, start)
            nw = int(lc.get("num_workers", 0) or 0)
            loader = DataLoader(
                spec.dataset, batch_sampler=sampler, collate_fn=spec.collate, num_workers=nw, persistent_workers=False,
                generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch),  # worker seeds: off the global RNG
            )
        return iter(fabric.setup_dataloaders(loader, use_distributed_sampler=False))

    max_steps = int(t.get("max_steps", 0) or 0)
    if max_steps <= 0:
        raise CadenzaError("train.max_steps must be a positive number of steps", "e.g. train.max_steps=1000")
    max_s = float(t.get("max_minutes", 0) or 0) * 60
    every = int(ckpt_cfg.get("every_steps", 100) or 0)
    log_every = int(log_cfg.get("every_steps") or t.get("log_every") or 10)
    samples_every = int(log_cfg.get("samples_every_steps") or 0)
    val_every = int(log_cfg.get("val_every_steps") or every or 0)
    last_val: dict[str, float] = {}
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / "config.json", config)
        write_json_atomic(out / "run.json", {
            "task": task.name, "world_size": world, "num_nodes": int(lc["num_nodes"]), "per_device_batch": batch_size,
            "global_batch": global_batch, "strategy": str(lc["strategy"]), "accelerator": str(fabric.device),
            "precision": str(lc["precision"]), "seed": seed, "git_commit": _git_commit(),
            "resumed_from": str(loaded.folder) if loaded is not None else None, "start_step": progress.step,
        })
        print(f"{task.name}: {world} process(es), batch {batch_size}/device × {world} = {global_batch} global; "
              f"start at step {progress.step} of {max_steps}", file=sys.stderr, flush=True)
    fabric.barrier()

    seen: list[list[int]] = []  # this rank's first-epoch sample indices (for the disjointness check)
    first_epoch = None
    if sampler is not None:
        per_epoch = len(spec.dataset) // global_batch
        first_epoch = sampler.epoch_order(0)[: per_epoch * global_batch].view(per_epoch, world, batch_size)[:, rank]
    recent: dict[str, list[float]] = {}
    since_ckpt: list[float] = []
    t_start, elapsed0 = time.monotonic(), progress.elapsed_s
    steps_at_start = progress.step
    bar, bar_task = _progress_bar(rank == 0 and bool(log_cfg.get("progress", True)), max_steps, progress.step)
    it = epoch_loader(progress.epoch, progress.batch_in_epoch)
    last_batch: Any = None
    try:
        while progress.step < max_steps:
            try:
                batch = next(it)
            except StopIteration:
                if progress.batch_in_epoch == 0:
                    raise CadenzaError("the training data yielded no batch", "check the data set is not empty") from None
                progress.epoch += 1
                progress.batch_in_epoch = 0
                it = epoch_loader(progress.epoch, 0)
                continue
            if first_epoch is not None and progress.epoch == 0 and progress.batch_in_epoch < min(len(first_epoch), 1000):
                seen.append(first_epoch[progress.batch_in_epoch].tolist())
            logs = task.train_step(fmodule, batch, fopts, scheds, fabric)
            last_batch = batch
            progress.step += 1
            progress.batch_in_epoch += 1
            progress.samples_seen += global_batch
            progress.elapsed_s = elapsed0 + time.monotonic() - t_start
            for k, v in logs.items():
                recent.setdefault(k, []).append(float(v))
            if task.track in logs:
                since_ckpt.append(float(logs[task.track]))
            if bar is not None:
                bar.update(bar_task, completed=progress.step, description=f"{task.name} {task.track}={logs.get(task.track, float('nan')):.4f}")
            if progress.step % log_every == 0 or progress.step == max_steps:
                _log(fabric, out, progress, recent, fopts, global_batch, progress.step - steps_at_start, time.monotonic() - t_start)
                recent = {}
            if samples_every and progress.step % samples_every == 0 and rank == 0 and last_batch is not None:
                _samples(fabric, task, fmodule, module, last_batch, out, progress.step)
            stop = bool(max_s and progress.elapsed_s >= max_s)
            if world > 1:
                stop = bool(fabric.broadcast(stop, src=0))
            saving = bool((every and progress.step % every == 0) or progress.step >= max_steps or stop)
            if (val_every and progress.step % val_every == 0) or saving:
                last_val = _validate(fabric, task, fmodule, module, config, out, progress) or last_val
            if saving:
                _save(fabric, task, fmodule, module, opts, scheds, manager, progress, config, since_ckpt, fsdp, last_val)
                since_ckpt = []
            if stop:
                break
    finally:
        if bar is not None:
            bar.stop()
    # ---- ship: rank 0 exports the model folder; every rank records a digest of its weights
    state = _full_state(fmodule, module, fsdp)
    (out / "ranks").mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "ranks" / f"rank{rank}.json", {
        "rank": rank, "world_size": world, "step": progress.step, "digest": weights_digest(state) if state else None, "first_epoch_batches": seen,
    })
    model_dir = out / "model"
    if rank == 0:
        weights, model_cfg = task.export(_plain(task, config, module, state) if fsdp else module, config, progress)
        save_model_folder(model_dir, weights, stamp_for_task(task.name, model_cfg))  # the folder names its family
        _export_best(task, config, manager, out / "best")
    fabric.barrier()
    for logger in fabric.loggers:
        logger.finalize("success")
    return model_dir if rank == 0 else None


def _progress_bar(enabled: bool, total: int, done: int):
    if not enabled or not sys.stderr.isatty():
        return None, None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeRemainingColumn

    bar = Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=Console(stderr=True), transient=True)
    bar.start()
    return bar, bar.add_task("training", total=total, completed=done)


def _log(fabric: L.Fabric, out: Path, progress: Progress, recent: dict[str, list[float]], opts: list, global_batch: int, steps: int, seconds: float) -> None:
    metrics = {k: float(np.mean(v)) for k, v in recent.items() if v}
    metrics["lr"] = float(opts[0].param_groups[0]["lr"])
    metrics["clips_per_s"] = steps * global_batch / max(seconds, 1e-9)
    metrics["global_batch"] = float(global_batch)
    metrics["epoch"] = float(progress.epoch)
    fabric.log_dict(metrics, step=progress.step)
    if fabric.global_rank == 0:
        line = {"step": progress.step, "elapsed_s": round(progress.elapsed_s, 2), **{k: round(v, 6) for k, v in metrics.items()}}
        with open(out / "train_log.jsonl", "a") as fh:
            fh.write(json.dumps(line) + "\n")


@contextlib.contextmanager
def _aside(module: torch.nn.Module) -> Iterator[None]:
    """Work beside training (validation, samples): no grad, then train mode and every RNG put back."""
    snapshot, was = capture_rng(module), module.training
    try:
        with torch.no_grad():
            yield
    finally:
        module.train(was)
        restore_rng(snapshot, module)


def _samples(fabric: L.Fabric, task: Task, fmodule: Any, module: torch.nn.Module, batch: Any, out: Path, step: int) -> None:
    """Rank 0: the task's sample files under ``OUT/samples``, and into TensorBoard when it logs."""
    with _aside(module):
        paths = task.samples(fmodule, batch, out / "samples", step)
    writers = [lg.experiment for lg in fabric.loggers if type(lg).__name__ == "TensorBoardLogger"]
    for path in paths if writers else []:
        tag = f"samples/{path.stem.rsplit('-step', 1)[0]}"
        for writer in writers:
            if path.suffix == ".png":
                import matplotlib.image

                writer.add_image(tag, matplotlib.image.imread(str(path))[..., :3], step, dataformats="HWC")
            elif path.suffix in (".wav", ".flac", ".ogg"):
                from cadenza.audio import SAMPLE_RATE, load_audio

                writer.add_audio(tag, torch.from_numpy(load_audio(path))[None], step, sample_rate=SAMPLE_RATE)
    for writer in writers:
        writer.flush()


def _validate(fabric: L.Fabric, task: Task, fmodule: Any, module: torch.nn.Module, config: dict, out: Path, progress: Progress) -> dict[str, float]:
    """The task's held-out metrics, logged as ``val_<name>``; every RNG is put back afterwards.

    Every rank runs it on the same fixed set (the weights are the same, and under FSDP each rank
    must join the gathers), so all ranks agree without a broadcast. Saving and restoring the
    RNGs (``capture_rng``) is what keeps a run with validation identical to one without.
    """
    with _aside(module):
        metrics = task.validate(fmodule, config)
    if not metrics:
        return {}
    logged = {f"val_{k}": float(v) for k, v in metrics.items()}
    fabric.log_dict(logged, step=progress.step)
    if fabric.global_rank == 0:
        with open(out / "train_log.jsonl", "a") as fh:
            fh.write(json.dumps({"step": progress.step, "elapsed_s": round(progress.elapsed_s, 2), **{k: round(v, 6) for k, v in logged.items()}}) + "\n")
    return logged


def _full_state(fmodule: Any, module: torch.nn.Module, fsdp: bool) -> dict[str, torch.Tensor]:
    """The whole module state dict (under FSDP gathered from the shards onto rank 0's CPU; other ranks get {})."""
    if fsdp:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(fmodule._forward_module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return module.state_dict()


def _plain(task: Task, config: dict, module: torch.nn.Module | None, state: dict[str, torch.Tensor], step: int | None = None) -> torch.nn.Module:
    """An unsharded module holding ``state`` (gathered under FSDP, or a checkpoint's) for the task to export."""
    plain = task.build_module(config)
    plain.load_state_dict(state)
    set_step(plain, step if step is not None else step_of(module))
    return plain


def _export_best(task: Task, config: dict, manager: CheckpointManager, folder: Path) -> None:
    """``OUT/best``: the model folder of the checkpoint ``best.json`` names (what to ship when it beats the last)."""
    best = manager.best()
    loaded = manager.load(prefer=manager.root / best["name"]) if best else None
    if loaded is None or loaded.folder.name != best["name"]:
        return
    weights, model_cfg = task.export(_plain(task, config, None, loaded.model, loaded.progress.step), config, loaded.progress)
    save_model_folder(folder, weights, stamp_for_task(task.name, {**model_cfg, "best": best}))


def fit_folder(task: str, config_name: str, overrides: list[str], out: str | os.PathLike, max_minutes: float | None = None,
               threads: int | None = None) -> Path | None:
    """``fit`` resuming by itself when ``out`` holds checkpoints: what the older per-model commands did.

    ``python -m cadenza.train.beats`` / ``…clap`` and ``scripts/train_vocoder.py train`` are thin
    wrappers over this; ``cadenza train`` asks for ``--resume`` explicitly instead.
    """
    from cadenza.train.tasks import load_task_config

    the_task = get_task(task)
    config = load_task_config(the_task, config_name, [*overrides, *([f"launch.threads={threads}"] if threads else [])])
    if max_minutes is not None:
        config["train"]["max_minutes"] = max_minutes
    resume = bool(CheckpointManager(out).folders())
    print(f"= cadenza train {task} {config_name} {' '.join(overrides)} --out {out}{' --resume' if resume else ''}", file=sys.stderr, flush=True)
    return fit(the_task, config, out, resume=resume)


def _load_optim_states(module: torch.nn.Module, fmodule: Any, opts: list, scheds: list, loaded: Any, fsdp: bool) -> None:
    if len(loaded.optimizers) != len(opts):
        raise CadenzaError(f"{loaded.folder}: {len(loaded.optimizers)} optimizer states for {len(opts)} optimizers", "resume with the same model and config")
    for opt, sd in zip(opts, loaded.optimizers):
        if fsdp:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

            set_optimizer_state_dict(fmodule._forward_module, opt, sd, options=StateDictOptions(full_state_dict=True))
        else:
            opt.load_state_dict(sd)
    for sched, sd in zip(scheds, loaded.schedulers):
        sched.load_state_dict(sd)


def _save(fabric: L.Fabric, task: Task, fmodule: Any, module: torch.nn.Module, opts: list, scheds: list, manager: CheckpointManager,
          progress: Progress, config: dict, since_ckpt: list[float], fsdp: bool, val: dict[str, float] | None = None) -> None:
    """Every rank joins (gathers under FSDP, RNG states of all ranks); rank 0 writes.

    "best" follows the task's validation metric (``val_<task.val_best or task.track>``, highest
    wins when ``task.val_higher_is_better``) when it has one, else the mean training loss since the
    previous checkpoint.
    """
    state = _full_state(fmodule, module, fsdp)
    if fsdp:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        optim = [get_optimizer_state_dict(fmodule._forward_module, o, options=StateDictOptions(full_state_dict=True, cpu_offload=True)) for o in opts]
    else:
        optim = [o.state_dict() for o in opts]
    rng = [capture_rng(module)]
    track_local = float(np.mean(since_ckpt)) if since_ckpt else float("nan")
    if fabric.world_size > 1:
        import torch.distributed as dist

        gathered: list[Any] = [None] * fabric.world_size
        dist.all_gather_object(gathered, rng[0])
        rng = gathered
        track = float(fabric.all_reduce(torch.tensor(track_local, device=fabric.device), reduce_op="mean").item())
    else:
        track = track_local
    progress.metrics = {task.track: track} if np.isfinite(track) else {}
    metric, higher = task.track, False
    if val and f"val_{task.val_best or task.track}" in val:
        metric, higher = f"val_{task.val_best or task.track}", task.val_higher_is_better
        track = val[metric]
        progress.metrics.update(val)
    if fabric.global_rank == 0:
        manager.save(state, optim, [s.state_dict() for s in scheds], rng, progress, config, track=track if np.isfinite(track) else None, metric=metric, higher_is_better=higher)
    fabric.barrier()
