"""One picture of a control set: what the generator is asked for, and where it is left free.

Panels share a time axis in seconds: the log-mel spectrogram (when given), the melody as
pitch-class dots, the dynamics curve in dBFS, and the beat/downbeat activations. Beats are
thin vertical lines and downbeats thick ones on every panel; frames where a control's mask
is 0 (free, e.g. a partial control) are shaded grey on that control's panel. Uses
matplotlib's Agg canvas directly (no pyplot state), and saves atomically.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cadenza.audio.format import FRAME_RATE
from cadenza.controls.base import DB_FLOOR, ControlSet
from cadenza.errors import CadenzaError
from cadenza.fsutil import atomic_path

PITCH_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
FORMATS = (".png", ".pdf", ".svg", ".jpg", ".jpeg")
FREE_COLOUR = "0.85"


def free_spans(mask: np.ndarray) -> np.ndarray:
    """(K, 2) frame ranges ``[start, stop)`` where ``mask`` is 0."""
    free = np.concatenate(([0], (np.asarray(mask) < 0.5).astype(np.int8), [0]))
    edges = np.flatnonzero(np.diff(free))
    return edges.reshape(-1, 2)


def _beat_times(controls: ControlSet) -> tuple[np.ndarray, np.ndarray]:
    """Beat and downbeat times: the event list when present, else the activation peaks."""
    if len(controls.beats):
        return controls.beat_times(), controls.downbeat_times()
    frames = np.arange(controls.n_frames)
    return frames[controls.rhythm[:, 0] >= 1.0] / FRAME_RATE, frames[controls.rhythm[:, 1] >= 1.0] / FRAME_RATE


def plot_controls(
    controls: ControlSet,
    logmel: np.ndarray | None,
    out_path: str | os.PathLike,
    title: str | None = None,
    dpi: int = 100,
) -> Path:
    """Draw ``controls`` (and the log-mel ``(n_mels, T)`` under them, if given) to ``out_path``."""
    out_path = Path(out_path)
    if out_path.suffix.lower() not in FORMATS:
        raise CadenzaError(f"{out_path}: cannot write a figure as '{out_path.suffix or '(none)'}'", f"use one of {', '.join(FORMATS)}")
    if logmel is not None:
        logmel = np.asarray(logmel, dtype=np.float32)
        if logmel.ndim != 2 or logmel.shape[1] == 0:
            raise CadenzaError(f"log-mel must be (n_mels, frames), got shape {logmel.shape}", "compute it with cadenza.audio.MelSpectrogram")
    T = controls.n_frames
    end = T / FRAME_RATE
    t = np.arange(T) / FRAME_RATE

    heights = ([2.2] if logmel is not None else []) + [1.6, 1.3, 0.8]
    fig = Figure(figsize=(10, 1.2 + 1.25 * sum(heights)), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    axes = list(fig.subplots(len(heights), 1, sharex=True, gridspec_kw={"height_ratios": heights}))
    if title:
        fig.suptitle(title)

    if logmel is not None:
        ax = axes.pop(0)
        ax.imshow(logmel, origin="lower", aspect="auto", cmap="magma", extent=(0, logmel.shape[1] / FRAME_RATE, 0, logmel.shape[0]), interpolation="nearest")
        ax.set_ylabel("mel bin")
        mel_ax = ax
    else:
        mel_ax = None
    ax_mel, ax_dyn, ax_rhy = axes

    # melody: pitch-class dots
    pc = controls.pitch_classes()
    voiced = pc >= 0
    ax_mel.scatter(t[voiced], pc[voiced], s=4, c=pc[voiced], cmap="hsv", vmin=0, vmax=12, marker="s", linewidths=0)
    ax_mel.set_yticks(range(12), PITCH_NAMES, fontsize=7)
    ax_mel.set_ylim(-0.7, 11.7)
    ax_mel.set_ylabel("melody")

    # dynamics curve
    given = controls.dynamics_mask > 0
    dyn = np.where(given, controls.dynamics, np.nan)
    ax_dyn.plot(t, dyn, color="tab:blue", lw=1.4)
    lo = float(np.nanmin(dyn)) if given.any() else -60.0
    hi = float(np.nanmax(dyn)) if given.any() else 0.0
    ax_dyn.set_ylim(max(DB_FLOOR, lo - 3), hi + 3)
    ax_dyn.set_ylabel("dB")

    # rhythm activations
    ax_rhy.fill_between(t, controls.rhythm[:, 0], step="mid", color="tab:green", alpha=0.6, lw=0, label="beat")
    ax_rhy.fill_between(t, controls.rhythm[:, 1], step="mid", color="tab:red", alpha=0.8, lw=0, label="downbeat")
    ax_rhy.set_ylim(0, 1.05)
    ax_rhy.set_yticks([])
    ax_rhy.set_ylabel("rhythm")
    ax_rhy.legend(loc="upper right", fontsize=7, ncols=2, frameon=False)
    ax_rhy.set_xlabel("time (s)")
    ax_rhy.set_xlim(0, end)

    # free (mask 0) shading, per control
    for ax, mask in ((ax_mel, controls.melody_mask), (ax_dyn, controls.dynamics_mask), (ax_rhy, controls.rhythm_mask)):
        for a, b in free_spans(mask):
            ax.axvspan(a / FRAME_RATE, b / FRAME_RATE, color=FREE_COLOUR, lw=0, zorder=0)
        if not mask.any():
            ax.text(0.5, 0.5, "free (not given)", transform=ax.transAxes, ha="center", va="center", color="0.4")

    # beats thin, downbeats thick, on every panel
    beats, downs = _beat_times(controls)
    for ax in [a for a in (mel_ax, ax_mel, ax_dyn, ax_rhy) if a is not None]:
        if len(beats):
            ax.vlines(beats, 0, 1, transform=ax.get_xaxis_transform(), colors="0.3" if ax is not mel_ax else "w", lw=0.5, alpha=0.6)
        if len(downs):
            ax.vlines(downs, 0, 1, transform=ax.get_xaxis_transform(), colors="0.1" if ax is not mel_ax else "w", lw=1.8, alpha=0.8)

    return _save_atomic(fig, out_path)


def _save_atomic(fig: Figure, out_path: Path) -> Path:
    with atomic_path(out_path, suffix=out_path.suffix) as tmp:
        fig.savefig(tmp, format=out_path.suffix.lstrip(".").lower().replace("jpg", "jpeg"))
    return out_path


def demo_signal(seconds: float = 6.0, bpm: float = 120.0, seed: int = 0) -> np.ndarray:
    """A few sawtooth notes over a 4/4 click track, with a 20 dB crescendo: the docs example."""
    from cadenza.audio.format import SAMPLE_RATE as sr

    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    beat = 60.0 / bpm
    notes = [60, 64, 67, 72, 71, 67, 65, 62]  # C4 E4 G4 C5 B4 G4 F4 D4, one per beat
    idx = np.minimum((t // beat).astype(int), 10**9)
    freq = 440.0 * 2 ** ((np.array(notes)[idx % len(notes)] - 69) / 12)
    phase = np.cumsum(freq / sr)
    pos = t - idx * beat
    gate = np.clip(np.minimum(pos, 0.9 * beat - pos) / 0.01, 0, 1)  # 10 ms fades, short gap before the next note
    lead = 0.25 * (2 * (phase % 1.0) - 1) * gate
    clicks = np.zeros(n)
    k = int(0.03 * sr)
    env = np.exp(-np.arange(k) / (0.004 * sr)) * rng.uniform(0.9, 1.0)
    for i, start in enumerate((np.arange(int(seconds / beat)) * beat * sr).astype(int)):
        down = i % 4 == 0
        seg = slice(start, min(n, start + k))
        clicks[seg] += (0.8 if down else 0.35) * env[: seg.stop - seg.start] * np.sin(2 * np.pi * (1500 if down else 1000) * np.arange(seg.stop - seg.start) / sr)
    crescendo = 10 ** ((-20.0 + 20.0 * t / seconds) / 20)
    return ((lead + clicks) * crescendo).astype(np.float32)


def render_demo(out_path: str | os.PathLike, seconds: float = 6.0) -> Path:
    """Extract controls from ``demo_signal``, free the melody for a span, and plot it (``docs/controls_plot.png``)."""
    import torch

    from cadenza.audio import MelSpectrogram
    from cadenza.controls.extract import extract_controls

    audio = demo_signal(seconds)
    cs = extract_controls(audio)
    span = slice(int(3.0 * FRAME_RATE), int(4.0 * FRAME_RATE))  # a partial melody: free between 3 and 4 s
    cs.melody_mask[span] = 0.0
    cs = cs.validate()
    logmel = MelSpectrogram()(torch.from_numpy(audio)).numpy()
    return plot_controls(cs, logmel, out_path, title="notes over a 4/4 click track, 20 dB crescendo (melody free 3-4 s)", dpi=80)
