"""The delay pattern is exact: build then revert gives the codes back, for any K and T (T < K too)."""

import pytest
import torch

from cadenza.generators.tokens.delay import build_delay, delay_frame_index, delay_valid_mask, revert_delay


@pytest.mark.parametrize("k,t", [(1, 5), (2, 1), (4, 2), (4, 3), (4, 9), (3, 0), (8, 37)])
def test_build_then_revert_is_exact(k: int, t: int) -> None:
    g = torch.Generator().manual_seed(k * 100 + t)
    codes = torch.randint(0, 50, (3, k, t), generator=g)
    delayed = build_delay(codes, 99)
    assert delayed.shape == (3, k, t + k - 1)
    assert torch.equal(revert_delay(delayed), codes)
    valid = delay_valid_mask(k, t)
    assert torch.equal(delayed != 99, valid.expand_as(delayed))  # exactly the empty positions hold the pad id
    assert int((~valid).sum()) == k * (k - 1)  # k leading + K-1-k trailing empties per level


def test_level_k_is_shifted_by_k() -> None:
    codes = torch.arange(12).view(1, 3, 4)  # level k, frame t holds 4k + t
    delayed = build_delay(codes, -1)
    assert delayed[0].tolist() == [[0, 1, 2, 3, -1, -1], [-1, 4, 5, 6, 7, -1], [-1, -1, 8, 9, 10, 11]]
    assert delay_frame_index(3, 6)[2].tolist() == [-2, -1, 0, 1, 2, 3]


def test_masks_and_floats_delay_too() -> None:
    mask = torch.tensor([[1.0, 1.0, 0.0, 1.0]])[:, None].expand(1, 2, 4)
    d = build_delay(mask, 0.0)
    assert d[0].tolist() == [[1, 1, 0, 1, 0], [0, 1, 1, 0, 1]]
    assert torch.equal(revert_delay(d), mask)
