"""The autoregressive token LM (MusicGen-style): delay pattern, KV cache, CFG, top-k / top-p.

Training (``lm_loss``): codes (B, K, T) are delayed (``delay.build_delay``) to (B, K, T + K - 1);
the input at step s is the delayed step s - 1 (a start id at s = 0), the target step s; the
cross-entropy counts only real tokens of real frames. Step s adds the controls of frame s (the
frame whose level 0 it emits), so every level of a frame is predicted after seeing that frame's
controls.

Sampling (``lm_sample``): the guidance branches (text, null text, control-free per group;
``conditioning.GuidanceBranches``) run as one batch through a KV cache, one step per delayed
position; logits are guided as the diffusion model guides its prediction (control guidance
restricted to the frames its group gives, per codebook level), then drawn with temperature,
top-k and top-p from each seed's own generator. Continuation: known frames that form a prefix
are teacher-forced in one prefill pass and kept exactly; later steps still force any level whose
frame is known. Known frames after a free one (inpainting an inner span) are refused: a causal
model cannot condition on them; MAGNeT (``magnet.py``) inpaints.

See ``cadenza.generators.tokens.generator`` for the ``sample`` contract.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from cadenza.conditioning.cfg import ControlScale
from cadenza.conditioning.text import TextEmbedding
from cadenza.errors import CadenzaError
from cadenza.generators.tokens.conditioning import GuidanceBranches
from cadenza.generators.tokens.delay import build_delay, delay_valid_mask, revert_delay
from cadenza.generators.tokens.generator import TokenGenerator
from cadenza.generators.tokens.net import TokenNet, sample_logits, seeded_uniform
from cadenza.protocols import GenerationRequest, ProgressCallback


def lm_inputs(codes: torch.Tensor, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets), both (B, K, T + K - 1): targets are the delayed codes, inputs them shifted right by a start id."""
    target = build_delay(codes, pad_id)
    start = torch.full_like(target[..., :1], pad_id)
    return torch.cat([start, target[..., :-1]], dim=-1), target


def lm_loss(net: TokenNet, codes: torch.Tensor, text: TextEmbedding, controls: dict[str, torch.Tensor] | None, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Next-token cross-entropy on the delayed codes; ``valid`` (B, T) 0 on padding frames."""
    b, k, t = codes.shape
    inputs, target = lm_inputs(codes, net.pad_id)
    memory, mmask, cond = net.condition(text, controls, inputs.shape[-1])
    logits = net(inputs, memory, mmask, cond, causal=True)
    weight = delay_valid_mask(k, t, codes.device)[None].float().expand(b, -1, -1)
    if valid is not None:
        weight = weight * build_delay(valid.float()[:, None].expand(b, k, t), 0.0)
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.clamp(max=net.cardinality - 1).reshape(-1), reduction="none")
    w = weight.reshape(-1)
    return (ce * w).sum() / w.sum().clamp(min=1.0)


def known_prefix(known_mask: torch.Tensor) -> int:
    """Frames known at the start of every row; CadenzaError when a row knows a frame after a free one."""
    m = known_mask.bool()
    free_seen = (~m).long().cumsum(-1) > 0
    if bool((m & free_seen).any()):
        raise CadenzaError(
            "the AR token LM continues from known frames at the start only; these known frames follow free ones (inpainting)",
            "use a MAGNeT model (type 'magnet') to inpaint, or give the known audio as a prefix",
        )
    return int((~free_seen).sum(-1).min())


@torch.no_grad()
def lm_sample(
    net: TokenNet,
    text: TextEmbedding,
    controls: dict[str, torch.Tensor],
    n_frames: int,
    generators: list[torch.Generator],
    cfg: float | None = 3.0,
    control_cfg: ControlScale = None,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 0.0,
    known: torch.Tensor | None = None,
    known_mask: torch.Tensor | None = None,
    progress: ProgressCallback | None = None,
    use_cache: bool = True,
) -> torch.Tensor:
    """Codes (B, K, n_frames). ``controls`` on the token grid (B, n_frames, …); ``use_cache=False``
    recomputes every step over the whole prefix (the reference the cache is tested against)."""
    b, k, pad = len(generators), net.codebooks, net.pad_id
    steps = n_frames + k - 1
    branches = GuidanceBranches(text, controls, net.conditioner.null(b, text.tokens.shape[1]), cfg, control_cfg)
    memory, mmask, cond = net.condition(branches.text, branches.controls, steps)
    valid = delay_valid_mask(k, n_frames)  # (K, S)
    masks = [build_delay(m[:, None].expand(b, k, n_frames), 0.0)[..., None] for m in branches.frame_masks]  # (B, K, S, 1)
    seq = torch.full((b, k, steps), pad, dtype=torch.long)
    forced = torch.zeros(b, k, steps, dtype=torch.bool)
    prefix = 0
    if known is not None:
        known_mask = known_mask.bool()
        prefix = known_prefix(known_mask)
        known_d = build_delay(known, pad)
        forced = build_delay(known_mask[:, None].expand(b, k, n_frames), False) & valid
        seq = torch.where(forced, known_d, seq)
    first = min(prefix, steps - 1)  # the first step to sample (every level of steps before it is known)
    cache = net.new_cache(b * branches.n, steps) if use_cache else None
    start = torch.full((b, k, 1), pad, dtype=torch.long)

    def run(upto: int) -> torch.Tensor:
        """Logits (n·B, K, card) for step ``upto``: inputs after the cached ones (all of 0..upto without a cache)."""
        lo = cache.length if cache is not None else 0
        inputs = torch.cat([start, seq[..., :upto]], dim=-1) if lo == 0 else seq[..., lo - 1 : upto]
        out = net(inputs.repeat(branches.n, 1, 1), memory, mmask, cond[:, lo : upto + 1], causal=True, cache=cache)
        return out[:, :, -1]

    logits = run(first)
    total = steps - first
    scale = float(cfg) if cfg is not None else 1.0
    for s in range(first, steps):
        guided = branches.combine(logits, scale, [m[:, :, s] for m in masks])
        drawn = sample_logits(guided, seeded_uniform(generators, (k,)), temperature, top_k, top_p)
        token = torch.where(valid[:, s][None], drawn, torch.full_like(drawn, pad))
        seq[:, :, s] = torch.where(forced[:, :, s], seq[:, :, s], token)
        if progress is not None:
            progress(s - first + 1, total)
        if s + 1 < steps:
            logits = run(s + 1)
    return revert_delay(seq)


class TokenLMGenerator(TokenGenerator):
    """``protocols.Generator`` over codec tokens: ``sample`` → codes (B, K, n_frames); ``representation`` decodes them."""

    def sample(self, request: GenerationRequest, conditions: Mapping[str, Any], progress: ProgressCallback | None = None) -> torch.Tensor:
        request = request.with_defaults(self.sampling)
        opts = self.options(conditions)
        c = self.prepare(request, conditions)
        return lm_sample(
            self.net, c["text"], c["controls"], c["n_frames"], c["generators"], cfg=request.cfg, control_cfg=request.control_cfg or 0.0,
            temperature=float(opts["temperature"]), top_k=int(opts["top_k"]), top_p=float(opts["top_p"]),
            known=c["known"], known_mask=c["known_mask"], progress=progress,
        )
