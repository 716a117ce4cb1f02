"""Control guidance on the TEST cases, scored once after the choice: paired differences with intervals.

Reads two ``cadenza eval`` results over the same test cases and seeds, one with control guidance
off (text CFG only, the previous default) and one at the chosen default, and reports for the
all-three-controls row of every table each metric under both settings, the paired per-case
difference and its 95 % bootstrap interval (10,000 resamples of the cases; 12-16 cases a table,
so the intervals are wide). Writes ``benchmarks/results/control_guidance_test.md`` + ``.json``.

    cadenza eval run runs/eval/extracted-neural runs/eval/created --out runs/eval/report-cc0 --control-cfg 0 --steps 15 --subsets all
    cadenza eval run runs/eval/extracted-neural runs/eval/created --out runs/eval/report-cc7 --control-cfg 7 --steps 15 --subsets all
    python benchmarks/control_guidance_test.py runs/eval/report-cc0 runs/eval/report-cc7
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
ROW = "melody+dynamics+rhythm"
METRICS = (
    ("scores", "melody_accuracy", "melody %"),
    ("scores", "dynamics_r", "dynamics r ×100"),
    ("scores", "beat_f1", "beat F1 %"),
    ("scores", "downbeat_f1", "downbeat F1 %"),
    ("judges", "bp_melody_f1", "basic-pitch melody F1 %"),
    ("judges", "dsp_beat_f1", "DSP beat F1 %"),
    ("judges", "dsp_downbeat_f1", "DSP downbeat F1 %"),
    ("judges", "aw_dynamics_r", "A-weighted dynamics r ×100"),
    ("judges", "spectral_flatness", "flatness ×1000"),
    (None, "clap", "CLAP"),
)
TABLES = {"I": "extracted (Table I)", "II": "created (Table II)", "III": "created, partial span (Table III)"}


def per_case(data: dict, table: str, where: str | None, key: str) -> dict[str, float]:
    """case id → the metric of its all-three row (NaN where undefined)."""
    out = {}
    for case in data["cases"]:
        if case["table"] != table or ROW not in case["rows"]:
            continue
        row = case["rows"][ROW]
        value = row.get(key) if where is None else (row.get(where) or {}).get(key)
        out[case["case"]["id"]] = math.nan if value is None else float(value)
    return out


def paired(a: dict[str, float], b: dict[str, float], rng: np.random.Generator, n_boot: int = 10_000) -> dict:
    ids = [i for i in a if i in b and math.isfinite(a[i]) and math.isfinite(b[i])]
    x, y = np.array([a[i] for i in ids]), np.array([b[i] for i in ids])
    if not ids:
        return {"n": 0, "off": math.nan, "on": math.nan, "diff": math.nan, "lo": math.nan, "hi": math.nan}
    d = y - x
    boots = d[rng.integers(0, len(d), (n_boot, len(d)))].mean(1)
    return {"n": len(ids), "off": float(x.mean()), "on": float(y.mean()), "diff": float(d.mean()),
            "lo": float(np.quantile(boots, 0.025)), "hi": float(np.quantile(boots, 0.975))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("off", help="eval report folder with the guidance off (the baseline)")
    ap.add_argument("on", help="eval report folder with the guidance on")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--what", default="control", help="which guidance the two reports differ in: control, dynamics, downbeat or dynamics+downbeat (the titles and the settings printed)")
    ap.add_argument("--out", default=str(RESULTS / "control_guidance_test.md"))
    args = ap.parse_args()
    off, on = (json.loads((Path(p) / "results.json").read_text()) for p in (args.off, args.on))
    if [c["case"]["id"] for c in off["cases"]] != [c["case"]["id"] for c in on["cases"]] or off["seed"] != on["seed"]:
        raise SystemExit("the two reports must cover the same cases with the same seed")
    rng = np.random.default_rng(args.seed)
    settings = {"control": ["control_cfg"], "dynamics": ["dynamics_guidance"], "downbeat": ["downbeat_cfg"],
                "dynamics+downbeat": ["dynamics_guidance", "downbeat_cfg"]}[args.what]
    shown = lambda cfg, k: cfg.get(k, 0) or "off"  # noqa: E731
    result: dict = {"off": args.off, "on": args.on, **{f"{k}_on": on["config"].get(k) for k in settings}, "tables": {}}
    changed = "; ".join(f"{k.replace('_', ' ')} {shown(off['config'], k)} vs **{shown(on['config'], k)}**" for k in settings)
    title = " and ".join(w.capitalize() if i == 0 else w for i, w in enumerate(args.what.split("+")))
    lines = [
        f"# {title} guidance on the test cases (scored once, after the choice)", "",
        f"Model `{on['model_id']}`; {on['config']['steps']} steps, text cfg {on['config']['cfg']:g}, control cfg "
        f"{on['config'].get('control_cfg', 0)}{'' if 'dynamics_guidance' in settings else ', dynamics guidance ' + str(shown(on['config'], 'dynamics_guidance'))}; {changed}; {on['config']['n_cases']} cases ({', '.join(on['config']['cases'])}), seed {on['seed']}; "
        f"commits `{off['commit'][:12]}` / `{on['commit'][:12]}`. The all-three-controls row; Δ = paired per-case difference, "
        "[95 % bootstrap interval over cases].", "",
    ]
    # columns named by the setting when both reports have it on (e.g. downbeat 12 vs 16), else off / on
    both_on = all(float(c["config"].get(k) or 0) for c in (off, on) for k in settings)
    names = [", ".join(f"{shown(c['config'], k)}" for k in settings) for c in (off, on)] if both_on else ["off", "on"]
    for table, title in TABLES.items():
        lines += [f"## {title}", "", f"| metric | {names[0]} | {names[1]} | Δ [95 % interval] | cases |", "|---|---:|---:|---|---:|"]
        result["tables"][table] = {}
        for where, key, label in METRICS:
            scale = {"clap": 1.0, "spectral_flatness": 1000.0}.get(key, 100.0)
            r = paired(per_case(off, table, where, key), per_case(on, table, where, key), rng)
            result["tables"][table][key] = r
            digits = 3 if key == "clap" else 2 if key == "spectral_flatness" else 1
            f = lambda v: f"{scale * v:.{digits}f}"  # noqa: E731
            lines.append(f"| {label} | {f(r['off'])} | {f(r['on'])} | {f(r['diff'])} [{f(r['lo'])}, {f(r['hi'])}] | {r['n']} |")
        lines.append("")
    for table in TABLES:
        for name in ("fad",):
            get = lambda d: next((r.get(name) for r in d["tables"].get(table, []) if r["row"] == ROW), None)  # noqa: E731
            result["tables"][table]["fad"] = {"off": get(off), "on": get(on)}
    lines.append("FAD of the all-three row against the extracted cases' reference clips (pooled, small N): " + "; ".join(
        f"{t} {result['tables'][t]['fad']['off']:.3f} → {result['tables'][t]['fad']['on']:.3f}"
        for t in TABLES if result["tables"][t]["fad"]["off"] is not None and result["tables"][t]["fad"]["on"] is not None) + ".")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
