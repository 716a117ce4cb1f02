"""``cadenza codec encode|decode``: audio ↔ codec token files (safetensors + metadata)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from cadenza.errors import CadenzaError

console = Console(stderr=True)

app = typer.Typer(
    help=(
        "The RVQ neural codec: audio → token file (safetensors) → audio.\n\n"
        "Examples:\n\n"
        "\b\n"
        "  cadenza codec encode song.wav --out song.safetensors --n-q 4\n"
        "  cadenza codec decode song.safetensors --out song_decoded.wav\n"
        "  cadenza codec export --out codec_onnx/"
    ),
    no_args_is_help=True,
    rich_markup_mode=None,
)


def _load(model: str, threads: int):
    import torch

    from cadenza.limits import check_threads
    from cadenza.representations.codec import load_codec

    if check_threads(threads, "--threads"):
        torch.set_num_threads(threads)
    return load_codec(model)


@app.command("encode")
def encode(
    audio: Path = typer.Argument(..., help="Audio file (wav, flac, ogg, mp3); mixed to mono, resampled to the codec's rate."),
    out: Path = typer.Option(..., "--out", "-o", help="Token file to write (.safetensors)."),
    model: str = typer.Option("default", "--model", "-m", help="'default' (the shipped codec) or a codec model folder."),
    n_q: Optional[int] = typer.Option(None, "--n-q", help="Codebooks to keep (1..the codec's; default all). Fewer = lower bitrate."),
    bitrate_kbps: Optional[float] = typer.Option(None, "--bitrate-kbps", help="Keep the most codebooks within this bitrate (instead of --n-q)."),
    threads: int = typer.Option(0, "--threads", help="CPU threads (0: torch's default)."),
) -> None:
    """Encode audio into codec tokens.

    Examples:

      cadenza codec encode song.wav --out song.safetensors

      cadenza codec encode song.wav --out song_1k7.safetensors --bitrate-kbps 1.8 --model runs/codec/best
    """
    import torch

    from cadenza.audio import load_audio
    from cadenza.representations.codec.tokens import save_tokens

    if n_q is not None and bitrate_kbps is not None:
        raise CadenzaError("give --n-q or --bitrate-kbps, not both")
    if out.suffix != ".safetensors":
        raise CadenzaError(f"--out {out}: a token file ends in .safetensors", "e.g. --out song.safetensors")
    codec = _load(model, threads)
    k = codec.n_q_for_kbps(bitrate_kbps) if bitrate_kbps is not None else codec.check_n_q(n_q)
    wave = load_audio(audio, codec.sample_rate)
    t0 = time.perf_counter()
    codes = codec.encode(torch.from_numpy(wave), n_q=k)[0]
    elapsed = time.perf_counter() - t0
    save_tokens(out, codes, codec, wave.shape[-1])
    seconds = wave.shape[-1] / codec.sample_rate
    console.print(f"{audio} → {out}: {k} codebooks × {codes.shape[-1]} frames, {codec.bitrate(k) / 1000:.2f} kbps "
                  f"({seconds:.2f} s in {elapsed:.2f} s, {seconds / max(elapsed, 1e-9):.3g}x real time)", highlight=False, soft_wrap=True)


@app.command("decode")
def decode(
    tokens: Path = typer.Argument(..., help="Token file written by 'cadenza codec encode'."),
    out: Path = typer.Option(..., "--out", "-o", help="Audio file to write (.wav, .flac, .ogg)."),
    model: str = typer.Option("default", "--model", "-m", help="The codec that encoded the tokens ('default' or a folder)."),
    threads: int = typer.Option(0, "--threads", help="CPU threads (0: torch's default)."),
) -> None:
    """Decode codec tokens back into audio (refuses tokens of another codec).

    Examples:

      cadenza codec decode song.safetensors --out song_decoded.wav

      cadenza codec decode song.safetensors --out song.flac --model runs/codec/best
    """
    import numpy as np

    from cadenza.audio import SUPPORTED_EXTENSIONS, save_audio
    from cadenza.representations.codec.tokens import check_tokens, load_tokens

    if out.suffix.lower() not in SUPPORTED_EXTENSIONS:
        raise CadenzaError(f"--out {out}: unsupported audio format '{out.suffix or '(none)'}'", f"use one of {', '.join(SUPPORTED_EXTENSIONS)}")
    tok = load_tokens(tokens)
    codec = _load(model, threads)
    check_tokens(tok, codec, tokens)
    t0 = time.perf_counter()
    wave = codec.decode(tok.codes, n_samples=tok.n_samples).numpy()
    elapsed = time.perf_counter() - t0
    peak = float(np.abs(wave).max())
    if peak > 1.0:
        console.print(f"[yellow]warning:[/] output peaks at {peak:.2f}; scaled to avoid clipping", highlight=False, soft_wrap=True)
        wave = wave / peak * 0.99
    save_audio(out, wave, codec.sample_rate)
    seconds = wave.shape[-1] / codec.sample_rate
    console.print(f"{tokens} → {out} ({seconds:.2f} s in {elapsed:.2f} s, {seconds / max(elapsed, 1e-9):.3g}x real time)", highlight=False, soft_wrap=True)


@app.command("export")
def export(
    out: Path = typer.Option(..., "--out", "-o", help="Folder for codec_encoder.onnx, codec_decoder.onnx and codebooks.npy."),
    model: str = typer.Option("default", "--model", "-m", help="'default' (the shipped codec) or a codec model folder."),
) -> None:
    """Export the codec's encoder and decoder as ONNX (the vocoder exports with its own export_vocoder).

    Examples:

      cadenza codec export --out codec_onnx/

      cadenza codec export --out codec_onnx/ --model runs/codec/best
    """
    from cadenza.representations.codec.export import export_codec

    for path in export_codec(out, _load(model, 0)):
        console.print(f"wrote {path}", highlight=False, soft_wrap=True)
