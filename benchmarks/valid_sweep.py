"""One sampling setting swept over the VALID case sets: what the choose-a-default benchmarks share.

``dynamics_guidance.py`` and ``downbeat_guidance.py`` each fix a rule, run ``cadenza eval`` once
per candidate value on the same valid cases and seeds (all three controls), and write a table
with the winner. The loading, the refusal of test sets, the loop and the table's header are
the same for both and live here; each script keeps its rule, its summary and its columns.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path


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
