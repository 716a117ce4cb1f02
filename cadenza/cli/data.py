"""``cadenza data ...``: build the rendered corpus, index your own audio, cache features, show stats."""

from __future__ import annotations

import logging
from pathlib import Path

import typer
from rich.console import Console
from cadenza.cli.progress import QUIET_HELP, progress_bar
from cadenza.errors import CadenzaError

console = Console(stderr=True)

app = typer.Typer(
    help=(
        "Training data: render the music21 corpus, index your own audio, cache features.\n\n"
        "Examples:\n\n"
        "  cadenza data build --preset tiny --out data/tiny\n\n"
        "  cadenza data stats data/tiny\n\n"
        "  cadenza data index my_songs/ --out data/mine --captions captions.csv\n\n"
        "  cadenza data cache data/tiny"
    ),
    no_args_is_help=True,
)


@app.command()
def build(
    preset: str = typer.Option("tiny", "--preset", help="tiny (≈3 min), small (≈3 h) or full (every work, ≥50 h)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (resumable: run again to finish)."),
    seed: int = typer.Option(0, "--seed", help="Seed of every random choice (work selection, arrangement)."),
    workers: int = typer.Option(2, "--workers", help="Parallel worker processes."),
    clip_seconds: float = typer.Option(6.0, "--clip-seconds", help="Length of each clip in seconds."),
    soundfont: str = typer.Option(None, "--soundfont", help="An .sf2 path, 'timgm6mb' or 'fluidr3' (default: by preset)."),
    limit_works: int = typer.Option(None, "--limit-works", help="Render only the first N selected works."),
    splits: str = typer.Option(None, "--splits", help="Only the selected works in these splits, e.g. 'valid,test' (a held-out set)."),
    max_clips: int = typer.Option(None, "--max-clips", help="At most N clips per arrangement (default: by preset)."),
    variants: int = typer.Option(None, "--variants", help="Arrangements per work (default: by preset)."),
    no_extract: bool = typer.Option(False, "--no-extract", help="Skip audio control extraction (score controls only)."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Try again the works that failed last time."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
) -> None:
    """Render the music21 corpus into captioned 22.05 kHz clips with exact score controls.

    Examples:

      cadenza data build --preset tiny --out data/tiny

      cadenza data build --preset tiny --out data/quick --limit-works 3 --no-extract   (a first look in a minute)

      cadenza data build --preset small --out data/corpus-small --workers 2   (hours; run it again to resume)

      cadenza data build --preset full --out data/heldout --limit-works 3000 --splits valid,test   (a bigger held-out set)
    """
    from cadenza.data.build import BuildConfig
    from cadenza.data.build import build as run_build

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    cfg = BuildConfig(
        out=str(out), preset=preset, seed=seed, clip_seconds=clip_seconds, soundfont=soundfont, workers=workers,
        limit_works=limit_works, splits=tuple(x.strip() for x in splits.split(",")) if splits is not None else None, max_clips=max_clips, variants=variants, extract=not no_extract, retry_failed=retry_failed,
    )
    counts = {"clips": 0, "failed": 0}
    with progress_bar("rendering works", console=console, quiet=quiet) as bar:

        def update(done: int, total: int, rec: dict) -> None:
            counts["clips"] += len(rec.get("rows", []))
            counts["failed"] += rec.get("status") == "failed"
            bar.update(done, total, info=f"{counts['clips']} new clips, {counts['failed']} failed")

        summary = run_build(cfg, progress=update)
    empty = summary.get("works_without_clips", [])
    console.print(
        f"[green]done:[/] {summary['clips']} clips ({summary['hours']:.2f} h) from {summary['works'] - summary['failed'] - len(empty)} works; "
        f"{summary['failed']} failed (see {out / 'failures.json'}); splits {summary['clips_per_split']}"
    )
    if empty:
        console.print(
            f"{len(empty)} work(s) gave no clip (shorter than one clip, or every clip under the silence / voiced-frame "
            f"thresholds): listed with the reasons in {out / 'build.json'}"
        )


@app.command()
def stats(
    folder: Path = typer.Argument(..., help="A data set folder (with manifest.jsonl)."),
    out: Path = typer.Option(None, "--out", "-o", help="Where to write the summary and plots (default: FOLDER/stats)."),
) -> None:
    """Summarise a data set: hours, clips per split, instrument / tempo / collection histograms.

    Examples:

      cadenza data stats data/tiny

      cadenza data stats data/corpus-small --out reports/corpus-stats
    """
    from cadenza.data.stats import dataset_stats

    summary = dataset_stats(folder, out)
    console.print(f"{summary['clips']} clips, {summary['hours']:.2f} h, {summary['works']} works")
    for split, v in summary["splits"].items():
        console.print(f"  {split:5s} {v['clips']:6d} clips {v['hours']:8.3f} h {v['works']:5d} works")
    console.print(f"written to {out or folder / 'stats'}: summary.json, summary.md, {', '.join(summary['plots'])}")


@app.command()
def index(
    folder: Path = typer.Argument(..., help="Folder of audio files (wav/flac/ogg/mp3), searched recursively."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder for clips, controls and the manifest."),
    captions: Path = typer.Option(None, "--captions", help="CSV or JSONL with columns file,caption."),
    clip_seconds: float = typer.Option(6.0, "--clip-seconds", help="Length of each clip in seconds."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
) -> None:
    """Index your own audio: clips, extracted controls and captions, in the corpus's manifest format.

    Examples:

      cadenza data index my_songs/ --out data/mine

      cadenza data index my_songs/ --out data/mine --captions captions.csv --clip-seconds 10
    """
    from cadenza.data.index import index_folder

    with progress_bar("indexing", console=console, quiet=quiet) as bar:
        report = index_folder(folder, out, captions, clip_seconds, progress=lambda i, n, name: bar.update(i, n, info=name))
        bar.update(len(report["indexed"]) + len(report["problems"]), info="")
    for p in report["problems"]:
        console.print(f"[yellow]skipped[/] {p['file']}: {p['reason']}", highlight=False)
    if report["unused_captions"]:
        console.print(f"[yellow]captions for files not found:[/] {', '.join(report['unused_captions'][:10])}", highlight=False)
    console.print(
        f"[green]done:[/] {report['clips']} clips from {len(report['indexed'])} files; "
        f"{len(report['problems'])} skipped (see {out / 'report.json'})"
    )


@app.command()
def cache(
    folder: Path = typer.Argument(..., help="A data set folder (with manifest.jsonl)."),
    controls: str = typer.Option("score", "--controls", help="'score' (exact score controls when a clip has them) or 'extracted'."),
    shard_size: int = typer.Option(256, "--shard-size", help="Clips per shard file."),
    batch_size: int = typer.Option(16, "--batch-size", help="Clips per mel batch."),
    threads: int = typer.Option(0, "--threads", help="CPU threads for torch (0: torch's default)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
) -> None:
    """Precompute mel spectrograms and control arrays into shards for fast training.

    Examples:

      cadenza data cache data/tiny

      cadenza data cache data/mine --controls extracted --threads 2
    """
    import torch

    from cadenza.data.cache import build_cache

    from cadenza.limits import check_count, check_threads

    check_threads(threads, "--threads")
    check_count("--shard-size", shard_size, 1, 1_000_000)
    check_count("--batch-size", batch_size, 1, 4096)
    if threads:
        torch.set_num_threads(threads)
    with progress_bar("caching shards", console=console, quiet=quiet) as bar:
        index = build_cache(folder, controls, shard_size, batch_size, progress=bar.update)
    parts = ", ".join(f"{s}: {v['clips']} clips in {len(v['shards'])} shards" for s, v in index["splits"].items())
    console.print(f"[green]done:[/] {parts} → {folder / 'cache' / controls}")
