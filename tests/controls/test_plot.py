"""Control plots: files are written (atomically), partial masks and empty sets are drawn, bad input is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cadenza.controls import ControlSet, beats_to_activations
from cadenza.controls.plot import free_spans, plot_controls
from cadenza.errors import CadenzaError

PNG = b"\x89PNG\r\n\x1a\n"


def partial_set(T: int = 200) -> ControlSet:
    cs = ControlSet.empty(T)
    pcs = (np.arange(T) // 20) % 12
    cs.melody[np.arange(T), pcs] = 1.0
    cs.melody_mask[:] = 1.0
    cs.melody_mask[50:90] = 0.0  # a free span in the middle
    cs.dynamics[:] = np.linspace(-40, -10, T)
    cs.dynamics_mask[100:] = 1.0
    cs.beats = np.array([[0.2, 1.0], [0.7, 0.0], [1.2, 0.0], [1.7, 1.0]])
    cs.rhythm, cs.rhythm_mask[:] = beats_to_activations(cs.beats, T), 1.0
    return cs.validate()


def test_free_spans() -> None:
    np.testing.assert_array_equal(free_spans(np.array([0, 0, 1, 1, 0, 1, 0])), [[0, 2], [4, 5], [6, 7]])
    assert free_spans(np.ones(5)).shape == (0, 2)
    np.testing.assert_array_equal(free_spans(np.zeros(3)), [[0, 3]])


def test_plot_with_and_without_spectrogram(tmp_path: Path) -> None:
    cs = partial_set()
    with_mel = plot_controls(cs, np.random.default_rng(0).normal(size=(128, cs.n_frames)), tmp_path / "a.png", title="t", dpi=40)
    without = plot_controls(cs, None, tmp_path / "sub" / "b.png", dpi=40)
    for path in (with_mel, without):
        assert path.read_bytes()[:8] == PNG
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.png", "b.png", "sub"]  # no temp files left


def test_plot_empty_controls_and_vector_format(tmp_path: Path) -> None:
    out = plot_controls(ControlSet.empty(50), None, tmp_path / "empty.svg", dpi=40)
    assert out.read_text().lstrip().startswith("<?xml")


def test_plot_refuses_bad_input(tmp_path: Path) -> None:
    with pytest.raises(CadenzaError, match="cannot write a figure"):
        plot_controls(ControlSet.empty(10), None, tmp_path / "x.txt")
    with pytest.raises(CadenzaError, match="log-mel"):
        plot_controls(ControlSet.empty(10), np.zeros(10), tmp_path / "x.png")
    assert not list(tmp_path.iterdir())


def test_docs_figure_is_present_and_small() -> None:
    path = Path(__file__).resolve().parents[2] / "docs" / "controls_plot.png"
    assert path.read_bytes()[:8] == PNG
    assert path.stat().st_size < 200_000
