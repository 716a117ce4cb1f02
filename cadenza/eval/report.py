"""Evaluation reports: one JSON file (machine-readable) and one Markdown table (for people).

NaN means "undefined" in the metrics (a constant dynamics curve, no given beat in the span);
strict JSON has no NaN, so it is written as ``null`` and the Markdown says ``n/a``. Both files
are written atomically. FAD results always name their embedder and sample sizes.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from cadenza.config import write_json_atomic
from cadenza.data.manifest import atomic_write_text

# (key in aggregate_scores' dict, label, scale) in the order the paper's tables use
SUMMARY_ROWS = (
    ("melody_accuracy_mean", "Melody accuracy (%)", 100.0),
    ("dynamics_r_micro", "Dynamics r micro (x100, per-clip mean)", 100.0),
    ("dynamics_r_macro", "Dynamics r macro (x100, frames pooled)", 100.0),
    ("beat_f1_mean", "Beat F1 (%)", 100.0),
    ("downbeat_f1_mean", "Downbeat F1 (%)", 100.0),
)


def to_jsonable(value: Any) -> Any:
    """NaN/inf → None, numpy scalars/arrays → Python, recursively."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def fmt(value: Any, scale: float = 1.0, digits: int = 1) -> str:
    """A table cell: ``n/a`` for undefined values."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, (int, np.integer)) and scale == 1.0:
        return str(int(value))
    return f"{float(value) * scale:.{digits}f}"


def adherence_markdown(aggregate: dict[str, Any], title: str = "Control adherence") -> str:
    """The paper-style summary table plus how many clips each number rests on."""
    counts = {
        "melody_accuracy_mean": ("melody_accuracy_clips", "melody_accuracy_nan"),
        "dynamics_r_micro": ("dynamics_r_clips", "dynamics_r_nan"),
        "dynamics_r_macro": ("dynamics_r_clips", "dynamics_r_nan"),
        "beat_f1_mean": ("beat_f1_clips", "beat_f1_nan"),
        "downbeat_f1_mean": ("downbeat_f1_clips", "downbeat_f1_nan"),
    }
    lines = [f"## {title}", "", f"{fmt(aggregate.get('n_clips'))} clips; metrics inside each control's mask only.", "",
             "| metric | value | clips scored | clips undefined (NaN) |", "|---|---:|---:|---:|"]
    for key, label, scale in SUMMARY_ROWS:
        ok, nan = counts[key]
        lines.append(f"| {label} | {fmt(aggregate.get(key), scale)} | {fmt(aggregate.get(ok))} | {fmt(aggregate.get(nan))} |")
    pooled = (
        f"Pooled: melody {fmt(aggregate.get('melody_accuracy_pooled'), 100)} % over {fmt(aggregate.get('melody_frames'))} frames; "
        f"beat F1 {fmt(aggregate.get('beat_f1_pooled'), 100)} %, downbeat F1 {fmt(aggregate.get('downbeat_f1_pooled'), 100)} % "
        f"from summed matches (70 ms window)."
    )
    return "\n".join(lines + ["", pooled, ""])


def fad_markdown(results: list[dict[str, Any]]) -> str:
    """A FAD table; each row names its embedder and both N (FAD is biased upward for small N)."""
    lines = ["## Fréchet Audio Distance", "", "| set | embedder | FAD | FAD-inf | N ref | N gen |", "|---|---|---:|---:|---:|---:|"]
    for r in results:
        lines.append(
            f"| {r.get('label', '')} | {r['embedder']} | {fmt(r['fad'], digits=4)} | {fmt(r.get('fad_inf'), digits=4)} | "
            f"{r['n_reference']} | {r['n_generated']} |"
        )
    return "\n".join(lines + ["", "FAD is biased upward for small N: compare values only at equal N and with the same embedder.", ""])


def write_report(stem: str | os.PathLike, data: dict[str, Any], markdown: str) -> tuple[Path, Path]:
    """``stem.json`` (NaN → null) and ``stem.md``, both atomically."""
    stem = Path(stem)
    json_path = write_json_atomic(stem.with_suffix(".json"), to_jsonable(data))
    md_path = atomic_write_text(stem.with_suffix(".md"), markdown)
    return json_path, md_path
