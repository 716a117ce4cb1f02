"""Building the generator network from a config dict and loading it from a model folder."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from cadenza.checkpoint import WEIGHTS_NAME, load_model_folder
from cadenza.errors import CadenzaError
from cadenza.generators.controlnet import GeneratorConfig, MusicControlNet

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights" / "generator"
NO_SHIPPED_HINT = (
    "no shipped generator model yet: train one with `cadenza train generator small --out runs/gen` "
    "and pass --model runs/gen/model (Python: Cadenza.load('runs/gen/model'))"
)


def build_generator(config: dict) -> MusicControlNet:
    """A freshly initialised network from a generator config (its ``model`` section)."""
    if not isinstance(config, dict) or "model" not in config:
        raise CadenzaError("generator config has no 'model' section", "use cadenza.config.load_config('generator', 'debug')")
    return MusicControlNet(GeneratorConfig.from_dict(config["model"]))


def resolve_model_dir(model: str | os.PathLike | None) -> Path:
    """None / 'default' → the shipped folder (with a clear error while none is shipped); else a path."""
    if model is None or str(model) in ("default", "shipped"):
        if not (WEIGHTS_DIR / WEIGHTS_NAME).exists():
            raise CadenzaError("no shipped generator model in cadenza/weights/generator/", NO_SHIPPED_HINT)
        return WEIGHTS_DIR
    return Path(model)


def weights_digest(folder: Path) -> str:
    """Short sha256 of the weights file: identifies exactly which model made an output."""
    h = hashlib.sha256()
    with open(folder / WEIGHTS_NAME, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:12]


def load_generator(model: str | os.PathLike | None = None) -> tuple[MusicControlNet, dict, Path]:
    """(eval-mode network, its config, its folder) from a model folder or the shipped one."""
    folder = resolve_model_dir(model)
    state, config = load_model_folder(folder)
    try:
        net = build_generator(config)
        state = {k: v.float() for k, v in state.items()}
        missing, unexpected = net.load_state_dict(state, strict=False)
    except (RuntimeError, TypeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise CadenzaError(f"{folder}: weights do not match its config.json ({first})", "the folder is damaged; re-export it") from None
    if missing or unexpected:
        raise CadenzaError(
            f"{folder}: weights do not match the generator (missing {len(missing)}, unexpected {len(unexpected)} tensors)",
            "the folder is damaged or from another model; re-export it",
        )
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net, config, folder


def count_parameters(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
