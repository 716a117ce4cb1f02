"""Backbone + ControlNet adapter: shapes, length extrapolation, zero-initialised joins."""

import copy

import pytest
import torch

from cadenza.conditioning.controls import empty_controls
from cadenza.errors import CadenzaError
from cadenza.generators.unet import UNetConfig


def _controls(b: int, t: int) -> dict:
    c = empty_controls(b, t)
    c["melody"][..., 4] = 1
    c["dynamics"][:] = -20
    c["rhythm"][:, ::20] = 1
    for k in ("melody_mask", "dynamics_mask", "rhythm_mask"):
        c[k][:] = 1
    return c


@pytest.mark.parametrize("frames", [1, 7, 64, 131])
def test_any_length_in_any_length_out(net, text_encoder, frames):
    text = text_encoder.encode(["calm", "loud drums"])
    x = torch.randn(2, 128, frames)
    with torch.no_grad():
        out = net(x, torch.tensor([3, 900]), text, _controls(2, frames))
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_fresh_adapter_leaves_base_unchanged_exactly(debug_config, text_encoder):
    from cadenza.generators import build_generator

    torch.manual_seed(1)
    net = build_generator(debug_config)
    with torch.no_grad():  # a base that outputs something non-zero (its conv_out is zero-initialised too)
        torch.nn.init.normal_(net.base.decoder.conv_out.weight, std=0.1)
    text = text_encoder.encode(["x", "y"])
    x, t = torch.randn(2, 128, 40), torch.tensor([10, 700])
    with torch.no_grad():
        base = net.base(x, t, text.tokens, text.mask, text.pooled)
        with_controls = net(x, t, text, _controls(2, 40))
        without = net(x, t, text, None)
    assert base.abs().sum() > 0
    assert torch.equal(with_controls, base) and torch.equal(without, base)


def test_adapter_starts_as_copy_of_base_encoder(net):
    base = net.base.encoder.state_dict()
    for k, v in net.adapter.encoder.state_dict().items():
        assert torch.equal(v, base[k]), k


def test_trained_adapter_makes_controls_matter(net, text_encoder, make_live):
    live = copy.deepcopy(net)
    make_live(live)
    text = text_encoder.encode(["x"])
    x, t = torch.randn(1, 128, 32), torch.tensor([500])
    a, b = _controls(1, 32), _controls(1, 32)
    b["melody"].zero_()
    b["melody"][..., 9] = 1
    with torch.no_grad():
        assert not torch.allclose(live(x, t, text, a), live(x, t, text, b))
        # the same change under mask 0 changes nothing
        a["melody_mask"][:] = 0
        b["melody_mask"][:] = 0
        assert torch.allclose(live(x, t, text, a), live(x, t, text, b))


def test_text_dropout_uses_null_prompt(net, text_encoder):
    text = text_encoder.encode(["a b", "c"])
    dropped = net.drop_text(text, torch.tensor([True, False]))
    assert torch.equal(dropped.pooled[0], net.null_pooled) and torch.equal(dropped.pooled[1], text.pooled[1])


def test_bad_unet_config():
    with pytest.raises(CadenzaError, match="attention flag"):
        UNetConfig(channels=[32, 64], attn_stages=[True])
    with pytest.raises(CadenzaError, match="divisible"):
        UNetConfig(channels=[30, 64], attn_stages=[False, True], groups=8)
