"""Evaluation tests run single-threaded: their tensors are tiny, and on a shared 2-core machine
a second OpenMP thread mostly waits for a busy core (a 10 ms step then takes seconds)."""

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
