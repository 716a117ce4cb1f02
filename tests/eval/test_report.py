"""Report files: strict JSON (NaN → null), Markdown tables that say n/a and name the FAD embedder."""

from __future__ import annotations

import json
import math

import numpy as np

from cadenza.eval.fad import fad_from_embeddings
from cadenza.eval.report import adherence_markdown, fad_markdown, to_jsonable, write_report


def test_to_jsonable_turns_nan_and_numpy_into_plain_json() -> None:
    data = {"a": math.nan, "b": np.float32(0.5), "c": np.arange(3), "d": [np.int64(2), math.inf], "e": "x"}
    assert to_jsonable(data) == {"a": None, "b": 0.5, "c": [0, 1, 2], "d": [2, None], "e": "x"}


def test_write_report_and_tables(tmp_path, rng) -> None:
    agg = {
        "n_clips": 3, "melody_accuracy_mean": 0.5, "melody_accuracy_clips": 3, "melody_accuracy_nan": 0,
        "dynamics_r_micro": math.nan, "dynamics_r_macro": 0.25, "dynamics_r_clips": 0, "dynamics_r_nan": 3,
        "beat_f1_mean": 0.75, "beat_f1_clips": 2, "beat_f1_nan": 1, "downbeat_f1_mean": 0.0, "downbeat_f1_clips": 2,
        "downbeat_f1_nan": 1, "melody_accuracy_pooled": 0.5, "melody_frames": 100, "beat_f1_pooled": 0.7, "downbeat_f1_pooled": 0.1,
    }
    md = adherence_markdown(agg)
    assert "| Melody accuracy (%) | 50.0 | 3 | 0 |" in md
    assert "| Dynamics r micro (x100, per-clip mean) | n/a | 0 | 3 |" in md
    res = fad_from_embeddings(rng.standard_normal((10, 3)), rng.standard_normal((8, 3)), "mel-stats").to_dict()
    fmd = fad_markdown([{**res, "label": "test vs valid"}])
    assert "| test vs valid | mel-stats |" in fmd and "| 10 | 8 |" in fmd and "biased upward" in fmd
    j, m = write_report(tmp_path / "out" / "report", {"adherence": agg, "fad": res}, md + fmd)
    text = j.read_text()
    assert "NaN" not in text and "Infinity" not in text  # strict JSON
    loaded = json.loads(text)
    assert loaded["adherence"]["dynamics_r_micro"] is None and loaded["fad"]["embedder"] == "mel-stats"
    assert m.read_text() == md + fmd
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report.json", "report.md"]
