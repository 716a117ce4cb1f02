"""The valid-split sweep that chose the token models' control guidance: one row per eval report.

Each report is ``cadenza eval run CASES_VALID --model M --control-cfg S --subsets three --limit 6``
on the valid created case set (6 whole-clip and 6 partial-span cases); this joins them into
``benchmarks/results/token_guidance_valid.{json,md}`` so the choice can be checked. The test
split is scored once, afterwards, at the chosen scales (``benchmarks/table_v.py``).

    python benchmarks/token_guidance_valid.py runs/eval/lm-valid-cc* runs/eval/mgft-valid-cc*
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
COLUMNS = (("melody_accuracy_mean", "melody %"), ("dynamics_r_micro", "dyn r"), ("beat_f1_mean", "beat F1 %"),
           ("downbeat_f1_mean", "downbeat %"), ("bp_melody_f1_mean", "basic-pitch F1 %"), ("clap_mean", "CLAP"))


def scale_text(scale) -> str:
    if isinstance(scale, dict):
        return ", ".join(f"{k} {v:g}" for k, v in scale.items())
    return f"{float(scale or 0):g}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reports", nargs="+", type=Path)
    ap.add_argument("--out", default=str(RESULTS / "token_guidance_valid"))
    args = ap.parse_args()
    rows = []
    for folder in args.reports:
        if not (folder / "results.json").is_file():
            continue
        data = json.loads((folder / "results.json").read_text())
        tables = {t: r[0] for t, r in data["tables"].items() if r}
        rows.append({"report": str(folder), "model_id": data["model_id"], "control_cfg": data["config"].get("control_cfg", 0),
                     "cfg": data["config"]["cfg"], "cases": data["config"]["cases"],
                     "tables": {t: {k: r.get(k) for k, _ in COLUMNS} | {"n_cases": r["n_cases"]} for t, r in tables.items()}})
    rows.sort(key=lambda r: (r["model_id"], json.dumps(r["control_cfg"], sort_keys=True)))
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from cadenza.config import write_json_atomic

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    out = Path(args.out)
    write_json_atomic(out.with_suffix(".json"), {"benchmark": "token_guidance_valid", "git_commit": commit, "rows": rows})
    lines = ["# Token models: control guidance chosen on the valid split", "",
             f"Commit {commit}. All three controls given, text cfg 3; valid created cases (whole clip | partial spans, 6 each). "
             "Small samples: differences of a few points are noise.", "",
             "| model | control cfg | " + " | ".join(f"whole: {t}" for _, t in COLUMNS) + " | " + " | ".join(f"spans: {t}" for _, t in COLUMNS) + " |",
             "|---|---|" + "---:|" * (2 * len(COLUMNS))]
    for r in rows:
        cells = []
        for table in ("II", "III"):
            t = r["tables"].get(table, {})
            for key, _ in COLUMNS:
                v = t.get(key)
                cells.append("n/a" if v is None else (f"{v:.3f}" if key == "clap_mean" else f"{v * 100:.1f}" if key != "dynamics_r_micro" else f"{v:.2f}"))
        lines.append(f"| `{r['model_id']}` | {scale_text(r['control_cfg'])} | " + " | ".join(cells) + " |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
