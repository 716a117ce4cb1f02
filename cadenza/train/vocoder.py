"""Training the vocoder: a LightningModule with manual optimisation, random audio crops, safe checkpoints.

Two phases, chosen for a one-CPU-core budget:

1. **warm-up** (``step < train.gan_start``): the generator alone, trained with the mel L1 loss
   of the resynthesis (weight 45, as in HiFi-GAN/Vocos; through ``train.phase_iters``
   refinement iterations), a multi-resolution STFT loss and, as each config sets, losses on
   the predicted spectrum itself: log-magnitude L1 and spectral convergence against the target
   STFT, mel consistency (the magnitude through the filter bank against the input mel) and
   magnitude-weighted phase-derivative losses. Cheap per step (no discriminators);
2. **GAN** (``step >= train.gan_start``): the Vocos recipe — multi-period + multi-resolution
   discriminators with hinge losses, feature matching and the mel loss — plus the ``gan_*``
   weights of the spectrum losses.

The loop, checkpoints and resume are the runner's (``cadenza train vocoder``); validation is
``mel_l1`` on fixed held-out crops of the valid split (``heldout_crops``), which also picks the
"best" checkpoint; the test split stays for the ship check and the benchmark.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import IterableDataset

from cadenza.audio import MelConfig, MelSpectrogram, load_audio
from cadenza.errors import CadenzaError
from cadenza.representations.discriminators import (
    MultiResolutionSTFTLoss,
    build_discriminators,
    discriminator_step_loss,
    generator_adversarial_losses,
    phase_loss,
)
from cadenza.registry import register_task
from cadenza.representations.vocoder import build_generator
from cadenza.train.tasks import DataSpec, Task, _inner
from cadenza.train.schedule import warmup_cosine


# ---------------------------------------------------------------------------------------------- data
def read_manifest(path: str | os.PathLike, split: str | None = None, per_work: int | None = None) -> list[Path]:
    """Clip paths from a JSONL manifest (one object per line with ``path``; optional ``split``).

    Relative paths are resolved against the manifest's folder. ``per_work`` keeps at most that
    many clips of each work (the row's ``work``; a row without one is its own work), so a
    held-out sample spreads over many works instead of the first few works' every clip.
    """
    taken: dict[str, int] = {}
    path = Path(path)
    if not path.exists():
        raise CadenzaError(f"{path}: no such manifest", "build a corpus first (cadenza data build) or pass its manifest.jsonl")
    clips = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise CadenzaError(f"{path}:{n}: not valid JSON", "each line must be one JSON object") from None
        if "path" not in row:
            raise CadenzaError(f"{path}:{n}: row has no 'path'", "each row needs the clip's audio path")
        if split is not None and row.get("split", "train") != split:
            continue
        if per_work is not None:
            work = str(row.get("work") or row["path"])
            if taken.get(work, 0) >= per_work:
                continue
            taken[work] = taken.get(work, 0) + 1
        p = Path(row["path"])
        clips.append(p if p.is_absolute() else path.parent / p)
    return clips


class RandomCropDataset(IterableDataset):
    """Endless random crops (``crop_samples`` long) from clips held in memory, with random gain.

    Clips shorter than a crop are skipped; the gain (uniform in dB) teaches the vocoder every
    level the generator may produce.
    """

    def __init__(self, clips: list[Path], crop_samples: int, seed: int = 0, gain_db: tuple[float, float] = (-12.0, 0.0), sample_rate: int = 22050) -> None:
        super().__init__()
        self.crop, self.seed, self.gain_db = int(crop_samples), int(seed), gain_db
        audio = [load_audio(p, sample_rate) for p in clips]
        self.audio = [a for a in audio if a.shape[0] >= self.crop]
        if not self.audio:
            raise CadenzaError(f"no clip of at least {self.crop} samples among {len(clips)}", "use longer clips or a shorter crop")

    def __iter__(self) -> Iterator[Tensor]:
        rng = np.random.default_rng(self.seed)
        while True:
            a = self.audio[rng.integers(len(self.audio))]
            start = rng.integers(a.shape[0] - self.crop + 1)
            crop = a[start : start + self.crop]
            peak = float(np.abs(crop).max())
            if peak < 1e-4:  # mostly silence: keep a few, but not many
                if rng.random() > 0.1:
                    continue
            gain = 10 ** (rng.uniform(*self.gain_db) / 20)
            if peak * gain > 0.99:
                gain = 0.99 / max(peak, 1e-9)
            yield torch.from_numpy(crop * gain)


# ---------------------------------------------------------------------------------------------- module
class VocoderModule(L.LightningModule):
    """Generator + discriminators; ``training_step`` does the D and G updates by hand."""

    def __init__(self, config: dict) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.config = config
        self.generator = build_generator(config)
        self.mpd, self.mrd = build_discriminators(config.get("discriminator", {}))
        self.mel = MelSpectrogram(MelConfig.from_dict(config.get("mel", {})))
        self.mrstft = MultiResolutionSTFTLoss(config.get("loss", {}).get("mrstft_resolutions", ((512, 128), (1024, 256), (2048, 512))))
        self.register_buffer("step_count", torch.zeros((), dtype=torch.long))
        self.last_log: dict[str, float] = {}

    # --- optimisers ---------------------------------------------------------------------------
    def _lr_at(self, step: int) -> float:
        """Linear warm-up then cosine decay to ``lr_min_ratio`` of the peak at ``max_steps``."""
        t = self.config["train"]
        return warmup_cosine(step, int(t.get("lr_warmup_steps", 200)), max(int(t["max_steps"]), 1), float(t.get("lr_min_ratio", 0.1)))

    def configure_optimizers(self):
        t = self.config["train"]
        betas = tuple(t.get("betas", (0.8, 0.9)))
        opt_g = torch.optim.AdamW(self.generator.parameters(), lr=t["lr"], betas=betas, weight_decay=t.get("weight_decay", 0.01))
        opt_d = torch.optim.AdamW(
            list(self.mpd.parameters()) + list(self.mrd.parameters()), lr=t.get("lr_disc", t["lr"]), betas=betas, weight_decay=t.get("weight_decay", 0.01)
        )
        return [opt_g, opt_d]

    def _set_lr(self, opt: torch.optim.Optimizer, base: float, gan: bool = False) -> None:
        """Warm-up: the schedule of ``_lr_at``; GAN phase: a constant ``base`` (its own short run)."""
        scale = 1.0 if gan else self._lr_at(int(self.step_count))
        for group in opt.param_groups:
            group["lr"] = base * scale

    # --- one step -----------------------------------------------------------------------------
    def training_step(self, batch: Tensor, batch_idx: int) -> None:
        t, loss_cfg = self.config["train"], self.config.get("loss", {})
        opt_g, opt_d = self.optimizers()
        hop = self.mel.config.hop_length
        gan = int(self.step_count) >= t.get("gan_start", 10**12)
        if gan:  # the discriminators cost ~10x the generator: smaller batches keep the step affordable
            batch = batch[: t.get("gan_batch_size", batch.shape[0]), : t.get("gan_crop_samples", batch.shape[-1])]
        audio = batch[:, : (batch.shape[-1] // hop) * hop]
        logmel = self.mel(audio)
        log_mag, cos, sin = self.generator.spectrum(logmel)
        # same length as audio; through the Griffin-Lim refinement too, when the config has one
        fake = self.generator.synthesize(log_mag, cos, sin, t.get("phase_iters"))
        logs: dict[str, float] = {}

        if gan:
            self._set_lr(opt_d, t.get("lr_disc", t["lr"]), gan=True)
            loss_d = discriminator_step_loss(self.mpd, self.mrd, audio, fake, loss_cfg.get("mrd_weight", 0.1))
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(loss_d)
            torch.nn.utils.clip_grad_norm_(list(self.mpd.parameters()) + list(self.mrd.parameters()), t.get("grad_clip", 1000.0))
            opt_d.step()
            logs["loss_d"] = float(loss_d.detach())

        mel_l1 = (self.mel(fake) - logmel).abs().mean()
        loss_g = loss_cfg.get("mel_weight", 45.0) * mel_l1
        logs["mel_l1"] = float(mel_l1.detach())
        if gan:
            adv, fm = generator_adversarial_losses(self.mpd, self.mrd, audio, fake, loss_cfg.get("mrd_weight", 0.1))
            loss_g = loss_g + loss_cfg.get("adv_weight", 1.0) * adv + loss_cfg.get("fm_weight", 2.0) * fm
            logs.update(adv=float(adv.detach()), fm=float(fm.detach()))
        w_stft = loss_cfg.get("gan_mrstft_weight" if gan else "mrstft_weight", 0.0)
        if w_stft:
            stft_l = self.mrstft(fake, audio)
            loss_g = loss_g + w_stft * stft_l
            logs["mrstft"] = float(stft_l.detach())
        w_phase = loss_cfg.get("gan_phase_weight" if gan else "phase_weight", 0.0)
        w_mag = loss_cfg.get("gan_spec_mag_weight" if gan else "spec_mag_weight", 0.0)
        w_sc = loss_cfg.get("gan_spec_sc_weight" if gan else "spec_sc_weight", 0.0)
        w_cons = loss_cfg.get("gan_mel_consistency_weight" if gan else "mel_consistency_weight", 0.0)
        if w_cons:  # the predicted magnitude itself, through the filter bank, against the input mel
            basis = self.mel.mel_basis
            cons = (torch.log(torch.clamp(torch.matmul(basis, torch.exp(log_mag)), min=1e-5)) - logmel).abs().mean()
            loss_g = loss_g + w_cons * cons
            logs["mel_consistency"] = float(cons.detach())
        if w_phase or w_mag or w_sc:
            m = self.mel.config
            target = torch.stft(audio, m.n_fft, m.hop_length, m.win_length, self.generator.window, center=True, return_complex=True)
        if w_phase:
            ph = phase_loss(torch.atan2(sin, cos), target)
            loss_g = loss_g + w_phase * ph
            logs["phase"] = float(ph.detach())
        if w_mag:  # direct supervision of the predicted magnitude (the re-analysis losses only see it through the istft)
            mag_l = (log_mag - torch.log(target.abs().clamp(min=1e-5))).abs().mean()
            loss_g = loss_g + w_mag * mag_l
            logs["spec_mag"] = float(mag_l.detach())
        if w_sc:  # spectral convergence of the predicted magnitude: weighs the loud bins the log losses underweigh
            target_mag = target.abs()
            sc = torch.linalg.vector_norm(target_mag - torch.exp(log_mag)) / torch.linalg.vector_norm(target_mag).clamp(min=1e-6)
            loss_g = loss_g + w_sc * sc
            logs["spec_sc"] = float(sc.detach())

        self._set_lr(opt_g, t.get("gan_lr", t["lr"]) if gan else t["lr"], gan=gan)
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(loss_g)
        torch.nn.utils.clip_grad_norm_(self.generator.parameters(), t.get("grad_clip", 1000.0))
        opt_g.step()
        self.step_count += 1
        logs["loss_g"] = float(loss_g.detach())
        self.last_log = logs


# ---------------------------------------------------------------------------------------------- held-out
def heldout_crops(manifest: str | os.PathLike, n: int, seconds: float, seed: int = 0, split: str = "test",
                  per_work: int | None = None) -> Tensor:
    """Fixed crops from one held-out split of the manifest (``valid`` falls back to ``test``, then to the last ``n`` clips), skipping silent ones.

    ``per_work``: at most that many clips of each work (see :func:`read_manifest`).

    Training validates (and picks "best") on ``valid``; benchmarks and the ship check score on
    ``test``, which nothing chose on.
    """
    # a manifest without a valid split (e.g. train + test only) validates on test rather than on training clips
    clips = (read_manifest(manifest, split, per_work) or (split == "valid" and read_manifest(manifest, "test", per_work))
             or read_manifest(manifest)[-n:])
    rng = np.random.default_rng(seed)
    length = int(seconds * 22050) // 256 * 256
    crops = []
    for p in clips:
        a = load_audio(p)
        if a.shape[0] < length or np.abs(a).max() < 1e-3:
            continue
        s = int(rng.integers(0, a.shape[0] - length + 1))
        crops.append(torch.from_numpy(a[s : s + length]))
        if len(crops) == n:
            break
    if not crops:
        raise CadenzaError(f"{manifest}: no held-out clip of at least {seconds} s", "add longer test clips or lower data.val_seconds")
    return torch.stack(crops)


@torch.no_grad()
def mel_l1(generator: torch.nn.Module, audio: Tensor, mel: MelSpectrogram) -> float:
    """Mean absolute log-mel error of the generator's resynthesis of ``audio`` (the validation metric)."""
    logmel = mel(audio)
    out = mel(generator(logmel))
    frames = min(out.shape[-1], logmel.shape[-1])
    return float((out[..., :frames] - logmel[..., :frames]).abs().mean())


# --------------------------------------------------------------------------------------- the training task
def synthetic_tones(n: int, seconds: float, seed: int, sample_rate: int = 22050) -> list[np.ndarray]:
    """Short harmonic glides for smoke-testing the vocoder without a corpus."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    out = []
    for _ in range(n):
        f = rng.uniform(110, 880) * 2 ** (rng.uniform(-1, 1) * t / max(seconds, 1e-6))
        phase = 2 * np.pi * np.cumsum(f) / sample_rate
        out.append((0.3 * (np.sin(phase) + 0.3 * np.sin(2 * phase))).astype(np.float32))
    return out


@register_task("vocoder")
class VocoderTask(Task):
    """Vocos-style vocoder, GAN with two optimizers (``cadenza.train.vocoder.VocoderModule``).

    Its ``training_step`` does two backward passes (D then G) by manual optimisation, which DDP's
    one-forward/one-backward hooks cannot follow, so under several processes the runner averages
    each optimizer's gradients across ranks right before it steps (``manual_grad_sync``).
    """

    name, config_kind = "vocoder", "vocoder"
    track = "mel_l1"
    manual_grad_sync = True
    defaults = {"data": {"source": "manifest", "synthetic_clips": 4, "synthetic_seconds": 1.0, "val_clips": 12, "val_seconds": 3.0}}

    def build_module(self, config: dict) -> torch.nn.Module:
        return VocoderModule(config)

    def train_data(self, config: dict, module: Any = None) -> DataSpec:
        t, data = config["train"], config.get("data", {})
        sr = int(config.get("mel", {}).get("sample_rate", 22050))
        if data.get("source") == "synthetic":
            tones = synthetic_tones(int(data.get("synthetic_clips", 4)), float(data.get("synthetic_seconds", 1.0)), int(t.get("seed", 0)), sr)
            ds = _ArrayCrops(tones, int(t["crop_samples"]), int(t.get("seed", 0)))
        else:
            if not t.get("data"):
                raise CadenzaError(f"the {self.name} config names no training data (train.data is null)", "pass train.data=path/to/manifest.jsonl, or data.source=synthetic for a smoke test")
            ds = RandomCropDataset(read_manifest(t["data"], "train"), int(t["crop_samples"]), int(t.get("seed", 0)), sample_rate=sr)
        return DataSpec(ds, int(t["batch_size"]))

    def train_step(self, module: Any, batch: Any, optimizers: list, schedulers: list, fabric: Any) -> dict[str, float]:
        inner = _inner(module)
        with fabric.autocast():
            inner.training_step(batch, 0)  # D and G updates via self.optimizers() / manual_backward (Fabric-aware)
        return dict(inner.last_log)

    def validate(self, module: Any, config: dict) -> dict[str, float]:
        """``mel_l1`` of the generator's resynthesis of fixed held-out crops (the manifest's valid split,
        or tones of another seed for synthetic data); the "best" checkpoint follows it."""
        m, audio = _inner(module), self.heldout(module, config)
        if audio is None:
            return {}
        m.generator.eval()
        return {"mel_l1": mel_l1(m.generator, audio, m.mel)}

    def heldout(self, module: Any, config: dict) -> Tensor | None:
        """The fixed validation crops (``data.val_clips`` × ``data.val_seconds`` of the valid split, or tones of
        another seed for synthetic data), made once and kept on the module; None when ``val_clips`` is 0."""
        m, data = _inner(module), config.get("data", {})
        n, seconds = int(data.get("val_clips", 12)), float(data.get("val_seconds", 3.0))
        if n <= 0:
            return None
        if getattr(m, "_cadenza_val", None) is None:
            seed = int(config["train"].get("seed", 0))
            if data.get("source") == "synthetic":
                m._cadenza_val = torch.from_numpy(np.stack(synthetic_tones(n, seconds, seed + 1_000_003, int(config.get("mel", {}).get("sample_rate", 22050)))))
            else:
                m._cadenza_val = heldout_crops(config["train"]["data"], n, seconds, seed, split="valid")
        return m._cadenza_val

    def export(self, module: Any, config: dict, progress: Any) -> tuple[dict[str, torch.Tensor], dict]:
        gen = module.generator
        cfg = {**config, "model": gen.config.to_dict(), "mel": gen.mel_config.to_dict(), "training": {"steps": progress.step}}
        return gen.state_dict(), cfg


def _array_crops_cls():
    class ArrayCrops(RandomCropDataset):
        """``RandomCropDataset`` over waveforms already in memory (same crops, gains, silence skipping)."""

        def __init__(self, audio: list[np.ndarray], crop_samples: int, seed: int = 0, gain_db: tuple[float, float] = (-12.0, 0.0)) -> None:
            IterableDataset.__init__(self)
            self.crop, self.seed, self.gain_db = int(crop_samples), int(seed), gain_db
            self.audio = [a for a in audio if a.shape[0] >= self.crop]
            if not self.audio:
                raise CadenzaError(f"no clip of at least {self.crop} samples", "use longer clips or a shorter crop")

    return ArrayCrops


def _ArrayCrops(*args: Any, **kwargs: Any) -> IterableDataset:
    return _array_crops_cls()(*args, **kwargs)
