"""Shared fixtures for the data tests: one very small rendered corpus per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from cadenza.cli import main


def build_tiny(out: Path, *extra: str) -> int:
    """Five works (three train, one valid, one test), two clips each at most, TimGM6mb, in-process."""
    return main(["data", "build", "--preset", "tiny", "--out", str(out), "--workers", "1",
                 "--limit-works", "5", "--max-clips", "2", *extra])


@pytest.fixture(scope="session")
def tiny_builder():
    """The build function, for tests that rebuild into a folder of their own."""
    return build_tiny


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus") / "tiny"
    assert build_tiny(out) == 0
    return out
