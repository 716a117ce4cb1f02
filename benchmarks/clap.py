"""Does the small CLAP model connect text and audio? Retrieval recall on held-out (test split) clips.

Text→audio: each distinct caption of the test clips queries all test clips (a hit when a clip
carrying that caption is in the top k). Audio→text: each clip queries the distinct captions.
Side by side: the trained model, the same architecture untrained (random weights, same seed),
and chance for a random ranking; ratios are trained / chance and trained / untrained.
The first caption of each clip is used; clips are embedded whole (6 s in the corpus).

    python benchmarks/clap.py --data data/corpus-small --model runs/clap/small/model --splits test test,valid

Writes ``benchmarks/results/clap.json`` + ``.md`` (config, commit, seed, numbers).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from cadenza.config import write_json_atomic
from cadenza.data.manifest import atomic_write_text
from cadenza.eval.clap import WEIGHTS_DIR, Clap, ClapModel, retrieval_metrics
from cadenza.train.clap import encode_captions, load_corpus

RESULTS = Path(__file__).parent / "results"
KEYS = ("t2a_r@1", "t2a_r@10", "a2t_r@1", "a2t_r@10")


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def evaluate(clap: Clap, mels: list[torch.Tensor], captions: list[str]) -> dict[str, float]:
    table, rows = encode_captions(clap.text_encoder, [[c] for c in captions])
    with torch.inference_mode():
        text = clap.model.encode_text(table).numpy()
    audio = clap.embed_mels(mels)
    return retrieval_metrics(audio, text, np.array([rows[c] for c in captions]))


def score_set(trained: Clap, data: str, splits: str, seed: int) -> tuple[dict, list[str]]:
    """Retrieval on the union of ``splits`` (comma-separated): the result dict and its Markdown table."""
    corpora = [load_corpus(data, split.strip()) for split in splits.split(",")]
    captions = [caps[0] for c in corpora for caps in c.captions]
    mels = [m.float() for c in corpora for m in c.mels]
    ours = evaluate(trained, mels, captions)
    torch.manual_seed(seed)
    untrained = evaluate(Clap(ClapModel(trained.model.config), text_encoder=trained.text_encoder, name="untrained"), mels, captions)
    rows = []
    for key in KEYS:
        chance = ours[f"{key}_chance"]
        rows.append({
            "metric": key, "trained": ours[key], "untrained": untrained[key], "chance": chance,
            "trained_over_chance": ours[key] / chance if chance else None,
            "trained_over_untrained": ours[key] / untrained[key] if untrained[key] else None,
        })
    result = {
        "splits": splits, "n_clips": int(ours["n_clips"]), "n_captions": int(ours["n_captions"]), "rows": rows,
        "median_rank": {"trained": {"t2a": ours["t2a_median_rank"], "a2t": ours["a2t_median_rank"]},
                        "untrained": {"t2a": untrained["t2a_median_rank"], "a2t": untrained["a2t_median_rank"]}},
    }
    lines = [
        f"## {splits.replace(',', ' + ')}: {result['n_clips']} clips, {result['n_captions']} distinct captions", "",
        "| metric | trained | untrained | chance | trained / chance | trained / untrained |", "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['metric']} | {r['trained']:.3f} | {r['untrained']:.3f} | {r['chance']:.3f} | "
            f"{_ratio(r['trained_over_chance'])} | {_ratio(r['trained_over_untrained'])} |"
        )
    lines += ["", f"Median rank (1 = best): text→audio {ours['t2a_median_rank']:.0f} (untrained {untrained['t2a_median_rank']:.0f}), "
              f"audio→text {ours['a2t_median_rank']:.0f} (untrained {untrained['a2t_median_rank']:.0f}).", ""]
    return result, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/corpus-small")
    parser.add_argument("--model", default=str(WEIGHTS_DIR), help="CLAP model folder")
    parser.add_argument("--splits", nargs="+", default=["test", "test,valid"], help="held-out sets; each a comma-separated union of splits")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(RESULTS / "clap"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    start = time.perf_counter()
    trained = Clap.load(args.model)
    config = load_model_config(args.model)
    sets, lines = [], [
        "# CLAP retrieval on held-out clips", "",
        f"Model `{args.model}` (trained {config.get('train_step')} steps); data `{args.data}`; commit {commit()}, seed {args.seed}, "
        f"{args.threads} thread(s). Chance = a uniformly random ranking; 'untrained' = the same architecture with random "
        "weights (same seed). The valid split was only watched during training, never used to pick a checkpoint.", "",
    ]
    for splits in args.splits:
        result, table = score_set(trained, args.data, splits, args.seed)
        sets.append(result)
        lines += table
    summary = {
        "benchmark": "clap_retrieval", "commit": commit(), "seed": args.seed, "threads": args.threads, "data": args.data,
        "model": args.model, "model_config": config.get("model"), "train_step": config.get("train_step"), "sets": sets,
        "seconds": round(time.perf_counter() - start, 1), "platform": platform.platform(), "torch": torch.__version__,
    }
    print("\n".join(lines))
    stem = Path(args.out)
    write_json_atomic(stem.with_suffix(".json"), summary)
    atomic_write_text(stem.with_suffix(".md"), "\n".join(lines))
    print(f"wrote {stem.with_suffix('.json')} and {stem.with_suffix('.md')}")


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def load_model_config(folder: str) -> dict:
    return json.loads((Path(folder) / "config.json").read_text())


if __name__ == "__main__":
    main()
