"""AR LM and MAGNeT decoding: seeds, top-k / top-p, continuation, known frames, the MAGNeT schedule."""

import pytest
import torch

from cadenza.conditioning.controls import empty_controls
from cadenza.errors import CadenzaError
from cadenza.generators.tokens.lm import lm_sample
from cadenza.generators.tokens.magnet import check_iterations, magnet_sample, masked_counts, span_mask
from cadenza.generators.tokens.net import sample_logits


def _gens(seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


def test_sample_logits_follows_the_distribution_and_its_filters() -> None:
    logits = torch.log(torch.tensor([0.2, 0.5, 0.3]))[None].expand(1000, 3)
    u = (torch.arange(1000) + 0.5) / 1000
    counts = torch.bincount(sample_logits(logits, u), minlength=3)
    assert counts.tolist() == [200, 500, 300]  # the inverse CDF over the sorted distribution
    assert set(sample_logits(logits, u, top_k=1).tolist()) == {1}
    assert set(sample_logits(logits, u, top_k=2).tolist()) == {1, 2}
    assert set(sample_logits(logits, u, top_p=0.6).tolist()) == {1, 2}  # 0.5 < 0.6: the second id is still needed
    assert set(sample_logits(logits, u, temperature=0.0).tolist()) == {1}


def test_lm_seeds_reproduce_and_differ(net, text) -> None:
    controls = empty_controls(2, 10)
    a = lm_sample(net, text, controls, 10, _gens([0, 1]), cfg=3.0)
    b = lm_sample(net, text, controls, 10, _gens([0, 1]), cfg=3.0)
    c = lm_sample(net, text, controls, 10, _gens([5, 6]), cfg=3.0)
    assert a.shape == (2, net.codebooks, 10) and a.dtype == torch.long
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert int(a.min()) >= 0 and int(a.max()) < net.cardinality


def test_lm_guidance_changes_the_output_and_progress_counts_steps(net, text) -> None:
    controls = empty_controls(2, 8)
    calls = []
    guided = lm_sample(net, text, controls, 8, _gens([0, 1]), cfg=5.0, temperature=0.0, progress=lambda d, t: calls.append((d, t)))
    plain = lm_sample(net, text, controls, 8, _gens([0, 1]), cfg=1.0, temperature=0.0)
    assert not torch.equal(guided, plain)
    assert calls[-1] == (8 + net.codebooks - 1, 8 + net.codebooks - 1) and len(calls) == 8 + net.codebooks - 1


def test_lm_continuation_keeps_the_prefix_and_refuses_inner_spans(net, text) -> None:
    n = 10
    known = torch.randint(0, net.cardinality, (2, net.codebooks, n), generator=torch.Generator().manual_seed(2))
    mask = torch.zeros(2, n)
    mask[:, :4] = 1
    calls = []
    out = lm_sample(net, text, empty_controls(2, n), n, _gens([0, 1]), known=known, known_mask=mask, progress=lambda d, t: calls.append(t))
    assert torch.equal(out[..., :4], known[..., :4]) and not torch.equal(out[..., 4:], known[..., 4:])
    assert calls[0] == n + net.codebooks - 1 - 4  # the prefix is one prefill pass, not steps
    inner = mask.clone()
    inner[:, 8:] = 1
    with pytest.raises(CadenzaError, match="MAGNeT"):
        lm_sample(net, text, empty_controls(2, n), n, _gens([0, 1]), known=known, known_mask=inner)


def test_magnet_never_changes_known_frames_and_follows_its_schedule(net, text) -> None:
    n = 20
    known = torch.randint(0, net.cardinality, (2, net.codebooks, n), generator=torch.Generator().manual_seed(4))
    mask = torch.zeros(2, n)
    mask[:, :5] = 1
    mask[0, 12:15] = 1  # row 0 also keeps an inner span (inpainting)
    trace, calls = [], []
    out = magnet_sample(net, text, empty_controls(2, n), n, _gens([0, 1]), iterations=[6, 3], known=known, known_mask=mask,
                        trace=trace, progress=lambda d, t: calls.append((d, t)))
    keep = mask.bool()[:, None].expand_as(out)
    assert torch.equal(out[keep], known[keep])
    assert int(out.max()) < net.cardinality  # nothing left masked
    assert not torch.equal(out[~keep], known[~keep])
    its = check_iterations([6, 3], net.codebooks)
    assert its == [6, 3, 3] and len(trace) == sum(its) and calls[-1] == (sum(its), sum(its))
    free = (~mask.bool()).sum(-1)
    for level, steps in enumerate(its):
        got = [t[2] for t in trace if t[0] == level]
        assert got == masked_counts(free, steps).tolist()  # (steps, B): still masked after each step
        assert got[0][0] < int(free[0]) and got[-1] == [0, 0]


def test_magnet_seeds_and_limits(net, text) -> None:
    a = magnet_sample(net, text, empty_controls(2, 12), 12, _gens([0, 1]), iterations=[4])
    b = magnet_sample(net, text, empty_controls(2, 12), 12, _gens([0, 1]), iterations=[4])
    c = magnet_sample(net, text, empty_controls(2, 12), 12, _gens([2, 3]), iterations=[4])
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(CadenzaError, match="1 to 16"):
        check_iterations([17], 2)


def test_span_masking_covers_the_asked_rate_in_spans() -> None:
    valid = torch.ones(4, 3000)
    rate = torch.tensor([0.1, 0.3, 0.6, 0.9])
    m = span_mask(valid, rate, 3, torch.Generator().manual_seed(0))
    assert torch.allclose(m.float().mean(-1), rate, atol=0.04)
    runs = torch.diff(torch.nn.functional.pad(m[0].int(), (1, 1)))  # +1 at a run's start, -1 after its end
    lengths = (runs == -1).nonzero()[:, 0] - (runs == 1).nonzero()[:, 0]
    assert int(lengths.min()) >= 3  # masked runs are whole spans
    short = torch.ones(1, 10)
    short[0, 6:] = 0
    assert not span_mask(short, torch.tensor([0.9]), 3)[0, 6:].any()  # never on padding
