"""Control encoder, masks, and the training-time random control dropout."""

import numpy as np
import torch

from cadenza.conditioning.controls import (
    DYN_CENTER_DB,
    ControlEncoder,
    controls_to_tensors,
    empty_controls,
    normalize_dynamics,
    pad_controls,
    random_control_masks,
)
from cadenza.controls.base import ControlSet


def _random_controls(b: int, t: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    c = empty_controls(b, t)
    idx = torch.randint(0, 12, (b, t), generator=g)
    c["melody"] = torch.nn.functional.one_hot(idx, 12).float()
    c["dynamics"] = -60 + 50 * torch.rand(b, t, 1, generator=g)
    c["rhythm"] = torch.rand(b, t, 2, generator=g)
    for k in ("melody_mask", "dynamics_mask", "rhythm_mask"):
        c[k] = torch.ones(b, t)
    return c


def _live_encoder() -> ControlEncoder:
    enc = ControlEncoder(hidden=8, out_channels=6)
    torch.nn.init.normal_(enc.zero_conv.weight)  # as after training: otherwise everything is trivially zero
    return enc


def test_fresh_encoder_outputs_exact_zero():
    out = ControlEncoder(8, 6)(_random_controls(2, 10))
    assert out.shape == (2, 6, 10) and torch.count_nonzero(out) == 0


def test_values_under_mask_zero_have_no_effect():
    enc = _live_encoder()
    a, b = _random_controls(1, 20, seed=1), _random_controls(1, 20, seed=2)
    span = slice(5, 15)
    for name in ("melody", "dynamics", "rhythm"):
        a[f"{name}_mask"][:, span] = 0
        b[f"{name}_mask"][:, span] = 0
    outa, outb = enc(a), enc(b)
    assert torch.allclose(outa[..., span], outb[..., span])  # different values, both masked: identical input
    assert not torch.allclose(outa[..., :5], outb[..., :5])  # where given, the values matter


def test_given_zero_differs_from_free():
    enc = _live_encoder()
    c = empty_controls(1, 8)
    free = enc(c)
    c["melody_mask"][:] = 1  # given, but unvoiced (all-zero rows)
    assert not torch.allclose(enc(c), free)


def test_dynamics_normalisation_constants():
    assert normalize_dynamics(torch.tensor(DYN_CENTER_DB)) == 0
    assert torch.allclose(normalize_dynamics(torch.tensor([-60.0, -10.0])), torch.tensor([-1.0, 1.0]))


def test_controls_to_tensors_and_padding():
    cs = ControlSet.empty(12)
    cs.melody[:, 3] = 1
    cs.melody_mask[:] = 1
    t = controls_to_tensors([cs.validate(), ControlSet.empty(12)])
    assert t["melody"].shape == (2, 12, 12) and t["dynamics"].shape == (2, 12, 1) and t["rhythm_mask"].shape == (2, 12)
    p = pad_controls(t, 16)
    assert p["melody"].shape == (2, 16, 12) and p["melody_mask"][0, 12:].sum() == 0 and p["melody_mask"][0, :12].all()


def test_random_masks_subsets_and_spans():
    n, t = 4000, 50
    masks = {k: torch.ones(n, t) for k in ("melody_mask", "dynamics_mask", "rhythm_mask")}
    out = random_control_masks(masks, torch.Generator().manual_seed(0), p_keep_all=0.3, p_drop_all=0.2, p_partial=0.0)
    kept = torch.stack([out[k].any(1) for k in masks], 1)
    assert torch.equal(torch.stack([out[k].all(1) for k in masks], 1), kept)  # no partial masking asked
    frac_all = kept.all(1).float().mean().item()
    frac_none = (~kept.any(1)).float().mean().item()
    single = kept.float().sum(1) == 1
    assert abs(frac_all - 0.3) < 0.03 and abs(frac_none - 0.2) < 0.03
    # each proper subset ≈ 0.5 / 6
    assert abs(single.float().mean().item() - 0.25) < 0.03

    out = random_control_masks(masks, torch.Generator().manual_seed(1), p_keep_all=1.0, p_drop_all=0.0, p_partial=1.0)
    m = out["melody_mask"]
    # the freed frames form one contiguous span per row
    changes = (m[:, 1:] != m[:, :-1]).sum(1)
    assert changes.max() <= 2 and (m == 0).any()


def test_random_masks_keep_input_free_frames():
    masks = {k: torch.ones(64, 30) for k in ("melody_mask", "dynamics_mask", "rhythm_mask")}
    masks["melody_mask"][:, :10] = 0
    out = random_control_masks(masks, torch.Generator().manual_seed(0))
    assert out["melody_mask"][:, :10].sum() == 0
    assert set(np.unique(torch.cat(list(out.values())).numpy())) <= {0.0, 1.0}
