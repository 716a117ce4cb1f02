"""Dynamics r on extracted controls against how much the given curve varies (reads eval results only).

Why: Pearson r between the given and the achieved loudness curve says little when the given curve
is nearly flat: most held-out corpus clips are rendered at an even level, so their one-second
smoothed level varies by a dB or two, and r then scores sub-dB wiggles. This splits Table I's
all-three-controls cases by the spread (standard deviation, dB) of the given curve inside the
mask and reports the mean per-case r on each side, with the rank correlation of spread and r, for
each report given. Nothing is regenerated: the spread comes from the stored sums of squares.

    python benchmarks/dynamics_spread.py off=docs/eval/report-control-guidance on=docs/eval/report
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
ROW = "melody+dynamics+rhythm"
SPLIT_DB = 2.0  # curves varying less than this (std, dB) over the clip count as "even level"


def spread_and_r(results: dict, table: str = "I") -> tuple[np.ndarray, np.ndarray]:
    """Per case of ``table``: (spread of the given curve in dB, dynamics r), cases with a defined r only."""
    spread, r = [], []
    for case in results["cases"]:
        scores = case["rows"].get(ROW, {}).get("scores", {}) if case["table"] == table else {}
        if scores.get("dynamics_frames") and math.isfinite(scores.get("dynamics_r", math.nan)):
            spread.append(math.sqrt(scores["dynamics_m2_x"] / scores["dynamics_frames"]))
            r.append(scores["dynamics_r"])
    return np.array(spread), np.array(r)


def _ranks(x: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(x)).astype(float)


def summary(spread: np.ndarray, r: np.ndarray) -> dict:
    flat, varied = r[spread < SPLIT_DB], r[spread >= SPLIT_DB]
    return {
        "cases": int(r.size), "median_spread_db": float(np.median(spread)),
        "flat_cases": int(flat.size), "flat_r": float(flat.mean()) if flat.size else math.nan,
        "varied_cases": int(varied.size), "varied_r": float(varied.mean()) if varied.size else math.nan,
        "all_r": float(r.mean()), "spearman": float(np.corrcoef(_ranks(spread), _ranks(r))[0, 1]) if r.size > 2 else math.nan,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("reports", nargs="+", help="NAME=REPORT_FOLDER (a cadenza eval output with results.json)")
    ap.add_argument("--out", default=str(RESULTS / "dynamics_spread.md"))
    args = ap.parse_args()
    rows = {}
    for item in args.reports:
        name, _, folder = item.rpartition("=")
        data = json.loads((Path(folder) / "results.json").read_text())
        rows[name or folder] = {**summary(*spread_and_r(data)), "model_id": data.get("model_id"), "folder": folder,
                                "dynamics_guidance": data.get("config", {}).get("dynamics_guidance")}
    lines = [
        "# Dynamics r on extracted controls, by how much the given curve varies", "",
        f"Table I (held-out corpus clips, their extracted controls), the all-three-controls row; spread = standard deviation of the given "
        f"one-second-smoothed level over the clip; split at {SPLIT_DB:g} dB. Per-case r averaged (the report's micro r). Spearman: rank "
        "correlation of spread and r over the cases.", "",
        "| report | dynamics guidance | cases | median spread dB | r, spread < 2 dB (cases) | r, spread ≥ 2 dB (cases) | r, all | Spearman |",
        "|---|---:|---:|---:|---|---|---:|---:|",
    ]
    for name, s in rows.items():
        lines.append(f"| {name} (`{s['folder']}`) | {s['dynamics_guidance'] or 0:g} | {s['cases']} | {s['median_spread_db']:.2f} | "
                     f"{100 * s['flat_r']:.1f} ({s['flat_cases']}) | {100 * s['varied_r']:.1f} ({s['varied_cases']}) | {100 * s['all_r']:.1f} | {s['spearman']:.2f} |")
    out = Path(args.out)
    out.write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
