"""The studio's result picture: the output's spectrogram with the requested and achieved controls overlaid.

``cadenza.controls.plot.plot_controls`` draws one control set; the studio needs two on the same
axes (what was asked for, and what ``extract_controls`` hears in the output) so a creator can
see at a glance where the generator followed the controls. Same conventions as
``plot_controls``: shared time axis, free (mask 0) frames shaded grey, Agg canvas (no pyplot
state, safe in worker threads), atomic save.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from cadenza.audio.format import FRAME_RATE
from cadenza.controls.base import ControlSet
from cadenza.controls.plot import FREE_COLOUR, PITCH_NAMES, free_spans
from cadenza.fsutil import atomic_path

ASKED, HEARD = "tab:blue", "tab:orange"


def adherence_line(scores: dict) -> str:
    """One line of the adherence scores ('–' where a control was not given)."""
    def pct(v: float | None) -> str:
        return "–" if v is None else f"{v:.0%}"

    r = scores.get("dynamics_r")
    return f"melody {pct(scores.get('melody_acc'))} · dynamics r {'–' if r is None else f'{r:.2f}'} · beat F1 {pct(scores.get('beat_f1'))}"


def plot_overlay(
    asked: ControlSet, heard: ControlSet, logmel: np.ndarray, out_path: str | os.PathLike, title: str = "", dpi: int = 72
) -> Path:
    """Spectrogram of the output; under it melody, dynamics and rhythm — asked (blue) vs heard (orange)."""
    out_path = Path(out_path)
    heard = heard.fit_length(asked.n_frames)
    T = asked.n_frames
    t = np.arange(T) / FRAME_RATE
    fig = Figure(figsize=(9, 6.2), dpi=dpi)  # fixed margins: constrained layout costs more than the drawing
    FigureCanvasAgg(fig)
    ax_spec, ax_mel, ax_dyn, ax_rhy = fig.subplots(
        4, 1, sharex=True, gridspec_kw={"height_ratios": [2.2, 1.5, 1.2, 0.8], "left": 0.08, "right": 0.985, "top": 0.94, "bottom": 0.08, "hspace": 0.12}
    )
    if title:
        fig.suptitle(title, fontsize=10)

    ax_spec.imshow(logmel, origin="lower", aspect="auto", cmap="magma", extent=(0, logmel.shape[1] / FRAME_RATE, 0, logmel.shape[0]), interpolation="nearest")
    ax_spec.set_ylabel("mel bin")

    pa, ph = asked.pitch_classes(), heard.pitch_classes()
    ax_mel.scatter(t[pa >= 0], pa[pa >= 0], s=10, c=ASKED, marker="s", linewidths=0, label="asked")
    ax_mel.scatter(t[ph >= 0], ph[ph >= 0], s=3, c=HEARD, marker="o", linewidths=0, label="heard")
    ax_mel.set_yticks(range(12), PITCH_NAMES, fontsize=6)
    ax_mel.set_ylim(-0.7, 11.7)
    ax_mel.set_ylabel("melody")

    given = asked.dynamics_mask > 0
    ax_dyn.plot(t, np.where(given, asked.dynamics, np.nan), color=ASKED, lw=1.6)
    ax_dyn.plot(t, heard.dynamics, color=HEARD, lw=1.0, ls="--")
    levels = np.concatenate([asked.dynamics[given], heard.dynamics])
    ax_dyn.set_ylim(float(levels.min()) - 3, float(levels.max()) + 3)
    ax_dyn.set_ylabel("dB")

    ax_rhy.fill_between(t, asked.rhythm[:, 0], step="mid", color=ASKED, alpha=0.35, lw=0)
    ax_rhy.fill_between(t, asked.rhythm[:, 1], step="mid", color=ASKED, alpha=0.8, lw=0)
    heard_beats = heard.beat_times()
    if len(heard_beats):
        ax_rhy.vlines(heard_beats, 0, 1, colors=HEARD, lw=1.0)
    ax_rhy.set_ylim(0, 1.05)
    ax_rhy.set_yticks([])
    ax_rhy.set_ylabel("beats")
    ax_rhy.set_xlabel("time (s)")
    ax_rhy.set_xlim(0, T / FRAME_RATE)

    for ax, mask in ((ax_mel, asked.melody_mask), (ax_dyn, asked.dynamics_mask), (ax_rhy, asked.rhythm_mask)):
        for a, b in free_spans(mask):
            ax.axvspan(a / FRAME_RATE, b / FRAME_RATE, color=FREE_COLOUR, lw=0, zorder=0)
    handles = [Line2D([], [], color=ASKED, lw=2, label="asked"), Line2D([], [], color=HEARD, lw=2, ls="--", label="heard in the output")]
    ax_mel.legend(handles=handles, loc="upper right", fontsize=7, ncols=2, frameon=False)

    with atomic_path(out_path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    return out_path
