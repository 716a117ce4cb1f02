"""One sampling setting swept over the VALID case sets: what the choose-a-default benchmarks share.

``dynamics_guidance.py`` and ``downbeat_guidance.py`` each fix a rule, run ``cadenza eval`` once
per candidate value on the same valid cases and seeds (all three controls), and write a table
with the winner. The command line, the loading, the refusal of test sets, the loop and the table's header are
the same for both and live here; each script keeps its rule, its summary and its columns.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

Floor = tuple[str, float, str]  # (summary key, how many points below the baseline it may fall, its name)


VALID_CASES = ["runs/eval/valid-extracted", "runs/eval/valid-created"]


def sweep_arguments(doc: str, flag: str, candidates: Sequence[str], work: str, out: str) -> argparse.Namespace:
    """The command line every sweep takes: the valid cases, its candidates (``flag``, weakest first;
    the first is the baseline), the model, the work folder, threads and the table it writes."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--cases", nargs="+", default=VALID_CASES)
    ap.add_argument(flag, nargs="+", default=list(candidates), help="candidates, weakest first; the first is the baseline")
    ap.add_argument("--model", default=None)
    ap.add_argument("--work", default=work)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=out)
    return ap.parse_args()


def load_for_valid(cases: Sequence[str], model: str | None, threads: int):
    """The generator to sweep, after refusing test case sets (they are scored once, after the choice)."""
    from cadenza.pipeline import Cadenza

    if any("test" in Path(c).name for c in cases):
        raise SystemExit("choose on valid case sets only; the test sets are scored once, after the choice")
    return Cadenza.load(model, threads=threads)


def sweep(
    gen, cases: Sequence[str], work: str | Path, setting: str, values: Sequence[str], summary: Callable[[dict], dict], prefix: str,
) -> tuple[dict[str, dict], dict, float]:
    """``cadenza eval`` once per value of ``setting`` (a ``run_eval`` keyword): (summaries by value, the last results, wall s)."""
    from cadenza.eval.run import run_eval

    summaries, data, t0 = {}, {}, time.perf_counter()
    for value in values:
        data = run_eval(cases, Path(work) / f"{prefix}{value}", model=gen, subsets="three", max_figures=0, **{setting: float(value)})
        summaries[value] = summary(data)
        print(f"{setting} {value}: score {summaries[value]['score']:.1f}", flush=True)
    return summaries, data, time.perf_counter() - t0


def header(title: str, gen, cfg: dict, cases: Sequence[str], wall_s: float, extra_settings: str = "") -> list[str]:
    """The table's first lines: model, vocoder, commit, seed and the settings every candidate shares."""
    from cadenza.eval.run import git_commit

    return [
        f"# {title}", "",
        f"Model `{gen.model_id}`, vocoder `{gen.vocoder.name}`, commit `{git_commit()[:12]}`, seed 0, steps {cfg['steps']}, "
        f"text cfg {cfg['cfg']:g}, control cfg {cfg.get('control_cfg', 0)}{extra_settings}; cases: {', '.join(cases)} ({cfg['n_cases']} cases, "
        f"all three controls); wall {wall_s:.0f} s.", "",
    ]


def failures(s: dict, base: dict, floors: Sequence[Floor]) -> list[str]:
    """Why candidate ``s`` is not admissible against ``base``: each floor it falls through, and
    spectral flatness or FAD (Table I) more than 25 % above the baseline's."""
    fails = [f"{what} fell {base[key] - s[key]:.1f}" for key, slack, what in floors if s[key] < base[key] - slack - 1e-9]
    if s["spectral_flatness_mean"] > 1.25 * base["spectral_flatness_mean"]:
        fails.append("flatness rose > 25 %")
    if math.isfinite(base["fad_I"]) and s["fad_I"] > 1.25 * base["fad_I"]:
        fails.append("FAD rose > 25 %")
    return fails


def choose(summaries: dict[str, dict], base: str, floors: Sequence[Floor]) -> tuple[str, dict[str, str]]:
    """(winner, why each candidate was or was not admissible): the first admissible candidate, in the
    order given (weakest first), whose ``score`` is within 1 point of the best admissible score."""
    why = {name: "; ".join(failures(s, summaries[base], floors)) or "admissible" for name, s in summaries.items()}
    admissible = {name: summaries[name]["score"] for name, w in why.items() if w == "admissible"}
    best = max(admissible.values())
    return next(n for n in summaries if n in admissible and admissible[n] >= best - 1.0), why
