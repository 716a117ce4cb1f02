"""Training the small CLAP model: symmetric InfoNCE over (log-mel crop, caption) pairs.

Kept cheap for a shared CPU: every clip's log-mel is read once into memory (from the corpus
feature cache when it exists, else computed from the audio), every caption is encoded once by
the frozen text encoder, and a step is a batch of random crops with a random caption each.

Clips of one arrangement often share a caption; two such clips in a batch are not negatives of
each other, so the targets are **multi-positive**: row i spreads its probability evenly over
every column whose caption text equals its own (plain InfoNCE when captions are distinct).

Train with the one runner (docs/training.md):

    nohup nice cadenza train clap small data.corpus=data/corpus-small train.max_minutes=28 --out runs/clap/small &
    # the same, resuming by itself when the folder holds checkpoints:
    nohup nice python -m cadenza.train.clap --data data/corpus-small --out runs/clap/small --max-minutes 28 &

The run folder holds ``model/`` (a CLAP model folder, loadable with ``cadenza.eval.clap.Clap.load``),
``checkpoints/`` and the logs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import IterableDataset

from cadenza.audio.mel import LOG_MEL_MIN, MelSpectrogram
from cadenza.conditioning.text import TextEncoder
from cadenza.errors import CadenzaError
from cadenza.eval.clap import MODEL_KIND, MODEL_TYPE, Clap, ClapModel, retrieval_metrics
from cadenza.registry import register_task
from cadenza.train.tasks import DataSpec, Task, _inner
from cadenza.train.schedule import warmup_cosine

LN_DB = math.log(10) / 20  # a gain of g dB adds g * LN_DB to a natural-log magnitude


# ---------------------------------------------------------------------------------------------- data
@dataclass
class ClapCorpus:
    """Clips of one split in memory: log-mels (float16), captions, and ids."""

    mels: list[Tensor]
    captions: list[list[str]]
    ids: list[str]

    def __len__(self) -> int:
        return len(self.mels)


def load_corpus(folder: str | os.PathLike, split: str, max_clips: int | None = None) -> ClapCorpus:
    """One split of a data set, from its feature cache when built, else from the audio files."""
    from cadenza.data.cache import cache_dir, load_index
    from cadenza.data.manifest import read_manifest

    folder = Path(folder)
    for source in ("score", "extracted"):
        try:
            index = load_index(folder, source)
        except CadenzaError:
            continue
        return _corpus_from_cache(cache_dir(folder, source), index, split, max_clips)
    rows = read_manifest(folder, split)
    if not rows:
        raise CadenzaError(f"split '{split}' of {folder} has no clips", "use another split or a bigger data set")
    rows = rows[:max_clips] if max_clips else rows
    from cadenza.audio.io import load_audio

    mel = MelSpectrogram()
    mels = []
    with torch.inference_mode():
        for r in rows:
            mels.append(mel(torch.from_numpy(load_audio(folder / r["path"]))).half())
    return ClapCorpus(mels, [list(r["captions"]) or [r["caption"]] for r in rows], [r["id"] for r in rows])


def _corpus_from_cache(folder: Path, index: dict, split: str, max_clips: int | None) -> ClapCorpus:
    from safetensors import safe_open

    shards = index["splits"].get(split, {}).get("shards", [])
    if not shards:
        raise CadenzaError(f"split '{split}' of the cache in {folder} has no clips", "use another split or a bigger data set")
    mels, captions, ids = [], [], []
    for name in shards:
        meta = json.loads((folder / f"{name}.json").read_text())
        with safe_open(str(folder / f"{name}.safetensors"), framework="pt") as f:
            mel = f.get_tensor("mel")  # (n_mels, ΣT) float16
            offsets = f.get_tensor("offsets").tolist()
        for i, cid in enumerate(meta["ids"]):
            mels.append(mel[:, offsets[i] : offsets[i + 1]].clone())
            captions.append(list(meta["captions"][i]))
            ids.append(cid)
            if max_clips and len(ids) >= max_clips:
                return ClapCorpus(mels, captions, ids)
    return ClapCorpus(mels, captions, ids)


def encode_captions(encoder: TextEncoder, captions: list[list[str]], batch_size: int = 64) -> tuple[Tensor, dict[str, int]]:
    """Every distinct caption once → (U, text_dim) pooled vectors and a text → row map."""
    unique = list(dict.fromkeys(c for caps in captions for c in caps))
    rows = [encoder.encode(unique[k : k + batch_size]).pooled for k in range(0, len(unique), batch_size)]
    return torch.cat(rows).float(), {c: i for i, c in enumerate(unique)}


class CropBatches(IterableDataset):
    """Endless batches of (mel crops, caption rows): clips shuffled per epoch, random crop/caption/gain."""

    def __init__(self, corpus: ClapCorpus, caption_rows: dict[str, int], batch_size: int, crop_frames: int, gain_db: float, seed: int) -> None:
        if len(corpus) < 2:
            raise CadenzaError(f"contrastive training needs at least 2 clips, got {len(corpus)}", "use a bigger data set")
        self.corpus, self.rows = corpus, caption_rows
        self.batch_size, self.crop, self.gain_db, self.seed = min(batch_size, len(corpus)), crop_frames, gain_db, seed

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        rng = np.random.default_rng(self.seed)
        n = len(self.corpus)
        while True:
            order = rng.permutation(n)
            for k in range(0, n - self.batch_size + 1, self.batch_size):
                idx = order[k : k + self.batch_size]
                mel = torch.full((len(idx), self.corpus.mels[0].shape[0], self.crop), LOG_MEL_MIN)
                caps = torch.empty(len(idx), dtype=torch.long)
                for j, i in enumerate(idx):
                    m = self.corpus.mels[i]
                    start = int(rng.integers(0, max(m.shape[-1] - self.crop, 0) + 1))
                    piece = m[:, start : start + self.crop].float()
                    mel[j, :, : piece.shape[-1]] = piece
                    options = self.corpus.captions[i]
                    caps[j] = self.rows[options[int(rng.integers(len(options)))]]
                gain = torch.from_numpy(rng.uniform(-self.gain_db, self.gain_db, (len(idx), 1, 1))).float() * LN_DB
                yield torch.clamp(mel + gain, min=LOG_MEL_MIN), caps


# ---------------------------------------------------------------------------------------------- loss
def contrastive_loss(logits: Tensor, caption_ids: Tensor) -> Tensor:
    """Symmetric InfoNCE with multi-positive targets (equal captions are positives of each other)."""
    same = (caption_ids[:, None] == caption_ids[None, :]).float()
    targets = same / same.sum(dim=1, keepdim=True)
    loss_a = -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
    loss_t = -(targets * F.log_softmax(logits.T, dim=1)).sum(dim=1).mean()
    return (loss_a + loss_t) / 2


# ---------------------------------------------------------------------------------------------- module
class ClapModule(L.LightningModule):
    """The CLAP model with its frozen caption table; one InfoNCE step per batch."""

    def __init__(self, config: dict, caption_table: Tensor) -> None:
        super().__init__()
        self.config = config
        self.model = ClapModel(config["model"])
        self.register_buffer("captions", caption_table, persistent=False)
        self.register_buffer("step_count", torch.zeros((), dtype=torch.long))
        self.last_log: dict[str, float] = {}

    def lr_scale(self, step: int) -> float:
        """Linear warm-up, then cosine decay to 10 % at ``max_steps``."""
        t = self.config["train"]
        return warmup_cosine(step, int(t.get("warmup_steps", 50)), max(int(t["max_steps"]), 1), 0.1)

    def configure_optimizers(self):
        t = self.config["train"]
        decay = [p for n, p in self.model.named_parameters() if p.ndim > 1]
        other = [p for n, p in self.model.named_parameters() if p.ndim <= 1]  # norms, biases, temperature
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": t.get("weight_decay", 0.01)}, {"params": other, "weight_decay": 0.0}], lr=t["lr"])
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: self.lr_scale(int(self.step_count)))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        mel, caps = batch
        logits = self.model(mel, self.captions[caps])
        loss = contrastive_loss(logits, caps)
        self.step_count += 1
        self.last_log = {"loss": float(loss.detach()), "temperature": float(1.0 / self.model.scale().detach())}
        return loss


class _NoText(TextEncoder):
    """Placeholder text encoder for a ``Clap`` used only for audio embeddings during training."""

    name = "none"

    def __init__(self) -> None:
        super().__init__(0)

    def _encode_uncached(self, texts: list[str]) -> list[tuple[Tensor, Tensor]]:
        raise CadenzaError("this CLAP object was made for audio embeddings only", "load the saved model folder with Clap.load")


def eval_set(corpus: ClapCorpus, encoder: TextEncoder) -> tuple[list[Tensor], Tensor, np.ndarray]:
    """(mels, unique first-caption vectors, clip → caption row) for retrieval metrics."""
    firsts = [caps[0] for caps in corpus.captions]
    table, rows = encode_captions(encoder, [[c] for c in firsts])
    return [m.float() for m in corpus.mels], table, np.array([rows[c] for c in firsts])


def evaluate_retrieval(module: ClapModule, valid: tuple[list[Tensor], Tensor, np.ndarray]) -> dict[str, float]:
    """Text↔audio retrieval metrics (recall@k, median ranks) of the module on an ``eval_set``."""
    mels, caption_table, clip_caption = valid
    was_training = module.model.training
    module.model.eval()
    audio = Clap(module.model, text_encoder=_NoText()).embed_mels(mels)
    with torch.inference_mode():
        text = module.model.encode_text(caption_table).numpy()
    module.model.train(was_training)
    return retrieval_metrics(audio, text, clip_caption)


# --------------------------------------------------------------------------------------- the training task
@register_task("clap")
class ClapTask(Task):
    """Small CLAP text–audio model (``cadenza.train.clap.ClapModule``)."""

    name, config_kind = "clap", "clap"
    defaults = {"data": {"source": "corpus", "corpus": "data/corpus-small", "synthetic_clips": 8, "val_clips": 64}}
    val_best, val_higher_is_better = "t2a_r@10", True  # text→audio recall@10, the number the README reports

    def _corpus(self, config: dict, split: str = "train"):
        t, data = config["train"], config.get("data", {})
        if data.get("source") == "synthetic":
            from cadenza.train.generator import SyntheticClips

            n = int(data.get("synthetic_clips", 8)) if split == "train" else int(data.get("val_clips", 64))
            seed = int(t.get("seed", 0)) + (0 if split == "train" else 1_000_003)
            clips = SyntheticClips(n, max(int(t["crop_frames"]), 24), seed)
            items = [clips[i] for i in range(n)]
            return ClapCorpus([it["mel"].half() for it in items], [[it["caption"]] for it in items], [f"synth-{i}" for i in range(n)])
        limit = t.get("max_clips") if split == "train" else (t.get("max_valid_clips") or int(data.get("val_clips", 64)))
        return load_corpus(data.get("corpus", "data/corpus-small"), split, limit)

    def validate(self, module: Any, config: dict) -> dict[str, float]:
        """Retrieval on the corpus's valid split (synthetic: clips of another seed): recall@k both
        ways and median ranks, each clip's first caption as its text."""
        from cadenza.conditioning.text import build_text_encoder

        m = _inner(module)
        if getattr(m, "_cadenza_val", None) is None:
            m._cadenza_val = ()
            if int(config.get("data", {}).get("val_clips", 64)) > 0:
                try:
                    encoder = build_text_encoder(config["model"]["text_encoder"], config["model"]["text_dim"])
                    m._cadenza_val = eval_set(self._corpus(config, "valid"), encoder)
                except CadenzaError:
                    pass  # no valid split: "best" by training loss
        return evaluate_retrieval(m, m._cadenza_val) if m._cadenza_val else {}

    def build_module(self, config: dict) -> torch.nn.Module:
        from cadenza.conditioning.text import build_text_encoder

        corpus = self._corpus(config)
        encoder = build_text_encoder(config["model"]["text_encoder"], config["model"]["text_dim"])
        table, rows = encode_captions(encoder, corpus.captions)
        module = ClapModule(config, table)
        module._cadenza_data = (corpus, rows)  # the same corpus and caption rows feed train_data
        return module

    def train_data(self, config: dict, module: Any = None) -> DataSpec:
        if module is None:
            module = self.build_module(config)
        corpus, rows = _inner(module)._cadenza_data
        t = config["train"]
        ds = CropBatches(corpus, rows, int(t["batch_size"]), int(t["crop_frames"]), float(t.get("gain_db", 6.0)), int(t.get("seed", 0)))
        return DataSpec(ds, ds.batch_size, prebatched=True)

    def export(self, module: Any, config: dict, progress: Any) -> tuple[dict[str, torch.Tensor], dict]:
        cfg = {"kind": MODEL_KIND, "type": MODEL_TYPE, "name": config.get("name", "clap"), "model": module.model.config, "train_step": progress.step}
        return module.model.state_dict(), cfg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cadenza.train.clap", description="Train the small CLAP text–audio model on CPU.")
    parser.add_argument("--data", required=True, help="data set folder with manifest.jsonl (and ideally a feature cache)")
    parser.add_argument("--out", required=True, help="run folder (resumes if it holds checkpoints)")
    parser.add_argument("--config", default="small", help="shipped config name or a .json path")
    parser.add_argument("--max-minutes", type=float, default=None, help="wall-clock budget (default: the config's)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("overrides", nargs="*", help="config overrides such as train.batch_size=16")
    args = parser.parse_args(argv)
    try:
        from cadenza.train.runner import fit_folder

        folder = fit_folder("clap", args.config, [f"data.corpus={args.data}", *args.overrides], args.out, args.max_minutes, args.threads)
    except CadenzaError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"saved {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
