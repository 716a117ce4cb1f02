"""``cadenza controls ...``: extract controls from audio, plot them, and (``make``) create them by hand."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import typer
from rich.console import Console

from cadenza.audio import SUPPORTED_EXTENSIONS, MelSpectrogram, load_audio
from cadenza.controls.base import CONTROL_NAMES, ControlSet
from cadenza.cli.progress import QUIET_HELP, progress_bar
from cadenza.errors import CadenzaError

console = Console(stderr=True)

app = typer.Typer(
    help=(
        "Extract, plot and make melody / dynamics / rhythm controls.\n\n"
        "Examples:\n\n"
        "  cadenza controls extract song.wav --out song.npz --csv song_controls/\n\n"
        "  cadenza controls plot song.npz --out song.png\n\n"
        "  cadenza controls make melody --notes \"C4:1 E4:1 G4:2\" --bpm 100 --out melody.csv"
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
    add_completion=False,
)


def _default_out(audio: Path, suffix: str) -> Path:
    return audio.with_name(f"{audio.stem}.controls{suffix}")


def _summary(cs: ControlSet) -> str:
    """One line saying what was extracted."""
    parts = []
    if cs.melody_mask.any():
        parts.append(f"melody {cs.melody_mask.mean():.0%} voiced ({len(cs.melody_notes)} notes)")
    if cs.dynamics_mask.any():
        parts.append(f"dynamics {cs.dynamics.min():.1f} to {cs.dynamics.max():.1f} dB")
    if cs.rhythm_mask.any():
        parts.append(f"{len(cs.beats)} beats ({len(cs.downbeat_times())} downbeats)")
    return f"{cs.n_frames} frames ({cs.duration:.2f} s): " + ", ".join(parts)


@app.command(
    "extract",
    help=(
        "Extract melody, dynamics and rhythm controls from one or many audio files.\n\n"
        "Melody is the loudest pitch class above middle C per frame (silent frames left free), "
        "dynamics the smoothed level in dBFS, rhythm the beats and downbeats of the trained beat tracker "
        "(DSP fallback). With several files --out is a folder (NAME.npz each) and a progress bar is shown.\n\n"
        "Examples:\n\n"
        "  cadenza controls extract song.wav --out song.npz\n\n"
        "  cadenza controls extract song.wav --out song.npz --csv song_controls/   (also melody/dynamics/rhythm.csv)\n\n"
        "  cadenza controls extract song.mp3 --out melody.npz --use melody\n\n"
        "  cadenza controls extract takes/*.wav --out controls/ --csv controls_csv/   (controls/NAME.npz, controls_csv/NAME/)"
    ),
)
def extract(
    audio: list[Path] = typer.Argument(..., help=f"Audio file(s) ({', '.join(SUPPORTED_EXTENSIONS)}).", show_default=False),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output .npz for one file, a folder for several (default: beside each file, NAME.controls.npz)."),
    csv: Path | None = typer.Option(None, "--csv", help="Also write the controls as CSV files into this folder (one sub-folder per file when several)."),
    use: str = typer.Option(",".join(CONTROL_NAMES), "--use", help="Comma-separated controls to extract."),
    tracker: str = typer.Option("default", "--tracker", help="Rhythm tracker: default (the trained one, DSP fallback), neural, dsp, or the model folder of a tracker you trained."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
) -> None:
    from cadenza.controls.extract import extract_from_file, parse_control_names

    names = parse_control_names(use)
    jobs = _extract_targets(audio, out, csv)
    with progress_bar("extracting controls", total=len(jobs), console=console, quiet=quiet or len(jobs) < 2) as bar:
        for src, npz, csv_dir in jobs:
            cs = extract_from_file(src, controls=names, rhythm_tracker=tracker)
            written = [cs.save(npz)]
            if csv_dir is not None:
                from cadenza.controls.files import save_csvs

                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    written += save_csvs(cs, csv_dir)
                for w in caught:
                    console.print(f"[yellow]warning:[/] {src.name}: {w.message}", highlight=False)
            if len(jobs) == 1:
                console.print(f"[green]wrote[/] {', '.join(str(p) for p in written)}", highlight=False)
                console.print(_summary(cs), highlight=False)
            bar.advance(info=src.name)
    if len(jobs) > 1:
        console.print(f"[green]wrote[/] controls of {len(jobs)} files to {out if out is not None else 'beside each file'}", highlight=False)


def _extract_targets(audio: list[Path], out: Path | None, csv: Path | None) -> list[tuple[Path, Path, Path | None]]:
    """(audio, .npz, CSV folder or None) per input; checked before any work so a typo fails at once."""
    if len(audio) == 1:
        npz = out if out is not None else _default_out(audio[0], ".npz")
        if npz.suffix.lower() != ".npz":
            raise CadenzaError(f"--out {npz}: controls are written as .npz", f"use e.g. --out {npz.with_suffix('.npz')}")
        return [(audio[0], npz, csv)]
    if out is not None and out.suffix:
        raise CadenzaError(f"--out {out} is a file but {len(audio)} audio files were given", "pass a folder for several inputs, e.g. --out controls/")
    stems = [p.stem for p in audio]
    if (out is not None or csv is not None) and len(set(stems)) != len(stems):
        raise CadenzaError("several inputs share a file name, so their outputs would overwrite each other", "extract them in separate runs")
    for p in audio:
        if not p.is_file():
            raise CadenzaError(f"{p}: no such file", "check the path")
    return [
        (p, out / f"{p.stem}.npz" if out is not None else _default_out(p, ".npz"), csv / p.stem if csv is not None else None)
        for p in audio
    ]


@app.command(
    "plot",
    help=(
        "Draw controls (from an .npz, or extracted from audio) as a figure.\n\n"
        "Shows the mel spectrogram when audio is known, melody pitch classes, the dynamics curve, "
        "beats (thin lines) and downbeats (thick), and shades in grey where a control is free.\n\n"
        "Examples:\n\n"
        "  cadenza controls plot song.wav --out song.png\n\n"
        "  cadenza controls plot song.npz --out song.png --audio song.wav   (spectrogram under saved controls)\n\n"
        "  cadenza controls plot made.npz --out made.pdf --title \"my melody\""
    ),
)
def plot(
    source: Path = typer.Argument(..., help="Controls .npz or an audio file.", show_default=False),
    out: Path | None = typer.Option(None, "--out", "-o", help="Figure (.png, .pdf, .svg, .jpg; default: SOURCE's name + .controls.png)."),
    audio: Path | None = typer.Option(None, "--audio", help="Audio to draw the spectrogram from when SOURCE is an .npz."),
    title: str | None = typer.Option(None, "--title", help="Figure title (default: the source's file name)."),
) -> None:
    from cadenza.controls.plot import plot_controls

    out = out if out is not None else _default_out(source, ".png")
    suffix = source.suffix.lower()
    if suffix == ".npz":
        cs = ControlSet.load(source)
        wave = load_audio(audio) if audio is not None else None
    elif suffix in SUPPORTED_EXTENSIONS:
        from cadenza.controls.extract import extract_controls

        wave = load_audio(source if audio is None else audio)
        cs = extract_controls(wave)
    else:
        raise CadenzaError(f"{source}: cannot plot a '{suffix or '(none)'}' file", f"give a controls .npz or audio ({', '.join(SUPPORTED_EXTENSIONS)})")
    logmel = None
    if wave is not None and wave.size > 512:
        import torch

        logmel = MelSpectrogram()(torch.from_numpy(np.ascontiguousarray(wave))).numpy()
    path = plot_controls(cs, logmel, out, title=title if title is not None else source.name)
    console.print(f"[green]wrote[/] {path}", highlight=False)
    console.print(_summary(cs) if cs.given() else f"{cs.n_frames} frames: no control given", highlight=False)


def _register_make() -> None:
    from cadenza.cli.controls_make import app as make_app

    app.add_typer(make_app, name="make")


_register_make()
