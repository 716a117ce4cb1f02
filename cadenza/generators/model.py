"""Building the generator network from a config dict and loading it from a model folder."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from cadenza.checkpoint import WEIGHTS_NAME, weights_digest
from cadenza.errors import CadenzaError
from cadenza.generators.adapter import ControlNetGenerator
from cadenza.generators.controlnet import GeneratorConfig, MusicControlNet
from cadenza.registry import load_model, register_family

__all__ = ["WEIGHTS_DIR", "build_generator", "count_parameters", "load_generator", "resolve_model_dir", "weights_digest"]

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights" / "generator"
NO_SHIPPED_HINT = (
    "no shipped generator model yet: train one with `cadenza train generator small --out runs/gen` "
    "and pass --model runs/gen/model (Python: Cadenza.load('runs/gen/model'))"
)


def _is_generator_config(config: dict) -> bool:
    """A generator config written before ``kind``/``type`` existed: diffusion + UNet sections."""
    return "diffusion" in config and isinstance(config.get("model"), dict) and "mel" not in config


@register_family(
    kind="generator", type="music-controlnet", title="generator", shipped=WEIGHTS_DIR, recognise=_is_generator_config,
    task="generator", task_module="cadenza.train.generator", default_id="cadenza-generator",
    wrap=lambda net, config, folder: ControlNetGenerator(net, config),  # what the pipeline calls (protocols.Generator)
    about="Music ControlNet: 1-D UNet diffusion over mel frames + a ControlNet adapter for time-varying controls",
)
def build_generator(config: dict) -> MusicControlNet:
    """A freshly initialised network from a generator config (its ``model`` section)."""
    if not isinstance(config, dict) or "model" not in config:
        raise CadenzaError("generator config has no 'model' section", "use cadenza.config.load_config('generator', 'debug')")
    return MusicControlNet(GeneratorConfig.from_dict(config["model"]))


def resolve_model_dir(model: str | os.PathLike | None) -> Path:
    """None / 'default' → the shipped generator (a clear error while none is shipped); a shipped folder's name
    (``lm``, ``magnet``) → that folder under ``cadenza/weights`` unless such a path exists here; else a path."""
    if model is None or str(model) in ("default", "shipped"):
        if not (WEIGHTS_DIR / WEIGHTS_NAME).exists():
            raise CadenzaError("no shipped generator model in cadenza/weights/generator/", NO_SHIPPED_HINT)
        return WEIGHTS_DIR
    path = Path(model)
    shipped = WEIGHTS_DIR.parent / str(model)
    if not path.exists() and path.name == str(model) and (shipped / "config.json").is_file():
        return shipped  # a shipped model's id ('lm', 'magnet'): no path to remember
    return path


def load_generator(model: str | os.PathLike | None = None) -> tuple[MusicControlNet, dict, Path]:
    """(eval-mode network, its config, its folder) from a model folder or the shipped one."""
    folder = resolve_model_dir(model)
    loaded = load_model(folder, kind="generator")  # the one weight check every family shares (cadenza.registry)
    net, config = loaded.net, loaded.config
    return net, config, folder


def count_parameters(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
