"""Beat salience of eval outputs: are the given beats marked in the audio? A judge that tracks nothing.

For every case of each ``cadenza eval`` report given, the all-three-controls row's cached audio
gets ``cadenza.eval.judges.beat_salience``: librosa's onset strength within 35 ms of the given
beats over its mean on the rhythm mask's frames (1 = no more onset at the beats than elsewhere).
Why: the DSP beat tracker's F1 fell on partial spans both under dynamics guidance and for the
v3cap fine-tune, while the trained tracker kept 99–100; a tracker can fail by its tempo estimate
alone, so this asks the audio directly. Per table, side by side, with the reports' DSP beat F1.

    python benchmarks/beat_salience.py v2=runs/eval/v2-valid-paper/cfg3 dg0.5=runs/eval/dynamics-guidance-valid/dg0.5 \\
        --out benchmarks/results/beat_salience_valid.md
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import soundfile as sf

RESULTS = Path(__file__).parent / "results"
ROW = "melody+dynamics+rhythm"
TABLES = ("I", "II", "III")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("reports", nargs="+", help="NAME=REPORT_FOLDER (its cache/ holds the audio)")
    ap.add_argument("--out", default=str(RESULTS / "beat_salience.md"))
    args = ap.parse_args()

    from cadenza.controls.base import ControlSet
    from cadenza.eval.judges import beat_salience

    result, lines = {}, ["# Beat salience at the given beats (all three controls)", "",
                         "Onset strength (librosa) within 35 ms of the given beats over its mean inside the rhythm mask; "
                         "1 = beats not marked. Mean over cases; DSP beat F1 % from each report beside it.", "",
                         "| report | " + " | ".join(f"Table {t}: salience / DSP F1" for t in TABLES) + " | reference clips (Table I) |",
                         "|---|" + "---|" * (len(TABLES) + 1)]
    for spec in args.reports:
        name, _, folder = spec.partition("=")
        folder = Path(folder or name)
        data = json.loads((folder / "results.json").read_text())
        cases_dirs = [Path(c) for c in data["config"]["cases"]]
        per: dict[str, list[float]] = {t: [] for t in TABLES}
        ref: list[float] = []
        for case in data["cases"]:
            c = case["case"]
            root = next((d for d in cases_dirs if (d / c["controls"]).exists()), None)
            if root is None or ROW not in case["rows"]:
                continue
            given = ControlSet.load(root / c["npz"]) if (root / c["npz"]).exists() else None
            if given is None or not given.rhythm_mask.any():
                continue
            wave, sr = sf.read(folder / "cache" / case["rows"][ROW]["audio"], dtype="float32")
            per[case["table"]].append(beat_salience(wave, given.beat_times(), given.rhythm_mask, sr))
            if "reference" in case["rows"]:
                rw, rsr = sf.read(folder / "cache" / case["rows"]["reference"]["audio"], dtype="float32")
                ref.append(beat_salience(rw, given.beat_times(), given.rhythm_mask, rsr))
        dsp = {t: next((r.get("dsp_beat_f1_mean") for r in data["tables"].get(t, []) if r["row"] == ROW), math.nan) for t in TABLES}
        result[name] = {"folder": str(folder), "model_id": data["model_id"], "config": data["config"],
                        "salience": {t: float(np.nanmean(v)) if v else math.nan for t, v in per.items()}, "dsp_beat_f1": dsp,
                        "reference_salience": float(np.nanmean(ref)) if ref else math.nan, "n": {t: len(v) for t, v in per.items()}}
        cells = [f"{result[name]['salience'][t]:.2f} / {100 * (dsp[t] if dsp[t] is not None else math.nan):.1f}" for t in TABLES]
        lines.append(f"| {name} (`{data['model_id']}`, dyn. guidance {data['config'].get('dynamics_guidance', 0)}) | " + " | ".join(cells)
                     + f" | {result[name]['reference_salience']:.2f} |")
    lines.append("")
    Path(args.out).write_text("\n".join(lines))
    Path(args.out).with_suffix(".json").write_text(json.dumps(result, indent=1, default=str))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
