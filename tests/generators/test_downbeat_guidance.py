"""Downbeat guidance: scale 0 is the plain sampler, its branch clears only the downbeats, and it pushes only where a rhythm is given."""

import torch

from cadenza.conditioning.cfg import guidance_branches, without_downbeats
from cadenza.conditioning.controls import empty_controls, pad_controls
from cadenza.controls.base import CONTROL_NAMES
from cadenza.generators.diffusion import GuidedDenoiser, sample

N = 48


def _gens(*seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


def _controls(span: tuple[int, int] = (0, N)) -> dict[str, torch.Tensor]:
    """All three controls on frames [span): a beat every 6 frames, a downbeat every 4th beat."""
    g = torch.Generator().manual_seed(3)
    c = empty_controls(1, N)
    c["melody"] = torch.nn.functional.one_hot(torch.randint(0, 12, (1, N), generator=g), 12).float()
    c["dynamics"] = torch.rand(1, N, 1, generator=g) * -30
    c["rhythm"][0, ::6, 0] = 1.0
    c["rhythm"][0, ::24, 1] = 1.0
    for name in CONTROL_NAMES:
        c[f"{name}_mask"][:, span[0] : span[1]] = 1
    return c


def test_the_branch_keeps_beats_and_masks_and_clears_downbeats():
    c = _controls()
    out = without_downbeats(c)
    assert torch.equal(out["rhythm"][..., 0], c["rhythm"][..., 0]) and out["rhythm"][..., 1].sum() == 0
    assert all(torch.equal(out[f"{n}_mask"], c[f"{n}_mask"]) for n in CONTROL_NAMES)
    assert c["rhythm"][..., 1].sum() > 0  # the input is not modified


def test_branches_scale_zero_adds_nothing_and_a_scale_adds_one(text_encoder):
    text = text_encoder.encode(["march"])
    null = lambda: text  # noqa: E731  (the prompt stands in for the null prompt: only the layout is checked here)
    c = _controls(span=(8, 32))
    plain = guidance_branches(text, c, null, 3.0, 7.0, CONTROL_NAMES)
    off = guidance_branches(text, c, null, 3.0, 7.0, CONTROL_NAMES, downbeat_cfg=0.0)
    on = guidance_branches(text, c, null, 3.0, 7.0, CONTROL_NAMES, downbeat_cfg=5.0)
    assert off.n == plain.n == 3 and on.n == 4
    assert all(torch.equal(off.controls[k], plain.controls[k]) for k in plain.controls)
    assert on.scales == plain.scales + [5.0]
    assert torch.equal(on.frame_masks[-1][0, 0], c["rhythm_mask"][0])  # pushed only where the rhythm is given
    assert on.controls["rhythm"][-1, :, 1].sum() == 0 and torch.equal(on.controls["rhythm"][-1, :, 0], c["rhythm"][0, :, 0])
    no_rhythm = dict(c, rhythm_mask=torch.zeros_like(c["rhythm_mask"]))
    assert guidance_branches(text, no_rhythm, null, 3.0, 7.0, CONTROL_NAMES, downbeat_cfg=5.0).n == 3


def test_scale_zero_is_the_plain_sampler_a_scale_moves_it_and_seeds_reproduce(live_net, text_encoder):
    text = text_encoder.encode(["a waltz"])
    plain = sample(live_net, text, _controls(), N, _gens(4), steps=3, cfg=3.0, control_cfg=2.0)
    off = sample(live_net, text, _controls(), N, _gens(4), steps=3, cfg=3.0, control_cfg=2.0, downbeat_cfg=0.0)
    on = sample(live_net, text, _controls(), N, _gens(4), steps=3, cfg=3.0, control_cfg=2.0, downbeat_cfg=3.0)
    again = sample(live_net, text, _controls(), N, _gens(4), steps=3, cfg=3.0, control_cfg=2.0, downbeat_cfg=3.0)
    assert torch.equal(plain, off)
    assert (on - plain).abs().mean() > 1e-3
    assert torch.equal(on, again)


def test_frames_outside_the_rhythm_mask_get_no_downbeat_push(live_net, text_encoder):
    text = text_encoder.encode(["a march"])
    controls = pad_controls(_controls(span=(10, 30)), live_net.pad_length(N))
    x = torch.randn(1, live_net.n_mels, live_net.pad_length(N), generator=torch.Generator().manual_seed(0))
    t = torch.tensor(600)
    off = GuidedDenoiser(live_net, text, controls, 3.0, 2.0)(x, t)
    on = GuidedDenoiser(live_net, text, controls, 3.0, 2.0, downbeat_cfg=4.0)(x, t)
    free = torch.ones(x.shape[-1], dtype=torch.bool)
    free[10:30] = False
    assert torch.allclose(on[..., free], off[..., free], atol=1e-5)
    assert (on[..., ~free] - off[..., ~free]).abs().mean() > 1e-4
