"""Does the instrument named in the prompt reach the output? Zero-shot CLAP on the eval's audio.

For every created case of ``cadenza eval`` reports (prompts "A <mood> <genre> played on
<instrument>.", eight instruments), the shipped CLAP embeds each output and eight neutral
prompts "Music played on <instrument>."; the case counts as recognised when the named
instrument's prompt is the closest. Chance is 1/8. Rows: no controls (text only) and all three
controls, for each report given (e.g. control guidance off and on), so one run shows whether the
controls or their guidance crowd the prompt out. Wilson 95 % intervals (24 cases: wide).

The judge is Cadenza's own small CLAP, trained on this corpus's captions; an instrument classifier
trained on the corpus's General MIDI programs (the issue's second judge) is not built yet.
Writes ``benchmarks/results/instrument_following.md`` + ``.json``. Reads cached audio only.

    python benchmarks/instrument_following.py runs/eval/report-cc0=runs/eval/cache-cc0 runs/eval/report-cc7=runs/eval/cache-cc7
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

import numpy as np
import soundfile as sf

RESULTS = Path(__file__).parent / "results"
ROWS = ("none", "melody+dynamics+rhythm")


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return math.nan, math.nan
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("reports", nargs="+", help="cadenza eval report folders, each REPORT or REPORT=CACHE when its audio cache is elsewhere (--cache)")
    args = ap.parse_args()

    from cadenza.eval.cases import _INSTRUMENTS
    from cadenza.eval.clap import load_clap

    clap = load_clap()
    labels = list(_INSTRUMENTS)
    text = clap.embed_text([f"Music played on {i}." for i in labels])
    result, lines = {"judge": clap.name, "instruments": labels, "reports": {}}, [
        "# Instrument named in the prompt, recognised in the output (zero-shot CLAP)", "",
        f"Judge: the shipped CLAP (`{clap.name}`), nearest of {len(labels)} prompts \"Music played on <instrument>.\"; "
        f"chance {100 / len(labels):.1f} %. Created cases of each report; Wilson 95 % intervals.", "",
        "| report | control cfg | row | recognised | 95 % interval | cases |", "|---|---|---|---:|---|---:|",
    ]
    for spec in args.reports:
        folder, _, cache_dir = spec.partition("=")
        folder = Path(folder)
        cache = Path(cache_dir) if cache_dir else folder / "cache"
        data = json.loads((folder / "results.json").read_text())
        entry = {}
        for row in ROWS:
            hits, n = 0, 0
            for case in data["cases"]:
                m = re.search(r"played on (.+)\.$", case["case"]["prompt"])
                if case["case"]["kind"] != "created" or m is None or row not in case["rows"]:
                    continue
                wave, sr = sf.read(cache / case["rows"][row]["audio"], dtype="float32")
                sims = clap.embed_audio([wave], sr) @ text.T
                hits += int(labels[int(np.argmax(sims[0]))] == m.group(1))
                n += 1
            lo, hi = wilson(hits, n)
            entry[row] = {"recognised": hits, "cases": n, "rate": hits / n if n else math.nan, "wilson95": [lo, hi]}
            lines.append(f"| {folder.name} | {data['config'].get('control_cfg', 0)} | {row} | {100 * hits / max(n, 1):.1f} % | "
                         f"{100 * lo:.1f}–{100 * hi:.1f} % | {n} |")
        result["reports"][str(folder)] = entry
    lines += ["", "Issue #17's goal: the prompt's instrument recognised in ≥ 70 % of clips that name one.", ""]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "instrument_following.md").write_text("\n".join(lines))
    (RESULTS / "instrument_following.json").write_text(json.dumps(result, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
