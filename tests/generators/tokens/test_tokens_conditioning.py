"""Controls on the token grid: masks respected exactly, pooling from the mel rate keeps beats, guidance stays in its span."""

import torch

from cadenza.audio.format import FRAME_RATE
from cadenza.conditioning.controls import empty_controls
from cadenza.generators.tokens.conditioning import GuidanceBranches, resample_controls

CODEC_RATE = 22050 / 512


def _random_controls(b: int, n: int, given: float) -> dict:
    g = torch.Generator().manual_seed(1)
    c = empty_controls(b, n)
    c["melody"] = torch.nn.functional.one_hot(torch.randint(0, 12, (b, n), generator=g), 12).float()
    c["dynamics"] = torch.rand(b, n, 1, generator=g) * -50
    c["rhythm"] = torch.rand(b, n, 2, generator=g)
    for name in ("melody", "dynamics", "rhythm"):
        c[f"{name}_mask"] = torch.full((b, n), given)
    return c


def test_a_control_masked_everywhere_is_the_same_as_no_control(net, text) -> None:
    b, n = len(text), 8
    tokens = torch.randint(0, net.cardinality, (b, net.codebooks, n), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        none = net(tokens, *net.condition(text, None, n))
        masked = net(tokens, *net.condition(text, _random_controls(b, n, 0.0), n))
        given = net(tokens, *net.condition(text, _random_controls(b, n, 1.0), n))
    assert torch.equal(none, masked)  # free frames add exactly zero, whatever values they carry
    assert (given - none).abs().max() > 1e-3


def test_pooling_to_the_codec_rate() -> None:
    n_src = 40
    c = empty_controls(1, n_src)
    c["rhythm"][0, 7, 0] = 1.0  # a one-frame beat
    c["rhythm_mask"][:] = 1
    c["dynamics"][0, :, 0] = torch.arange(n_src, dtype=torch.float32) * -1.0
    c["dynamics_mask"][0, :10] = 1  # only the first 10 mel frames given
    c["melody"][0, :, 4] = 1.0
    c["melody"][0, 9, 4], c["melody"][0, 9, 7] = 0.0, 1.0  # frame 9 disagrees; its bin (frames 9, 10) keeps...
    c["melody"][0, 10, 4], c["melody"][0, 10, 7] = 0.0, 1.0  # ...pitch class 7 on both frames
    c["melody_mask"][:] = 1
    out = resample_controls(c, 20, CODEC_RATE, FRAME_RATE)
    assert out["rhythm"].shape == (1, 20, 2) and out["dynamics"].shape == (1, 20, 1) and out["melody"].shape == (1, 20, 12)
    assert out["rhythm"][0, :, 0].max() == 1.0 and int(out["rhythm"][0, :, 0].argmax()) == 4  # mel frame 7 → codec frame round(3.5) = 4
    # codec frame j pools mel frames 2j - 1 and 2j: frame 0 has only mel frame 0
    assert out["dynamics"][0, 0, 0] == 0.0 and out["dynamics"][0, 2, 0] == -3.5
    assert out["dynamics_mask"][0].tolist() == [1.0] * 6 + [0.0] * 14  # given while any of its mel frames is (frame 5 ← mel 9, 10)
    assert out["dynamics"][0, 5, 0] == -9.0  # only the given mel frame 9 counts (10 is free)
    assert int(out["melody"][0, 5].argmax()) == 7 and int(out["melody"][0, 4].argmax()) == 4
    assert torch.equal(out["melody"].sum(-1), torch.ones(1, 20))  # one-hot stays one-hot


def test_pooling_to_a_finer_grid_copies_the_nearest_frame() -> None:
    c = _random_controls(2, 5, 1.0)
    out = resample_controls(c, 10, FRAME_RATE * 2, FRAME_RATE)
    assert torch.equal(out["rhythm"][:, 3], c["rhythm"][:, 2]) and torch.equal(out["rhythm"][:, 4], c["rhythm"][:, 2])
    assert out["melody_mask"][0].tolist() == [1.0] * 9 + [0.0]  # frame 9 lies past the source's last frame: free


def test_control_guidance_leaves_frames_outside_its_span_alone() -> None:
    b, n, v = 2, 6, 5
    text_like = _text(b)
    controls = _random_controls(b, n, 0.0)
    controls["melody_mask"][:, 2:4] = 1.0
    branches = GuidanceBranches(text_like, controls, _text(b), cfg=1.0, control_cfg=4.0)
    assert branches.n == 2  # conditional + melody-free (no text guidance at cfg 1)
    logits = torch.randn(2 * b, n, v, generator=torch.Generator().manual_seed(0))
    guided = branches.combine(logits, 1.0, [m[..., None] for m in branches.frame_masks])
    cond = logits[:b]
    assert torch.equal(guided[:, [0, 1, 4, 5]], cond[:, [0, 1, 4, 5]])
    assert not torch.allclose(guided[:, 2:4], cond[:, 2:4])
    assert torch.equal(branches.controls["melody_mask"][b:], torch.zeros(b, n))  # the branch without the guided control


def _text(b: int):
    from cadenza.conditioning.text import TextEmbedding

    return TextEmbedding(torch.randn(b, 3, 16), torch.ones(b, 3, dtype=torch.bool), torch.randn(b, 16))


def test_per_control_guidance_adds_a_branch_only_for_given_controls() -> None:
    b, n = 2, 6
    controls = _random_controls(b, n, 0.0)
    controls["melody_mask"][:, :3] = 1.0
    per = GuidanceBranches(_text(b), controls, _text(b), cfg=3.0, control_cfg={"melody": 2.0, "rhythm": 3.0})
    assert per.n == 3 and per.scales == [2.0]  # cond, null text, melody-free; rhythm is free everywhere: no branch
    assert len(per.text) == 3 * b and per.controls["melody_mask"].shape == (3 * b, n)
    off = GuidanceBranches(_text(b), controls, _text(b), cfg=3.0, control_cfg=0.0)
    assert off.n == 2 and off.frame_masks == []
