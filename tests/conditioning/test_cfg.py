"""Classifier-free guidance helpers."""

import torch

from cadenza.conditioning.cfg import guide, null_text, replace_with_null, with_unconditional
from cadenza.conditioning.text import HashTextEncoder


def test_guide_combines_halves():
    cond, uncond = torch.full((2, 3), 2.0), torch.full((2, 3), 1.0)
    out = guide(torch.cat([cond, uncond]), 3.0)
    assert torch.allclose(out, torch.full((2, 3), 4.0))
    assert torch.allclose(guide(torch.cat([cond, uncond]), 1.0), cond)


def test_null_and_replacement():
    enc = HashTextEncoder(dim=8)
    text = enc.encode(["a b c", "d"])
    null_tok, null_pool = torch.randn(1, 8), torch.randn(8)
    n = null_text(null_tok, null_pool, 2, 3)
    assert n.tokens.shape == (2, 3, 8) and n.mask.sum().item() == 2
    out = replace_with_null(text, torch.tensor([False, True]), null_tok, null_pool)
    assert torch.equal(out.tokens[0], text.tokens[0]) and torch.equal(out.pooled[0], text.pooled[0])
    assert torch.equal(out.tokens[1, 0], null_tok[0]) and out.mask[1].tolist() == [True, False, False]
    assert torch.equal(out.pooled[1], null_pool)
    both = with_unconditional(text, null_tok, null_pool)
    assert len(both) == 4 and torch.equal(both.pooled[2], null_pool)
