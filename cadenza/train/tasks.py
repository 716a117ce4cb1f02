"""Trainable tasks: thin adapters that let one runner train every Cadenza model.

Each task reuses its model's own LightningModule (losses, schedules, EMA — nothing copied) and
tells the runner five things:

- ``build_module(config)`` — the ``nn.Module`` (a LightningModule) to train;
- ``train_data(config)`` — a ``DataSpec``: the dataset, its collate and per-device batch size
  (map-style datasets are sharded by the runner's deterministic sampler; endless iterables are
  sharded by striding their stream);
- ``optimizers(module, config)`` — ``([optimizer, ...], [scheduler, ...])``;
- ``train_step(module, batch, optimizers, schedulers, fabric)`` — backward through
  ``fabric.backward`` and the optimizer steps (one optimizer, or two for the GAN vocoder),
  returning float logs;
- ``export(module, config, progress)`` — ``(state_dict, model-folder config)`` to ship.

Optional: ``prepare(module, spec, config)`` (once, before a fresh run: data statistics),
``validate(module, config) -> {name: float}`` (held-out metrics on a fixed set; the runner logs them
as ``val_<name>`` and picks "best" by ``val_<track>``), ``samples`` (cheap images/audio every N
steps) and ``defaults`` (config sections the task's shipped configs may lack, e.g. ``data.source``
so a synthetic set can be chosen by override).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset

from cadenza.errors import CadenzaError


@dataclass
class DataSpec:
    """A task's training data as the runner needs it."""

    dataset: Dataset | IterableDataset
    batch_size: int  # per device
    collate: Callable | None = None
    prebatched: bool = False  # the dataset already yields whole batches (the runner must not batch again)


def deep_merge(defaults: dict, config: dict) -> dict:
    """``config`` over ``defaults`` (nested dicts merged; config values win)."""
    out = copy.deepcopy(defaults)
    for key, val in config.items():
        out[key] = deep_merge(out[key], val) if isinstance(val, dict) and isinstance(out.get(key), dict) else copy.deepcopy(val)
    return out


class Task:
    """Base adapter: single optimizer + optional scheduler, ``training_step`` returns the loss."""

    name = "task"
    config_kind = "task"
    track = "loss"  # the log key whose mean picks the best checkpoint
    manual_grad_sync = False  # True: the step does several backward passes; grads are all-reduced before each optimizer step
    val_best: str | None = None  # the validate() key that picks "best" (default: track)
    val_higher_is_better = False
    fsdp_methods: dict[str, tuple[str, ...]] = {}  # child -> methods besides forward that use its weights (gathered under FSDP)
    defaults: dict = {}

    def build_module(self, config: dict) -> torch.nn.Module:
        raise CadenzaError(f"task '{self.name}' cannot build a module")

    def train_data(self, config: dict, module: Any = None) -> DataSpec:
        raise CadenzaError(f"task '{self.name}' has no training data")

    def optimizers(self, module: Any, config: dict) -> tuple[list[torch.optim.Optimizer], list[Any]]:
        """From the module's own ``configure_optimizers`` (dict, optimizer, or list of optimizers)."""
        out = module.configure_optimizers()
        if isinstance(out, dict):
            sched = out.get("lr_scheduler")
            sched = sched["scheduler"] if isinstance(sched, dict) else sched
            return [out["optimizer"]], [sched] if sched is not None else []
        if isinstance(out, (list, tuple)):
            return list(out), []
        return [out], []

    def grad_clip(self, config: dict) -> float:
        return float(config.get("train", {}).get("grad_clip", 0.0) or 0.0)

    def train_step(self, module: Any, batch: Any, optimizers: list, schedulers: list, fabric: Any) -> dict[str, float]:
        """One optimizer step: ``training_step`` (through the strategy wrapper) → backward → clip → step."""
        (opt,) = optimizers
        loss = module.training_step(batch, 0)
        fabric.backward(loss)
        clip = self.grad_clip(self._config(module))
        if clip:
            fabric.clip_gradients(module, opt, max_norm=clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        self.after_step(_inner(module))
        for sched in schedulers:
            sched.step()
        logs = dict(getattr(_inner(module), "last_log", {}) or {})
        logs.setdefault("loss", float(loss.detach()))
        return logs

    def after_step(self, module: Any) -> None:
        """Hook run right after the weights change (step counters, EMA)."""

    def prepare(self, module: Any, spec: DataSpec, config: dict) -> None:
        """Once before a fresh run (not on resume: the checkpoint holds the result)."""

    def validate(self, module: Any, config: dict) -> dict[str, float]:
        """Metrics on a fixed held-out set ({} = none). Runs under ``no_grad``; RNGs are restored after."""
        return {}

    def export(self, module: Any, config: dict, progress: Any) -> tuple[dict[str, torch.Tensor], dict]:
        return module.state_dict(), {**config, "trained": {"steps": progress.step}}

    def samples(self, module: Any, batch: Any, folder: Path, step: int) -> list[Path]:
        """Cheap artefacts to look at (images/audio); none by default."""
        return []

    @staticmethod
    def _config(module: Any) -> dict:
        return _inner(module).config


def _inner(module: Any) -> Any:
    """The user's module behind Fabric's / DDP's wrappers."""
    return getattr(module, "_original_module", None) or getattr(module, "module", module)


def step_of(module: Any) -> int:
    """The module's own step counter (an int attribute or a 0-d buffer)."""
    val = getattr(_inner(module), "step_count", 0)
    return int(val.item()) if torch.is_tensor(val) else int(val)


def set_step(module: Any, step: int) -> None:
    inner = _inner(module)
    if not hasattr(inner, "step_count"):
        return
    if torch.is_tensor(inner.step_count):
        inner.step_count.fill_(int(step))
    else:
        inner.step_count = int(step)


# --------------------------------------------------------------------------------------- generator
class GeneratorTask(Task):
    """Diffusion UNet + ControlNet adapter (``cadenza.train.generator.GeneratorModule``)."""

    name, config_kind = "generator", "generator"
    defaults = {"data": {"source": "corpus", "synthetic_clips": 64, "val_clips": 16}}
    fsdp_methods = {"net": ("drop_text",)}  # prepare_batch swaps in the learned null prompt outside net.forward

    def build_module(self, config: dict) -> torch.nn.Module:
        from cadenza.train.generator import GeneratorModule

        return GeneratorModule(config)

    def train_data(self, config: dict, module: Any = None) -> DataSpec:
        from cadenza.train.generator import build_dataset, collate

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
        m = _inner(module)
        batches = getattr(m, "_cadenza_val", None)
        if batches is None:
            batches = m._cadenza_val = _generator_val_batches(config)
        if not batches:
            return {}
        m.eval()
        losses = []
        for i, batch in enumerate(batches):
            m.generator.manual_seed(1_000_003 + i)
            losses.append(float(m.loss_on(batch)))
        return {"loss": float(np.mean(losses))}

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
        c = {k: batch[k][0].float().cpu().numpy() for k in ("melody", "melody_mask", "dynamics", "dynamics_mask", "rhythm", "rhythm_mask")}
        controls = ControlSet(n_frames=T, **{k: v.reshape(T, -1) if k in ("melody", "rhythm") else v.reshape(T) for k, v in c.items()})
        plot = plot_controls(controls, logmel.numpy(), folder / f"controls-step{step:07d}.png", title=f"{batch['caption'][0]} (x0 estimate, step {step})", dpi=60)
        return [mel_png, wav, plot]


def _generator_val_batches(config: dict) -> list[dict[str, Any]]:
    """The generator's fixed validation batches ([] when the corpus has no valid split)."""
    from cadenza.train.generator import SyntheticClips, collate

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


# --------------------------------------------------------------------------------------- vocoder
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
        from cadenza.train.vocoder import VocoderModule

        return VocoderModule(config)

    def train_data(self, config: dict, module: Any = None) -> DataSpec:
        from cadenza.train.vocoder import RandomCropDataset, read_manifest

        t, data = config["train"], config.get("data", {})
        sr = int(config.get("mel", {}).get("sample_rate", 22050))
        if data.get("source") == "synthetic":
            tones = synthetic_tones(int(data.get("synthetic_clips", 4)), float(data.get("synthetic_seconds", 1.0)), int(t.get("seed", 0)), sr)
            ds = _ArrayCrops(tones, int(t["crop_samples"]), int(t.get("seed", 0)))
        else:
            if not t.get("data"):
                raise CadenzaError("the vocoder config names no training data (train.data is null)", "pass train.data=path/to/manifest.jsonl, or data.source=synthetic for a smoke test")
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
        from cadenza.train.vocoder import heldout_crops, mel_l1

        m, data = _inner(module), config.get("data", {})
        n, seconds = int(data.get("val_clips", 12)), float(data.get("val_seconds", 3.0))
        if n <= 0:
            return {}
        if getattr(m, "_cadenza_val", None) is None:
            seed = int(config["train"].get("seed", 0))
            if data.get("source") == "synthetic":
                m._cadenza_val = torch.from_numpy(np.stack(synthetic_tones(n, seconds, seed + 1_000_003, int(config.get("mel", {}).get("sample_rate", 22050)))))
            else:
                m._cadenza_val = heldout_crops(config["train"]["data"], n, seconds, seed, split="valid")
        m.generator.eval()
        return {"mel_l1": mel_l1(m.generator, m._cadenza_val, m.mel)}

    def export(self, module: Any, config: dict, progress: Any) -> tuple[dict[str, torch.Tensor], dict]:
        gen = module.generator
        cfg = {**config, "model": gen.config.to_dict(), "mel": gen.mel_config.to_dict(), "training": {"steps": progress.step}}
        return gen.state_dict(), cfg


def _array_crops_cls():
    from cadenza.train.vocoder import RandomCropDataset

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


# --------------------------------------------------------------------------------------- beats
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
        from cadenza.train.beats import BeatModule

        return BeatModule(config)

    def train_data(self, config: dict, module: Any = None) -> DataSpec:
        from cadenza.train.beats import BeatBatches, load_beat_corpus, synth_clicks

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
        from cadenza.controls.beat_tracker import NeuralBeatTracker
        from cadenza.train.beats import evaluate_tracker, load_beat_corpus, synth_clicks

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
        from cadenza.controls.beat_tracker import MODEL_KIND

        cfg = {"kind": MODEL_KIND, "model": module.model.config, "postfilter": config.get("postfilter"), "train_step": progress.step, "name": config.get("name", "beats")}
        return module.model.state_dict(), cfg


# --------------------------------------------------------------------------------------- clap
class ClapTask(Task):
    """Small CLAP text–audio model (``cadenza.train.clap.ClapModule``)."""

    name, config_kind = "clap", "clap"
    defaults = {"data": {"source": "corpus", "corpus": "data/corpus-small", "synthetic_clips": 8, "val_clips": 64}}
    val_best, val_higher_is_better = "t2a_r@10", True  # text→audio recall@10, the number the README reports

    def _corpus(self, config: dict, split: str = "train"):
        from cadenza.train.clap import ClapCorpus, load_corpus

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
        from cadenza.train.clap import eval_set, evaluate_retrieval

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
        from cadenza.train.clap import ClapModule, encode_captions

        corpus = self._corpus(config)
        encoder = build_text_encoder(config["model"]["text_encoder"], config["model"]["text_dim"])
        table, rows = encode_captions(encoder, corpus.captions)
        module = ClapModule(config, table)
        module._cadenza_data = (corpus, rows)  # the same corpus and caption rows feed train_data
        return module

    def train_data(self, config: dict, module: Any = None) -> DataSpec:
        from cadenza.train.clap import CropBatches

        if module is None:
            module = self.build_module(config)
        corpus, rows = _inner(module)._cadenza_data
        t = config["train"]
        ds = CropBatches(corpus, rows, int(t["batch_size"]), int(t["crop_frames"]), float(t.get("gain_db", 6.0)), int(t.get("seed", 0)))
        return DataSpec(ds, ds.batch_size, prebatched=True)

    def export(self, module: Any, config: dict, progress: Any) -> tuple[dict[str, torch.Tensor], dict]:
        from cadenza.eval.clap import MODEL_KIND

        cfg = {"kind": MODEL_KIND, "name": config.get("name", "clap"), "model": module.model.config, "train_step": progress.step}
        return module.model.state_dict(), cfg


TASKS: dict[str, Task] = {t.name: t for t in (GeneratorTask(), VocoderTask(), BeatsTask(), ClapTask())}


def get_task(name: str) -> Task:
    """The registered task ``name`` (CadenzaError listing the choices otherwise)."""
    if name not in TASKS:
        raise CadenzaError(f"unknown model '{name}'", f"choose one of: {', '.join(TASKS)}")
    return TASKS[name]


def load_task_config(task: Task, name_or_path: str, overrides: list[str] | None = None) -> dict:
    """A shipped config or JSON path with the task's and the runner's defaults filled in, then overrides."""
    import json

    from cadenza.config import apply_overrides, resolve_config_path

    path = resolve_config_path(task.config_kind, name_or_path)
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CadenzaError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
    from cadenza.train.runner import RUNNER_DEFAULTS

    return apply_overrides(deep_merge(deep_merge(RUNNER_DEFAULTS, task.defaults), raw), overrides)
