"""Training the instrument-family classifier (``cadenza.eval.instruments``): the second instrument judge.

Targets come from the corpus manifest's ``programs`` (the GM programs of a clip's parts, melody
first; drums are never in it): a multi-hot *presence* vector over the families and the *lead*
family of ``programs[0]``. The loss is binary cross-entropy on presence plus cross-entropy on
the lead (``train.lead_weight``). As for CLAP (``cadenza.train.clap``, whose corpus loader this
reuses) every clip's log-mel is read once into memory and a step is a batch of random crops
with a random gain, so a shared CPU core trains it in minutes.

Validation scores whole clips of the valid split (lead accuracy, presence mAP / F1, and the
judge's recognised rate against each clip's own caption with either head); "best" is the
highest lead-family accuracy. The exported folder's ``config.json`` records the valid and test
numbers and ``judge.head``: the head with the higher recognised rate on valid.

    nice cadenza train instruments small --out runs/instruments     # ~18 min on one thread
    cadenza train instruments debug --out runs/instruments-debug   # synthetic tones, seconds
"""

from __future__ import annotations

import math
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

from cadenza.audio.format import SAMPLE_RATE
from cadenza.audio.mel import LOG_MEL_MIN, MelSpectrogram
from cadenza.errors import CadenzaError
from cadenza.eval.instruments import (
    DEFAULT_VOCABULARY, FAMILY_NAMES, MODEL_KIND, MODEL_TYPE, InstrumentClassifier, InstrumentNet, classification_metrics, program_targets,
)
from cadenza.registry import register_task
from cadenza.train.tasks import DataSpec, Task, _inner
from cadenza.train.schedule import warmup_cosine

LN_DB = math.log(10) / 20  # a gain of g dB adds g * LN_DB to a natural-log magnitude
SPLIT_SEED = {"train": 0, "valid": 1_000_003, "test": 2_000_006}


# ---------------------------------------------------------------------------------------------- data
@dataclass
class InstrumentCorpus:
    """One split in memory: log-mels (float16), presence targets (N, F), lead targets (N,), first captions, ids."""

    mels: list[Tensor]
    presence: np.ndarray
    lead: np.ndarray
    captions: list[str]
    ids: list[str]

    def __len__(self) -> int:
        return len(self.mels)


_CORPORA: dict[tuple, InstrumentCorpus] = {}  # (folder, split, limit, families) -> corpus: the best export rebuilds the module


def load_instrument_corpus(folder: str | Path, split: str, families: tuple[str, ...] = FAMILY_NAMES, max_clips: int | None = None) -> InstrumentCorpus:
    """One split of a data set (its feature cache when built, else the audio), with targets from ``programs``."""
    key = (str(Path(folder).resolve()), split, max_clips, families)
    if key in _CORPORA:
        return _CORPORA[key]
    from cadenza.data.manifest import read_manifest
    from cadenza.train.clap import load_corpus

    base = load_corpus(folder, split, max_clips)
    by_id = {r["id"]: r for r in read_manifest(folder, split)}
    programs = [list(by_id[i].get("programs") or []) if i in by_id else [] for i in base.ids]
    presence, lead = program_targets(programs, families)
    keep = np.flatnonzero(presence.any(axis=1))  # a clip without a known melodic program teaches nothing
    if keep.size == 0:
        raise CadenzaError(f"split '{split}' of {folder} has no clip with known GM programs", "the classifier trains on rendered corpora (cadenza data build)")
    corpus = InstrumentCorpus(
        [base.mels[i] for i in keep], presence[keep], lead[keep], [base.captions[i][0] for i in keep], [base.ids[i] for i in keep]
    )
    _CORPORA[key] = corpus
    return corpus


def synthetic_corpus(n: int, n_frames: int, seed: int, families: tuple[str, ...] = FAMILY_NAMES) -> InstrumentCorpus:
    """Debug/test data: each family is a harmonic tone in its own register, a clip mixes one to
    three of them with the first (the lead) 6 dB louder; captions name them. Not music: it
    exists so the task trains (and its loss falls) without a corpus."""
    rng = np.random.default_rng(seed)
    n_fam = len(families)
    n_samples = (n_frames - 1) * 256
    t = np.arange(n_samples) / SAMPLE_RATE
    base = 90.0 * 1.3 ** np.arange(n_fam)  # family k's fundamental
    harmonics = np.arange(1, 4)
    mel = MelSpectrogram()
    mels, presence, lead, captions = [], np.zeros((n, n_fam), np.float32), np.zeros(n, np.int64), []
    for i in range(n):
        chosen = rng.choice(n_fam, size=int(rng.integers(1, 4)), replace=False)
        gains = np.where(np.arange(chosen.size) == 0, 0.2, 0.1)[:, None, None]
        f0 = base[chosen] * rng.uniform(0.97, 1.03, chosen.size)
        tones = np.sin(2 * np.pi * f0[:, None, None] * harmonics[None, :, None] * t[None, None, :]) / harmonics[None, :, None]
        audio = (gains * tones).sum(axis=(0, 1)).astype(np.float32)
        with torch.inference_mode():
            mels.append(mel(torch.from_numpy(audio)).half())
        presence[i, chosen] = 1.0
        lead[i] = chosen[0]
        captions.append("played on " + " and ".join(families[c] for c in chosen))
    return InstrumentCorpus(mels, presence, lead, captions, [f"synth-{seed}-{i}" for i in range(n)])


class InstrumentBatches(IterableDataset):
    """Endless batches of (mel crops, presence, lead): clips shuffled per epoch, random crop and gain."""

    def __init__(self, corpus: InstrumentCorpus, batch_size: int, crop_frames: int, gain_db: float, seed: int) -> None:
        if len(corpus) < 1:
            raise CadenzaError("the instrument classifier needs training clips, got none", "use a bigger data set")
        self.corpus, self.batch_size, self.crop, self.gain_db, self.seed = corpus, min(batch_size, len(corpus)), crop_frames, gain_db, seed

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        rng = np.random.default_rng(self.seed)
        n = len(self.corpus)
        presence, lead = torch.from_numpy(self.corpus.presence), torch.from_numpy(self.corpus.lead)
        while True:
            order = rng.permutation(n)
            for k in range(0, n - self.batch_size + 1, self.batch_size):
                idx = order[k : k + self.batch_size]
                mel = torch.full((len(idx), self.corpus.mels[0].shape[0], self.crop), LOG_MEL_MIN)
                for j, i in enumerate(idx):
                    m = self.corpus.mels[i]
                    start = int(rng.integers(0, max(m.shape[-1] - self.crop, 0) + 1))
                    piece = m[:, start : start + self.crop].float()
                    mel[j, :, : piece.shape[-1]] = piece
                gain = torch.from_numpy(rng.uniform(-self.gain_db, self.gain_db, (len(idx), 1, 1))).float() * LN_DB
                index = torch.from_numpy(idx)
                yield torch.clamp(mel + gain, min=LOG_MEL_MIN), presence[index], lead[index]


# ---------------------------------------------------------------------------------------------- module
def instrument_loss(presence_logits: Tensor, lead_logits: Tensor, presence: Tensor, lead: Tensor, lead_weight: float = 1.0) -> tuple[Tensor, Tensor, Tensor]:
    """(total, presence BCE, lead CE); clips without a lead target (-1) add nothing to the CE."""
    bce = F.binary_cross_entropy_with_logits(presence_logits, presence.float())
    has = lead >= 0
    ce = F.cross_entropy(lead_logits[has], lead[has], reduction="sum") / has.sum().clamp(min=1) if bool(has.any()) else lead_logits.sum() * 0.0
    return bce + lead_weight * ce, bce, ce


class InstrumentModule(L.LightningModule):
    """The classifier network; one BCE + CE step per batch."""

    def __init__(self, config: dict) -> None:
        super().__init__()
        self.config = config
        self.model = InstrumentNet(config["model"])
        self.register_buffer("step_count", torch.zeros((), dtype=torch.long))
        self.last_log: dict[str, float] = {}

    def lr_scale(self, step: int) -> float:
        """Linear warm-up, then cosine decay to 10 % at ``max_steps``."""
        t = self.config["train"]
        return warmup_cosine(step, int(t.get("warmup_steps", 50)), max(int(t["max_steps"]), 1), 0.1)

    def configure_optimizers(self):
        t = self.config["train"]
        decay = [p for p in self.model.parameters() if p.ndim > 1]
        other = [p for p in self.model.parameters() if p.ndim <= 1]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": t.get("weight_decay", 0.01)}, {"params": other, "weight_decay": 0.0}], lr=t["lr"])
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: self.lr_scale(int(self.step_count)))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def training_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> Tensor:
        mel, presence, lead = batch
        p, q = self.model(mel)
        loss, bce, ce = instrument_loss(p, q, presence, lead, float(self.config["train"].get("lead_weight", 1.0)))
        self.step_count += 1
        self.last_log = {"loss": float(loss.detach()), "bce": float(bce.detach()), "ce": float(ce.detach())}
        return loss


def evaluate_corpus(net: InstrumentNet, corpus: InstrumentCorpus, vocabulary: tuple[str, ...] = DEFAULT_VOCABULARY) -> dict[str, float]:
    """Whole-clip metrics of ``net`` on a split (``classification_metrics``, own captions as prompts)."""
    was = net.training
    net.eval()
    try:
        presence, lead = InstrumentClassifier(net).predict_mels(corpus.mels)
    finally:
        net.train(was)
    return classification_metrics(presence, lead, corpus.presence, corpus.lead, corpus.captions, net.families, vocabulary)


# --------------------------------------------------------------------------------------- the training task
@register_task("instruments")
class InstrumentsTask(Task):
    """Instrument-family classifier (``cadenza.train.instruments.InstrumentModule``)."""

    name, config_kind = "instruments", "instruments"
    defaults = {"data": {"source": "corpus", "corpus": "data/corpus-small", "synthetic_clips": 16, "val_clips": 16}}
    val_best, val_higher_is_better = "lead_acc", True

    def _corpus(self, config: dict, split: str = "train") -> InstrumentCorpus:
        t, data = config["train"], config.get("data", {})
        families = tuple(config["model"].get("families") or FAMILY_NAMES)
        if data.get("source") == "synthetic":
            n = int(data.get("synthetic_clips", 16)) if split == "train" else int(data.get("val_clips", 16))
            return synthetic_corpus(max(n, 1), max(int(t["crop_frames"]), 24), int(t.get("seed", 0)) + SPLIT_SEED[split], families)
        limit = t.get("max_clips") if split == "train" else t.get("max_valid_clips")
        return load_instrument_corpus(data.get("corpus", "data/corpus-small"), split, families, limit)

    def _held_out(self, module: Any, config: dict, split: str) -> InstrumentCorpus | None:
        cache = module.__dict__.setdefault("_cadenza_held_out", {})
        if split not in cache and int(config.get("data", {}).get("val_clips", 16)) == 0:
            cache[split] = None  # data.val_clips=0 switches held-out scoring off (as for every task)
        if split not in cache:
            try:
                cache[split] = self._corpus(config, split)
            except CadenzaError:
                cache[split] = None  # no such split: "best" by training loss, no test numbers
        return cache[split]

    def validate(self, module: Any, config: dict) -> dict[str, float]:
        """Whole clips of the valid split: lead accuracy, presence mAP / F1, recognised rates (own captions)."""
        m = _inner(module)
        valid = self._held_out(m, config, "valid")
        return evaluate_corpus(m.model, valid) if valid is not None else {}

    def build_module(self, config: dict) -> torch.nn.Module:
        module = InstrumentModule(config)
        module._cadenza_data = self._corpus(config)
        return module

    def train_data(self, config: dict, module: Any = None) -> DataSpec:
        if module is None:
            module = self.build_module(config)
        t = config["train"]
        ds = InstrumentBatches(_inner(module)._cadenza_data, int(t["batch_size"]), int(t["crop_frames"]), float(t.get("gain_db", 6.0)), int(t.get("seed", 0)))
        return DataSpec(ds, ds.batch_size, prebatched=True)

    def export(self, module: Any, config: dict, progress: Any) -> tuple[dict[str, torch.Tensor], dict]:
        """The network and a config recording valid and test numbers and the judge's head (chosen on valid)."""
        m = _inner(module)
        numbers = {}
        for split in ("valid", "test"):
            held = self._held_out(m, config, split)
            if held is not None:
                numbers[split] = evaluate_corpus(m.model, held)
        valid = numbers.get("valid", {})
        head = "lead" if valid.get("recognised_lead", -1.0) > valid.get("recognised_presence", -1.0) else "presence"
        data = config.get("data", {})
        cfg = {
            "kind": MODEL_KIND, "type": MODEL_TYPE, "name": config.get("name", "instruments"), "model": m.model.config,
            "train_step": progress.step,
            "judge": {
                "head": head, "vocabulary": list(DEFAULT_VOCABULARY),
                "head_chosen_by": "the higher recognised rate on the valid split, each clip judged against its own first caption",
            },
            **numbers,
            "trained_on": {
                "data": data.get("corpus") if data.get("source") != "synthetic" else "synthetic", "train_clips": len(m._cadenza_data),
                **{f"{s}_clips": int(n["n_clips"]) for s, n in numbers.items()},
                "minutes": round(float(getattr(progress, "elapsed_s", 0.0)) / 60, 1),
                "threads": torch.get_num_threads(),
            },
        }
        return m.model.state_dict(), cfg
