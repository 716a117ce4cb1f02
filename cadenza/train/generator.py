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
alone. The training loop, checkpoints and resume are the runner's (``cadenza.train.runner``,
``cadenza train generator``); ``train_generator`` is a thin call to it.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import Dataset

from cadenza.audio import SAMPLE_RATE, MelSpectrogram, normalize_log_mel
from cadenza.checkpoint import load_model_folder
from cadenza.conditioning.controls import MASK_KEYS, random_control_masks
from cadenza.conditioning.text import build_text_encoder
from cadenza.controls.base import FRAME_FIELDS, beats_to_activations
from cadenza.controls.registry import CONTROLS
from cadenza.errors import CadenzaError
from cadenza.generators.diffusion import diffusion_loss, make_noise_scheduler
from cadenza.generators.model import build_generator
from cadenza.registry import get_task, register_task
from cadenza.train.tasks import DataSpec, Task, _inner
from cadenza.train.schedule import warmup_cosine

MODES = ("joint", "adapter", "base")
CONTROL_KEYS = FRAME_FIELDS  # every control and its mask (cadenza/controls/registry.py)


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
        item = self.render(idx)
        audio = item.pop("audio")
        return {"mel": self.mel(torch.from_numpy(audio)), **item}

    def render(self, idx: int) -> dict[str, Any]:
        """Clip ``idx`` as audio (``(n_frames - 1) · 256`` samples) + caption + exact controls (the token models encode it with their codec)."""
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
        melody = np.zeros((T, 12), np.float32)
        melody[np.arange(T), pitches[frame_note] % 12] = 1
        beats = np.stack([starts * 256 / SAMPLE_RATE, (np.arange(n_notes) == 0).astype(float)], 1)
        ones = np.ones(T, np.float32)
        caption = " ".join(rng.choice(self.WORDS, 2, replace=False))
        return {
            "audio": audio, "caption": caption, "melody": torch.from_numpy(melody), "melody_mask": torch.from_numpy(ones),
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
        for name, spec in CONTROLS.items():  # scalar controls (dynamics) arrive (B, T): make them (B, T, 1)
            if name in controls and not spec.shape and controls[name].dim() == 2:
                controls[name] = controls[name].unsqueeze(-1)
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
        return warmup_cosine_adamw(self.trainable_parameters(), self.tcfg, lambda: self.step_count)

    def export_weights(self) -> dict[str, torch.Tensor]:
        """The weights to ship: the EMA copy when kept, in ``train.export_dtype``."""
        src = self.ema if self.ema is not None else self.net
        dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[self.tcfg.get("export_dtype", "float32")]
        return {k: v.detach().to(dtype).contiguous() for k, v in src.state_dict().items()}


def warmup_cosine_adamw(params: list[torch.nn.Parameter], tcfg: dict, step: Any) -> dict:
    """AdamW at ``train.lr`` with linear warm-up, then cosine decay to ``min_lr_ratio`` by ``max_steps``.

    ``step()`` is the module's own step counter (so a resumed run continues the schedule exactly).
    Shared by the generator and the token models' training.
    """
    lr = float(tcfg.get("lr", 2e-4))
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=float(tcfg.get("weight_decay", 0.0)))
    warmup = int(tcfg.get("warmup_steps", 0))
    total = int(tcfg.get("max_steps", 1))
    min_ratio = float(tcfg.get("min_lr_ratio", 1.0))

    def factor(_: int) -> float:
        return warmup_cosine(step(), warmup, total, min_ratio)

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def train_generator(config: dict, out_dir: str | os.PathLike, resume: bool = False) -> Path:
    """Train (or resume) per ``config`` through the one runner; returns the exported ``out_dir/model``.

    The same as ``cadenza train generator CONFIG --out OUT_DIR [--resume]`` (``cadenza.train.runner.fit``),
    kept for Python callers; the run folder is the runner's (docs/training.md).
    """
    from cadenza.train.runner import fit

    return fit(get_task("generator"), config, out_dir, resume=resume)


# --------------------------------------------------------------------------------------- the training task
@register_task("generator")
class GeneratorTask(Task):
    """Diffusion UNet + ControlNet adapter (``cadenza.train.generator.GeneratorModule``)."""

    name, config_kind = "generator", "generator"
    defaults = {"data": {"source": "corpus", "synthetic_clips": 64, "val_clips": 16}}
    fsdp_methods = {"net": ("drop_text",)}  # prepare_batch swaps in the learned null prompt outside net.forward

    def build_module(self, config: dict) -> torch.nn.Module:
        return GeneratorModule(config)

    def train_data(self, config: dict, module: Any = None) -> DataSpec:
        return DataSpec(build_dataset(config), int(config.get("data", {}).get("batch_size", 8)), collate)

    def after_step(self, module: Any) -> None:
        # what GeneratorModule.optimizer_step does under a Trainer: count, then EMA
        module.step_count += 1
        if module.ema is not None:
            module.update_ema()

    def prepare(self, module: Any, spec: DataSpec, config: dict) -> None:
        """Per-bin mel statistics of the training crops (the net standardises its input with them)."""
        diffusion = config.get("diffusion", {})
        if not config["train"].get("init_from") and diffusion.get("standardize_mel", True):
            module.fit_mel_stats(spec.dataset, int(diffusion.get("stats_clips", 64)))

    def validate(self, module: Any, config: dict) -> dict[str, float]:
        """Diffusion loss on fixed held-out clips with fixed timesteps, noise, masks and text dropout.

        The corpus's ``valid`` split (first ``data.val_clips`` clips, first ``data.frames`` frames,
        first caption) or, for synthetic data, clips of another seed. Each batch reseeds the
        module's generator, so the value changes only when the weights do.
        """
        return held_out_loss(_inner(module), lambda: _generator_val_batches(config))

    def export(self, module: Any, config: dict, progress: Any) -> tuple[dict[str, torch.Tensor], dict]:
        return module.export_weights(), {**config, "trained": {"steps": progress.step, "minutes": round(progress.elapsed_s / 60, 1)}}

    @torch.no_grad()
    def samples(self, module: Any, batch: Any, folder: Path, step: int) -> list[Path]:
        """The first clip of the batch beside the model's one-shot x0 estimate at t = T/2.

        Writes ``mel-stepN.png`` (clip | estimate), ``x0-stepN.wav`` (Griffin-Lim of the estimate:
        what the model hears so far) and ``controls-stepN.png`` (the clip's controls over the
        estimate's mel). Noise comes from its own generator seeded by the step, Griffin-Lim from
        its own seed, and the runner restores every RNG afterwards: logging never changes training.
        """
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from cadenza.audio import denormalize_log_mel, griffin_lim, normalize_log_mel, save_audio
        from cadenza.controls.base import ControlSet
        from cadenza.controls.plot import plot_controls
        from cadenza.fsutil import atomic_path

        m = _inner(module)
        clip = normalize_log_mel(batch["mel"][:1]).clamp(-1, 1)
        x0 = m.net.standardize(clip)  # the space the net is trained in
        sched = m.noise_scheduler
        t = torch.full((1,), sched.config.num_train_timesteps // 2, dtype=torch.long)
        noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(step)).to(x0)
        xt = sched.add_noise(x0, noise, t)
        text = m.text_encoder.encode(batch["caption"][:1]).to(x0.device)
        m.net.eval()
        pred = m.net(xt, t.to(x0.device), text, None, use_adapter=False)
        acp = sched.alphas_cumprod[t].to(x0)
        x0_hat = acp.sqrt() * xt - (1 - acp).sqrt() * pred if sched.config.prediction_type == "v_prediction" else (xt - (1 - acp).sqrt() * pred) / acp.sqrt()
        estimate = m.net.destandardize(x0_hat).clamp(-1, 1)[0].float().cpu()
        folder.mkdir(parents=True, exist_ok=True)
        fig, axes = plt.subplots(1, 2, figsize=(6, 2.5))
        for ax, img, title in zip(axes, (clip[0].float().cpu(), estimate), ("clip", f"x0 estimate, step {step}")):
            ax.imshow(img.numpy(), origin="lower", aspect="auto", vmin=-1, vmax=1)
            ax.set_title(title, fontsize=8)
            ax.axis("off")
        mel_png = folder / f"mel-step{step:07d}.png"
        with atomic_path(mel_png, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=60, format="png")
        plt.close(fig)
        logmel = denormalize_log_mel(estimate)
        audio = griffin_lim(logmel[None], n_iter=int(m.config.get("griffin_lim_iters", 32)))[0]
        wav = save_audio(folder / f"x0-step{step:07d}.wav", audio.numpy())
        T = logmel.shape[-1]
        c = {k: batch[k][0].float().cpu().numpy() for k in CONTROL_KEYS}
        controls = ControlSet(n_frames=T, **{k: v.reshape(T, *CONTROLS[k].shape) if k in CONTROLS else v.reshape(T) for k, v in c.items()})
        plot = plot_controls(controls, logmel.numpy(), folder / f"controls-step{step:07d}.png", title=f"{batch['caption'][0]} (x0 estimate, step {step})", dpi=60)
        return [mel_png, wav, plot]


def held_out_loss(m: Any, make_batches: Any) -> dict[str, float]:
    """``{"loss": mean of m.loss_on(batch)}`` over fixed batches (made once, kept on the module),
    the module's generator reseeded per batch so the value changes only when the weights do; {} without batches."""
    batches = getattr(m, "_cadenza_val", None)
    if batches is None:
        batches = m._cadenza_val = make_batches()
    if not batches:
        return {}
    m.eval()
    losses = []
    for i, batch in enumerate(batches):
        m.generator.manual_seed(1_000_003 + i)
        losses.append(float(m.loss_on(batch)))
    return {"loss": float(np.mean(losses))}


def _generator_val_batches(config: dict) -> list[dict[str, Any]]:
    """The generator's fixed validation batches ([] when the corpus has no valid split)."""
    data = config.get("data", {})
    n, frames, batch = int(data.get("val_clips", 16)), int(data.get("frames", 256)), int(data.get("batch_size", 8))
    if n <= 0:
        return []
    if data.get("source", "corpus") == "synthetic":
        ds: Any = SyntheticClips(n, frames, int(config["train"].get("seed", 0)) + 1_000_003)
    else:
        from cadenza.data.dataset import ClipDataset

        try:
            ds = ClipDataset(data.get("corpus", "data/corpus-small"), "valid", frames, controls=data.get("controls", "extracted"), random_crop=False, random_caption=False)
        except CadenzaError:
            return []
    items = [ds[i] for i in range(min(n, len(ds)))]
    return [collate(items[i : i + batch]) for i in range(0, len(items), batch)]
