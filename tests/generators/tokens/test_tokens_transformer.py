"""The token transformer: the KV cache reproduces the uncached forward, causality, bidirectional mode."""

import torch

from cadenza.conditioning.controls import empty_controls
from cadenza.generators.tokens.lm import lm_sample


def _inputs(net, text, n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, net.cardinality + 1, (len(text), net.codebooks, n), generator=g)  # codes and the start/empty id
    memory, mmask, cond = net.condition(text, None, n)
    return tokens, memory, mmask, cond


def test_kv_cache_steps_equal_the_uncached_forward(net, text) -> None:
    tokens, memory, mmask, cond = _inputs(net, text, 12)
    with torch.no_grad():
        full = net(tokens, memory, mmask, cond, causal=True)
        cache = net.new_cache(len(text), 12)
        parts = [net(tokens[..., :5], memory, mmask, cond[:, :5], causal=True, cache=cache)]  # a prefill, then single steps
        parts += [net(tokens[..., s : s + 1], memory, mmask, cond[:, s : s + 1], causal=True, cache=cache) for s in range(5, 9)]
        parts.append(net(tokens[..., 9:], memory, mmask, cond[:, 9:], causal=True, cache=cache))  # a multi-step chunk after cached ones
    cached = torch.cat(parts, dim=2)
    assert cache.length == 12
    torch.testing.assert_close(cached, full, atol=1e-4, rtol=1e-4)


def test_a_future_token_never_changes_past_logits(net, text) -> None:
    tokens, memory, mmask, cond = _inputs(net, text, 10)
    changed = tokens.clone()
    changed[:, :, 6] = (changed[:, :, 6] + 3) % net.cardinality
    with torch.no_grad():
        a = net(tokens, memory, mmask, cond, causal=True)
        b = net(changed, memory, mmask, cond, causal=True)
        bi_a = net(tokens, memory, mmask, cond, causal=False)
        bi_b = net(changed, memory, mmask, cond, causal=False)
    torch.testing.assert_close(a[:, :, :6], b[:, :, :6], atol=1e-5, rtol=1e-5)
    assert (a[:, :, 6:] - b[:, :, 6:]).abs().max() > 1e-3
    assert (bi_a[:, :, :6] - bi_b[:, :, :6]).abs().max() > 1e-3  # bidirectional (MAGNeT): the past sees it


def test_cached_decoding_equals_uncached_decoding(net, text) -> None:
    """The whole AR loop (guidance branches, prefill of a known prefix, forced levels) with and without the cache."""
    b, n = len(text), 9
    controls = empty_controls(b, n)
    controls["dynamics"][:] = -20.0
    controls["dynamics_mask"][:, 3:] = 1.0
    g = torch.Generator().manual_seed(3)
    known = torch.randint(0, net.cardinality, (b, net.codebooks, n), generator=g)
    mask = torch.zeros(b, n)
    mask[:, :3] = 1
    runs = []
    for use_cache in (True, False):
        gens = [torch.Generator().manual_seed(s) for s in range(b)]
        runs.append(lm_sample(net, text, controls, n, gens, cfg=3.0, control_cfg=2.0, temperature=0.0, known=known, known_mask=mask, use_cache=use_cache))
    assert torch.equal(runs[0], runs[1])
    assert torch.equal(runs[0][..., :3], known[..., :3])
