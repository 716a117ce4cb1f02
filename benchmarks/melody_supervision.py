"""Which melody supervision gives better adherence? Fine-tunes that differ only in their training controls, on VALID cases.

Issue #17: the audio-extracted melody agrees with the score's melody on only about half the
corpus's frames (the extractor takes the top pitch class above middle C of the mix; the score
knows the lead line). Two fine-tunes of the shipped v2 on the same corpus, steps, learning rate
and seed, one on the controls extracted from the renders (``data.controls=extracted``, as v2) and
one on the score's controls (``data.controls=score``), are scored here on the valid case sets at
the same sampling settings, all three controls. A model only shows which supervision helps; neither is shipped
from this table, and the test split is not read.

    cadenza train generator small --out runs/gen-sup-score train.init_from=cadenza/weights/generator \\
        train.lr=1.5e-4 train.warmup_steps=100 train.max_steps=1500 data.corpus=data/corpus-small-v2 data.controls=score
    (the same with data.controls=extracted --out runs/gen-sup-extracted)
    python benchmarks/melody_supervision.py v2=default extracted=runs/gen-sup-extracted/model score=runs/gen-sup-score/model
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from control_guidance import ROW, _row  # noqa: E402

RESULTS = Path(__file__).parent / "results"
TABLES = ("I", "II", "III")
KEYS = (("melody_accuracy_mean", "melody %"), ("bp_melody_f1_mean", "basic-pitch F1 %"), ("dynamics_r_micro", "dyn r ×100"),
        ("beat_f1_mean", "beat F1 %"), ("downbeat_f1_mean", "downbeat F1 %"), ("dsp_beat_f1_mean", "DSP beat F1 %"),
        ("beat_salience_mean", "beat salience"), ("clap_mean", "CLAP"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="NAME=MODEL_FOLDER ('default' = the shipped generator)")
    ap.add_argument("--cases", nargs="+", default=["runs/eval/valid-extracted", "runs/eval/valid-created"])
    ap.add_argument("--work", default="runs/eval/melody-supervision-valid")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=15, help="the same for every model (fine-tunes export the training config's 10)")
    ap.add_argument("--dynamics-guidance", type=float, default=0.0, help="the same for every model")
    ap.add_argument("--out", default=str(RESULTS / "melody_supervision.md"))
    args = ap.parse_args()

    from cadenza.eval.run import git_commit, run_eval

    if any("test" in Path(c).name for c in args.cases):
        raise SystemExit("valid case sets only")
    rows, t0 = {}, time.perf_counter()
    for spec in args.models:
        name, _, folder = spec.partition("=")
        model = None if folder in ("", "default") else folder
        data = run_eval(args.cases, Path(args.work) / name, model=model, subsets="three", max_figures=0, threads=args.threads,
                        steps=args.steps, dynamics_guidance=args.dynamics_guidance)
        rows[name] = {"model_id": data["model_id"], "folder": folder, "config": data["config"],
                      **{f"{k}:{t}": _row(data, t).get(k) for k, _ in KEYS for t in TABLES}}
        print(name, data["model_id"], flush=True)
    fmt = lambda k, v: "–" if v is None or not math.isfinite(v) else f"{v:.3f}" if k == "clap_mean" else f"{v:.2f}" if k == "beat_salience_mean" else f"{100 * v:.1f}"  # noqa: E731
    lines = ["# Melody supervision: fine-tunes on extracted vs score controls (valid cases)", "",
             f"Cases {', '.join(args.cases)}; all three controls; {args.steps} steps and dynamics guidance {args.dynamics_guidance:g} for every model, "
             f"otherwise each model's defaults (text cfg 3, control cfg 7); commit `{git_commit()[:12]}`; "
             f"wall {time.perf_counter() - t0:.0f} s. Cells: Table I / II / III.", "",
             "| model | " + " | ".join(label for _, label in KEYS) + " |", "|---|" + "---|" * len(KEYS)]
    for name, r in rows.items():
        lines.append(f"| {name} (`{r['model_id']}`) | " + " | ".join(" / ".join(fmt(k, r[f'{k}:{t}']) for t in TABLES) for k, _ in KEYS) + " |")
    lines.append("")
    Path(args.out).write_text("\n".join(lines))
    Path(args.out).with_suffix(".json").write_text(json.dumps({"rows": rows, "args": vars(args), "row": ROW}, indent=1, default=str))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
