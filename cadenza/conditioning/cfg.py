"""Classifier-free guidance on text: one batched pass for the conditional and null prompts.

The generator is trained with ~10 % of captions replaced by a learned null embedding, so at
inference the same network gives a text-conditional and an unconditional prediction. Both run
in one doubled batch (the controls are the same in both halves: guidance is on text only, as
in Music ControlNet), then ``uncond + scale · (cond − uncond)``.
"""

from __future__ import annotations

import torch

from cadenza.conditioning.text import TextEmbedding


def null_text(null_tokens: torch.Tensor, null_pooled: torch.Tensor, batch: int, length: int) -> TextEmbedding:
    """A batch of the learned null prompt, padded to ``length`` tokens (only the null tokens valid)."""
    n, dim = null_tokens.shape
    length = max(length, n)
    tokens = torch.zeros(batch, length, dim, dtype=null_tokens.dtype, device=null_tokens.device)
    tokens[:, :n] = null_tokens
    mask = torch.zeros(batch, length, dtype=torch.bool, device=null_tokens.device)
    mask[:, :n] = True
    return TextEmbedding(tokens, mask, null_pooled.expand(batch, -1))


def replace_with_null(text: TextEmbedding, drop: torch.Tensor, null_tokens: torch.Tensor, null_pooled: torch.Tensor) -> TextEmbedding:
    """Swap the prompts where ``drop`` (B,) is True for the null prompt (condition dropout)."""
    null = null_text(null_tokens, null_pooled, len(text), text.tokens.shape[1])
    length = null.tokens.shape[1]
    tokens = torch.nn.functional.pad(text.tokens, (0, 0, 0, length - text.tokens.shape[1]))
    mask = torch.nn.functional.pad(text.mask, (0, length - text.mask.shape[1]))
    d = drop.to(tokens.device)
    return TextEmbedding(
        torch.where(d[:, None, None], null.tokens, tokens),
        torch.where(d[:, None], null.mask, mask),
        torch.where(d[:, None], null.pooled, text.pooled),
    )


def with_unconditional(text: TextEmbedding, null_tokens: torch.Tensor, null_pooled: torch.Tensor) -> TextEmbedding:
    """[conditional batch; null batch] for one guided forward pass."""
    null = null_text(null_tokens, null_pooled, len(text), text.tokens.shape[1])
    return TextEmbedding.cat([text, null])


def guide(prediction: torch.Tensor, scale: float) -> torch.Tensor:
    """Combine a doubled-batch prediction [cond; uncond] into the guided one."""
    cond, uncond = prediction.chunk(2, dim=0)
    return uncond + scale * (cond - uncond)
