"""Training the generator (base UNet + ControlNet adapter) with Lightning, on a CPU.

``GeneratorModule`` is self-contained: built from a config dict, it owns the network, an EMA
copy, the text encoder (outside the state dict) and the noise schedule, and exposes
``training_step``, ``configure_optimizers`` and ``export_weights()``. Each step:

1. normalise the clip's log-mel to [-1, 1];
2. encode captions (LRU-cached per caption) and swap ~10 % for the learned null prompt (CFG);
3. drop a random subset of controls and, half the time, blank a random span of each kept one
   (``random_control_masks``) so any subset over any spans works at inference;
4. v-prediction loss at a random timestep of the cosine schedule.

Regimes (``train.mode``): ``joint`` trains base and adapter together (optionally after
``base_only_steps`` steps of the base alone, at which point the adapter is re-initialised as a
copy of the base encoder, as in ControlNet); ``adapter`` freezes a trained base loaded from
``train.init_from`` and trains only the adapter (the paper's regime); ``base`` trains the base
alone. Checkpoints are safetensors + JSON, written atomically every few minutes; ``--resume``
restores weights, EMA, optimizer state, step count and elapsed time.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader, Dataset, IterableDataset

from cadenza.audio import SAMPLE_RATE, MelSpectrogram, normalize_log_mel
from cadenza.checkpoint import load_model_folder, save_model_folder, save_safetensors_atomic
from cadenza.conditioning.controls import MASK_KEYS, random_control_masks
from cadenza.conditioning.text import build_text_encoder
from cadenza.config import write_json_atomic
from cadenza.controls.base import beats_to_activations
from cadenza.errors import CadenzaError
from cadenza.generators.diffusion import diffusion_loss, make_noise_scheduler
from cadenza.generators.model import build_generator

MODES = ("joint", "adapter", "base")
CONTROL_KEYS = ("melody", "melody_mask", "dynamics", "dynamics_mask", "rhythm", "rhythm_mask")
CKPT_DIR = "checkpoint"
MODEL_DIR = "model"


# ---------------------------------------------------------------------------------------- data
class SyntheticClips(Dataset):
    """Debug/test data: harmonic tones following random melodies, with exact controls.

    Each clip is a run of notes (random pitch, length and level); the melody control is each
    note's pitch class, dynamics its level in dBFS (RMS of the tone), rhythm one beat per
    note onset. Deterministic per index. Not music — it exists so the trainer can be tested
    without a corpus.
    """

    WORDS = ("calm", "bright", "dark", "fast", "slow", "soft", "loud", "organ", "flute", "piano")

    def __init__(self, n_clips: int = 16, n_frames: int = 64, seed: int = 0) -> None:
        self.n_clips, self.n_frames, self.seed = n_clips, n_frames, seed
        self.mel = MelSpectrogram()

    def __len__(self) -> int:
        return self.n_clips

    def __getitem__(self, idx: int) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, idx])
        T = self.n_frames
        n_samples = (T - 1) * 256
        n_notes = int(rng.integers(2, 6))
        bounds = np.sort(rng.choice(np.arange(8, T - 4), n_notes - 1, replace=False))
        starts = np.concatenate([[0], bounds])
        frame_note = np.searchsorted(starts, np.arange(T), side="right") - 1  # note index per frame
        pitches = rng.integers(60, 84, n_notes)
        levels_db = rng.uniform(-35, -12, n_notes)
        sample_note = np.minimum(np.arange(n_samples) / 256.0, T - 1).astype(int)
        f0 = 440.0 * 2 ** ((pitches[frame_note[sample_note]] - 69) / 12)
        amp = np.sqrt(2) * 10 ** (levels_db[frame_note[sample_note]] / 20)
        phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
        audio = (amp * (np.sin(phase) + 0.3 * np.sin(2 * phase)) / np.sqrt(1.09)).astype(np.float32)
        mel = self.mel(torch.from_numpy(audio))
        melody = np.zeros((T, 12), np.float32)
        melody[np.arange(T), pitches[frame_note] % 12] = 1
        beats = np.stack([starts * 256 / SAMPLE_RATE, (np.arange(n_notes) == 0).astype(float)], 1)
        ones = np.ones(T, np.float32)
        caption = " ".join(rng.choice(self.WORDS, 2, replace=False))
        return {
            "mel": mel, "caption": caption, "melody": torch.from_numpy(melody), "melody_mask": torch.from_numpy(ones),
            "dynamics": torch.from_numpy(levels_db[frame_note].astype(np.float32)), "dynamics_mask": torch.from_numpy(ones),
            "rhythm": torch.from_numpy(beats_to_activations(beats, T)), "rhythm_mask": torch.from_numpy(ones),
        }


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors; captions stay a list of strings."""
    out: dict[str, Any] = {"caption": [str(it["caption"]) for it in items]}
    for key in ("mel", *CONTROL_KEYS):
        out[key] = torch.stack([torch.as_tensor(np.asarray(it[key]), dtype=torch.float32) for it in items])
    if "valid" in items[0]:  # 0 on padding frames of clips shorter than the crop
        out["valid"] = torch.stack([torch.as_tensor(np.asarray(it["valid"]), dtype=torch.float32) for it in items])
    return out


def build_dataset(config: dict):
    """The training data a config names (``data.source``: 'corpus' or 'synthetic')."""
    data = config.get("data", {})
    source = data.get("source", "corpus")
    frames = int(data.get("frames", 256))
    if source == "synthetic":
        return SyntheticClips(int(data.get("synthetic_clips", 64)), frames, int(config["train"].get("seed", 0)))
    if source == "corpus":
        # engineer C's feature cache: random crops of `frames` frames, a random caption per clip
        from cadenza.data.dataset import ClipDataset

        return ClipDataset(data.get("corpus", "data/corpus-small"), "train", frames, controls=data.get("controls", "extracted"))
    raise CadenzaError(f"unknown data.source '{source}'", "use 'corpus' or 'synthetic'")


# ---------------------------------------------------------------------------------------- module
class GeneratorModule(L.LightningModule):
    """Diffusion training of ``MusicControlNet`` with text dropout and random control masks."""

    def __init__(self, config: dict) -> None:
        super().__init__()
        self.config = config
        self.tcfg = config["train"]
        self.mode = self.tcfg.get("mode", "joint")
        if self.mode not in MODES:
            raise CadenzaError(f"unknown train.mode '{self.mode}'", f"choose one of {', '.join(MODES)}")
        self.net = build_generator(config)
        if self.tcfg.get("init_from"):
            self._init_from(self.tcfg["init_from"])
        if self.mode == "adapter":
            if not self.tcfg.get("init_from"):
                raise CadenzaError("train.mode=adapter needs a trained base in train.init_from", "train.init_from=runs/base/model")
            for p in [*self.net.base.parameters(), self.net.null_tokens, self.net.null_pooled]:
                p.requires_grad_(False)
        self.ema_decay = float(self.tcfg.get("ema_decay", 0.0))
        self.ema = copy.deepcopy(self.net).requires_grad_(False) if self.ema_decay > 0 else None
        self.text_encoder = build_text_encoder(config.get("text_encoder", "minilm"), config["model"].get("text_dim", 384))
        self.noise_scheduler = make_noise_scheduler(config.get("diffusion"))
        self.generator = torch.Generator().manual_seed(int(self.tcfg.get("seed", 0)))
        self.step_count = 0
        self.elapsed_s = 0.0
        self.last_loss = float("nan")
        self.last_phase = self.mode

    def _init_from(self, folder: str) -> None:
        state, _ = load_model_folder(folder)
        missing, unexpected = self.net.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
        if unexpected:
            raise CadenzaError(f"{folder}: {len(unexpected)} weights do not belong to this model", "check model settings match")
        if self.mode == "adapter":
            self.net.adapter.init_from_base(self.net.base.encoder)

    @torch.no_grad()
    def fit_mel_stats(self, dataset: Any, n_items: int = 64) -> None:
        """Per-bin mean/std of normalised mels over ``n_items`` training crops (padding frames excluded)."""
        rng = np.random.default_rng(int(self.tcfg.get("seed", 0)))
        idx = rng.choice(len(dataset), size=min(n_items, len(dataset)), replace=False)
        mels, valid = [], []
        for i in idx:
            item = dataset[int(i)]
            mels.append(normalize_log_mel(torch.as_tensor(item["mel"]).float()).clamp(-1, 1))
            valid.append(torch.as_tensor(item["valid"]).float() if "valid" in item else torch.ones(mels[-1].shape[-1]))
        x = torch.cat(mels, dim=-1)  # (n_mels, ΣT)
        w = torch.cat(valid)[None]
        mean = (x * w).sum(-1) / w.sum()
        std = (((x - mean[:, None]) ** 2 * w).sum(-1) / w.sum()).sqrt()
        for net in (self.net, self.ema):
            if net is not None:
                net.set_mel_stats(mean, std)

    @property
    def base_only(self) -> bool:
        return self.mode == "base" or self.step_count < int(self.tcfg.get("base_only_steps", 0))

    def prepare_batch(self, batch: dict[str, Any]) -> tuple[torch.Tensor, Any, dict[str, torch.Tensor]]:
        """Clean normalised mels, text (with condition dropout) and controls (with random masks)."""
        x0 = self.net.standardize(normalize_log_mel(batch["mel"]).clamp(-1, 1))
        text = self.text_encoder.encode(batch["caption"]).to(x0.device)
        drop = torch.rand(len(text), generator=self.generator) < float(self.tcfg.get("text_dropout", 0.1))
        text = self.net.drop_text(text, drop.to(x0.device))
        masks = random_control_masks({k: batch[k] for k in MASK_KEYS}, self.generator, **self.tcfg.get("control_dropout", {}))
        controls = {k: batch[k] for k in CONTROL_KEYS}
        controls.update(masks)
        if controls["dynamics"].dim() == 2:
            controls["dynamics"] = controls["dynamics"].unsqueeze(-1)
        return x0, text, controls

    def loss_on(self, batch: dict[str, Any]) -> torch.Tensor:
        x0, text, controls = self.prepare_batch(batch)
        return diffusion_loss(
            self.net, x0, text, controls, self.noise_scheduler, self.generator,
            use_adapter=not self.base_only, loss=self.tcfg.get("loss", "mse"), frame_weight=batch.get("valid"),
        )

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        base_only_steps = int(self.tcfg.get("base_only_steps", 0))
        if self.mode == "joint" and base_only_steps and self.step_count == base_only_steps:
            # switch from base-only pre-training to the ControlNet phase: adapter = copy of the trained encoder
            self.net.adapter.init_from_base(self.net.base.encoder)
            if self.ema is not None:
                self.ema.adapter.init_from_base(self.ema.base.encoder)
        loss = self.loss_on(batch)
        self.last_loss = float(loss.detach())
        self.last_phase = "base" if self.base_only else self.mode
        return loss

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        # count the step and update the EMA right after the weights change (before any callback runs)
        super().optimizer_step(*args, **kwargs)
        self.step_count += 1
        if self.ema is not None:
            self.update_ema()

    @torch.no_grad()
    def update_ema(self) -> None:
        """EMA with the usual warm-up (decay grows from 0.1 towards ``ema_decay``)."""
        decay = min(self.ema_decay, (1 + self.step_count) / (10 + self.step_count))
        ema_p = [p for p in self.ema.parameters()]
        net_p = [p.detach() for p in self.net.parameters()]
        torch._foreach_mul_(ema_p, decay)
        torch._foreach_add_(ema_p, net_p, alpha=1 - decay)

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.net.parameters() if p.requires_grad]

    def configure_optimizers(self):
        lr = float(self.tcfg.get("lr", 2e-4))
        opt = torch.optim.AdamW(self.trainable_parameters(), lr=lr, weight_decay=float(self.tcfg.get("weight_decay", 0.0)))
        warmup = int(self.tcfg.get("warmup_steps", 0))
        total = int(self.tcfg.get("max_steps", 1))
        min_ratio = float(self.tcfg.get("min_lr_ratio", 1.0))

        def factor(_: int) -> float:
            s = self.step_count
            if warmup and s < warmup:
                return (s + 1) / warmup
            progress = min(max(s - warmup, 0) / max(total - warmup, 1), 1.0)
            return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def export_weights(self) -> dict[str, torch.Tensor]:
        """The weights to ship: the EMA copy when kept, in ``train.export_dtype``."""
        src = self.ema if self.ema is not None else self.net
        dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[self.tcfg.get("export_dtype", "float32")]
        return {k: v.detach().to(dtype).contiguous() for k, v in src.state_dict().items()}

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, out_dir: str | os.PathLike, optimizer: torch.optim.Optimizer | None) -> Path:
        """Atomically replace ``out_dir/checkpoint`` (weights, EMA, optimizer, state) and re-export ``out_dir/model``."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".checkpoint.", dir=out_dir))
        tensors = {f"net.{k}": v for k, v in self.net.state_dict().items()}
        if self.ema is not None:
            tensors.update({f"ema.{k}": v for k, v in self.ema.state_dict().items()})
        save_safetensors_atomic(tmp / "weights.safetensors", tensors)
        meta: dict[str, Any] = {"step": self.step_count, "elapsed_s": round(self.elapsed_s, 1), "config": self.config}
        if optimizer is not None:
            sd = optimizer.state_dict()
            opt_tensors = {}
            for pid, st in sd["state"].items():
                for key, val in st.items():
                    opt_tensors[f"{pid}.{key}"] = val if torch.is_tensor(val) else torch.tensor(val)
            save_safetensors_atomic(tmp / "optimizer.safetensors", opt_tensors)
            meta["param_groups"] = sd["param_groups"]
        write_json_atomic(tmp / "state.json", meta)
        final, old = out_dir / CKPT_DIR, out_dir / f"{CKPT_DIR}.old"
        if old.exists():
            shutil.rmtree(old)
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        if old.exists():
            shutil.rmtree(old)
        config = {**self.config, "trained": {"steps": self.step_count, "minutes": round(self.elapsed_s / 60, 1)}}
        save_model_folder(out_dir / MODEL_DIR, self.export_weights(), config)
        return final

    def load_checkpoint(self, out_dir: str | os.PathLike) -> dict[str, Any] | None:
        """Restore weights/EMA/step from ``out_dir/checkpoint`` (or ``.old`` after an interrupted save)."""
        out_dir = Path(out_dir)
        for folder in (out_dir / CKPT_DIR, out_dir / f"{CKPT_DIR}.old"):
            if (folder / "state.json").exists():
                break
        else:
            return None
        meta = json.loads((folder / "state.json").read_text())
        tensors = load_file(str(folder / "weights.safetensors"))
        self.net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        if self.ema is not None:
            ema = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
            self.ema.load_state_dict(ema if ema else self.net.state_dict())
        self.step_count = int(meta["step"])
        self.elapsed_s = float(meta.get("elapsed_s", 0.0))
        opt_path = folder / "optimizer.safetensors"
        if opt_path.exists() and "param_groups" in meta:
            state: dict[int, dict[str, torch.Tensor]] = {}
            for key, val in load_file(str(opt_path)).items():
                pid, name = key.split(".", 1)
                state.setdefault(int(pid), {})[name] = val
            meta["optimizer_state"] = {"state": state, "param_groups": meta["param_groups"]}
        return meta


class CheckpointEvery(L.Callback):
    """Logs, time/step limits, and safetensors checkpoints every few minutes and at the end."""

    def __init__(self, out_dir: Path, config: dict, resume_meta: dict | None) -> None:
        tcfg = config["train"]
        self.out_dir = out_dir
        self.every_s = float(tcfg.get("checkpoint_minutes", 5.0)) * 60
        self.max_s = float(tcfg.get("max_minutes", 0) or 0) * 60
        self.max_steps = int(tcfg.get("max_steps", 0) or 0)
        self.log_every = int(tcfg.get("log_every", 50))
        self.resume_meta = resume_meta
        self.log_path = out_dir / "train_log.jsonl"
        self._losses: list[float] = []

    def on_train_start(self, trainer: L.Trainer, module: GeneratorModule) -> None:
        if self.resume_meta and "optimizer_state" in self.resume_meta:
            trainer.optimizers[0].load_state_dict(self.resume_meta["optimizer_state"])
        self._t0 = self._last_save = time.monotonic()
        self._elapsed0 = module.elapsed_s

    def on_train_batch_end(self, trainer: L.Trainer, module: GeneratorModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        now = time.monotonic()
        module.elapsed_s = self._elapsed0 + (now - self._t0)
        self._losses.append(module.last_loss)
        step = module.step_count
        if self.log_every and step % self.log_every == 0:
            line = {
                "step": step, "loss": round(float(np.mean(self._losses)), 5), "elapsed_min": round(module.elapsed_s / 60, 2),
                "lr": trainer.optimizers[0].param_groups[0]["lr"], "phase": module.last_phase,
            }
            self._losses.clear()
            print(json.dumps(line), flush=True)
            with open(self.log_path, "a") as fh:
                fh.write(json.dumps(line) + "\n")
        if (self.max_steps and step >= self.max_steps) or (self.max_s and module.elapsed_s >= self.max_s):
            trainer.should_stop = True
        if now - self._last_save >= self.every_s:
            module.save_checkpoint(self.out_dir, trainer.optimizers[0])
            self._last_save = now

    def on_train_end(self, trainer: L.Trainer, module: GeneratorModule) -> None:
        module.save_checkpoint(self.out_dir, trainer.optimizers[0])


def train_generator(config: dict, out_dir: str | os.PathLike, resume: bool = False, dataset: Any = None) -> Path:
    """Train (or resume) per ``config``; returns the exported model folder ``out_dir/model``."""
    tcfg = config["train"]
    out_dir = Path(out_dir)
    ckpt_state = out_dir / CKPT_DIR / "state.json"
    if not resume and ckpt_state.exists():
        raise CadenzaError(f"{out_dir} already holds a training run", "pass --resume to continue it, or choose a new --out folder")
    torch.set_num_threads(int(tcfg.get("threads", 1)))
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    L.seed_everything(int(tcfg.get("seed", 0)), verbose=False)
    module = GeneratorModule(config)
    meta = module.load_checkpoint(out_dir) if resume else None
    if resume and meta is None:
        print(f"no checkpoint in {out_dir}; starting fresh", flush=True)
    if meta is not None:
        module.generator.manual_seed(int(tcfg.get("seed", 0)) + module.step_count)
        print(f"resumed from step {module.step_count} ({module.elapsed_s / 60:.1f} min)", flush=True)
    max_steps = int(tcfg.get("max_steps", 0) or 0)
    if max_steps and module.step_count >= max_steps:
        print(f"already trained {module.step_count} steps (max_steps {max_steps})", flush=True)
        return out_dir / MODEL_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "config.json", config)
    dataset = dataset if dataset is not None else build_dataset(config)
    if meta is None and not tcfg.get("init_from") and config.get("diffusion", {}).get("standardize_mel", True):
        module.fit_mel_stats(dataset, int(config.get("diffusion", {}).get("stats_clips", 64)))
    data = config.get("data", {})
    loader = DataLoader(
        dataset, batch_size=int(data.get("batch_size", 8)), collate_fn=collate, num_workers=int(data.get("num_workers", 0)),
        shuffle=not isinstance(dataset, IterableDataset), drop_last=not isinstance(dataset, IterableDataset),
    )
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_steps=-1, max_epochs=-1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
        gradient_clip_val=float(tcfg.get("grad_clip", 0.0)) or None,
        callbacks=[CheckpointEvery(out_dir, config, meta)],
    )
    trainer.fit(module, loader)
    return out_dir / MODEL_DIR
