"""Do the controls survive the vocoder? Melody, dynamics and rhythm through the mel round trip.

For held-out clips of a corpus (the test split, every 4th clip), the clip's audio goes to the
log-mel and back through the shipped vocoder and through Griffin-Lim (32 iterations, the
fallback); controls are extracted from each result and scored against the clip's own
extracted controls with ``cadenza.eval.adherence.score_clip`` (the metric of ``cadenza eval``).
This is the "reference → vocoder" ceiling of the eval report: what the representation alone
loses, before any generation.

    python benchmarks/vocoder_controls.py [--data data/corpus-small] [--clips 16]

Writes ``benchmarks/results/vocoder_controls.json`` and ``.md`` (config, commit, seed).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from cadenza.audio import MelSpectrogram, griffin_lim, load_audio  # noqa: E402
from cadenza.config import write_json_atomic  # noqa: E402
from cadenza.controls.base import ControlSet  # noqa: E402
from cadenza.eval.adherence import score_clip  # noqa: E402
from cadenza.representations.vocoder import load_vocoder  # noqa: E402

METRICS = ("melody_accuracy", "dynamics_r", "beat_f1", "downbeat_f1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT / "data/corpus-small")
    ap.add_argument("--clips", type=int, default=16)
    ap.add_argument("--model", default="default")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = [json.loads(line) for line in (args.data / "manifest.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r["split"] == "test" and r["controls"].get("extracted")][::4][: args.clips]
    voc, mel = load_vocoder(args.model), MelSpectrogram()
    scores: dict[str, list[dict]] = {"vocoder": [], "griffin-lim (32 it)": []}
    with torch.inference_mode():
        for r in rows:
            audio = torch.from_numpy(load_audio(args.data / r["path"]))
            logmel = mel(audio)[None]
            given = ControlSet.load(args.data / r["controls"]["extracted"])
            for name, wave in (("vocoder", voc.decode(logmel)[0]), ("griffin-lim (32 it)", griffin_lim(logmel, n_iter=32)[0])):
                wave = np.pad(wave.numpy(), (0, audio.shape[0] - wave.shape[0]))  # the last < 256 samples
                scores[name].append(score_clip(given, wave, 22050))
    table = {name: {k: round(float(np.nanmean([s[k] for s in v])), 4) for k in METRICS} for name, v in scores.items()}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    result = {"config": {"data": str(args.data), "clips": len(rows), "model": args.model, "threads": args.threads, "split": "test"},
              "git_commit": commit, "seed": None, "scores": table}
    out = ROOT / "benchmarks/results"
    write_json_atomic(out / "vocoder_controls.json", result)
    md = ["# Controls through the vocoder round trip", "",
          f"commit {commit}; {len(rows)} test-split clips of `{args.data.name}` (every 4th); audio → log-mel → vocoder, scored "
          "against the clip's own extracted controls (`score_clip`, the metric of `cadenza eval`). Deterministic (no sampling).", "",
          "| round trip | melody accuracy | dynamics r | beat F1 | downbeat F1 |", "|---|---|---|---|---|"]
    md += [f"| {n} | {t['melody_accuracy']:.3f} | {t['dynamics_r']:.4f} | {t['beat_f1']:.3f} | {t['downbeat_f1']:.3f} |" for n, t in table.items()]
    (out / "vocoder_controls.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
