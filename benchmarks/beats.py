"""Benchmark: the trained beat tracker against the DSP tracker (and librosa) on held-out corpus clips.

For every clip of the held-out splits (``--splits``, default ``test,valid``) of a rendered
corpus, each tracker reads the audio file's waveform and returns beat times with downbeat
flags; these are scored against the clip's exact score beats with mir_eval's F-measure
(±70 ms), for beats and for downbeats, averaged over clips, and split by clips with and
without drums. Speed is the median wall time per clip over the same clips, with the trackers
run alternately on each clip so both see the same machine load (1 torch / BLAS thread).

Peers: ``dsp`` (``cadenza.controls.rhythm.DSPBeatTracker``, the fallback) and
``librosa.beat.beat_track`` (beats only, no downbeats).

Run: ``python benchmarks/beats.py [--data data/corpus-small] [--model cadenza/weights/beats]``
→ prints a table and writes ``benchmarks/results/beats.json`` + ``.md`` (config, commit, seed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import librosa  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from cadenza.audio.format import HOP_LENGTH, SAMPLE_RATE  # noqa: E402
from cadenza.audio.io import load_audio  # noqa: E402
from cadenza.config import write_json_atomic  # noqa: E402
from cadenza.controls.base import ControlSet  # noqa: E402
from cadenza.controls.beat_tracker import WEIGHTS_DIR, NeuralBeatTracker  # noqa: E402
from cadenza.controls.rhythm import DSPBeatTracker  # noqa: E402
from cadenza.data.manifest import atomic_write_text, read_manifest  # noqa: E402
from cadenza.train.beats import f_measure  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except Exception:
        return "unknown"


def librosa_beats(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """librosa's default beat tracker; it has no downbeats, so every flag is 0."""
    _, frames = librosa.beat.beat_track(y=audio, sr=sample_rate, hop_length=HOP_LENGTH, units="frames")
    times = librosa.frames_to_time(frames, sr=sample_rate, hop_length=HOP_LENGTH)
    return np.stack([times, np.zeros_like(times)], axis=1).reshape(-1, 2)


def score(reference: np.ndarray, estimate: np.ndarray) -> tuple[float, float]:
    ref_down, est_down = reference[reference[:, 1] > 0.5, 0], estimate[estimate[:, 1] > 0.5, 0]
    return f_measure(reference[:, 0], estimate[:, 0]), f_measure(ref_down, est_down)


def beats_per_bar(beats: np.ndarray) -> int | None:
    """The bar length in beats (median gap between downbeats), None with fewer than two downbeats."""
    down = np.flatnonzero(beats[:, 1] > 0.5)
    return int(np.median(np.diff(down))) if down.size >= 2 else None


def bar_confusion(rows: list[dict], name: str = "neural", top: int = 8) -> list[dict]:
    """The most common (score bar length, tracked bar length) pairs, with their clips' mean F1.

    Why: downbeat F1 mixes two failures, a wrong bar length (a 4/4 bar tracked as two bars of
    2) and a wrong bar phase; this table tells them apart.
    """
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["beats_per_bar"], r[name]["beats_per_bar"]), []).append(r)
    table = [{"score": k[0], "tracked": k[1], "clips": len(v), "share": len(v) / len(rows),
              "beat_f1": float(np.mean([r[name]["beat_f1"] for r in v])),
              "downbeat_f1": float(np.mean([r[name]["downbeat_f1"] for r in v]))} for k, v in groups.items()]
    return sorted(table, key=lambda t: -t["clips"])[:top]


def summarise(rows: list[dict], names: list[str]) -> dict:
    """Mean F1 per tracker over all clips and per drums / no-drums subset, and median time."""
    out: dict = {}
    subsets = {"all": lambda r: True, "drums": lambda r: r["drums"], "no_drums": lambda r: not r["drums"]}
    for name in names:
        out[name] = {}
        for sub, keep in subsets.items():
            sel = [r for r in rows if keep(r)]
            if sel:
                out[name][sub] = {
                    "clips": len(sel),
                    "beat_f1": float(np.mean([r[name]["beat_f1"] for r in sel])),
                    "downbeat_f1": float(np.mean([r[name]["downbeat_f1"] for r in sel])),
                }
        out[name]["median_seconds_per_clip"] = float(np.median([r[name]["seconds"] for r in rows]))
        out[name]["x_real_time"] = float(np.sum([r["duration"] for r in rows]) / np.sum([r[name]["seconds"] for r in rows]))
    return out


def run_split(data: Path, split: str, trackers: dict, max_clips: int | None) -> list[dict]:
    rows = sorted(read_manifest(data, split), key=lambda r: r["id"])
    rows = [r for r in rows if r["controls"].get("score")][:max_clips]
    out = []
    for r in rows:
        audio = load_audio(data / r["path"])
        ref = ControlSet.load(data / r["controls"]["score"]).beats
        item = {"id": r["id"], "drums": bool(r.get("drums", False)), "meter": r.get("meter"), "duration": audio.size / SAMPLE_RATE}
        item["beats_per_bar"] = beats_per_bar(ref)
        for name, track in trackers.items():  # alternate trackers clip by clip: same load for each
            t0 = time.perf_counter()
            est = np.asarray(track(audio, SAMPLE_RATE)).reshape(-1, 2)
            seconds = time.perf_counter() - t0
            beat_f1, down_f1 = score(ref, est)
            item[name] = {"beat_f1": beat_f1, "downbeat_f1": down_f1, "seconds": seconds, "beats_per_bar": beats_per_bar(est)}
        out.append(item)
    return out


def markdown(result: dict) -> str:
    cfg, names = result["config"], result["trackers"]
    lines = [
        "# Beat tracker benchmark",
        "",
        *([result["note"], ""] if result.get("note") else []),
        f"git commit `{result['commit']}`, seed {cfg['seed']}, model `{cfg['model']}`, data `{cfg['data']}`, "
        f"{cfg['threads']} torch/BLAS thread, {platform.processor() or platform.machine()} shared with other jobs "
        f"(1-min load average {result['load_before']:.1f} before, {result['load_after']:.1f} after: times are noisy, "
        "the trackers run alternately on each clip so they see the same load).",
        "",
        f"Neural model: `{cfg['model_config']}`, training step {cfg['train_step']}, chosen on the valid split "
        "(best beat + downbeat F1 among the checkpoints evaluated during training); the test split was never used "
        "for training or choosing.",
        "",
        "Mean per-clip mir_eval F-measure (±70 ms) against the exact score beats; `ratio` = neural / dsp "
        "(for time: dsp time / neural time, so > 1 means the neural tracker is faster). librosa has no downbeats.",
        "",
    ]
    for split, summary in result["splits"].items():
        lines += [f"## {split} split", "", "| subset | clips | metric | " + " | ".join(names) + " | ratio neural/dsp |", "|---|---:|---|" + "---:|" * (len(names) + 1)]
        for sub in ("all", "drums", "no_drums"):
            if sub not in summary["neural"]:
                continue
            n = summary["neural"][sub]["clips"]
            for metric in ("beat_f1", "downbeat_f1"):
                vals = [summary[k][sub][metric] for k in names]
                ratio = vals[0] / vals[1] if vals[1] > 0 else float("inf")
                cells = " | ".join(f"{v:.3f}" if not (k == "librosa" and metric == "downbeat_f1") else "—" for k, v in zip(names, vals))
                lines.append(f"| {sub} | {n} | {metric} | {cells} | {ratio:.2f}x |")
        times = [summary[k]["median_seconds_per_clip"] * 1000 for k in names]
        lines.append(f"| all | | median ms / clip | " + " | ".join(f"{t:.1f}" for t in times) + f" | {times[1] / times[0]:.2f}x |")
        xrt = [summary[k]["x_real_time"] for k in names]
        lines.append(f"| all | | x real time | " + " | ".join(f"{x:.0f}" for x in xrt) + f" | {xrt[0] / xrt[1]:.2f}x |")
        lines.append("")
        if summary.get("bar_confusion"):
            lines += [f"Bar length in beats, score against the neural tracker ({split}, the most common pairs):", "",
                      "| score | tracked | clips | share | beat F1 | downbeat F1 |", "|---:|---:|---:|---:|---:|---:|"]
            lines += [f"| {t['score']} | {t['tracked']} | {t['clips']} | {t['share']:.0%} | {t['beat_f1']:.3f} | {t['downbeat_f1']:.3f} |"
                      for t in summary["bar_confusion"]]
            lines.append("")
    goal = result["goal"]
    lines += [
        "## Goal (beat F1 ≥ 0.90, downbeat F1 ≥ 0.70, better beat F1 than dsp)",
        "",
        *[f"- {split}: beat F1 {g['beat_f1']:.3f} ({'met' if g['beat_ok'] else 'NOT met'}), downbeat F1 {g['downbeat_f1']:.3f} "
          f"({'met' if g['downbeat_ok'] else 'NOT met'}), beats better than dsp: {'yes' if g['beats_beat_dsp'] else 'no'}" for split, g in goal.items()],
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(ROOT / "data" / "corpus-small"))
    parser.add_argument("--model", default=None, help="beat tracker model folder (default: the shipped weights)")
    parser.add_argument("--splits", default="test,valid")
    parser.add_argument("--max-clips", type=int, default=None, help="per split (for a quick look)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(RESULTS / "beats"), help="results path without extension")
    parser.add_argument("--note", default="", help="a paragraph for the results file, under its title (what the data is)")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(args.threads)
    data = Path(args.data)
    neural = NeuralBeatTracker.load(args.model)
    dsp = DSPBeatTracker()
    trackers = {"neural": neural.track, "dsp": dsp.track, "librosa": librosa_beats}
    load_before = os.getloadavg()[0]
    with threadpool_limits(args.threads):
        warm = np.random.default_rng(args.seed).normal(0, 0.1, SAMPLE_RATE * 6).astype(np.float32)
        for track in trackers.values():  # warm-up: imports, filter banks, first allocations
            track(warm, SAMPLE_RATE)
        per_split = {s: run_split(data, s, trackers, args.max_clips) for s in args.splits.split(",")}
    load_after = os.getloadavg()[0]
    names = list(trackers)
    splits = {s: {**summarise(rows, names), "bar_confusion": bar_confusion(rows)} for s, rows in per_split.items()}
    goal = {
        s: {
            "beat_f1": v["neural"]["all"]["beat_f1"], "downbeat_f1": v["neural"]["all"]["downbeat_f1"],
            "beat_ok": v["neural"]["all"]["beat_f1"] >= 0.90, "downbeat_ok": v["neural"]["all"]["downbeat_f1"] >= 0.70,
            "beats_beat_dsp": v["neural"]["all"]["beat_f1"] > v["dsp"]["all"]["beat_f1"],
        }
        for s, v in splits.items()
    }
    model_dir = Path(args.model).resolve() if args.model else WEIGHTS_DIR
    model_cfg = json.loads((model_dir / "config.json").read_text())
    model_dir = model_dir.relative_to(ROOT) if model_dir.is_relative_to(ROOT) else model_dir
    result = {
        "commit": commit(),
        "config": {"data": str(data.relative_to(ROOT)) if data.is_relative_to(ROOT) else str(data), "model": str(model_dir),
                   "splits": args.splits, "max_clips": args.max_clips, "seed": args.seed, "threads": args.threads,
                   "window_s": 0.07, "model_config": model_cfg.get("model"), "postfilter": neural.postfilter,
                   "train_step": model_cfg.get("train_step")},
        "trackers": names,
        "load_before": load_before,
        "load_after": load_after,
        "splits": splits,
        "goal": goal,
        "clips": per_split,
        "note": args.note,
    }
    out = Path(args.out)
    write_json_atomic(out.with_suffix(".json"), result)
    text = markdown(result)
    atomic_write_text(out.with_suffix(".md"), text + "\n")
    print(text)


if __name__ == "__main__":
    main()
