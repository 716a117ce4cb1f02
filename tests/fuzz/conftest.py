"""Fuzz fixtures: the tiny debug generator, a per-case time limit, and a sandbox that must stay the only place written."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Iterator

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # contract.py, imported by name like tests/app's helpers

CASE_LIMIT_S = 20.0  # no single case may take longer (each takes well under a second; the old hangs ran minutes)


class Hang(BaseException):
    """A case ran past its limit. A BaseException, so no ``except Exception`` on the way up can swallow it."""


@contextlib.contextmanager
def time_limit(seconds: float = CASE_LIMIT_S) -> Iterator[None]:
    """Raise ``Hang`` in the main thread after ``seconds``."""

    def _raise(signum, frame):  # noqa: ARG001
        raise Hang(f"ran past {seconds:g} s")

    old = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def snapshot(root: Path, skip: Path | None = None) -> set[str]:
    """Every path under ``root`` (but under ``skip``), relative: to check nothing was written outside its folders."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if skip is not None and (here == skip or skip in here.parents):
            dirnames[:] = []
            continue
        out.update(str((here / n).relative_to(root)) for n in dirnames + filenames)
    return out


@pytest.fixture(scope="session")
def fuzz_model(tmp_path_factory) -> Path:
    """The debug generator config with random weights (what tests/app and tests/cli use): generates in a blink."""
    from cadenza.checkpoint import save_model_folder
    from cadenza.config import load_config
    from cadenza.generators import build_generator

    cfg = load_config("generator", "debug")
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("fuzz_model")
    save_model_folder(folder, build_generator(cfg).state_dict(), cfg)
    return folder


@pytest.fixture(scope="session")
def fuzz_gen(fuzz_model):
    from cadenza.pipeline import Cadenza

    return Cadenza.load(fuzz_model)
