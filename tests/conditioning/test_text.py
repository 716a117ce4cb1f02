"""Text encoders: the debug hash encoder, the LRU cache, and the real MiniLM encoder."""

import pytest
import torch

from cadenza.conditioning.text import HashTextEncoder, MiniLMTextEncoder, TextEmbedding, build_text_encoder
from cadenza.errors import CadenzaError


def test_hash_encoder_is_deterministic_and_padded():
    enc = HashTextEncoder(dim=16)
    a = enc.encode(["calm piano", "a much longer prompt here"])
    assert a.tokens.shape == (2, 5, 16) and a.mask.shape == (2, 5) and a.pooled.shape == (2, 16)
    assert a.mask[0].tolist() == [True, True, False, False, False]
    assert torch.all(a.tokens[0, 2:] == 0)
    b = HashTextEncoder(dim=16).encode(["calm piano"])
    assert torch.equal(a.tokens[0, :2], b.tokens[0]) and torch.allclose(a.pooled[0], b.pooled[0])
    assert not torch.allclose(a.pooled[0], a.pooled[1])
    assert torch.allclose(a.pooled.norm(dim=-1), torch.ones(2))


def test_cache_is_lru_and_bounded():
    enc = HashTextEncoder(dim=8, cache_size=2)
    calls = []
    original = enc._encode_uncached
    enc._encode_uncached = lambda texts: calls.append(list(texts)) or original(texts)
    enc.encode(["a", "b", "a"])
    assert calls == [["a", "b"]]  # each missing text encoded once
    enc.encode(["a"])  # hit
    enc.encode(["c"])  # evicts the least recently used ("b")
    assert list(enc._cache) == ["a", "c"]
    enc.encode(["b"])
    assert calls[-1] == ["b"]


def test_bad_prompt_and_unknown_encoder():
    with pytest.raises(CadenzaError, match="prompt must be a string"):
        HashTextEncoder().encode([3])
    with pytest.raises(CadenzaError, match="unknown text encoder"):
        build_text_encoder("bert", 384)
    with pytest.raises(CadenzaError, match="text_dim"):
        build_text_encoder("minilm", 32)


def test_cat_and_repeat():
    enc = HashTextEncoder(dim=4)
    a, b = enc.encode(["x"]), enc.encode(["x y z"])
    both = TextEmbedding.cat([a, b])
    assert both.tokens.shape == (2, 3, 4) and both.mask.sum().item() == 4
    rep = b.repeat(3)
    assert rep.tokens.shape == (3, 3, 4) and torch.equal(rep.pooled[2], b.pooled[0])


def test_minilm_encoder_real_model():
    enc = MiniLMTextEncoder()
    out = enc.encode(["calm solo piano", "gentle quiet piano", "loud heavy metal drums"])
    assert out.tokens.shape[0] == 3 and out.tokens.shape[2] == 384
    assert out.mask[:, 0].all()  # [CLS] always present
    assert torch.allclose(out.pooled.norm(dim=-1), torch.ones(3), atol=1e-4)
    sim = out.pooled @ out.pooled.T
    assert sim[0, 1] > sim[0, 2]  # semantics: the two piano prompts are closer than piano vs metal


def test_minilm_loads_without_drawing_a_progress_bar_and_restores_the_setting(capfd):
    """transformers 5 draws a weight-loading bar on stderr; the CLI's own progress is the only one a user should see."""
    from transformers.utils import logging as hf_logging

    hf_logging.enable_progress_bar()
    capfd.readouterr()
    MiniLMTextEncoder().encode(["calm solo piano"])
    assert "Loading weights" not in capfd.readouterr().err
    assert hf_logging.is_progress_bar_enabled()  # a caller's own setting is left as it was
