"""Control guidance: scale 0 is the text-only sampler, a scale moves the output, masks bound every push."""

import warnings

import pytest
import torch

from cadenza.conditioning.cfg import (
    control_groups,
    group_frame_mask,
    guide,
    guide_multi,
    parse_control_scale,
    with_unconditional,
    without_controls,
)
from cadenza.conditioning.controls import empty_controls, pad_controls
from cadenza.controls.base import CONTROL_NAMES
from cadenza.errors import CadenzaError
from cadenza.generators.diffusion import GuidedDenoiser, batch_noise, make_sampler, sample

N = 48


def _gens(*seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


def _controls(b: int = 1, span: tuple[int, int] = (0, N)) -> dict[str, torch.Tensor]:
    """All three controls, given on frames [span) only."""
    g = torch.Generator().manual_seed(3)
    c = empty_controls(b, N)
    c["melody"] = torch.nn.functional.one_hot(torch.randint(0, 12, (b, N), generator=g), 12).float()
    c["dynamics"] = torch.rand(b, N, 1, generator=g) * -30
    c["rhythm"] = (torch.rand(b, N, 2, generator=g) > 0.8).float()
    for name in CONTROL_NAMES:
        c[f"{name}_mask"][:, span[0] : span[1]] = 1
    return c


def _text_only_reference(model, text, controls, n_frames, generators, steps, cfg):
    """The sampler as it was before control guidance: [cond; uncond] in one batch, ``guide``."""
    length = model.pad_length(n_frames)
    controls = pad_controls(controls, length)
    scheduler = make_sampler("dpmsolver++")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scheduler.set_timesteps(steps)
    x = batch_noise((len(text), model.n_mels, length), generators) * scheduler.init_noise_sigma
    text_in = with_unconditional(text, model.null_tokens, model.null_pooled)
    controls_in = {k: torch.cat([v, v]) for k, v in controls.items()}
    with torch.no_grad():
        for t in scheduler.timesteps:
            x_in = scheduler.scale_model_input(x, t)
            tt = torch.full((2 * len(text),), int(t), dtype=torch.long)
            x = scheduler.step(guide(model(torch.cat([x_in, x_in]), tt, text_in, controls_in), cfg), t, x).prev_sample
    return x[..., :n_frames]


def test_scale_zero_is_the_text_only_sampler(live_net, text_encoder):
    text = text_encoder.encode(["calm piano"])
    ref = _text_only_reference(live_net, text, _controls(), N, _gens(4), 3, 3.0)
    for off in (0.0, None, {}, {"melody": 0.0}):
        out = sample(live_net, text, _controls(), N, _gens(4), steps=3, cfg=3.0, control_cfg=off)
        assert torch.equal(out, ref), off


def test_a_scale_changes_the_output_and_seeds_reproduce(live_net, text_encoder):
    text = text_encoder.encode(["calm piano"])
    off = sample(live_net, text, _controls(), N, _gens(4), steps=3, cfg=3.0)
    on = sample(live_net, text, _controls(), N, _gens(4), steps=3, cfg=3.0, control_cfg=2.0)
    again = sample(live_net, text, _controls(), N, _gens(4), steps=3, cfg=3.0, control_cfg=2.0)
    other = sample(live_net, text, _controls(), N, _gens(5), steps=3, cfg=3.0, control_cfg=2.0)
    assert (on - off).abs().mean() > 1e-3
    assert torch.equal(on, again)
    assert (on - other).abs().mean() > 1e-3
    melody_only = sample(live_net, text, _controls(), N, _gens(4), steps=3, cfg=3.0, control_cfg={"melody": 2.0})
    assert (melody_only - on).abs().mean() > 1e-4 and (melody_only - off).abs().mean() > 1e-4


def test_control_guidance_without_text_guidance(live_net, text_encoder):
    text = text_encoder.encode(["calm piano"])
    plain = sample(live_net, text, _controls(), N, _gens(1), steps=2, cfg=1.0)
    guided = sample(live_net, text, _controls(), N, _gens(1), steps=2, cfg=1.0, control_cfg=3.0)
    assert (guided - plain).abs().mean() > 1e-3


def test_free_frames_get_no_control_push(live_net, text_encoder):
    """One denoising step: outside the controls' span the guided prediction equals the text-only one."""
    text = text_encoder.encode(["string quartet"])
    controls = pad_controls(_controls(span=(10, 30)), live_net.pad_length(N))
    x = torch.randn(1, live_net.n_mels, live_net.pad_length(N), generator=torch.Generator().manual_seed(0))
    t = torch.tensor(600)
    off = GuidedDenoiser(live_net, text, controls, 3.0, 0.0)(x, t)
    on = GuidedDenoiser(live_net, text, controls, 3.0, 4.0)(x, t)
    per = GuidedDenoiser(live_net, text, controls, 3.0, {"melody": 4.0, "rhythm": 1.0})(x, t)
    free = torch.ones(x.shape[-1], dtype=torch.bool)
    free[10:30] = False
    for guided in (on, per):
        assert torch.allclose(guided[..., free], off[..., free], atol=1e-5)
        assert (guided[..., ~free] - off[..., ~free]).abs().mean() > 1e-3


def test_per_control_mask_bounds_its_own_push():
    """guide_multi: each group's push is zero wherever that group's mask is zero."""
    cond, uncond = torch.ones(1, 2, 6), torch.zeros(1, 2, 6)
    w_mel, w_rhy = torch.full((1, 2, 6), 0.5), torch.full((1, 2, 6), 0.25)
    controls = {f"{n}_mask": torch.zeros(1, 6) for n in CONTROL_NAMES}
    controls["melody_mask"][:, :3] = 1
    controls["rhythm_mask"][:, 2:4] = 1
    m_mel, m_rhy = group_frame_mask(controls, ["melody"]), group_frame_mask(controls, ["rhythm"])
    out = guide_multi(cond, uncond, 3.0, [w_mel, w_rhy], [2.0, 4.0], [m_mel, m_rhy])
    # base 3.0 everywhere; melody adds 2·0.5 on frames 0-2, rhythm adds 4·0.75 on frames 2-3
    expected = torch.tensor([4.0, 4.0, 7.0, 6.0, 3.0, 3.0]).expand(1, 2, 6)
    assert torch.allclose(out, expected)
    assert torch.allclose(group_frame_mask(controls, CONTROL_NAMES)[0, 0], torch.tensor([1.0, 1, 1, 1, 0, 0]))


def test_groups_and_branch_count(live_net, text_encoder):
    assert control_groups(2.0, CONTROL_NAMES) == [(tuple(CONTROL_NAMES), 2.0)]
    assert control_groups({"rhythm": 1.0, "melody": 0.0}, CONTROL_NAMES) == [(("rhythm",), 1.0)]
    assert control_groups(0, CONTROL_NAMES) == [] and control_groups(None, CONTROL_NAMES) == []
    dropped = without_controls(_controls(), ["melody"])
    assert dropped["melody_mask"].sum() == 0 and dropped["rhythm_mask"].sum() > 0
    text = text_encoder.encode(["x"])
    controls = pad_controls(_controls(), live_net.pad_length(N))
    assert GuidedDenoiser(live_net, text, controls, 3.0, 2.0).n_branches == 3
    assert GuidedDenoiser(live_net, text, controls, 3.0, {"melody": 1, "dynamics": 1, "rhythm": 1}).n_branches == 5
    assert GuidedDenoiser(live_net, text, controls, 1.0, 2.0).n_branches == 2
    # a group whose controls are free everywhere adds no branch (text-only generation costs the same)
    free = empty_controls(1, live_net.pad_length(N))
    assert GuidedDenoiser(live_net, text, free, 3.0, 2.0).n_branches == 2


@pytest.mark.parametrize(
    "value, expected",
    [(2, 2.0), ("1.5", 1.5), ("melody=3, rhythm=2", {"melody": 3.0, "rhythm": 2.0}), ({"dynamics": 1}, {"dynamics": 1.0})],
)
def test_parse_control_scale(value, expected):
    assert parse_control_scale(value, CONTROL_NAMES) == expected


@pytest.mark.parametrize("bad", ["abc", -1, float("nan"), 1e9, "melody=x", "tempo=2", {"melody": "loud"}, "melody=2,3", True, [1]])
def test_parse_control_scale_refuses_bad_values(bad):
    with pytest.raises(CadenzaError, match="control_cfg"):
        parse_control_scale(bad, CONTROL_NAMES)
