"""Choose the dynamics guidance strength on VALID case sets only (the same cases as control_guidance.py).

Every candidate strength runs ``cadenza eval`` on the same valid cases and seeds, at the model's
other defaults (control guidance included), all three controls. The test sets are not read here.

The rule:

1. score = mean dynamics r (micro, ×100) of the all-three row over Tables I, II and III;
2. a candidate is admissible only if what it does not target holds, on the same row averaged over
   the tables: melody accuracy and beat F1 no more than 1 point below no guidance; basic-pitch
   melody F1 no more than 1 point below; DSP beat F1 no more than 2.5 points below (one of the 40
   cases flipping to another tempo octave moves it 2.5); spectral flatness and FAD (Table I) no
   more than 25 % above; and the A-weighted loudness judge's r not below no guidance;
3. the smallest admissible strength whose score is within 1 point of the best admissible wins.

    python benchmarks/dynamics_guidance.py --threads 1
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from control_guidance import ROW, _mean, _row, summarise  # noqa: E402
from valid_sweep import choose, header, load_for_valid, sweep, sweep_arguments  # noqa: E402

RESULTS = Path(__file__).parent / "results"
TABLES = ("I", "II", "III")
COLS = (
    ("dynamics_r_micro", "dyn r ×100"), ("aw_dynamics_r_mean", "A-weighted dyn r ×100"), ("melody_accuracy_mean", "melody %"),
    ("beat_f1_mean", "beat F1 %"), ("bp_melody_f1_mean", "bp melody F1 %"), ("dsp_beat_f1_mean", "DSP beat F1 %"),
    ("downbeat_f1_mean", "downbeat F1 %"), ("spectral_flatness_mean", "flatness ×1000"), ("clap_mean", "CLAP"),
)


def summary(data: dict) -> dict:
    s = summarise(data)
    for key in ("aw_dynamics_r_mean",):
        s[key] = 100 * _mean([_row(data, t).get(key) for t in TABLES])
        for t in TABLES:
            v = _row(data, t).get(key)
            s[f"{key}:{t}"] = 100 * v if v is not None and math.isfinite(v) else math.nan
    s["score"] = _mean([s[f"dynamics_r_micro:{t}"] for t in TABLES])
    return s


FLOORS = (("melody_accuracy_mean", 1.0, "melody"), ("beat_f1_mean", 1.0, "beat F1"), ("bp_melody_f1_mean", 1.0, "basic-pitch melody F1"),
          ("dsp_beat_f1_mean", 2.5, "DSP beat F1"), ("aw_dynamics_r_mean", 0.0, "A-weighted dynamics r"))


def main() -> None:
    args = sweep_arguments(__doc__, "--strengths", ["0", "0.5", "1"], "runs/eval/dynamics-guidance-valid", str(RESULTS / "dynamics_guidance.md"))

    gen = load_for_valid(args.cases, args.model, args.threads)
    summaries, data, wall = sweep(gen, args.cases, args.work, "dynamics_guidance", args.strengths, summary, prefix="dg")
    winner, why = choose(summaries, args.strengths[0], FLOORS)
    cfg = data["config"]
    lines = [
        *header("Dynamics guidance strength, chosen on valid cases", gen, cfg, args.cases, wall),
        "Rows: the all-three-controls row averaged over Tables I (extracted), II (created) and III (created, partial span). Rule: "
        + " ".join(__doc__.split("The rule:")[1].split("    python")[0].split()), "",
        "| strength | " + " | ".join(c[1] for c in COLS) + " | FAD (I) | generate s | admissible |",
        "|---|" + "---:|" * (len(COLS) + 2) + "---|",
    ]
    for name, s in summaries.items():
        cells = [f"{s[k]:.3f}" if k == "clap_mean" else f"{s[k]:.2f}" if k == "spectral_flatness_mean" else f"{s[k]:.1f}" for k, _ in COLS]
        lines.append(f"| {'**' + name + '**' if name == winner else name} | " + " | ".join(cells) + f" | {s['fad_I']:.3f} | {s['generate_s']:.0f} | {why[name]} |")
    lines += ["", "Per table (dynamics r ×100 / A-weighted dynamics r ×100 / melody % / DSP beat F1 %):", "", "| strength | I | II | III |", "|---|---|---|---|"]
    for name, s in summaries.items():
        per = [" / ".join(f"{s.get(f'{k}:{t}', math.nan):.1f}" for k in ("dynamics_r_micro", "aw_dynamics_r_mean", "melody_accuracy_mean", "dsp_beat_f1_mean")) for t in TABLES]
        lines.append(f"| {name} | " + " | ".join(per) + " |")
    lines += ["", f"**Chosen: dynamics guidance = {winner}.**", ""]
    Path(args.out).write_text("\n".join(lines))
    Path(args.out).with_suffix(".json").write_text(json.dumps({"winner": winner, "why": why, "summaries": summaries, "args": vars(args), "row": ROW}, indent=1, default=str))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
