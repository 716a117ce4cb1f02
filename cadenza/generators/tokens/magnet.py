"""MAGNeT (Ziv et al. 2024): masked non-autoregressive decoding over the same tokens and conditioning.

Training (``magnet_loss``): per clip one codebook level ``k`` is drawn; levels below it are
given, levels above it are fully masked, and level ``k`` is masked in spans of ``span`` frames
(MAGNeT's span masking, about 3 frames = 70 ms at 43 Hz) at a rate drawn from the cosine
schedule ``cos(π/2 · u)``, u ~ U(0, 1). The number of span starts is chosen so the expected
masked fraction equals that rate (each frame starts a span with probability
``1 - (1 - rate)^(1/span)``). The loss is the cross-entropy on the masked tokens of level k.

Decoding (``magnet_sample``): level by level (0 first, then each later level conditioned on the
finished ones), ``iterations[k]`` ≤ 16 steps each. At step i every masked token is drawn, and
the ``floor(n · cos(π/2 · (i + 1) / steps))`` least confident of the newly drawn ones are masked
again (MaskGIT; confidence = log-probability plus Gumbel noise that anneals to zero), so the last
step leaves none masked. Classifier-free guidance anneals with the masking rate as in MAGNeT:
``scale = cfg_min + (cfg − cfg_min) · rate``; control guidance as in the LM. Known frames
(continuation and inpainting alike) are never masked and come back exactly. Span-level
re-scoring at inference and the rescorer model are not used.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from cadenza.conditioning.cfg import ControlScale
from cadenza.conditioning.text import TextEmbedding
from cadenza.errors import CadenzaError
from cadenza.generators.tokens.conditioning import GuidanceBranches
from cadenza.generators.tokens.generator import TokenGenerator
from cadenza.generators.tokens.net import TokenNet, sample_logits, seeded_uniform
from cadenza.protocols import GenerationRequest, ProgressCallback

MAX_ITERATIONS = 16


def cosine_rate(progress: torch.Tensor | float) -> torch.Tensor:
    """Masking rate of the cosine schedule at ``progress`` in [0, 1] (1 → 0)."""
    return torch.cos(torch.as_tensor(progress, dtype=torch.float32) * (math.pi / 2))


def masked_counts(n: torch.Tensor, iterations: int) -> torch.Tensor:
    """(iterations, B) long: tokens still masked after each step for ``n`` (B,) tokens to decode; the last is 0."""
    i = torch.arange(1, iterations + 1, dtype=torch.float32)
    return torch.floor(n.float()[None, :] * cosine_rate(i / iterations).clamp(min=0.0)[:, None]).long()  # cos(π/2) is -4e-8 in float


def span_mask(valid: torch.Tensor, rate: torch.Tensor, span: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, T) bool: spans of ``span`` frames covering about ``rate`` (B,) of each row (at least one span)."""
    b, t = valid.shape
    p_start = 1.0 - (1.0 - rate.clamp(0.0, 1.0)) ** (1.0 / span)
    n_starts = torch.round(p_start * t).long().clamp(min=1, max=t)
    scores = torch.rand(b, t, generator=generator).to(valid.device)
    ranks = scores.argsort(-1).argsort(-1)
    starts = (ranks < n_starts[:, None].to(valid.device)).float()
    covered = F.max_pool1d(F.pad(starts[:, None], (span - 1, 0)), span, stride=1)[:, 0]  # frame t masked if a span starts in [t-span+1, t]
    return (covered > 0) & valid.bool()


def magnet_loss(
    net: TokenNet, codes: torch.Tensor, text: TextEmbedding, controls: dict[str, torch.Tensor] | None,
    valid: torch.Tensor | None = None, generator: torch.Generator | None = None, span: int = 3,
) -> torch.Tensor:
    """Masked-token cross-entropy on one random level per clip (see the module docstring)."""
    b, k, t = codes.shape
    valid = torch.ones(b, t, device=codes.device) if valid is None else valid
    level = torch.randint(0, k, (b,), generator=generator).to(codes.device)
    rate = cosine_rate(torch.rand(b, generator=generator)).to(codes.device)
    masked = span_mask(valid, rate, span, generator)  # (B, T)
    levels = torch.arange(k, device=codes.device)[None, :, None]
    at = (levels == level[:, None, None]) & masked[:, None, :]
    hidden = at | (levels > level[:, None, None])
    inputs = torch.where(hidden, torch.full_like(codes, net.mask_id), codes)
    memory, mmask, cond = net.condition(text, controls, t)
    logits = net(inputs, memory, mmask, cond, causal=False)
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), codes.reshape(-1), reduction="none")
    w = at.reshape(-1).float()
    return (ce * w).sum() / w.sum().clamp(min=1.0)


def check_iterations(iterations: Sequence[int], codebooks: int) -> list[int]:
    """Steps per level: one count per codebook (a shorter list repeats its last count), each 1..16."""
    its = [int(i) for i in iterations]
    if not its or any(i < 1 or i > MAX_ITERATIONS for i in its):
        raise CadenzaError(f"MAGNeT iterations {its} must be 1 to {MAX_ITERATIONS} per level", "e.g. sampling.iterations=[16, 8, 4, 4]")
    return (its + [its[-1]] * codebooks)[:codebooks]


@torch.no_grad()
def magnet_sample(
    net: TokenNet,
    text: TextEmbedding,
    controls: dict[str, torch.Tensor],
    n_frames: int,
    generators: list[torch.Generator],
    iterations: Sequence[int] = (16, 8, 4, 4),
    cfg: float | None = 3.0,
    cfg_min: float = 1.0,
    control_cfg: ControlScale = None,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 0.0,
    remask_noise: float = 1.0,
    known: torch.Tensor | None = None,
    known_mask: torch.Tensor | None = None,
    progress: ProgressCallback | None = None,
    trace: list[tuple[int, int, list[int]]] | None = None,
) -> torch.Tensor:
    """Codes (B, K, n_frames); ``trace`` (when a list) receives (level, step, tokens still masked per row)."""
    b, k = len(generators), net.codebooks
    its = check_iterations(iterations, k)
    branches = GuidanceBranches(text, controls, net.conditioner.null(b, text.tokens.shape[1]), cfg, control_cfg)
    memory, mmask, cond = net.condition(branches.text, branches.controls, n_frames)
    masks = [m[..., None] for m in branches.frame_masks]  # (B, T, 1) on level logits (B, T, V)
    keep = torch.zeros(b, n_frames, dtype=torch.bool) if known is None else known_mask.bool()
    codes = torch.full((b, k, n_frames), net.mask_id, dtype=torch.long)
    if known is not None:
        codes = torch.where(keep[:, None, :], known, codes)
    n_free = (~keep).sum(-1)  # (B,)
    high = float(cfg) if cfg is not None else 1.0
    total, done = sum(its), 0
    for level, steps in enumerate(its):
        counts = masked_counts(n_free, steps)
        for i in range(steps):
            rate = float(cosine_rate(i / steps))
            logits = net(codes.repeat(branches.n, 1, 1), memory, mmask, cond, causal=False)[:, level]  # (n·B, T, V)
            guided = branches.combine(logits, cfg_min + (high - cfg_min) * rate, masks)
            drawn = sample_logits(guided, seeded_uniform(generators, (n_frames,)), temperature, top_k, top_p)
            masked = codes[:, level] == net.mask_id
            proposal = torch.where(masked, drawn, codes[:, level])
            logp = guided.float().log_softmax(-1).gather(-1, drawn[..., None])[..., 0]
            u = seeded_uniform(generators, (n_frames,)).clamp(1e-9, 1 - 1e-9)
            noise = remask_noise * (1.0 - (i + 1) / steps) * -torch.log(-torch.log(u))
            confidence = torch.where(masked, logp + noise, torch.full_like(logp, float("inf")))
            rank = confidence.argsort(-1).argsort(-1)
            remask = rank < counts[i][:, None]
            codes[:, level] = torch.where(remask, torch.full_like(proposal, net.mask_id), proposal)
            done += 1
            if trace is not None:
                trace.append((level, i, remask.sum(-1).tolist()))
            if progress is not None:
                progress(done, total)
    return codes


class MagnetGenerator(TokenGenerator):
    """``protocols.Generator`` by masked decoding: ``sample`` → codes (B, K, n_frames); known frames kept."""

    defaults = {**TokenGenerator.defaults, "iterations": [16, 8, 4, 4], "cfg_min": 1.0, "remask_noise": 1.0}

    def iterations(self, request: GenerationRequest, opts: Mapping[str, Any]) -> list[int]:
        """Steps per level: the config's ``iterations``; ``request.steps`` (when given) sets level 0's and caps the rest."""
        its = check_iterations(opts["iterations"], self.net.codebooks)
        if request.steps is None:
            return its
        first = min(max(int(request.steps), 1), MAX_ITERATIONS)
        return [first] + [min(i, first) for i in its[1:]]

    def sample(self, request: GenerationRequest, conditions: Mapping[str, Any], progress: ProgressCallback | None = None) -> torch.Tensor:
        request = request.with_defaults({k: v for k, v in self.sampling.items() if k != "steps"})
        opts = self.options(conditions)
        c = self.prepare(request, conditions)
        return magnet_sample(
            self.net, c["text"], c["controls"], c["n_frames"], c["generators"], iterations=self.iterations(request, opts),
            cfg=request.cfg, cfg_min=float(opts["cfg_min"]), control_cfg=request.control_cfg or 0.0,
            temperature=float(opts["temperature"]), top_k=int(opts["top_k"]), top_p=float(opts["top_p"]),
            remask_noise=float(opts["remask_noise"]), known=c["known"], known_mask=c["known_mask"], progress=progress,
        )
