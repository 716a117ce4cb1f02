"""``cadenza eval``: case sets and generate-and-measure reports (Music ControlNet Tables I-III)."""

from __future__ import annotations

from pathlib import Path

import click
import typer
from rich.console import Console
from typer.core import TyperGroup

from cadenza.cli.progress import QUIET_HELP, progress_bar

console = Console(stderr=True)


class _RunByDefault(TyperGroup):
    """``cadenza eval CASES ...`` is ``cadenza eval run CASES ...``: a first word that is no verb is a case folder."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            args = ["run", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_RunByDefault,
    help=(
        "Evaluate a generator: control adherence, CLAP and FAD per control subset, in the shape of Music ControlNet's tables.\n\n"
        "Examples:\n\n"
        "  cadenza eval make-cases --from-corpus data/corpus-small --split test --n 32 --out cases/extracted\n\n"
        "  cadenza eval make-cases --created --n 32 --out cases/created\n\n"
        "  cadenza eval cases/created --model runs/gen/model --out reports/created --steps 10 --limit 4"
    ),
    no_args_is_help=True,
)


@app.command("make-cases")
def make_cases(
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the case set (cases.jsonl, controls/, audio/)."),
    from_corpus: Path = typer.Option(None, "--from-corpus", help="Corpus folder: extracted controls of its held-out clips."),
    created: bool = typer.Option(False, "--created", help="Creator-made controls: typed melodies, dynamics curves, tempo templates, partial spans."),
    split: str = typer.Option("test", "--split", help="Corpus split for --from-corpus (test or valid)."),
    n: int = typer.Option(32, "--n", help="Number of cases."),
    seed: int = typer.Option(0, "--seed", help="Seed of every random choice (same seed → same case set)."),
    duration: float = typer.Option(None, "--duration", help="Seconds per case (default: the clip's length; 6 for --created)."),
    rhythm_tracker: str = typer.Option(
        "default", "--rhythm-tracker",
        help="Beat tracker for extracted controls: default (the trained one, DSP fallback), neural, dsp or a trained model folder; use the one eval run scores with.",
    ),
) -> None:
    """Write a case set: extracted controls of held-out corpus clips, or created controls.

    Examples:

      cadenza eval make-cases --created --n 32 --out cases/created

      cadenza eval make-cases --from-corpus data/corpus-small --split test --n 32 --out cases/extracted
    """
    from cadenza.errors import CadenzaError
    from cadenza.eval.cases import make_corpus_cases, make_created_cases

    if (from_corpus is None) == (not created):
        raise CadenzaError("give exactly one of --from-corpus DIR and --created", "e.g. --from-corpus data/corpus-small --split test")
    if created:
        cases = make_created_cases(out, n=n, seed=seed, duration=6.0 if duration is None else duration)
    else:
        cases = make_corpus_cases(from_corpus, out, split=split, n=n, seed=seed, duration=duration, rhythm_tracker=rhythm_tracker)
    partial = sum(c.span is not None for c in cases)
    console.print(f"wrote {len(cases)} cases ({partial} with partial spans) to {out}")


@app.command("run")
def run(
    cases: list[Path] = typer.Argument(..., help="Case-set folder(s) from 'cadenza eval make-cases' (extracted and created sets together)."),
    out: Path = typer.Option(..., "--out", "-o", help="Report folder: report.md, results.json, figures/, cache/."),
    model: str = typer.Option(None, "--model", help="Generator folder (default: the shipped model)."),
    steps: int = typer.Option(None, "--steps", help="Sampling steps (default: the model's)."),
    cfg: float = typer.Option(None, "--cfg", help="Classifier-free guidance scale (default: the model's)."),
    control_cfg: str = typer.Option(None, "--control-cfg", help="Control guidance: one scale (0 = off) or per control, e.g. 'melody=3,rhythm=2' (default: the model's)."),
    dynamics_guidance: float = typer.Option(None, "--dynamics-guidance", help="Loudness contour of the output set to the dynamics curve after sampling, 0-1 (default: the model's)."),
    downbeat_cfg: float = typer.Option(None, "--downbeat-cfg", help="Downbeat guidance scale on the given rhythm, 0 = off (default: the model's)."),
    seed: int = typer.Option(0, "--seed", help="Base seed (each case derives its own; rows of a case share it)."),
    subsets: str = typer.Option("all", "--subsets", help="'all': every control subset (Table I's rows); 'paper': none, each alone, all three; 'three': all three only."),
    limit: int = typer.Option(None, "--limit", help="At most N cases per table (a quick look)."),
    cache: Path = typer.Option(None, "--cache", help="Where per-case audio and scores are cached (default: OUT/cache)."),
    embedder: str = typer.Option("default", "--embedder", help="FAD embedder: default, clap, mel-stats or none."),
    rhythm_tracker: str = typer.Option(
        "default", "--rhythm-tracker",
        help="Beat tracker used to score outputs: default (the trained one, DSP fallback, as in 'cadenza controls extract'), neural, dsp or a trained model folder.",
    ),
    max_figures: int = typer.Option(4, "--max-figures", help="Per-case figures to draw: the first N cases of each table."),
    threads: int = typer.Option(None, "--threads", help="Torch threads."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
) -> None:
    """Generate every case under every control subset, measure adherence, CLAP and FAD, write the report (resumable).

    Examples:

      cadenza eval run cases/created --out reports/created --steps 10 --limit 4

      cadenza eval run cases/extracted cases/created --out reports/all --subsets paper

      cadenza eval cases/created --out reports/created   ('run' is the default verb)
    """
    from cadenza.eval.run import run_eval
    from cadenza.limits import check_count, check_threads

    if limit is not None:
        check_count("--limit", limit, 1)
    check_count("--max-figures", max_figures, 0, 10_000)
    check_threads(threads, "--threads")
    with progress_bar("evaluating cases", console=console, quiet=quiet) as bar:
        data = run_eval(cases, out, model=model, steps=steps, cfg=cfg, control_cfg=control_cfg, dynamics_guidance=dynamics_guidance, downbeat_cfg=downbeat_cfg, seed=seed, subsets=subsets, limit=limit, cache=cache,
                        embedder=embedder, rhythm_tracker=rhythm_tracker, max_figures=max_figures, threads=threads,
                        progress=bar.update)  # (done, total, case id)
    console.print(f"wrote {out / 'report.md'} and {out / 'results.json'} ({data['config']['n_cases']} cases, {data['run']['wall_s']:g} s)")
