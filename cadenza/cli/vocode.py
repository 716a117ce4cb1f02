"""``cadenza vocode``: log-mel (.npy) or audio → waveform with the neural vocoder (or Griffin-Lim)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import typer
from rich.console import Console

from cadenza.audio import SUPPORTED_EXTENSIONS, MelConfig, MelSpectrogram, griffin_lim, load_audio, save_audio
from cadenza.cli.progress import QUIET_HELP, progress_bar
from cadenza.errors import CadenzaError

console = Console(stderr=True)


def _read_input(path: Path, mel: MelSpectrogram) -> np.ndarray:
    """A log-mel (n_mels, T) from a .npy mel or an audio file (audio is analysed with the vocoder's mel)."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        if not path.exists():
            raise CadenzaError(f"{path}: no such file", "check the path")
        from cadenza.limits import check_file_size

        check_file_size(path, 1024**3, "mel file")  # an hour of mel is 160 MB
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise CadenzaError(f"{path}: cannot read as a numpy array ({exc})", "save the mel with numpy.save") from None
        if arr.ndim != 2:
            raise CadenzaError(f"{path}: mel must be 2-D (n_mels, frames), got shape {arr.shape}", "save one spectrogram per file")
        return arr.astype(np.float32)
    if suffix in SUPPORTED_EXTENSIONS:
        audio = load_audio(path, mel.config.sample_rate, min_seconds=(mel.config.n_fft // 2 + 1) / mel.config.sample_rate)
        return mel(torch.from_numpy(audio)).numpy()
    raise CadenzaError(f"{path}: unsupported input '{suffix or '(none)'}'", f"give a mel .npy or audio ({', '.join(SUPPORTED_EXTENSIONS)})")


def _out_paths(inputs: list[Path], out: Path) -> list[Path]:
    if len(inputs) == 1 and out.suffix:
        return [out]
    if out.suffix:
        raise CadenzaError(f"--out {out} is a file but {len(inputs)} inputs were given", "pass a folder for several inputs")
    stems = [p.stem for p in inputs]
    if len(set(stems)) != len(stems):
        raise CadenzaError("several inputs share a file name", "vocode them in separate runs")
    return [out / f"{s}.wav" for s in stems]


def vocode(
    inputs: list[Path] = typer.Argument(..., help="Mel .npy files (n_mels, frames) or audio files (round trip).", show_default=False),
    out: Path = typer.Option(..., "--out", "-o", help="Output .wav for one input, or a folder for several."),
    model: str = typer.Option("default", "--model", "-m", help="'default' (the shipped vocoder) or a model folder."),
    use_griffin_lim: bool = typer.Option(False, "--griffin-lim", help="Use Griffin-Lim (32 iterations) instead of the vocoder."),
    chunk_frames: int = typer.Option(2048, "--chunk-frames", help="Inputs longer than this are decoded in overlapping chunks."),
    batch_size: int = typer.Option(8, "--batch-size", help="Equal-length inputs are decoded together, this many at a time."),
    threads: int = typer.Option(0, "--threads", help="CPU threads (0: torch's default)."),
    precision: str = typer.Option("auto", "--precision", help="Vocoder network precision: auto (bf16 on CPUs with AMX, else fp32), fp32 or bf16."),
    phase_iters: Optional[int] = typer.Option(None, "--phase-iters", help="Refinement iterations after the network (default: the model's; shipped 7)."),
    mel_iters: Optional[int] = typer.Option(None, "--mel-iters", help="Of those, the last ones that match the input mel (shipped 6; --phase-iters 8 --mel-iters 0 is the fast schedule)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
) -> None:
    """Turn log-mel spectrograms (or audio, for a listening round trip) into audio.

    Examples:

      cadenza vocode song_mel.npy --out song.wav

      cadenza vocode take1.wav take2.wav --out resynth/          (audio → mel → vocoder)

      cadenza vocode song_mel.npy --out song_gl.wav --griffin-lim

      cadenza vocode song_mel.npy --out song.wav --model runs/vocoder/default/best
    """
    from cadenza.limits import check_threads

    if check_threads(threads, "--threads"):
        torch.set_num_threads(threads)
    if batch_size < 1 or chunk_frames < 2:
        raise CadenzaError("--batch-size must be ≥ 1 and --chunk-frames ≥ 2")
    outs = _out_paths(inputs, out)
    vocoder = None
    if not use_griffin_lim:
        from cadenza.pipeline import load_vocoder_handle

        # like generation: without a shipped vocoder, 'default' means Griffin-Lim (said in a warning)
        handle = load_vocoder_handle(model, fallback="griffin-lim" if model == "default" else "none", precision=precision,
                                     phase_iters=phase_iters, mel_iters=mel_iters)
        if handle.note:
            console.print(f"[yellow]warning:[/] {handle.note} (--griffin-lim says so, --model DIR picks a trained one)",
                          highlight=False, soft_wrap=True)
        vocoder = handle.vocoder
    mel_config = MelConfig() if vocoder is None else vocoder.mel_config
    mel = MelSpectrogram(mel_config)
    mels = []
    for path in inputs:
        m = _read_input(path, mel)
        if vocoder is not None:
            from cadenza.representations.vocoder import check_logmel

            check_logmel(torch.from_numpy(m), mel_config.n_mels)  # fail before any work, naming the file
        elif m.shape[0] != mel_config.n_mels:
            raise CadenzaError(f"{path}: mel has {m.shape[0]} bins, expected {mel_config.n_mels}", "compute it with cadenza.audio.MelSpectrogram")
        mels.append(m)
    t0 = time.perf_counter()
    waves: list[np.ndarray | None] = [None] * len(mels)
    groups: dict[int, list[int]] = {}
    for i, m in enumerate(mels):
        groups.setdefault(m.shape[1], []).append(i)
    with progress_bar("vocoding files", total=len(mels), console=console, quiet=quiet or len(mels) < 2) as bar:
        for T, idx in groups.items():  # equal lengths batch exactly (no padding that would change the edges)
            for s in range(0, len(idx), batch_size):
                part = idx[s : s + batch_size]
                x = torch.from_numpy(np.stack([mels[i] for i in part]))
                if vocoder is None:
                    y = griffin_lim(x, mel_config, n_iter=32)
                elif T > chunk_frames:
                    y = vocoder.decode_chunked(x, chunk_frames=chunk_frames)
                else:
                    y = vocoder.decode(x)
                for i, w in zip(part, y.numpy()):
                    waves[i] = w
                bar.advance(len(part), info=inputs[part[-1]].name)
    elapsed = time.perf_counter() - t0
    total_s = 0.0
    for path, dest, wave in zip(inputs, outs, waves):
        assert wave is not None
        peak = float(np.abs(wave).max()) if wave.size else 0.0
        if peak > 1.0:
            console.print(f"[yellow]warning:[/] {path.name}: output peaks at {peak:.2f}; scaled to avoid clipping", highlight=False)
            wave = wave / peak * 0.99
        save_audio(dest, wave, mel_config.sample_rate)
        total_s += wave.shape[-1] / mel_config.sample_rate
        console.print(f"{path} → {dest} ({wave.shape[-1] / mel_config.sample_rate:.2f} s)", highlight=False)
    method = "Griffin-Lim" if vocoder is None else f"vocoder '{model}' ({vocoder.precision})"
    console.print(f"{method}: {total_s:.1f} s of audio in {elapsed:.2f} s ({total_s / max(elapsed, 1e-9):.2g}x real time)", highlight=False)
