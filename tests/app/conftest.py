"""Studio test fixtures: a tiny debug generator (random weights, built in about a second) shared by the studio tests."""

from __future__ import annotations

import pytest
from studio_helpers import make_debug_model


@pytest.fixture(scope="session")
def debug_model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("studio_debug_model")
    make_debug_model(folder)
    return folder


@pytest.fixture(scope="session")
def debug_gen(debug_model_dir):
    from cadenza.pipeline import Cadenza

    return Cadenza.load(debug_model_dir)
