"""Dynamics guidance in the diffusion sampler (debug model): off is the plain sampler, on moves it, only where dynamics are given."""

import torch

from cadenza.conditioning.controls import empty_controls

N = 48


def test_strength_zero_is_the_plain_sampler_and_a_strength_changes_it(live_net, text_encoder):
    from cadenza.generators.diffusion import sample

    text = text_encoder.encode(["calm piano"])
    controls = empty_controls(1, N)
    controls["dynamics"][..., 0] = torch.linspace(-40, -10, N)
    controls["dynamics_mask"][:] = 1
    gens = lambda: [torch.Generator().manual_seed(3)]  # noqa: E731
    plain = sample(live_net, text, controls, N, gens(), steps=3, cfg=3.0)
    off = sample(live_net, text, controls, N, gens(), steps=3, cfg=3.0, dynamics_guidance=0.0)
    on = sample(live_net, text, controls, N, gens(), steps=3, cfg=3.0, dynamics_guidance=1.0)
    again = sample(live_net, text, controls, N, gens(), steps=3, cfg=3.0, dynamics_guidance=1.0)
    assert torch.equal(plain, off)
    assert (on - plain).abs().mean() > 1e-3
    assert torch.equal(on, again)
    controls["dynamics_mask"][:] = 0  # no dynamics given: nothing to correct
    free = sample(live_net, text, controls, N, gens(), steps=3, cfg=3.0)
    assert torch.equal(free, sample(live_net, text, controls, N, gens(), steps=3, cfg=3.0, dynamics_guidance=1.0))


def test_known_frames_keep_their_level(live_net, text_encoder):
    """Continuation/inpainting: the gain never touches frames the sampler was told to keep."""
    from cadenza.generators.diffusion import sample

    text = text_encoder.encode(["calm piano"])
    controls = empty_controls(1, N)
    controls["dynamics"][..., 0] = torch.linspace(-40, -10, N)
    controls["dynamics_mask"][:] = 1
    known = torch.randn(1, live_net.n_mels, N, generator=torch.Generator().manual_seed(1)) * 0.3
    known_mask = torch.zeros(1, N)
    known_mask[:, :20] = 1
    gens = lambda: [torch.Generator().manual_seed(3)]  # noqa: E731
    plain = sample(live_net, text, controls, N, gens(), steps=3, cfg=3.0, known=known, known_mask=known_mask)
    guided = sample(live_net, text, controls, N, gens(), steps=3, cfg=3.0, known=known, known_mask=known_mask, dynamics_guidance=1.0)
    assert torch.equal(guided[..., :20], known[..., :20]) and torch.equal(plain[..., :20], known[..., :20])
    assert (guided[..., 20:] - plain[..., 20:]).abs().mean() > 1e-3
