"""Noise schedules, the training loss and the sampler (DDIM / DPM-Solver++, CFG, inpainting).

Choices (documented in the model card):

- training noise from diffusers' ``DDPMScheduler`` with the cosine schedule
  (``squaredcos_cap_v2``, 1000 steps) and **v-prediction**: v stays well scaled at both ends of
  the cosine schedule (ε-prediction is ill-conditioned near t = T where the signal is gone),
  and it samples better in few steps;
- sampling with diffusers' ``DDIMScheduler`` (η = 0) or ``DPMSolverMultistepScheduler``
  (``dpmsolver++``, 2nd order), "trailing" timestep spacing so the first step starts from pure
  noise at t = 999;
- classifier-free guidance on text, and optionally on the controls (``control_cfg``), all
  branches in one batch (``cadenza.conditioning.cfg``);
- optionally, dynamics guidance: the sampled mel gets the per-frame gain that puts its loudness
  contour on the given curve (``cadenza.conditioning.dynamics_guidance``; known frames keep theirs);
- inpainting/continuation by replacement (RePaint without resampling): after every step the
  known frames are overwritten with the known clean mel noised to the next timestep, and with
  the clean mel itself after the last step.
"""

from __future__ import annotations

import warnings
from typing import Callable, Sequence

import torch

from cadenza.controls.registry import control_names
from cadenza.conditioning.cfg import ControlScale, guidance_branches, guide_multi, null_text
from cadenza.conditioning.controls import empty_controls, pad_controls
from cadenza.conditioning.dynamics_guidance import DynamicsGuide, mel_sampler_units
from cadenza.conditioning.text import TextEmbedding
from cadenza.errors import CadenzaError
from cadenza.generators.controlnet import MusicControlNet

SAMPLERS = ("dpmsolver++", "ddim")
DEFAULT_DIFFUSION = {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2", "prediction_type": "v_prediction"}
# other keys of the config's ``diffusion`` section: standardize_mel (bool), stats_clips (int)


def _schedule_kwargs(diffusion: dict | None) -> dict:
    cfg = {**DEFAULT_DIFFUSION, **(diffusion or {})}
    if cfg["prediction_type"] not in ("v_prediction", "epsilon"):
        raise CadenzaError(f"diffusion.prediction_type '{cfg['prediction_type']}' unsupported", "use v_prediction or epsilon")
    return {k: cfg[k] for k in DEFAULT_DIFFUSION}


def make_noise_scheduler(diffusion: dict | None = None):
    """The training-time forward process."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(**_schedule_kwargs(diffusion), clip_sample=False)


def make_sampler(name: str, diffusion: dict | None = None):
    """A fresh inference scheduler (they are stateful, so one per sampling run)."""
    kw = _schedule_kwargs(diffusion)
    if name == "ddim":
        from diffusers import DDIMScheduler

        return DDIMScheduler(**kw, clip_sample=False, set_alpha_to_one=True, timestep_spacing="trailing")
    if name in ("dpmsolver++", "dpm++", "dpmsolver"):
        from diffusers import DPMSolverMultistepScheduler

        return DPMSolverMultistepScheduler(
            **kw, algorithm_type="dpmsolver++", solver_order=2, timestep_spacing="trailing", lower_order_final=True
        )
    raise CadenzaError(f"unknown sampler '{name}'", f"choose one of {', '.join(SAMPLERS)}")


def diffusion_loss(
    model: MusicControlNet,
    x0: torch.Tensor,
    text: TextEmbedding,
    controls: dict[str, torch.Tensor] | None,
    noise_scheduler,
    generator: torch.Generator | None = None,
    use_adapter: bool = True,
    loss: str = "mse",
    frame_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """One denoising loss on a batch of clean normalised mels (B, n_mels, T).

    ``frame_weight`` (B, T), e.g. 0 on padding frames, weights the per-frame error.
    """
    b = x0.shape[0]
    n_train = noise_scheduler.config.num_train_timesteps
    t = torch.randint(0, n_train, (b,), generator=generator).to(x0.device)
    noise = torch.randn(x0.shape, generator=generator).to(x0)
    xt = noise_scheduler.add_noise(x0, noise, t)
    if noise_scheduler.config.prediction_type == "v_prediction":
        target = noise_scheduler.get_velocity(x0, noise, t)
    else:
        target = noise
    pred = model(xt, t, text, controls, use_adapter=use_adapter)
    err = pred - target
    per = err.abs() if loss == "l1" else err.square()
    if frame_weight is None:
        return per.mean()
    w = frame_weight.to(per)[:, None, :]
    return (per * w).sum() / (w.sum() * per.shape[1]).clamp(min=1.0)


def batch_noise(shape: Sequence[int], generators: Sequence[torch.Generator]) -> torch.Tensor:
    """Gaussian noise with item ``i`` drawn from ``generators[i]`` (so each seed is independent of batching)."""
    return torch.stack([torch.randn(tuple(shape[1:]), generator=g) for g in generators])


class GuidedDenoiser:
    """One guided prediction per sampler step: every CFG branch in one batched forward pass.

    Branches, in batch order: (text, controls); (null text, controls) when ``cfg`` > 1; then
    (text, controls without group g) for each control group with a non-zero ``control_cfg``
    scale whose controls are given somewhere in the batch. Built once per sampling run, so the
    branch inputs are concatenated once, not at every step.
    """

    def __init__(
        self, model: MusicControlNet, text: TextEmbedding, controls: dict[str, torch.Tensor], cfg: float, control_cfg: ControlScale,
        downbeat_cfg: float = 0.0,
    ) -> None:
        self.model, self.b = model, len(text)
        self.text_scale = float(cfg) if cfg is not None else 1.0
        null = lambda: null_text(model.null_tokens, model.null_pooled, self.b, text.tokens.shape[1])  # noqa: E731
        names = getattr(model, "control_names", None) or control_names()
        branches = guidance_branches(text, controls, null, cfg, control_cfg, names, downbeat_cfg=downbeat_cfg)
        self.text_guided, self.scales, self.frame_masks = branches.text_guided, branches.scales, branches.frame_masks
        self.n_branches, self.text_in, self.controls_in = branches.n, branches.text, branches.controls

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        tt = torch.full((self.b * self.n_branches,), int(t), dtype=torch.long)
        x_in = x if self.n_branches == 1 else torch.cat([x] * self.n_branches)
        preds = self.model(x_in, tt, self.text_in, self.controls_in).chunk(self.n_branches)
        if self.n_branches == 1:
            return preds[0]
        uncond = preds[1] if self.text_guided else None
        without = preds[2:] if self.text_guided else preds[1:]
        return guide_multi(preds[0], uncond, self.text_scale, without, self.scales, self.frame_masks)


def _dynamics_guide(model: MusicControlNet, controls: dict[str, torch.Tensor] | None, n_frames: int, length: int, strength: float) -> DynamicsGuide | None:
    """The loudness correction for this run, or None when it is off or no dynamics are given.

    Padding frames copy the last real frame's target and mask, so a curve given to the end of the
    clip keeps its full weight there (the padding is cut off afterwards).
    """
    if not strength or controls is None or not bool((controls["dynamics_mask"][:, :n_frames] > 0).any()):
        return None
    target, mask = controls["dynamics"][:, :n_frames, 0], controls["dynamics_mask"][:, :n_frames]
    pad = length - n_frames
    if pad:
        target, mask = (torch.cat([v, v[:, -1:].expand(-1, pad)], dim=1) for v in (target, mask))
    to_log_mel, scale = mel_sampler_units(model.mel_mean, model.mel_std)
    return DynamicsGuide(target.float(), mask.float(), float(strength), to_log_mel, scale)


@torch.no_grad()
def sample(
    model: MusicControlNet,
    text: TextEmbedding,
    controls: dict[str, torch.Tensor] | None,
    n_frames: int,
    generators: Sequence[torch.Generator],
    steps: int = 25,
    cfg: float = 3.0,
    sampler: str = "dpmsolver++",
    diffusion: dict | None = None,
    known: torch.Tensor | None = None,
    known_mask: torch.Tensor | None = None,
    callback: Callable[[int, int], None] | None = None,
    control_cfg: ControlScale = None,
    dynamics_guidance: float = 0.0,
    downbeat_cfg: float = 0.0,
) -> torch.Tensor:
    """Generate normalised mels (B, n_mels, n_frames).

    ``generators``: one ``torch.Generator`` per batch item (explicit seeds). ``known`` (B, n_mels,
    n_frames) with ``known_mask`` (B, n_frames) in {0, 1}: frames to keep (continuation,
    inpainting, long-form windows). ``cfg`` ≤ 1 disables text guidance; ``control_cfg`` (a
    scale, or a scale per control name; None / 0 = off) adds guidance on the controls inside
    their masks (``cadenza.conditioning.cfg``). ``dynamics_guidance`` (0–1, 0 = off) moves the
    sampled mel's loudness contour onto the given curve inside the dynamics mask
    (``cadenza.conditioning.dynamics_guidance``). ``downbeat_cfg`` (0 = off) adds the downbeat term
    of ``cadenza.conditioning.cfg`` on the rhythm's frames.
    """
    if steps < 1:
        raise CadenzaError(f"steps must be at least 1, got {steps}", "try 25")
    b = len(text)
    if len(generators) != b:
        raise ValueError(f"{len(generators)} generators for a batch of {b}")
    length = model.pad_length(n_frames)
    level_guide = _dynamics_guide(model, controls, n_frames, length, dynamics_guidance)
    controls = empty_controls(b, length) if controls is None else pad_controls(controls, length)
    scheduler = make_sampler(sampler, diffusion)
    with warnings.catch_warnings():  # diffusers' numpy-2 DeprecationWarning in set_timesteps; harmless
        warnings.simplefilter("ignore", DeprecationWarning)
        scheduler.set_timesteps(steps)
    x = batch_noise((b, model.n_mels, length), generators) * scheduler.init_noise_sigma
    denoise = GuidedDenoiser(model, text, controls, cfg, control_cfg, downbeat_cfg=downbeat_cfg)
    if known is not None:
        mask = torch.nn.functional.pad(known_mask.float(), (0, length - n_frames))[:, None, :]
        known = torch.nn.functional.pad(known, (0, length - n_frames))
    timesteps = list(scheduler.timesteps)
    for i, t in enumerate(timesteps):
        pred = denoise(scheduler.scale_model_input(x, t), t)
        x = scheduler.step(pred, t, x).prev_sample
        if known is not None:
            if i + 1 < len(timesteps):
                t_next = torch.full((b,), int(timesteps[i + 1]), dtype=torch.long)
                noised = scheduler.add_noise(known, batch_noise(known.shape, generators), t_next)
            else:
                noised = known
            x = mask * noised + (1 - mask) * x
        if callback is not None:
            callback(i + 1, len(timesteps))
    if level_guide is not None:  # on the clean output itself, so a multistep solver cannot over- or undershoot it
        x = x + level_guide.correction(x) * (1.0 if known is None else 1.0 - mask)
    return x[..., :n_frames]
