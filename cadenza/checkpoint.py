"""Model folders: ``model.safetensors`` + ``config.json``, written atomically, read without pickle.

Every trained Cadenza model (vocoder, generator, beat tracker, CLAP) is a folder holding its
weights and the config it was built from, so ``load_model_folder`` can rebuild it anywhere and
nothing untrusted is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from cadenza.config import write_json_atomic
from cadenza.errors import CadenzaError
from cadenza.fsutil import atomic_path

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


def save_safetensors_atomic(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Path:
    """safetensors via temp file + rename; tensors are made contiguous and detached first."""
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=metadata)
    return path


def save_model_folder(folder: str | os.PathLike, state_dict: dict[str, torch.Tensor], config: dict) -> Path:
    """Write weights then config (the config last, so a folder with a config is complete)."""
    folder = Path(folder)
    save_safetensors_atomic(folder / WEIGHTS_NAME, state_dict)
    write_json_atomic(folder / CONFIG_NAME, config)
    return folder


def load_model_folder(folder: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """Read (state_dict, config) from a model folder, with clear errors when files are missing or damaged."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CadenzaError(f"{folder}: no such model folder", "pass a folder holding model.safetensors and config.json")
    weights, config_path = folder / WEIGHTS_NAME, folder / CONFIG_NAME
    if not weights.exists() and any((folder / sub / WEIGHTS_NAME).exists() for sub in ("best", "model")):
        raise CadenzaError(
            f"{folder}: a training run's folder, not a model folder",
            f"pass {folder / 'best'} (best by validation) or {folder / 'model'} (the last step)",
        )
    if not weights.exists() and not config_path.exists():  # not a half-written checkpoint: some other folder
        raise CadenzaError(f"{folder}: not a model folder (no {WEIGHTS_NAME}, no {CONFIG_NAME})", "pass a folder holding model.safetensors and config.json")
    for path in (weights, config_path):
        if not path.exists():
            raise CadenzaError(f"{folder}: missing {path.name}", "the checkpoint is incomplete; re-export or re-train it")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as exc:
        raise CadenzaError(f"{config_path}: invalid JSON ({exc.msg})") from None
    try:
        state = load_file(str(weights))
    except Exception as exc:
        raise CadenzaError(f"{weights}: cannot read weights ({exc})", "the file is corrupt or truncated") from None
    return state, config


def weights_digest(folder: str | os.PathLike) -> str:
    """Short sha256 of a folder's weights file: identifies exactly which model made an output.

    Model ids are ``model_id@digest``; the 12 hex digits are what outputs' JSON sidecars and
    ``cadenza models`` show, so the same weights always get the same id on every machine.
    """
    h = hashlib.sha256()
    with open(Path(folder) / WEIGHTS_NAME, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:12]
