"""The token network both families train and ship: ``TokenConditioner`` + ``TokenTransformer``,
plus the seeded token sampling (temperature, top-k, top-p) both decoders draw with.

Why the sampling draws uniforms per seed: ``torch.multinomial`` takes one generator for the
whole batch, so a seed's output would depend on which other seeds share its batch. Here each
row's random numbers come from its own ``torch.Generator`` (one per seed, as the diffusion
sampler's noise does), and the draw is an inverse-CDF lookup over the sorted, filtered
distribution: vectorised over batch, codebooks and frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from cadenza.conditioning.text import TextEmbedding
from cadenza.errors import CadenzaError
from cadenza.generators.tokens.conditioning import TokenConditioner
from cadenza.generators.tokens.transformer import KVCache, TokenTransformer, TransformerConfig


@dataclass
class TokenModelConfig:
    """The ``model`` section: transformer sizes, codec shape (``codebooks``, ``cardinality``), text width."""

    transformer: TransformerConfig
    text_dim: int = 384
    control_hidden: int = 64
    null_tokens: int = 1

    @classmethod
    def from_dict(cls, data: dict) -> "TokenModelConfig":
        for key in ("codebooks", "cardinality"):
            if not isinstance(data.get(key), int) or isinstance(data.get(key), bool) or data[key] < 1:
                raise CadenzaError(f"model.{key} must be a positive integer, got {data.get(key)!r}", "it is filled from the codec when training starts")
        return cls(
            transformer=TransformerConfig.from_dict(data), text_dim=int(data.get("text_dim", 384)),
            control_hidden=int(data.get("control_hidden", 64)), null_tokens=int(data.get("null_tokens", 1)),
        )


class TokenNet(nn.Module):
    """Conditioning + transformer: ``condition`` once per sequence, then ``forward`` on tokens."""

    def __init__(self, cfg: TokenModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.conditioner = TokenConditioner(cfg.text_dim, cfg.transformer.dim, cfg.control_hidden, cfg.null_tokens)
        self.transformer = TokenTransformer(cfg.transformer)

    @property
    def codebooks(self) -> int:
        return self.cfg.transformer.codebooks

    @property
    def cardinality(self) -> int:
        return self.cfg.transformer.cardinality

    @property
    def pad_id(self) -> int:
        return self.cfg.transformer.pad_id

    @property
    def mask_id(self) -> int:
        return self.cfg.transformer.mask_id

    def condition(self, text: TextEmbedding, controls: dict[str, torch.Tensor] | None, n_positions: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.conditioner.condition(text, controls, n_positions)

    def new_cache(self, batch: int, max_len: int) -> KVCache:
        return self.transformer.new_cache(batch, max_len)

    def forward(
        self, tokens: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor, cond: torch.Tensor | None,
        causal: bool = True, cache: KVCache | None = None,
    ) -> torch.Tensor:
        return self.transformer(tokens, memory, memory_mask, cond, causal=causal, cache=cache)


def seeded_uniform(generators: Sequence[torch.Generator], shape: Sequence[int], device: torch.device | str = "cpu") -> torch.Tensor:
    """(len(generators), *shape) uniforms in [0, 1), row i from ``generators[i]``."""
    return torch.stack([torch.rand(tuple(shape), generator=g) for g in generators]).to(device)


def sample_logits(logits: torch.Tensor, uniforms: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 0.0) -> torch.Tensor:
    """Token ids (…) from logits (…, V) with one uniform per draw: greedy when ``temperature`` ≤ 0.

    ``top_k`` > 0 keeps the k most likely ids; 0 < ``top_p`` < 1 keeps the smallest set whose
    probability reaches ``top_p`` (the most likely id always stays).
    """
    if temperature <= 0:
        return logits.argmax(-1)
    sorted_logits, order = (logits.float() / temperature).sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(-1)
    keep = torch.ones_like(probs, dtype=torch.bool)
    if top_k and top_k > 0:
        keep &= torch.arange(probs.shape[-1], device=probs.device) < int(top_k)
    if top_p and 0.0 < top_p < 1.0:
        before = probs.cumsum(-1) - probs  # probability of the more likely ids
        keep &= before < float(top_p)
    probs = probs * keep
    cdf = probs.cumsum(-1)
    target = (uniforms.to(cdf.dtype) * cdf[..., -1]).unsqueeze(-1)
    pick = torch.searchsorted(cdf.contiguous(), target.contiguous(), right=True).clamp(max=probs.shape[-1] - 1)
    return order.gather(-1, pick).squeeze(-1)
