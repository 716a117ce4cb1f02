"""``cadenza generate``: text + controls → audio (training lives in ``cadenza/cli/train.py``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from cadenza.cli.progress import QUIET_HELP, progress_bar
from cadenza.errors import CadenzaError

console = Console(stderr=True)

GENERATE_HELP = """Generate music from a text prompt, optionally steered by melody, dynamics and rhythm.

Writes OUT.wav (22.05 kHz) and OUT.json (prompt, controls, seed, steps, cfg, model id, timings).

Examples:

  cadenza generate "calm piano ballad" --out calm.wav --duration 8 --seed 1

  cadenza generate "folk fiddle tune" --melody "D4:1 F#4:1 A4:2 G4:1 E4:1" --bpm 110 --out tune.wav

  cadenza generate "folk fiddle tune" --melody "D4:1 F#4:1 A4:2" --control-cfg melody=4 --out strict.wav

  cadenza generate "string quartet" --dynamics crescendo --rhythm rhythm.csv --out q.wav

  cadenza generate "brass fanfare" --controls-from ref.wav --use melody,rhythm --out fanfare.wav

  cadenza generate "the same, but longer" --continue clip.wav --duration 20 --out longer.wav
"""


def generate_command(
    prompt: str = typer.Argument(..., help="What the music should sound like, e.g. 'calm piano ballad'."),
    out: Path = typer.Option(..., "--out", "-o", help="Output audio file (.wav, .flac or .ogg); OUT.json is written beside it."),
    duration: Optional[float] = typer.Option(
        None, "--duration", "-d", help="Seconds of output (default: 6, or the reference's length with --controls-from; "
        "with --continue it is the TOTAL length, clip included)."
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed and settings give the same audio."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Sampling steps (default: the model's, usually 25)."),
    cfg: Optional[float] = typer.Option(None, "--cfg", help="Text guidance scale (1 = none; default from the model)."),
    control_cfg: Optional[str] = typer.Option(
        None, "--control-cfg", help="Control guidance inside the controls' masks: one scale (0 = off) or per control, "
        "e.g. 'melody=3,rhythm=2' (default from the model)."
    ),
    dynamics_guidance: Optional[float] = typer.Option(
        None, "--dynamics-guidance", help="Loudness contour of the output set to the dynamics curve after sampling, 0-1 (0 = off; "
        "diffusion models only; default from the model)."
    ),
    downbeat_cfg: Optional[float] = typer.Option(
        None, "--downbeat-cfg", help="Downbeat guidance: push beat 1 of each bar of the given rhythm (0 = off; diffusion models only; "
        "default from the model)."
    ),
    melody: Optional[str] = typer.Option(None, "--melody", help="melody.csv, a .mid file, or a note string such as \"C4:1 D4:1 E4:2\"."),
    dynamics: Optional[str] = typer.Option(None, "--dynamics", help="dynamics.csv or a shape: crescendo, decrescendo, swell, ... (e.g. swell:-35:20)."),
    rhythm: Optional[str] = typer.Option(None, "--rhythm", help="rhythm.csv with beat times (or give --bpm for a steady grid)."),
    control: Optional[List[str]] = typer.Option(
        None, "--control", help="Any registered control as NAME=SOURCE (a file or string its reader takes); repeatable, e.g. for a plug-in control."
    ),
    bpm: Optional[float] = typer.Option(None, "--bpm", help="Tempo: beat grid for the rhythm control (when no --rhythm) and note-string durations."),
    meter: str = typer.Option("4", "--meter", help="Beats per bar for --bpm: 3, 4, 6/8, ..."),
    controls_from: Optional[Path] = typer.Option(None, "--controls-from", help="Reference audio: extract its controls and follow them."),
    use: str = typer.Option("melody,dynamics,rhythm", "--use", help="With --controls-from: which extracted controls to follow."),
    continue_from: Optional[Path] = typer.Option(None, "--continue", help="Audio clip to continue: the output starts with it."),
    model: Optional[Path] = typer.Option(None, "--model", help="Generator model folder (default: the shipped model)."),
    sampler: Optional[str] = typer.Option(None, "--sampler", help="dpmsolver++ or ddim (default from the model)."),
    vocoder: Optional[str] = typer.Option(None, "--vocoder", help="'default', a vocoder folder, or 'griffin-lim'."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for torch (default: torch's choice)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
) -> None:
    """Generate music from a text prompt, optionally steered by melody, dynamics and rhythm."""
    from cadenza.audio import SAMPLE_RATE, load_audio, save_audio
    from cadenza.config import write_json_atomic
    from cadenza.controls.extract import parse_control_names
    from cadenza.pipeline import Cadenza

    if out.suffix.lower() not in (".wav", ".flac", ".ogg"):
        raise CadenzaError(f"--out {out}: unsupported output format '{out.suffix or '(none)'}'", "end the name in .wav, .flac or .ogg")
    if controls_from is not None and continue_from is not None:
        raise CadenzaError("--controls-from and --continue cannot be combined", "extract controls first with 'cadenza controls extract', then pass them as files")
    t0 = time.perf_counter()
    gen = Cadenza.load(model, vocoder=vocoder, threads=threads)
    reference = None
    if controls_from is not None:
        names = parse_control_names(use)
        ref_audio = load_audio(controls_from)
        reference = gen.extract_controls(ref_audio).select(list(names))
        if duration is None:
            duration = len(ref_audio) / SAMPLE_RATE
    given_clip = load_audio(continue_from) if continue_from is not None else None
    named = {"melody": melody, "dynamics": dynamics, "rhythm": rhythm}
    named.update(parse_control_options(control or [], named))
    request = gen.request(  # one checked request: generation, or a continuation of --continue
        prompt, **named, duration=duration, seed=seed, steps=steps, cfg=cfg,
        controls=reference, bpm=bpm, meter=meter, sampler=sampler, control_cfg=control_cfg, audio=given_clip,
        dynamics_guidance=dynamics_guidance, downbeat_cfg=downbeat_cfg,
    )
    with progress_bar("sampling", console=console, quiet=quiet) as bar:  # steps of every long-form window
        result = gen.run(request, progress=bar.update)
    wave, sr = result.wave, result.sample_rate
    info = dict(result.info)
    if given_clip is not None:
        info["continued_from"] = str(continue_from)
    elif reference is not None:
        info["controls_from"] = {"audio": str(controls_from), "use": list(reference.given())}
    save_audio(out, wave, sr)
    info["output"] = str(out)
    info["timings"] = {**info.get("timings", {}), "wall_s": round(time.perf_counter() - t0, 3)}
    write_json_atomic(out.with_suffix(".json"), info)
    given = [n for n, c in info["controls"].items() if c["given"]] or ["none"]
    console.print(
        f"wrote {out} ({len(wave) / sr:.2f} s) — controls: {', '.join(given)}; seed {seed}; "
        f"{_decoding_text(info)}; cfg {info['cfg']:g}; control cfg {_scale_text(info['control_cfg'])}"
        f"{'; dynamics guidance ' + format(info['dynamics_guidance'], 'g') if info.get('dynamics_guidance') else ''}"
        f"{'; downbeat cfg ' + format(info['downbeat_cfg'], 'g') if info.get('downbeat_cfg') else ''}; {info['timings']['wall_s']:.1f} s",
        highlight=False,
    )


def _scale_text(scale: float | dict[str, float]) -> str:
    """'2' or 'melody=3,rhythm=2' for the summary line."""
    if isinstance(scale, dict):
        return ",".join(f"{k}={v:g}" for k, v in scale.items()) or "0"
    return f"{scale:g}"


def register(app: typer.Typer) -> None:
    """Add ``generate`` to the root app (``cadenza train`` lives in ``cadenza/cli/train.py``)."""
    app.command("generate", help=GENERATE_HELP)(generate_command)


def parse_control_options(options: List[str], named: dict[str, Optional[str]]) -> dict[str, str]:
    """``--control NAME=SOURCE`` options → ``{name: source}``, each name registered and given once."""
    from cadenza.controls.registry import control_names

    out: dict[str, str] = {}
    for option in options:
        name, sep, source = option.partition("=")
        name = name.strip()
        if not sep or not name or not source:
            raise CadenzaError(f"--control '{option}': expected NAME=SOURCE", f"e.g. --control {control_names()[0]}=file.csv")
        if name not in control_names():
            raise CadenzaError(f"--control: unknown control '{name}'", f"controls are {', '.join(control_names())}")
        if name in out or named.get(name) is not None:
            raise CadenzaError(f"--control: '{name}' is given twice", f"give each control once (--{name} or --control {name}=...)")
        out[name] = source
    return out


def _decoding_text(info: dict) -> str:
    """``N steps`` for diffusion; a token family's decoding (``temperature 1, top-k 250``) instead."""
    if info.get("decoding"):
        return ", ".join(f"{k.replace('_', '-')} {v}" for k, v in info["decoding"].items())
    return f"{info['steps']} steps"

