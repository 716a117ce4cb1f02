"""Choose the downbeat guidance scale on VALID case sets only (the same cases as control_guidance.py).

Downbeat guidance (``cadenza.conditioning.cfg``) adds a branch that keeps the rhythm's beats and
mask but clears its downbeat channel, and pushes along the difference on the rhythm's frames.
Every candidate runs ``cadenza eval`` on the same valid cases and seeds at the model's other
defaults (control guidance and dynamics guidance included), all three controls. The test sets
are not read here.

The rule, fixed before the first probe (scales 0, 2, 5) was seen; 8 and 12 were added because the
probe's best lay at the edge of its grid, and 16 and 20 a session later because 12 was again at the edge:

1. score = mean downbeat F1 (the shipped neural tracker) of the all-three row over Tables I, II, III;
2. a candidate is admissible only if the rest holds, on the same row averaged over the tables:
   the mean of melody accuracy, dynamics r and beat F1 no more than 1 point below no downbeat
   guidance; basic-pitch melody F1 no more than 1 point below; DSP beat F1 no more than 2.5 points
   below; the DSP tracker's downbeat F1 (a judge of another kind) not below; spectral flatness and
   FAD (Table I) no more than 25 % above;
3. the smallest admissible scale whose score is within 1 point of the best admissible wins.

    python benchmarks/downbeat_guidance.py --threads 2
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from control_guidance import _mean, _row  # noqa: E402
from dynamics_guidance import summary as dynamics_summary  # noqa: E402
from valid_sweep import choose, header, load_for_valid, sweep, sweep_arguments  # noqa: E402

RESULTS = Path(__file__).parent / "results"
TABLES = ("I", "II", "III")


def summary(data: dict) -> dict:
    s = dynamics_summary(data)
    s["dsp_downbeat_f1_mean"] = 100 * _mean([_row(data, t).get("dsp_downbeat_f1_mean") for t in TABLES])
    for t in TABLES:
        v = _row(data, t).get("dsp_downbeat_f1_mean")
        s[f"dsp_downbeat_f1_mean:{t}"] = 100 * v if v is not None and math.isfinite(v) else math.nan
    s["controls_mean"] = (s["melody_accuracy_mean"] + s["dynamics_r_micro"] + s["beat_f1_mean"]) / 3
    s["score"] = s["downbeat_f1_mean"]
    return s


FLOORS = (("controls_mean", 1.0, "melody/dynamics/beats"), ("bp_melody_f1_mean", 1.0, "basic-pitch melody F1"),
          ("dsp_beat_f1_mean", 2.5, "DSP beat F1"), ("dsp_downbeat_f1_mean", 0.0, "DSP downbeat F1"))


COLS = (
    ("downbeat_f1_mean", "downbeat F1 %"), ("dsp_downbeat_f1_mean", "DSP downbeat F1 %"), ("controls_mean", "melody/dyn/beat mean"),
    ("melody_accuracy_mean", "melody %"), ("dynamics_r_micro", "dyn r ×100"), ("beat_f1_mean", "beat F1 %"),
    ("bp_melody_f1_mean", "bp melody F1 %"), ("dsp_beat_f1_mean", "DSP beat F1 %"), ("spectral_flatness_mean", "flatness ×1000"),
    ("clap_mean", "CLAP"), ("fad_I", "FAD (I)"), ("generate_s", "generate s"),
)


def main() -> None:
    args = sweep_arguments(__doc__, "--scales", ["0", "2", "5", "8", "12", "16", "20"], "runs/eval/downbeat-guidance-valid",
                           str(RESULTS / "downbeat_guidance.md"))

    gen = load_for_valid(args.cases, args.model, args.threads)
    summaries, data, wall = sweep(gen, args.cases, args.work, "downbeat_cfg", args.scales, summary, prefix="db")
    winner, why = choose(summaries, args.scales[0], FLOORS)
    cfg = data["config"]
    lines = [
        *header("Downbeat guidance scale, chosen on valid cases", gen, cfg, args.cases, wall,
                f", dynamics guidance {cfg.get('dynamics_guidance', 0)}"),
        "Rows: the all-three-controls row averaged over Tables I (extracted), II (created) and III (created, partial span). The rule, fixed "
        + " ".join(__doc__.split("The rule, fixed")[1].split("    python")[0].split()), "",
        "| downbeat cfg | " + " | ".join(c[1] for c in COLS) + " | admissible |",
        "|---|" + "---:|" * len(COLS) + "---|",
    ]
    for name, s in summaries.items():
        cells = [f"{s[k]:.3f}" if k in ("clap_mean", "fad_I") else f"{s[k]:.2f}" if k == "spectral_flatness_mean" else f"{s[k]:.1f}" for k, _ in COLS]
        lines.append(f"| {'**' + name + '**' if name == winner else name} | " + " | ".join(cells) + f" | {why[name]} |")
    lines += ["", "Per table (downbeat F1 % / DSP downbeat F1 % / melody % / DSP beat F1 %):", "", "| downbeat cfg | I | II | III |", "|---|---|---|---|"]
    for name, s in summaries.items():
        lines.append(f"| {name} | " + " | ".join(
            " / ".join(f"{s.get(f'{k}:{t}', math.nan):.1f}" for k in ("downbeat_f1_mean", "dsp_downbeat_f1_mean", "melody_accuracy_mean", "dsp_beat_f1_mean"))
            for t in TABLES) + " |")
    lines += ["", f"**Chosen: downbeat cfg = {winner}.** Rows without a rhythm are unaffected (no branch is added)."]
    out = Path(args.out)
    out.write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps({"summaries": summaries, "why": why, "winner": winner, "config": cfg}, indent=2, default=str) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
