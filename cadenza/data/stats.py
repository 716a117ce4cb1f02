"""``cadenza data stats``: how much data, in which splits, with which instruments and tempi."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np

from cadenza.data.manifest import SPLITS, atomic_write_json, atomic_write_text, read_manifest
from cadenza.fsutil import atomic_path


def _save_png(fig, path: Path) -> None:
    """Save a figure atomically."""
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")


def dataset_stats(folder: str | os.PathLike, out: str | os.PathLike | None = None) -> dict:
    """Write ``summary.json``/``summary.md`` and histograms (instruments, tempo, collections) as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    out = Path(out) if out is not None else folder / "stats"
    out.mkdir(parents=True, exist_ok=True)
    rows = read_manifest(folder)
    per_split = {
        s: {
            "clips": sum(r["split"] == s for r in rows),
            "hours": round(sum(r["duration"] for r in rows if r["split"] == s) / 3600, 4),
            "works": len({r["work"] for r in rows if r["split"] == s}),
        }
        for s in SPLITS
    }
    instruments = Counter(i for r in rows for i in r.get("instruments", []))
    sources = Counter(r.get("collection") or r["source"] for r in rows)
    bpms = np.array([r["bpm"] for r in rows if r.get("bpm")], dtype=np.float64)
    summary = {
        "folder": str(folder),
        "clips": len(rows),
        "hours": round(sum(r["duration"] for r in rows) / 3600, 4),
        "works": len({r["work"] for r in rows}),
        "splits": per_split,
        "collections": dict(sources.most_common()),
        "instruments": dict(instruments.most_common()),
        "drums_fraction": round(float(np.mean([bool(r.get("drums")) for r in rows])), 4) if rows else 0.0,
        "bpm": {"mean": round(float(bpms.mean()), 2), "min": round(float(bpms.min()), 2), "max": round(float(bpms.max()), 2)} if len(bpms) else None,
        "keys": dict(Counter(r["key"] for r in rows if r.get("key")).most_common()),
        "meters": dict(Counter(r["meter"] for r in rows if r.get("meter")).most_common()),
    }
    atomic_write_json(out / "summary.json", summary)
    lines = [
        f"# Data set {folder}", "", f"{summary['clips']} clips, {summary['hours']:.2f} h, {summary['works']} works", "",
        "| split | clips | hours | works |", "|---|---|---|---|",
        *[f"| {s} | {v['clips']} | {v['hours']:.3f} | {v['works']} |" for s, v in per_split.items()], "",
        "| collection / source | clips |", "|---|---|", *[f"| {k} | {v} |" for k, v in sources.most_common()], "",
    ]
    atomic_write_text(out / "summary.md", "\n".join(lines) + "\n")

    plots = []
    if instruments:
        names, counts = zip(*instruments.most_common(30))
        fig, ax = plt.subplots(figsize=(8, max(3, 0.25 * len(names))))
        ax.barh(names[::-1], counts[::-1], color="tab:blue")
        ax.set_xlabel("clips")
        ax.set_title("Instruments (clips featuring each)")
        _save_png(fig, out / "instruments.png")
        plt.close(fig)
        plots.append("instruments.png")
    if len(bpms):
        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.hist(bpms, bins=np.arange(np.floor(bpms.min() / 5) * 5, bpms.max() + 10, 5), color="tab:orange")
        ax.set_xlabel("BPM (beat of the meter)")
        ax.set_ylabel("clips")
        ax.set_title("Tempo")
        _save_png(fig, out / "tempo.png")
        plt.close(fig)
        plots.append("tempo.png")
    if sources:
        names, counts = zip(*sources.most_common(30))
        fig, ax = plt.subplots(figsize=(8, max(3, 0.25 * len(names))))
        ax.barh(names[::-1], counts[::-1], color="tab:green")
        ax.set_xlabel("clips")
        ax.set_title("Collections")
        _save_png(fig, out / "collections.png")
        plt.close(fig)
        plots.append("collections.png")
    summary["plots"] = plots
    return summary
