"""Training checkpoints that can always be resumed exactly and are never loaded half-written.

A checkpoint is a folder ``RUN/checkpoints/step-000000120/`` holding

- ``model.safetensors`` — the module's full state dict (weights, EMA, buffers);
- ``optim.safetensors`` — every tensor of the optimizer/scheduler states (Adam moments, step counts);
- ``state.json`` — the rest of those states (param groups, scheduler counters), the RNG states of
  torch / numpy / python ``random`` / the module's own ``torch.Generator``s per rank, and the data
  position (step, epoch, batch-in-epoch) — tensors are referenced by key, nothing is pickled;
- ``config.json`` — the full config the run was started with;
- ``COMPLETE`` — written last: size and SHA-256 of every file above.

It is written into a hidden temp folder, renamed into place with ``os.replace`` and only then is
the ``latest`` pointer replaced (also atomically). Loading walks the folders from the newest,
verifies each against its ``COMPLETE`` marker and skips (with a warning) any that is incomplete
or damaged, so a kill at any moment costs at most the checkpoint being written. Retention keeps
the last K folders plus the best one by a tracked loss.

Tests set ``CADENZA_CKPT_WRITE_DELAY`` (seconds) to hold a write open between the weights and the
marker, so a kill can land inside it.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from cadenza.checkpoint import save_safetensors_atomic
from cadenza.config import write_json_atomic
from cadenza.errors import CadenzaError

CKPT_ROOT = "checkpoints"
MARKER = "COMPLETE"
LATEST = "latest"
BEST = "best.json"
FILES = ("model.safetensors", "optim.safetensors", "state.json", "config.json")
STEP_RE = re.compile(r"^step-(\d{9})$")
DELAY_ENV = "CADENZA_CKPT_WRITE_DELAY"


# --------------------------------------------------------------------------- tensors <-> JSON trees
def split_tree(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """A JSON-able copy of ``obj`` with every tensor moved into ``tensors`` (by key).

    Tuples, non-string dict keys (optimizer param ids) and numpy arrays are tagged so that
    ``join_tree`` gives back exactly the same structure and types.
    """
    if torch.is_tensor(obj):
        key = f"{prefix}"
        tensors[key] = obj.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: split_tree(v, f"{prefix}.{k}", tensors) for k, v in obj.items()}
        return {"__dict__": [[k, split_tree(v, f"{prefix}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [split_tree(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [split_tree(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise CadenzaError(f"cannot store a {type(obj).__name__} in a training checkpoint ({prefix})", "keep optimizer/scheduler state to tensors and plain values")


def join_tree(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of ``split_tree``."""
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__ndarray__" in obj:
            return np.asarray(obj["__ndarray__"], dtype=obj["dtype"])
        if "__dict__" in obj:
            return {k: join_tree(v, tensors) for k, v in obj["__dict__"]}
        if "__tuple__" in obj:
            return tuple(join_tree(v, tensors) for v in obj["__tuple__"])
        return {k: join_tree(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [join_tree(v, tensors) for v in obj]
    return obj


# --------------------------------------------------------------------------- RNG
def module_generators(module: torch.nn.Module) -> dict[str, torch.Generator]:
    """``torch.Generator`` attributes of the module and its submodules (their state must resume too)."""
    found: dict[str, torch.Generator] = {}
    for name, sub in module.named_modules():
        for attr, val in vars(sub).items():
            if isinstance(val, torch.Generator):
                found[f"{name}.{attr}" if name else attr] = val
    return found


def capture_rng(module: torch.nn.Module | None = None) -> dict[str, Any]:
    """Every RNG a training step may draw from (torch CPU/CUDA, numpy, python, module generators)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if module is not None:
        state["generators"] = {k: g.get_state() for k, g in module_generators(module).items()}
    return state


def restore_rng(state: dict[str, Any], module: torch.nn.Module | None = None) -> None:
    """Put every RNG back exactly as ``capture_rng`` found it."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if module is not None:
        gens = module_generators(module)
        for name, st in state.get("generators", {}).items():
            if name in gens:
                gens[name].set_state(st)


# --------------------------------------------------------------------------- checkpoint folders
@dataclass
class Progress:
    """Where training stands: optimizer steps done and the data position (for an exact resume)."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    samples_seen: int = 0
    elapsed_s: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class Loaded:
    """What ``CheckpointManager.load`` returns."""

    folder: Path
    model: dict[str, torch.Tensor]
    optimizers: list[dict]
    schedulers: list[dict]
    rng: list[dict]  # one per rank that saved
    progress: Progress
    config: dict
    extra: dict


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class CheckpointManager:
    """Write, verify, find and prune training checkpoints under ``run/checkpoints``."""

    def __init__(self, run: str | os.PathLike, keep_last: int = 3, keep_best: bool = True) -> None:
        if keep_last < 1:
            raise CadenzaError(f"checkpoint.keep_last={keep_last}: must keep at least one", "set checkpoint.keep_last=1 or more")
        self.root = Path(run) / CKPT_ROOT
        self.keep_last, self.keep_best = int(keep_last), keep_best

    # ---- listing
    def folders(self) -> list[Path]:
        """Finished-looking checkpoint folders, oldest first (temp folders excluded)."""
        if not self.root.is_dir():
            return []
        found = [p for p in self.root.iterdir() if p.is_dir() and STEP_RE.match(p.name)]
        return sorted(found, key=lambda p: int(STEP_RE.match(p.name).group(1)))

    def best(self) -> dict | None:
        try:
            return json.loads((self.root / BEST).read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def latest(self) -> Path | None:
        try:
            name = (self.root / LATEST).read_text().strip()
        except OSError:
            return None
        return self.root / name if STEP_RE.match(name) else None

    # ---- writing
    def save(
        self,
        model: dict[str, torch.Tensor],
        optimizers: list[dict],
        schedulers: list[dict],
        rng: list[dict],
        progress: Progress,
        config: dict,
        extra: dict | None = None,
        track: float | None = None,
        metric: str = "loss",
        higher_is_better: bool = False,
    ) -> Path:
        """Write one checkpoint atomically, move ``latest`` to it, update ``best`` and prune.

        ``best.json`` names the folder with the lowest (or highest) ``track`` of its ``metric``; a
        best of another metric (a run resumed once validation exists; older files name none and
        meant the training loss) is not comparable, so the new value replaces it.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        name = f"step-{progress.step:09d}"
        tmp = self.root / f".tmp-{name}-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        save_safetensors_atomic(tmp / "model.safetensors", model)
        delay = float(os.environ.get(DELAY_ENV, "0") or 0)
        if delay:
            time.sleep(delay)  # test hook: a kill -9 here leaves only a temp folder behind
        tensors: dict[str, torch.Tensor] = {}
        meta = {
            "format": 1,
            "optimizers": split_tree(optimizers, "opt", tensors),
            "schedulers": split_tree(schedulers, "sched", tensors),
            "rng": split_tree(rng, "rng", tensors),
            "progress": asdict(progress),
            "extra": split_tree(extra or {}, "extra", tensors),
        }
        save_safetensors_atomic(tmp / "optim.safetensors", tensors)
        write_json_atomic(tmp / "state.json", meta)
        write_json_atomic(tmp / "config.json", config)
        files = {f: {"bytes": (tmp / f).stat().st_size, "sha256": _sha256(tmp / f)} for f in FILES}
        write_json_atomic(tmp / MARKER, {"step": progress.step, "files": files})
        _fsync_dir(tmp)
        final = self.root / name
        if final.exists():  # the same step saved again (e.g. the end of a resumed, finished run)
            trash = self.root / f".old-{name}-{os.getpid()}"
            os.replace(final, trash)
            shutil.rmtree(trash, ignore_errors=True)
        os.replace(tmp, final)
        _fsync_dir(self.root)
        self._write_pointer(name)
        if track is not None and self.keep_best:
            prev = self.best()
            prev_metric = prev.get("metric", "" if metric.startswith("val_") else metric) if prev else None  # older files: a training loss
            better = prev is None or (track > float(prev["value"]) if higher_is_better else track < float(prev["value"]))
            if prev is None or not (self.root / prev["name"]).is_dir() or prev_metric != metric or better:
                write_json_atomic(self.root / BEST, {"name": name, "value": float(track), "step": progress.step, "metric": metric, "higher_is_better": higher_is_better})
        self.prune()
        return final

    def _write_pointer(self, name: str) -> None:
        tmp = self.root / f".{LATEST}.{os.getpid()}.tmp"
        tmp.write_text(name + "\n")
        os.replace(tmp, self.root / LATEST)

    def prune(self) -> list[Path]:
        """Delete all but the last ``keep_last`` folders and the best; clear stale temp folders."""
        folders = self.folders()
        keep = set(folders[-self.keep_last :])
        best = self.best()
        if best is not None:
            keep.add(self.root / best["name"])
        removed = [p for p in folders if p not in keep]
        for p in removed:
            shutil.rmtree(p, ignore_errors=True)
        for p in self.root.glob(".tmp-*"):
            if p.is_dir() and not p.name.endswith(f"-{os.getpid()}"):
                shutil.rmtree(p, ignore_errors=True)  # left by a killed writer
        for p in self.root.glob(".old-*"):
            shutil.rmtree(p, ignore_errors=True)
        return removed

    # ---- reading
    def verify(self, folder: Path) -> str | None:
        """None when ``folder`` is complete and intact, else why not."""
        marker = folder / MARKER
        if not marker.exists():
            return "no COMPLETE marker (the write was interrupted)"
        try:
            files = json.loads(marker.read_text())["files"]
        except (OSError, json.JSONDecodeError, KeyError) as exc:
            return f"unreadable COMPLETE marker ({exc})"
        for name in FILES:
            path = folder / name
            if name not in files or not path.exists():
                return f"missing {name}"
            if path.stat().st_size != files[name]["bytes"] or _sha256(path) != files[name]["sha256"]:
                return f"{name} does not match its checksum (truncated or damaged)"
        return None

    def load(self, prefer: Path | None = None) -> Loaded | None:
        """The newest intact checkpoint (``latest`` first), skipping damaged ones with a warning."""
        candidates = list(reversed(self.folders()))
        latest = prefer or self.latest()
        if latest is not None and latest in candidates:
            candidates.remove(latest)
            candidates.insert(0, latest)
        for folder in candidates:
            problem = self.verify(folder)
            if problem is None:
                try:
                    return self._read(folder)
                except Exception as exc:  # verified yet unreadable: still never half-load it
                    problem = f"cannot be read ({exc})"
            warnings.warn(f"skipping checkpoint {folder}: {problem}; trying the previous one", stacklevel=2)
        return None

    def _read(self, folder: Path) -> Loaded:
        model = load_file(str(folder / "model.safetensors"))
        tensors = load_file(str(folder / "optim.safetensors"))
        meta = json.loads((folder / "state.json").read_text())
        config = json.loads((folder / "config.json").read_text())
        progress = Progress(**meta["progress"])
        return Loaded(
            folder=folder, model=model,
            optimizers=join_tree(meta["optimizers"], tensors), schedulers=join_tree(meta["schedulers"], tensors),
            rng=join_tree(meta["rng"], tensors), progress=progress, config=config, extra=join_tree(meta["extra"], tensors),
        )
