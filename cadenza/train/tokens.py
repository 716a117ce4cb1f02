"""Training the token models on the shared runner: ``cadenza train lm`` and ``cadenza train magnet``.

``TokenModule`` owns the ``TokenNet``, the text encoder (outside the state dict) and a seeded
generator. Each step, as the diffusion generator's training does: encode captions and swap
``train.text_dropout`` of them for the learned null prompt; drop a random subset of controls and
blank random spans of the kept ones (``random_control_masks``) so any subset works at inference
and control-free guidance is exact; then the family's loss (``lm_loss``: next token on the delay
pattern; ``magnet_loss``: span-masked tokens of one level).

The config names its codec (``"codec"``); the task loads it once, fills ``model.codebooks`` /
``model.cardinality`` when they are null, checks them otherwise, and records ``codec_info`` and
the codec's resolved location in the exported model's config. Data (``data.source``):

- ``synthetic``: harmonic tones with exact controls (``train.generator.SyntheticClips``) encoded
  by the codec once at start; what the debug configs and the tests train on;
- ``tokens``: a folder written by ``encode_corpus`` (``data.tokens``);
- ``corpus``: ``encode_corpus(data.corpus)`` into ``data.tokens`` (default ``<corpus>/tokens/<codec id>``)
  first (resumable, skipped when done), then as ``tokens``.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import Dataset

from cadenza.audio.format import FRAME_RATE
from cadenza.conditioning.controls import MASK_KEYS, controls_to_tensors, random_control_masks
from cadenza.conditioning.text import build_text_encoder
from cadenza.controls.base import FRAME_FIELDS, ControlSet
from cadenza.errors import CadenzaError
from cadenza.generators.tokens.conditioning import resample_controls
from cadenza.generators.tokens.data import TokenDataset, encode_corpus
from cadenza.generators.tokens.family import build_token_net
from cadenza.generators.tokens.generator import WEIGHTS_ROOT, check_codec, codec_info, codec_view, find_codec, load_codec
from cadenza.generators.tokens.lm import lm_loss
from cadenza.generators.tokens.magnet import magnet_loss
from cadenza.registry import register_task
from cadenza.train.generator import SyntheticClips, held_out_loss, warmup_cosine_adamw
from cadenza.train.tasks import DataSpec, Task, _inner

METHODS = ("lm", "magnet")
_CODECS: dict[str, tuple[Any, Path, str]] = {}  # resolved codec folder → (representation, folder, model id): loaded once per process


def resolve_codec(config: dict) -> Any:
    """Load the config's codec; fill/check ``model.codebooks`` and ``cardinality``; record ``codec_info``.

    Mutates ``config`` (the runner saves and exports that same dict): ``codec`` becomes the
    resolved folder (kept as an id when it is a shipped one) so the exported model finds it.
    """
    key = str(find_codec(config.get("codec"), None).resolve())
    if key not in _CODECS:
        _CODECS[key] = load_codec(key, None)
    rep, folder, model_id = _CODECS[key]
    model = config.setdefault("model", {})
    rep = codec_view(rep, model.get("codebooks"))
    for attr in ("codebooks", "cardinality"):
        if model.get(attr) is None:
            model[attr] = int(getattr(rep, attr))
    check_codec({**config, "codec_info": None}, rep, model_id, None)
    shipped = folder.resolve().parent == WEIGHTS_ROOT.resolve()
    config["codec"] = folder.name if shipped else key
    config["codec_info"] = codec_info(rep, model_id)
    return rep


# ---------------------------------------------------------------------------------------- data
class SyntheticTokenClips(Dataset):
    """Synthetic tones (``SyntheticClips``) as codec tokens of ``frames`` frames, with their controls pooled to the codec rate."""

    def __init__(self, representation: Any, n_clips: int, frames: int, seed: int = 0, batch_size: int = 16) -> None:
        rate = float(representation.frame_rate)
        mel_frames = int(math.ceil(frames * FRAME_RATE / rate)) + 2
        synth = SyntheticClips(n_clips, mel_frames, seed)
        items = [synth.render(i) for i in range(n_clips)]
        audio = torch.from_numpy(np.stack([it["audio"] for it in items]))
        with torch.no_grad():
            codes = torch.cat([representation.encode(audio[k : k + batch_size]).long() for k in range(0, n_clips, batch_size)])
        if codes.shape[-1] < frames:
            raise CadenzaError(f"the codec gave {codes.shape[-1]} frames for {mel_frames} mel frames of audio, fewer than data.frames={frames}")
        self.codes = codes[..., :frames].contiguous()
        sets = [ControlSet(n_frames=mel_frames, **{k: np.asarray(it[k]) for k in FRAME_FIELDS}) for it in items]
        self.controls = resample_controls(controls_to_tensors(sets), frames, rate)
        self.captions = [str(it["caption"]) for it in items]

    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"codes": self.codes[i], "valid": torch.ones(self.codes.shape[-1]), "caption": self.captions[i], **{k: v[i] for k, v in self.controls.items()}}


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack codes, controls and ``valid``; captions stay strings."""
    out: dict[str, Any] = {"caption": [str(it["caption"]) for it in items], "codes": torch.stack([it["codes"] for it in items]).long()}
    for key in (*FRAME_FIELDS, "valid"):
        out[key] = torch.stack([torch.as_tensor(it[key], dtype=torch.float32) for it in items])
    return out


def default_tokens_dir(config: dict) -> Path:
    """``<corpus>/tokens/<codec id>``: one encoded copy per codec beside the corpus."""
    data = config.get("data", {})
    info = config.get("codec_info") or {}
    codec_id = str(info.get("model_id") or Path(str(config.get("codec"))).name)
    if info.get("codec_codebooks") and int(info["codebooks"]) < int(info["codec_codebooks"]):
        codec_id += f"-q{int(info['codebooks'])}"  # a prefix of the codec's levels: its own copy
    return Path(data.get("corpus", "data/corpus-small")) / "tokens" / re.sub(r"[^A-Za-z0-9_.@-]+", "_", codec_id)


def build_token_dataset(config: dict, representation: Any, split: str = "train") -> Dataset:
    """The training (or held-out) data a config names (``data.source``: synthetic, tokens or corpus)."""
    data = config.get("data", {})
    source = data.get("source", "corpus")
    frames = int(data.get("frames", 256))
    model = config["model"]
    seed = int(config.get("train", {}).get("seed", 0))
    if source == "synthetic":
        n = int(data.get("synthetic_clips", 64)) if split == "train" else int(data.get("val_clips", 8))
        return SyntheticTokenClips(representation, n, frames, seed if split == "train" else seed + 1_000_003)
    if source not in ("tokens", "corpus"):
        raise CadenzaError(f"unknown data.source '{source}'", "use 'corpus', 'tokens' or 'synthetic'")
    folder = Path(data["tokens"]) if data.get("tokens") else default_tokens_dir(config)
    if source == "corpus":
        encode_corpus(
            data.get("corpus", "data/corpus-small"), representation, folder, splits=("train", "valid"),
            controls=data.get("controls", "extracted"), codec_id=(config.get("codec_info") or {}).get("model_id"),
        )
    train = split == "train"
    return TokenDataset(folder, split, frames, model["codebooks"], model["cardinality"], random_crop=train, random_caption=train)


# ---------------------------------------------------------------------------------------- module
class TokenModule(L.LightningModule):
    """Trains a ``TokenNet`` as an AR LM (``method="lm"``) or MAGNeT (``"magnet"``)."""

    def __init__(self, config: dict, method: str) -> None:
        super().__init__()
        if method not in METHODS:
            raise CadenzaError(f"unknown token method '{method}'", f"choose one of {', '.join(METHODS)}")
        self.config, self.method = config, method
        self.tcfg = config["train"]
        self.net = build_token_net(config)
        self.text_encoder = build_text_encoder(config.get("text_encoder", "minilm"), int(config["model"].get("text_dim", 384)))
        self.generator = torch.Generator().manual_seed(int(self.tcfg.get("seed", 0)))
        self.step_count = 0
        if self.tcfg.get("init_from"):
            self.init_from(self.tcfg["init_from"])

    def init_from(self, folder: str | os.PathLike) -> None:
        """Start from another token model's weights (``train.init_from``), e.g. MAGNeT from the AR LM.

        Why: both families save the same ``TokenNet`` (the LM runs it causally, MAGNeT
        bidirectionally), so a trained LM is a warm start for MAGNeT, whose loss sees only the
        masked tokens of one level per clip and learns slowly from scratch. Shapes must match
        exactly; a resumed run's checkpoint still overrides these weights.
        """
        from cadenza.registry import read_model_folder

        try:
            state, saved, _ = read_model_folder(folder, kind="generator")
        except CadenzaError as err:
            raise CadenzaError(f"train.init_from: {err.message}", "pass a token model folder (an lm or magnet run's model/)") from None
        mine = self.net.state_dict()
        wrong = sorted(k for k in mine if k not in state or tuple(state[k].shape) != tuple(mine[k].shape))
        if wrong or set(state) - set(mine):
            raise CadenzaError(
                f"train.init_from: {folder} is another network shape (differs in {', '.join(wrong[:4]) or 'extra tensors'})",
                "fine-tune from a token model of the same model config (dim, layers, heads, codebooks, cardinality)",
            )
        self.net.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)

    def prepare_batch(self, batch: dict[str, Any]) -> tuple[torch.Tensor, Any, dict[str, torch.Tensor]]:
        """Codes, text with condition dropout, controls with random masks (all on the codec grid)."""
        codes = batch["codes"].long()
        text = self.text_encoder.encode(batch["caption"]).to(codes.device)
        drop = torch.rand(len(text), generator=self.generator) < float(self.tcfg.get("text_dropout", 0.1))
        text = self.net.conditioner.drop_text(text, drop.to(codes.device))
        controls = {k: batch[k] for k in FRAME_FIELDS}
        controls.update(random_control_masks({k: batch[k] for k in MASK_KEYS}, self.generator, **self.tcfg.get("control_dropout", {})))
        return codes, text, controls

    def loss_on(self, batch: dict[str, Any]) -> torch.Tensor:
        codes, text, controls = self.prepare_batch(batch)
        if self.method == "lm":
            return lm_loss(self.net, codes, text, controls, batch.get("valid"))
        return magnet_loss(self.net, codes, text, controls, batch.get("valid"), self.generator, int(self.tcfg.get("span", 3)))

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self.loss_on(batch)

    def configure_optimizers(self):
        return warmup_cosine_adamw([p for p in self.net.parameters() if p.requires_grad], self.tcfg, lambda: self.step_count)

    def export_weights(self) -> dict[str, torch.Tensor]:
        dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[self.tcfg.get("export_dtype", "float32")]
        return {k: v.detach().to(dtype).contiguous() for k, v in self.net.state_dict().items()}


class _TokenTask(Task):
    """Shared by the two token tasks: codec resolution, data, step counting, validation, export."""

    method = "lm"
    defaults = {"data": {"source": "corpus", "tokens": None, "synthetic_clips": 64, "val_clips": 8, "controls": "extracted"}}

    def build_module(self, config: dict) -> torch.nn.Module:
        resolve_codec(config)
        return TokenModule(config, self.method)

    def train_data(self, config: dict, module: Any = None) -> DataSpec:
        rep = resolve_codec(config)
        return DataSpec(build_token_dataset(config, rep, "train"), int(config.get("data", {}).get("batch_size", 8)), collate)

    def after_step(self, module: Any) -> None:
        module.step_count += 1

    def validate(self, module: Any, config: dict) -> dict[str, float]:
        """The loss on fixed held-out clips (synthetic clips of another seed, or the tokens' valid split), reseeded per batch."""
        return held_out_loss(_inner(module), lambda: _val_batches(config))

    def export(self, module: Any, config: dict, progress: Any) -> tuple[dict[str, torch.Tensor], dict]:
        return _inner(module).export_weights(), {**config, "trained": {"steps": progress.step, "minutes": round(progress.elapsed_s / 60, 1)}}


def _val_batches(config: dict) -> list[dict[str, Any]]:
    data = config.get("data", {})
    n, batch = int(data.get("val_clips", 8)), int(data.get("batch_size", 8))
    if n <= 0:
        return []
    try:
        ds = build_token_dataset(config, resolve_codec(config), "valid")
    except CadenzaError:
        return []  # no held-out split encoded: no validation
    items = [ds[i] for i in range(min(n, len(ds)))]
    return [collate(items[i : i + batch]) for i in range(0, len(items), batch)]


@register_task("lm")
class LMTask(_TokenTask):
    """Autoregressive token LM over codec tokens (``cadenza.generators.tokens.lm``)."""

    name, config_kind, method = "lm", "lm", "lm"


@register_task("magnet")
class MagnetTask(_TokenTask):
    """MAGNeT masked token model over codec tokens (``cadenza.generators.tokens.magnet``)."""

    name, config_kind, method = "magnet", "magnet", "magnet"
