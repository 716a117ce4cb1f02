"""A small pre-norm transformer over K parallel codebooks, causal with a KV cache or bidirectional.

Why one network for both token families: the AR LM (MusicGen) and MAGNeT differ only in the
attention mask and the training objective, so one definition keeps their conditioning and
shapes identical. Choices:

- **input**: K embedding tables (one per codebook, ``cardinality + 2`` rows: the codes, the
  delay pattern's empty/start id ``cardinality`` and MAGNeT's mask id ``cardinality + 1``),
  summed per position, plus a per-position conditioning vector (the controls);
- **blocks**: pre-norm LayerNorm, self-attention with rotary position embeddings (RoPE: no
  length limit, and a cached step needs only its own position), cross-attention to the text
  states, a GELU MLP; attention through ``scaled_dot_product_attention``;
- **output**: K heads (one ``Linear`` to ``K · cardinality`` logits) over the codes only;
- **KV cache**: self-attention keys/values of past positions in preallocated buffers and the
  text's cross-attention keys/values computed once, so a decoding step costs one position.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class TransformerConfig:
    """Hyper-parameters (the model config's ``model`` section, read by ``from_dict``)."""

    codebooks: int
    cardinality: int
    dim: int = 256
    layers: int = 4
    heads: int = 4
    ff_mult: float = 4.0
    dropout: float = 0.0
    rope_base: float = 10000.0

    @classmethod
    def from_dict(cls, data: dict) -> "TransformerConfig":
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in names})

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def pad_id(self) -> int:
        """The delay pattern's empty position and the sequence start."""
        return self.cardinality

    @property
    def mask_id(self) -> int:
        """MAGNeT's masked position."""
        return self.cardinality + 1


class KVCache:
    """Per-layer self-attention keys/values (preallocated to ``max_len``) and cross-attention memory."""

    def __init__(self, layers: int, batch: int, heads: int, head_dim: int, max_len: int, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> None:
        self.k = torch.zeros(layers, batch, heads, max_len, head_dim, dtype=dtype, device=device)
        self.v = torch.zeros_like(self.k)
        self.length = 0
        self.memory: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * layers

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this call's keys/values after the cached ones; return all keys/values so far."""
        n = k.shape[2]
        end = self.length + n
        if end > self.k.shape[3]:
            raise ValueError(f"KV cache of {self.k.shape[3]} positions cannot take position {end - 1}")
        self.k[layer, :, :, self.length : end] = k
        self.v[layer, :, :, self.length : end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]


def rope(x: torch.Tensor, positions: torch.Tensor, base: float) -> torch.Tensor:
    """Rotary embedding of (B, H, N, D) at absolute ``positions`` (N,) (rotate-half form)."""
    d = x.shape[-1]
    freqs = base ** (-torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d)
    angles = positions.to(torch.float32)[:, None] * freqs[None, :]  # (N, D/2)
    cos, sin = angles.cos().repeat(1, 2).to(x.dtype), angles.sin().repeat(1, 2).to(x.dtype)
    half = d // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float, rope_base: float) -> None:
        super().__init__()
        if dim % heads or (dim // heads) % 2:
            raise ValueError(f"model.dim {dim} must split into {heads} heads of an even size")
        self.heads, self.dropout, self.rope_base = heads, dropout, rope_base
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, positions: torch.Tensor, causal: bool, cache: KVCache | None, layer: int) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k = rope(q, positions, self.rope_base), rope(k, positions, self.rope_base)
        mask, is_causal = None, causal
        if cache is not None:
            past = cache.length
            k, v = cache.append(layer, k, v)
            is_causal = False
            if causal and n > 1:  # a prefill after cached positions: query i sees keys up to past + i
                mask = torch.arange(past + n, device=x.device)[None, :] <= (past + torch.arange(n, device=x.device))[:, None]
            # one new position sees every cached key: no mask needed
        p = self.dropout if self.training else 0.0
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal and n > 1, dropout_p=p)
        return self.out(o.transpose(1, 2).reshape(b, n, d))


class CrossAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.q = nn.Linear(dim, dim, bias=False)
        self.kv = nn.Linear(dim, 2 * dim, bias=False)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor, cache: KVCache | None, layer: int) -> torch.Tensor:
        b, n, d = x.shape
        h = self.heads
        q = self.q(x).view(b, n, h, d // h).transpose(1, 2)
        kv = cache.memory[layer] if cache is not None else None
        if kv is None:
            k, v = self.kv(memory).view(b, memory.shape[1], 2, h, d // h).permute(2, 0, 3, 1, 4)
            kv = (k, v)
            if cache is not None:
                cache.memory[layer] = kv
        p = self.dropout if self.training else 0.0
        o = F.scaled_dot_product_attention(q, kv[0], kv[1], attn_mask=memory_mask[:, None, None, :], dropout_p=p)
        return self.out(o.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        d = cfg.dim
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = SelfAttention(d, cfg.heads, cfg.dropout, cfg.rope_base)
        self.cross = CrossAttention(d, cfg.heads, cfg.dropout)
        hidden = int(d * cfg.ff_mult)
        self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(hidden, d))

    def forward(self, x: torch.Tensor, positions: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor, causal: bool, cache: KVCache | None, layer: int) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), positions, causal, cache, layer)
        x = x + self.cross(self.norm2(x), memory, memory_mask, cache, layer)
        return x + self.mlp(self.norm3(x))


class TokenTransformer(nn.Module):
    """Tokens (B, K, N) + conditioning (B, N, dim) + text memory → logits (B, K, N, cardinality)."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.vocab = cfg.cardinality + 2
        self.embed = nn.Embedding(cfg.codebooks * self.vocab, cfg.dim)  # K tables, one block of rows each
        nn.init.normal_(self.embed.weight, std=0.02)
        self.register_buffer("offsets", torch.arange(cfg.codebooks) * self.vocab, persistent=False)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(cfg.dim)
        self.heads = nn.Linear(cfg.dim, cfg.codebooks * cfg.cardinality)

    def new_cache(self, batch: int, max_len: int) -> KVCache:
        p = self.embed.weight
        return KVCache(self.cfg.layers, batch, self.cfg.heads, self.cfg.dim // self.cfg.heads, max_len, p.dtype, p.device)

    def forward(
        self,
        tokens: torch.Tensor,
        memory: torch.Tensor,
        memory_mask: torch.Tensor,
        cond: torch.Tensor | None = None,
        causal: bool = True,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """``tokens`` ids in [0, cardinality + 2); with ``cache`` they continue the cached positions."""
        b, k, n = tokens.shape
        if k != self.cfg.codebooks:
            raise ValueError(f"tokens have {k} codebooks, the model {self.cfg.codebooks}")
        x = self.embed(tokens + self.offsets[None, :, None]).sum(1)  # (B, N, dim)
        if cond is not None:
            x = x + cond
        start = cache.length if cache is not None else 0
        positions = torch.arange(start, start + n, device=tokens.device)
        for i, block in enumerate(self.blocks):
            x = block(x, positions, memory, memory_mask, causal, cache, i)
        if cache is not None:
            cache.length += n
        logits = self.heads(self.norm(x)).view(b, n, k, self.cfg.cardinality)
        return logits.permute(0, 2, 1, 3)
