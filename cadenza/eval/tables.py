"""The ``cadenza eval`` report: Markdown tables in the shape of Music ControlNet's Tables I-III,
and one figure per case with the given and the achieved controls on the same axes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cadenza.audio.format import FRAME_RATE
from cadenza.controls.base import ControlSet
from cadenza.controls.registry import CONTROLS
from cadenza.eval.report import fmt

# the paper's three tables: which cases each holds is ``cadenza.eval.run.table_of``
TABLES = (
    ("I", "Table I: extracted controls (held-out clips)"),
    ("II", "Table II: created controls"),
    ("III", "Table III: created controls over partial spans (metrics inside the span)"),
)

# the paper's numbers for the full model (all three controls), for orientation only: other data, model size and metrics' extractors
PAPER = {
    "I": "paper (all three, extracted): melody 58.7 %, dynamics r 90.8 / 64.0, beat / downbeat F1 70.8 / 40.8; text only: melody 8.5 %, beat F1 27.8",
    "II": "paper (all three, created): melody 78.2 %, dynamics r 98.5 / 93.2, beat / downbeat F1 88.6 / 45.2",
    "III": "paper (created, partial spans): melody 74.3 %, dynamics r 88.6 / 89.0, beat / downbeat F1 80.1 / 34.8",
}
JUDGE_COLUMNS = (
    ("bp_melody_f1_mean", "basic-pitch melody F1 %", 100.0, 1),
    ("dsp_beat_f1_mean", "DSP beat F1 %", 100.0, 1),
    ("beat_salience_mean", "beat salience", 1.0, 2),
    ("aw_dynamics_r_mean", "A-weighted dyn r ×100", 100.0, 1),
    ("spectral_flatness_mean", "flatness ×1000", 1000.0, 2),
    ("clap_mean", "CLAP", 1.0, 3),
    ("fad", "FAD", 1.0, 3),
)


def columns() -> tuple[tuple[str, str, float, int], ...]:
    """Table columns: each registered control's (``ControlSpec.columns``, registry order), then the judges, CLAP, FAD."""
    return tuple(c for spec in CONTROLS.values() for c in spec.columns) + JUDGE_COLUMNS


COLUMNS = columns()  # with the shipped controls


def _scale(value: Any) -> str:
    """A control guidance setting for the header: '0', '2' or 'melody=3, rhythm=2'."""
    if isinstance(value, dict):
        return ", ".join(f"{k}={v:g}" for k, v in value.items()) or "0"
    return f"{float(value):g}"


def table_markdown(table: str, title: str, rows: list[dict[str, Any]]) -> str:
    """One paper-style table: a row per control subset plus the reference rows."""
    cols = columns()
    head = "| row (controls given) | cases | " + " | ".join(c[1] for c in cols) + " |"
    lines = [f"## {title}", "", head, "|---|---:|" + "---:|" * len(cols)]
    for r in rows:
        cells = [fmt(r.get(key), scale, digits) for key, _, scale, digits in cols]
        lines.append(f"| {r['row']} | {r['n_cases']} | " + " | ".join(cells) + " |")
    lines += ["", f"For orientation, {PAPER[table]}.", ""]
    return "\n".join(lines)


def _sampler_text(cfg: dict[str, Any]) -> str:
    """``sampler X, N steps`` for diffusion; a token family's decoding settings instead (steps do not apply there)."""
    if cfg.get("decoding"):
        return "decoding " + ", ".join(f"{k.replace('_', '-')} {v:g}" if isinstance(v, (int, float)) else f"{k} {v}" for k, v in cfg["decoding"].items())
    return f"sampler {cfg['sampler']}, {cfg['steps']} steps"


def report_markdown(data: dict[str, Any], figures_dir: Path | None = None, out: Path | None = None) -> str:
    """The whole ``report.md``: settings, the three tables, how to read them, the figures."""
    cfg = data["config"]
    lines = [
        "# Cadenza evaluation report",
        "",
        f"- model: `{data['model_id']}`, vocoder `{cfg['vocoder']}`; {_sampler_text(cfg)}, cfg {cfg['cfg']:g}, control cfg {_scale(cfg.get('control_cfg', 0))}"
        f"{'; dynamics guidance ' + format(cfg['dynamics_guidance'], 'g') if cfg.get('dynamics_guidance') else ''}"
        f"{'; downbeat cfg ' + format(cfg['downbeat_cfg'], 'g') if cfg.get('downbeat_cfg') else ''}; seed {data['seed']}",
        f"- cases: {cfg['n_cases']} from {', '.join(f'`{c}`' for c in cfg['cases'])}, durations {', '.join(f'{d:g}' for d in cfg['duration_s'])} s; rhythm tracker `{cfg['rhythm_tracker']}`",
        f"- CLAP text score: `{data.get('clap_model') or 'n/a (no CLAP weights)'}`; FAD embedder: `{data.get('fad_embedder') or 'n/a'}` "
        f"against {data.get('n_reference_clips', 0)} reference clips",
        f"- commit `{data['commit'][:12]}`; {data['run']['cases_generated']} cases generated, {data['run']['cases_from_cache']} from cache, "
        f"{data['run']['wall_s']:g} s wall this run; sampling took {data['run'].get('generate_s_all_cases', 0):g} s over all cases",
        "",
        "Every row is scored against **all** of a case's controls inside their masks, so `none` (text only) is the floor, "
        "`reference` (the clip itself, re-extracted) the ceiling of the metric, and `reference → vocoder` what the mel + vocoder "
        "representation alone loses. Melody accuracy counts unvoiced output frames as wrong; dynamics r micro is the per-clip mean, "
        "macro pools all frames; beat F1 uses a ±70 ms window. FAD is biased upward at small N: compare rows only within one report. "
        "`n/a` = undefined (e.g. a constant dynamics curve, no beat in the span).",
        "",
    ]
    for key, title in TABLES:
        rows = data["tables"].get(key)
        if rows:
            lines.append(table_markdown(key, title, rows))
    if figures_dir is not None and figures_dir.is_dir():
        figs = sorted(figures_dir.glob("*.png"))
        if figs:
            lines += ["## Per-case figures", "", "Spectrogram of the output with the most controls; given controls in black, achieved (extracted from the output) in colour.", ""]
            for f in figs:
                rel = os.path.relpath(f, out) if out is not None else str(f)
                lines.append(f"![{f.stem}]({Path(rel).as_posix()})")
            lines.append("")
    return "\n".join(lines)


def case_figure(given: ControlSet, achieved: ControlSet, logmel: np.ndarray, out_path: str | os.PathLike, title: str = "", dpi: int = 48) -> Path:
    """Spectrogram plus melody / dynamics / rhythm panels, each with the given control (black,
    grey where free) and the one extracted from the output (colour), so misses show at a glance."""
    from cadenza.controls.plot import PITCH_NAMES, _save_atomic, free_spans

    T = given.n_frames
    t = np.arange(T) / FRAME_RATE
    fig = Figure(figsize=(10, 6.0), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    ax_spec, ax_mel, ax_dyn, ax_rhy = fig.subplots(4, 1, sharex=True, gridspec_kw={"height_ratios": [2.0, 1.6, 1.2, 0.8]})
    if title:
        fig.suptitle(title, fontsize=10)
    ax_spec.imshow(logmel, origin="lower", aspect="auto", cmap="magma", extent=(0, logmel.shape[1] / FRAME_RATE, 0, logmel.shape[0]))
    ax_spec.set_ylabel("mel bin")

    g_pc, a_pc = given.pitch_classes(), achieved.pitch_classes()
    ax_mel.scatter(t[g_pc >= 0], g_pc[g_pc >= 0], s=10, c="k", marker="s", linewidths=0, label="given")
    hit = (a_pc >= 0) & (a_pc == g_pc)
    ax_mel.scatter(t[(a_pc >= 0) & ~hit], a_pc[(a_pc >= 0) & ~hit], s=4, c="tab:red", marker="o", linewidths=0, label="achieved (miss)")
    ax_mel.scatter(t[hit], a_pc[hit], s=4, c="tab:green", marker="o", linewidths=0, label="achieved (match)")
    ax_mel.set_yticks(range(12), PITCH_NAMES, fontsize=6)
    ax_mel.set_ylim(-0.7, 11.7)
    ax_mel.set_ylabel("melody")
    ax_mel.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), fontsize=6, ncols=3, frameon=False, borderaxespad=0)

    gm = given.dynamics_mask > 0
    ax_dyn.plot(t, np.where(gm, given.dynamics, np.nan), color="k", lw=1.6, label="given")
    ax_dyn.plot(t, achieved.dynamics, color="tab:blue", lw=1.0, label="achieved")
    vals = np.concatenate([given.dynamics[gm], achieved.dynamics[achieved.dynamics > -99]])
    if vals.size:
        ax_dyn.set_ylim(vals.min() - 3, vals.max() + 3)
    ax_dyn.set_ylabel("dB")
    ax_dyn.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), fontsize=6, ncols=2, frameon=False, borderaxespad=0)

    for beats, y0, y1, colour in ((given.beats, 0.5, 1.0, "k"), (achieved.beats, 0.0, 0.5, "tab:orange")):
        if len(beats):
            ax_rhy.vlines(beats[:, 0], y0, y1, colors=colour, lw=np.where(beats[:, 1] > 0.5, 2.2, 0.8))
    ax_rhy.set_ylim(0, 1)
    ax_rhy.set_yticks([0.25, 0.75], ["achieved", "given"], fontsize=6)
    ax_rhy.set_ylabel("beats")
    ax_rhy.set_xlabel("time (s)  (thick = downbeat; grey = control free)")
    ax_rhy.set_xlim(0, (T - 1) / FRAME_RATE)
    for ax, mask in ((ax_mel, given.melody_mask), (ax_dyn, given.dynamics_mask), (ax_rhy, given.rhythm_mask)):
        for a, b in free_spans(mask):
            ax.axvspan(a / FRAME_RATE, b / FRAME_RATE, color="0.88", lw=0, zorder=0)
    return _save_atomic(fig, Path(out_path))
