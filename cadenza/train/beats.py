"""Training the beat/downbeat TCN on the rendered corpus's exact score beats (CPU, minutes).

Every clip's canonical log-mel is read once from the corpus feature cache (computed from the
audio when there is no cache) and its beats from the clip's score controls (``beats``: exact
times and downbeat flags). A step is a batch of whole clips with:

- a random tempo stretch (linear interpolation of the log-mel along time, beat times scaled
  with it), so tempi between the corpus's are seen too;
- a random gain (a shift of the log-mel, clamped at the floor);
- optionally (``freq_shift_max``, ``freq_mask_max`` / ``freq_mask_prob``) a shift of the log-mel
  along its bands and one band masked to the floor (timbre and register variety);
- a few synthetic click tracks (accented downbeats, random timbre, meter and tempo) and
  beat-free clips (silence, steady noise), so the tracker also knows a metronome and knows
  when there is no beat at all.

Targets are ``beats_to_activations`` of the beats (1 on the beat frame, 0.5 on its
neighbours); the loss is binary cross-entropy with beats and downbeats up-weighted (they are
sparse) and padded frames ignored. The valid split is scored with the full tracker (mir_eval
F-measure, 70 ms) and the best model folder kept.

Train with the one runner (docs/training.md); the valid split's F1 picks the "best" checkpoint:

    nohup nice cadenza train beats small data.corpus=data/corpus-small train.max_minutes=20 --out runs/beats/small &
    # the same, resuming by itself when the folder holds checkpoints:
    nohup nice python -m cadenza.train.beats --data data/corpus-small --out runs/beats/small --max-minutes 20 &
    # fine-tune a trained tracker (same shape) instead of starting from random weights:
    nohup nice cadenza train beats medium train.init_from=cadenza/weights/beats train.lr=1e-3 --out runs/beats/ft &

The run folder holds ``best/`` (the best model folder, loadable with ``NeuralBeatTracker.load``),
``model/`` (the last one), ``checkpoints/`` and the logs. ``python -m cadenza.train.beats --ship
runs/beats/small/best`` copies a model folder to the shipped ``cadenza/weights/beats`` with the
current post-filter settings.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import mir_eval
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import IterableDataset

from cadenza.audio.format import FRAME_RATE, SAMPLE_RATE
from cadenza.audio.mel import LOG_MEL_MIN, MelSpectrogram
from cadenza.controls.base import ControlSet, beats_to_activations
from cadenza.controls.beat_tracker import MODEL_KIND, MODEL_TYPE, BeatTCN, NeuralBeatTracker
from cadenza.errors import CadenzaError
from cadenza.registry import register_task
from cadenza.train.tasks import DataSpec, Task, _inner
from cadenza.train.schedule import warmup_cosine

LN_DB = math.log(10) / 20  # a gain of g dB adds g * LN_DB to a natural-log magnitude


# ---------------------------------------------------------------------------------------------- data
@dataclass
class BeatCorpus:
    """Clips in memory: log-mels (n_mels, T) float16, beats (K, 2) float64, ids and drum flags."""

    mels: list[Tensor]
    beats: list[np.ndarray]
    ids: list[str] = field(default_factory=list)
    drums: list[bool] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.mels)


UNCACHED_NOTICE_CLIPS = 500  # clips without cached mels above which loading says so and shows progress


def load_beat_corpus(folder: str | os.PathLike, split: str, max_clips: int | None = None) -> BeatCorpus:
    """One split: mels from the feature cache (or the audio), beats from each clip's score controls."""
    from cadenza.data.cache import cache_dir, load_index
    from cadenza.data.manifest import read_manifest

    folder = Path(folder)
    rows = {r["id"]: r for r in read_manifest(folder, split) if r["controls"].get("score")}
    if not rows:
        raise CadenzaError(f"split '{split}' of {folder} has no clips with score controls", "beats are learnt from rendered scores; build the corpus with 'cadenza data build'")
    mels: dict[str, Tensor] = {}
    try:
        index = load_index(folder, "score")
    except CadenzaError:
        index = None
    if index is not None:
        from safetensors import safe_open

        cdir = cache_dir(folder, "score")
        for name in index["splits"].get(split, {}).get("shards", []):
            meta = json.loads((cdir / f"{name}.json").read_text())
            with safe_open(str(cdir / f"{name}.safetensors"), framework="pt") as f:
                mel, offsets = f.get_tensor("mel"), f.get_tensor("offsets").tolist()
            for i, cid in enumerate(meta["ids"]):
                if cid in rows:
                    mels[cid] = mel[:, offsets[i] : offsets[i + 1]].clone()
    ids = sorted(rows)[:max_clips] if max_clips else sorted(rows)
    missing = [cid for cid in ids if cid not in mels]
    if missing:
        from cadenza.audio.io import load_audio
        from cadenza.cli.progress import progress_bar

        front = MelSpectrogram()
        # minutes on a large corpus: say why the run has not started, and how to pay it only once
        quiet = len(missing) < UNCACHED_NOTICE_CLIPS
        if not quiet:
            print(f"beats: {len(missing)} clips of {folder} ({split}) have no feature cache; computing their mels "
                  f"from the audio ('cadenza data cache {folder}' stores them once)", file=sys.stderr, flush=True)
        with torch.inference_mode(), progress_bar(f"mels ({split})", len(missing), quiet=quiet) as bar:
            for cid in missing:
                mels[cid] = front(torch.from_numpy(load_audio(folder / rows[cid]["path"]))).half()
                bar.advance()
    beats = [ControlSet.load(folder / rows[cid]["controls"]["score"]).beats for cid in ids]
    return BeatCorpus([mels[cid] for cid in ids], beats, ids, [bool(rows[cid].get("drums", False)) for cid in ids])


def synth_clicks(n: int, seconds: float, seed: int) -> BeatCorpus:
    """``n`` metronome-like clips: accented downbeats, random tempo, meter, timbre and level.

    A quarter of them carry no beat at all (silence or steady noise) with empty beat lists.
    """
    rng = np.random.default_rng(seed)
    length = int(seconds * SAMPLE_RATE)
    audio = np.zeros((n, length), np.float32)
    beats: list[np.ndarray] = []
    t = np.arange(length) / SAMPLE_RATE
    for i in range(n):
        kind = rng.random()
        if kind < 0.25:  # no beat: silence, or noise that never changes
            if kind > 0.1:
                audio[i] = rng.normal(0, 10 ** rng.uniform(-3.5, -1.5), length)
            beats.append(np.zeros((0, 2)))
            continue
        bpm = float(np.exp(rng.uniform(np.log(60), np.log(180))))
        meter = int(rng.choice([2, 3, 4]))
        period = 60.0 / bpm
        times = rng.uniform(0, period) + np.arange(int(seconds / period) + 1) * period
        times = times[times < seconds - 0.05]
        flags = (np.arange(times.size) % meter == 0).astype(np.float64)
        flags = np.roll(flags, int(rng.integers(meter)))  # the clip may start mid-bar
        dur = int(rng.uniform(0.015, 0.06) * SAMPLE_RATE)
        env = np.exp(-np.arange(dur) / (rng.uniform(0.003, 0.02) * SAMPLE_RATE))
        f_beat = rng.uniform(400, 3000)
        f_down = f_beat * rng.choice([1.0, 1.5, 2.0])
        noisy = rng.random() < 0.3
        for tb, down in zip(times, flags):
            s = int(round(tb * SAMPLE_RATE))
            m = min(dur, length - s)
            tone = rng.normal(0, 1, m) if noisy else np.sin(2 * np.pi * (f_down if down else f_beat) * np.arange(m) / SAMPLE_RATE)
            audio[i, s : s + m] += (1.0 if down else rng.uniform(0.25, 0.6)) * env[:m] * tone
        if rng.random() < 0.3:  # a sustained pad under the clicks
            audio[i] += 0.1 * np.sin(2 * np.pi * rng.uniform(100, 600) * t)
        audio[i] *= 10 ** rng.uniform(-1.5, -0.2) / max(np.abs(audio[i]).max(), 1e-9)
        beats.append(np.stack([times, flags], axis=1))
    with torch.inference_mode():
        mel = MelSpectrogram()(torch.from_numpy(audio)).half()
    return BeatCorpus(list(mel), beats, [f"synth-{i}" for i in range(n)], [True] * n)


def _spectral_augment(rng: np.random.Generator, mel: Tensor, train: dict) -> Tensor:
    """Optional timbre augmentation: a shift of the log-mel along its bands and one masked band.

    The held-out works without drums are where the tracker is weakest (their beats and bar lines
    are read from the instruments' register and timbre), so these make the same rhythm appear in
    other registers and with a missing band; both are off (0) unless the config asks, and draw no
    random numbers then, so older configs keep their exact data stream.
    """
    shift_max, mask_max = int(train.get("freq_shift_max", 0)), int(train.get("freq_mask_max", 0))
    if shift_max > 0:
        k = int(rng.integers(-shift_max, shift_max + 1))
        if k:
            shifted = torch.full_like(mel, LOG_MEL_MIN)
            if k > 0:
                shifted[k:] = mel[:-k]
            else:
                shifted[:k] = mel[-k:]
            mel = shifted
    if mask_max > 0 and rng.random() < float(train.get("freq_mask_prob", 0.5)):
        width = int(rng.integers(1, mask_max + 1))
        lo = int(rng.integers(0, max(mel.shape[0] - width, 0) + 1))
        mel = mel.clone()
        mel[lo : lo + width] = LOG_MEL_MIN
    return mel


class BeatBatches(IterableDataset):
    """Endless batches (log-mel (B, n_mels, L), targets (B, 2, L), valid (B, L)) with augmentation."""

    def __init__(self, corpus: BeatCorpus, synth: BeatCorpus | None, train: dict, seed: int) -> None:
        if len(corpus) == 0:
            raise CadenzaError("no training clips", "use a bigger data set")
        self.corpus, self.synth, self.t, self.seed = corpus, synth, train, seed

    def _item(self, rng: np.random.Generator, mel: Tensor, beats: np.ndarray, frames: int) -> tuple[Tensor, Tensor, Tensor]:
        t = self.t
        mel = mel.float()
        times, flags = beats[:, 0].copy(), beats[:, 1]
        if rng.random() < t.get("stretch_prob", 0.5):
            factor = float(np.exp(rng.uniform(-1, 1) * np.log(t.get("stretch_max", 1.2))))
            n_new = max(2, int(round(mel.shape[-1] * factor)))
            scale = (n_new - 1) / max(mel.shape[-1] - 1, 1)  # align_corners maps frame i to i * scale
            mel = F.interpolate(mel[None], size=n_new, mode="linear", align_corners=True)[0]
            times = times * scale
        mel = _spectral_augment(rng, mel, t)
        n = mel.shape[-1]
        start = int(rng.integers(0, n - frames + 1)) if n > frames else 0
        take = min(frames, n - start)
        out = torch.full((mel.shape[0], frames), LOG_MEL_MIN)
        gain = float(rng.uniform(-1, 1) * t.get("gain_db", 6.0) * LN_DB)
        out[:, :take] = torch.clamp(mel[:, start : start + take] + gain, min=LOG_MEL_MIN)
        shifted = np.stack([times - start / FRAME_RATE, flags], axis=1)
        target = torch.from_numpy(beats_to_activations(shifted, frames)).T.contiguous()
        valid = torch.zeros(frames)
        valid[:take] = 1.0
        target[:, take:] = 0.0
        return out, target, valid

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        rng = np.random.default_rng(self.seed)
        bs, frames = min(int(self.t["batch_size"]), len(self.corpus)), int(self.t["crop_frames"])
        p_synth = float(self.t.get("synth_fraction", 0.0)) if self.synth is not None and len(self.synth) else 0.0
        while True:
            order = rng.permutation(len(self.corpus))
            for k in range(0, len(order) - bs + 1, bs):
                items = []
                for i in order[k : k + bs]:
                    src, j = (self.synth, int(rng.integers(len(self.synth)))) if rng.random() < p_synth else (self.corpus, int(i))
                    items.append(self._item(rng, src.mels[j], src.beats[j], frames))
                mel, target, valid = (torch.stack(x) for x in zip(*items))
                yield mel, target, valid


# ---------------------------------------------------------------------------------------------- loss / metrics
def beat_loss(logits: Tensor, target: Tensor, valid: Tensor, pos_weight: tuple[float, float] = (4.0, 8.0)) -> Tensor:
    """BCE over (B, 2, L) logits; frames near beats weighted up by ``pos_weight`` (per output), padding ignored."""
    pw = torch.tensor(pos_weight, dtype=logits.dtype)[None, :, None]
    weight = valid[:, None, :] * (1 + (pw - 1) * target)
    bce = F.binary_cross_entropy_with_logits(logits, target, weight=weight, reduction="sum")
    return bce / weight.sum().clamp(min=1.0)


def f_measure(reference: np.ndarray, estimate: np.ndarray, window: float = 0.07) -> float:
    """mir_eval beat F-measure (70 ms); 1.0 when both are empty (nothing to find, nothing found)."""
    if reference.size == 0 and estimate.size == 0:
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mir_eval warns on empty lists
        return float(mir_eval.beat.f_measure(np.sort(reference), np.sort(estimate), f_measure_threshold=window))


def evaluate_tracker(tracker: NeuralBeatTracker, corpus: BeatCorpus) -> dict[str, float]:
    """Mean beat and downbeat F1 over a corpus (whole clips, equal lengths batched)."""
    lengths = np.array([m.shape[-1] for m in corpus.mels])
    beat_f1 = np.zeros(len(corpus))
    down_f1 = np.zeros(len(corpus))
    from cadenza.controls.beat_tracker import activations_to_beats, sounding_frames

    for length in np.unique(lengths):
        idx = np.flatnonzero(lengths == length)
        for k in range(0, idx.size, 32):
            part = idx[k : k + 32]
            acts = tracker.activations_from_mel(torch.stack([corpus.mels[i].float() for i in part]))
            for i, act in zip(part, acts):
                sounding = sounding_frames(corpus.mels[i].float(), tracker.postfilter["silence_db"])
                est = activations_to_beats(act, tracker.postfilter, sounding)
                ref = corpus.beats[i]
                beat_f1[i] = f_measure(ref[:, 0], est[:, 0])
                down_f1[i] = f_measure(ref[ref[:, 1] > 0.5, 0], est[est[:, 1] > 0.5, 0])
    drums = np.array(corpus.drums, dtype=bool) if corpus.drums else np.zeros(len(corpus), bool)
    out = {"beat_f1": float(beat_f1.mean()), "downbeat_f1": float(down_f1.mean())}
    for name, sel in (("drums", drums), ("no_drums", ~drums)):
        if sel.any():
            out[f"beat_f1_{name}"] = float(beat_f1[sel].mean())
            out[f"downbeat_f1_{name}"] = float(down_f1[sel].mean())
    return out


# ---------------------------------------------------------------------------------------------- module
class BeatModule(L.LightningModule):
    """The TCN and its weighted BCE step."""

    def __init__(self, config: dict) -> None:
        super().__init__()
        self.config = config
        self.model = BeatTCN(config["model"])
        self.register_buffer("step_count", torch.zeros((), dtype=torch.long))
        self.last_log: dict[str, float] = {}

    def init_from(self, folder: str | os.PathLike) -> None:
        """Load a beat tracker model folder's weights into the TCN before step 0 (``train.init_from``).

        Fine-tuning the shipped tracker on a rebuilt corpus costs minutes where training from
        scratch costs the whole budget again; the architecture must match exactly (a TCN of
        another shape would silently keep half its layers at random init, so that is an error).
        """
        from cadenza.controls.beat_tracker import MODEL_KIND
        from cadenza.registry import read_model_folder

        try:
            state, saved, _ = read_model_folder(folder, kind=MODEL_KIND)
        except CadenzaError as err:
            raise CadenzaError(f"train.init_from: {err.message}", "pass a folder written by cadenza.train.beats, e.g. cadenza/weights/beats") from None
        ours = {k: v for k, v in self.model.config.items() if k != "dropout"}
        theirs = {k: v for k, v in BeatTCN(saved.get("model")).config.items() if k != "dropout"}
        if ours != theirs:
            diff = sorted(k for k in ours if ours[k] != theirs.get(k))
            raise CadenzaError(f"train.init_from: {folder} has another TCN shape (differs in {', '.join(diff)})", "use the config the weights were trained with (see their config.json 'model')")
        try:
            self.model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
        except RuntimeError as exc:
            raise CadenzaError(f"train.init_from: {folder} weights do not fit the TCN ({str(exc).splitlines()[0]})", "re-export the model with cadenza.train.beats") from None

    def lr_scale(self, step: int) -> float:
        """Linear warm-up, then cosine decay to 5 % at ``max_steps``."""
        t = self.config["train"]
        return warmup_cosine(step, int(t.get("warmup_steps", 50)), max(int(t["max_steps"]), 1), 0.05)

    def configure_optimizers(self):
        t = self.config["train"]
        opt = torch.optim.AdamW(self.model.parameters(), lr=t["lr"], weight_decay=t.get("weight_decay", 1e-4))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: self.lr_scale(int(self.step_count)))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def training_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> Tensor:
        mel, target, valid = batch
        loss = beat_loss(self.model(mel), target, valid, tuple(self.config["train"].get("pos_weight", (4.0, 8.0))))
        self.step_count += 1
        self.last_log = {"loss": float(loss.detach())}
        return loss


_HISTORY_KEYS = ("init_from", "lr", "warmup_steps", "max_steps", "stretch_prob", "stretch_max", "freq_shift_max", "freq_mask_max", "freq_mask_prob", "synth_fraction")


def training_history(folder: str | os.PathLike, depth: int = 8) -> list[dict]:
    """The training behind a model folder, newest stage first, as facts to ship with it.

    A fine-tuned tracker is several runs deep (``train.init_from``); each run folder knows its
    own settings, steps and wall time, and the folder it started from knows the rest. The chain
    is read before shipping, because the shipped folder itself is often the start of the chain
    and is about to be replaced.
    """
    folder = Path(folder)
    saved = json.loads((folder / "config.json").read_text())
    if "history" in saved:  # an already shipped model: its history was recorded when it shipped
        return list(saved["history"])
    run = folder.parent
    run_cfg = run / "config.json"
    if not run_cfg.exists() or not (run / "checkpoints").is_dir():
        # a bare model folder (an older shipped tracker): what its config says is all there is
        return [{k: saved[k] for k in ("name", "train_step", "shipped_from", "valid") if k in saved}]
    cfg = json.loads(run_cfg.read_text())
    t = cfg.get("train", {})
    step = int(saved.get("train_step", 0))
    elapsed = 0.0
    log = run / "train_log.jsonl"
    if log.exists():
        for line in log.read_text().splitlines():
            row = json.loads(line)
            if int(row.get("step", 0)) <= step and "elapsed_s" in row:
                elapsed = max(elapsed, float(row["elapsed_s"]))
    stage = {"run": str(run), "config": cfg.get("name"), "steps": step, "minutes": round(elapsed / 60, 1),
             "corpus": cfg.get("data", {}).get("corpus"), **{k: t[k] for k in _HISTORY_KEYS if t.get(k) is not None}}
    init = t.get("init_from")
    if init and depth > 0 and (Path(init) / "config.json").exists():
        return [stage, *training_history(init, depth - 1)]
    return [stage]


def ship(folder: str | os.PathLike, dest: str | os.PathLike | None = None, corpus: str | os.PathLike | None = None) -> Path:
    """Copy a trained model folder to the shipped location with the current post-filter settings.

    The post-filter is not learnt, so the shipped config takes this Cadenza's defaults (updated
    by the run's config overrides) rather than those frozen when the checkpoint was written. The
    config also records the training history (``training_history``) and, when the run's validation
    corpus (``data.val_corpus``, else ``data.corpus``; or ``corpus``) is at hand, the whole valid
    split's F1 under exactly the shipped post-filter.
    """
    from cadenza.controls.beat_tracker import DEFAULT_POSTFILTER, WEIGHTS_DIR

    tracker = NeuralBeatTracker.load(folder)
    saved = json.loads((Path(folder) / "config.json").read_text())
    run_config = Path(folder).parent / "config.json"
    run = json.loads(run_config.read_text()) if run_config.exists() else {}
    tracker.postfilter = {**DEFAULT_POSTFILTER, **run.get("postfilter", {})}
    extra = {k: v for k, v in saved.items() if k not in ("kind", "type", "model", "postfilter", "valid", "history", "best")}
    extra["history"] = training_history(folder)
    data = run.get("data", {})
    corpus = corpus if corpus is not None else data.get("val_corpus") or data.get("corpus")  # where the run chose "best"
    if corpus and (Path(corpus) / "manifest.jsonl").exists():
        valid = load_beat_corpus(corpus, "valid")
        extra["valid"] = {"corpus": str(corpus), "clips": len(valid), **evaluate_tracker(tracker, valid)}
    return tracker.save(dest if dest is not None else WEIGHTS_DIR, {**extra, "shipped_from": str(folder)})


def average_checkpoints(run: str | os.PathLike, last: int, out: str | os.PathLike) -> Path:
    """The mean of a run's last ``last`` checkpoints' weights (SWA, Izmailov et al. 2018), as a model folder.

    Why: late in a low-learning-rate run the valid F1 of single checkpoints jumps by ±0.02 from
    one evaluation to the next, and picking the highest of many such draws overstates it. An
    average of the checkpoints sits nearer the centre of the region the weights wander in, which
    tends to generalise better, and it is one model to score rather than a maximum over many.
    """
    from safetensors.torch import load_file

    steps = sorted((Path(run) / "checkpoints").glob("step-*"))
    steps = [d for d in steps if (d / "COMPLETE").exists() and (d / "model.safetensors").exists()][-int(last):]
    if len(steps) < 2:
        raise CadenzaError(f"{run}: fewer than 2 complete checkpoints to average", "train with checkpoint.keep_last of at least the number to average")
    total: dict[str, Tensor] = {}
    for d in steps:
        for key, value in load_file(d / "model.safetensors").items():
            if key.startswith("model."):
                total[key[len("model."):]] = total.get(key[len("model."):], 0) + value.double()
    weights = {k: (v / len(steps)).float() for k, v in total.items()}
    run_cfg = json.loads((steps[-1] / "config.json").read_text())
    tracker = NeuralBeatTracker(BeatTCN(run_cfg["model"]), {**run_cfg.get("postfilter", {})})
    tracker.model.load_state_dict(weights)
    meta = {"name": run_cfg.get("name"), "train_step": int(steps[-1].name.split("-")[-1]),
            "averaged": {"run": str(run), "checkpoints": [d.name for d in steps]}}
    return tracker.save(out, meta)


# --------------------------------------------------------------------------------------- the training task
@register_task("beats")
class BeatsTask(Task):
    """Beat/downbeat TCN (``cadenza.train.beats.BeatModule``)."""

    name, config_kind = "beats", "beats"
    # train.init_from: a model folder to fine-tune from (e.g. the shipped cadenza/weights/beats);
    # freq_shift_max / freq_mask_max: band-shift and band-mask augmentation (off unless set)
    defaults = {
        "data": {"source": "corpus", "corpus": "data/corpus-small", "val_corpus": None, "synthetic_clips": 8, "val_clips": 32},
        "train": {"init_from": None, "freq_shift_max": 0, "freq_mask_max": 0, "freq_mask_prob": 0.5},
    }
    val_best, val_higher_is_better = "f1", True  # beat F1 + downbeat F1 of the full tracker, as the old loop chose

    def build_module(self, config: dict) -> torch.nn.Module:
        return BeatModule(config)

    def train_data(self, config: dict, module: Any = None) -> DataSpec:
        t, data = config["train"], config.get("data", {})
        seed = int(t.get("seed", 0))
        if data.get("source") == "synthetic":
            corpus = synth_clicks(int(data.get("synthetic_clips", 8)), float(t.get("synth_seconds", 2.0)), seed)
        else:
            corpus = load_beat_corpus(data.get("corpus", "data/corpus-small"), "train", t.get("max_clips"))
        synth = synth_clicks(t["synth_clips"], t.get("synth_seconds", 6.0), seed + 1) if t.get("synth_clips") else None
        return DataSpec(BeatBatches(corpus, synth, t, seed), int(t["batch_size"]), prebatched=True)

    def prepare(self, module: Any, spec: DataSpec, config: dict) -> None:
        """``train.init_from``: start a fresh run from a trained model folder (a resume has its own weights)."""
        folder = config["train"].get("init_from")
        if folder:
            _inner(module).init_from(folder)

    def validate(self, module: Any, config: dict) -> dict[str, float]:
        """Beat and downbeat F1 (mir_eval, 70 ms) of the full tracker on the valid split of ``data.val_corpus`` (default: the corpus)
        (click tracks of another seed for synthetic data); ``f1`` is their sum."""
        m, t, data = _inner(module), config["train"], config.get("data", {})
        if getattr(m, "_cadenza_val", None) is None:
            n = int(data.get("val_clips", 32))
            if n <= 0:
                m._cadenza_val = []
            elif data.get("source") == "synthetic":
                m._cadenza_val = synth_clicks(n, float(t.get("synth_seconds", 2.0)), int(t.get("seed", 0)) + 1_000_003)
            else:
                try:
                    # data.val_corpus: validate on another corpus's valid split (e.g. train on the full
                    # preset, choose on corpus-small's valid split like the shipped model); splits are by work
                    # everywhere (split_for), so no valid work is in either train split
                    val_corpus = data.get("val_corpus") or data.get("corpus", "data/corpus-small")
                    m._cadenza_val = load_beat_corpus(val_corpus, "valid", t.get("max_valid_clips") or n)
                except CadenzaError:
                    m._cadenza_val = []  # no valid split: "best" by training loss
        if not m._cadenza_val:
            return {}
        metrics = evaluate_tracker(NeuralBeatTracker(m.model, config.get("postfilter")), m._cadenza_val)
        return {"f1": metrics["beat_f1"] + metrics["downbeat_f1"], **metrics}

    def export(self, module: Any, config: dict, progress: Any) -> tuple[dict[str, torch.Tensor], dict]:
        cfg = {"kind": MODEL_KIND, "type": MODEL_TYPE, "model": module.model.config, "postfilter": config.get("postfilter"), "train_step": progress.step, "name": config.get("name", "beats")}
        return module.model.state_dict(), cfg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cadenza.train.beats", description="Train the beat/downbeat TCN on CPU.")
    parser.add_argument("--data", default=None, help="rendered data set folder (manifest.jsonl with score controls; ideally a feature cache)")
    parser.add_argument("--out", default=None, help="run folder (resumes if it holds checkpoints)")
    parser.add_argument("--config", default="small", help="shipped config name or a .json path")
    parser.add_argument("--max-minutes", type=float, default=None, help="wall-clock budget (default: the config's)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--ship", metavar="MODEL_FOLDER", default=None, help="instead of training: copy a trained model folder to cadenza/weights/beats")
    parser.add_argument("--ship-to", default=None, help="with --ship: another destination folder (default: cadenza/weights/beats)")
    parser.add_argument("--average", metavar="RUN", default=None, help="instead of training: average RUN's last --last checkpoints into --out")
    parser.add_argument("--last", type=int, default=10, help="with --average: how many checkpoints")
    parser.add_argument("overrides", nargs="*", help="config overrides such as train.batch_size=8")
    args = parser.parse_args(argv)
    if args.average or args.ship:  # instead of training
        try:
            if args.average:
                print(f"saved {average_checkpoints(args.average, args.last, args.out or Path(args.average) / 'averaged')}")
            else:
                print(f"shipped {ship(args.ship, args.ship_to, args.data)}")
        except CadenzaError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        return 0
    if not args.data or not args.out:
        parser.error("--data and --out are needed to train")
    try:
        from cadenza.train.runner import fit_folder

        folder = fit_folder("beats", args.config, [f"data.corpus={args.data}", *args.overrides], args.out, args.max_minutes, args.threads)
    except CadenzaError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"saved {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
