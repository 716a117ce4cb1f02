"""Is the DSP beat judge moved by a volume automation alone? Real corpus clips, before and after a smooth gain.

Why: dynamics guidance changes nothing but a smooth per-frame gain, yet the DSP beat tracker's
F1 fell on the valid partial-span cases (``benchmarks/results/dynamics_guidance.md``). This
checks the judge itself: held-out clips of the corpus (their score's beats as reference), each
as rendered, under a ±6 dB sinusoidal automation over a random 2–4 s span (0.25 s raised-cosine
edges, as the guidance's ramps) and under one over the whole clip. No generator is involved.

    python benchmarks/dsp_beats_under_gain.py --data data/corpus-small --split valid --n 40
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import soundfile as sf

RESULTS = Path(__file__).parent / "results"


def automations(n: int, sr: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Linear gains for one clip: none, a ±6 dB contour over a 2–4 s span, a ±6 dB contour over the whole clip."""
    t = np.arange(n) / sr
    s0 = rng.uniform(0.5, 2.0)
    s1 = s0 + rng.uniform(2.0, 4.0)
    edge = np.clip(np.minimum(t - s0, s1 - t) / 0.25, 0, 1)
    edge = (0.5 - 0.5 * np.cos(np.pi * edge)) * ((t >= s0) & (t < s1))
    span = 6 * np.sin(2 * np.pi * (t - s0) / (s1 - s0) + rng.uniform(0, 2 * np.pi)) * edge
    full = 6 * np.sin(2 * np.pi * t / 3 + rng.uniform(0, 2 * np.pi))
    return {"as rendered": np.ones(n), "±6 dB over a 2–4 s span": 10 ** (span / 20), "±6 dB over the whole clip": 10 ** (full / 20)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="data/corpus-small")
    ap.add_argument("--split", default="valid")
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(RESULTS / "dsp_beats_under_gain.md"))
    args = ap.parse_args()

    import torch

    from cadenza.controls.base import ControlSet
    from cadenza.controls.extract import extract_controls_batch
    from cadenza.data.manifest import read_manifest
    from cadenza.eval.adherence import compare_controls

    torch.set_num_threads(1)
    rng = np.random.default_rng(args.seed)
    rows = [r for r in read_manifest(args.data, args.split) if r["controls"].get("score")][: args.n]
    scores: dict[str, list[float]] = {}
    for r in rows:
        audio, sr = sf.read(Path(args.data) / r["path"], dtype="float32")
        reference = ControlSet.load(Path(args.data) / r["controls"]["score"]).select(["rhythm"])
        gains = automations(len(audio), sr, rng)
        got = extract_controls_batch(np.stack([audio * g for g in gains.values()]).astype(np.float32), sr, ["rhythm"], "dsp")
        for name, g in zip(gains, got):
            scores.setdefault(name, []).append(float(compare_controls(reference, g)["beat_f1"]))
    base = np.array(scores["as rendered"])
    lines = ["# The DSP beat judge under a volume automation alone (real corpus clips)", "",
             f"{len(rows)} clips of `{args.data}` ({args.split}), the score's beats as reference, seed {args.seed}. "
             "Only a smooth gain changes between rows.", "",
             "| audio | DSP beat F1 (mean) | clips whose F1 moved by > 0.05 | mean change |", "|---|---:|---:|---:|"]
    for name, v in scores.items():
        v = np.array(v)
        lines.append(f"| {name} | {np.nanmean(v):.3f} | {int(np.sum(np.abs(v - base) > 0.05))} / {len(v)} | {np.nanmean(v - base):+.3f} |")
    lines.append("")
    Path(args.out).write_text("\n".join(lines))
    Path(args.out).with_suffix(".json").write_text(json.dumps({"args": vars(args), "scores": scores}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
