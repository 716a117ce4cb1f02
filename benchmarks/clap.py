"""Does the small CLAP model connect text and audio? Retrieval recall on held-out (test split) clips.

Text→audio: each distinct caption of the test clips queries all test clips (a hit when a clip
carrying that caption is in the top k). Audio→text: each clip queries the distinct captions.
Side by side: the trained model, the same architecture untrained (random weights, same seed),
and chance for a random ranking; ratios are trained / chance and trained / untrained.
The first caption of each clip is used; clips are embedded whole (6 s in the corpus).

    python benchmarks/clap.py --data data/corpus-small --model runs/clap/small/model --splits test test,valid

A second table uses the model as the ``clap`` FAD embedder next to the ``mel-stats`` peer:
FAD between the valid clips (reference) and the test clips clean or degraded (white noise at
20 dB SNR, a 3 kHz low-pass, Griffin-Lim resynthesis of the mel), as ratios to the clean FAD.
Different works sit in the two splits, so the clean FAD is the floor a perfect generator of
this music would reach at this N.

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
import scipy.signal
import torch

from cadenza.audio import SAMPLE_RATE, MelSpectrogram, griffin_lim, load_audio
from cadenza.config import write_json_atomic
from cadenza.data.manifest import atomic_write_text, read_manifest
from cadenza.eval.clap import WEIGHTS_DIR, Clap, ClapEmbedder, ClapModel, retrieval_metrics
from cadenza.eval.embedders import MelStatsEmbedder
from cadenza.eval.fad import embed_audio, fad_from_embeddings
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


def degradations(clips: list[np.ndarray], seed: int) -> dict[str, list[np.ndarray]]:
    """The test clips clean and with three kinds of damage a generator or vocoder might do."""
    rng = np.random.default_rng(seed)
    sos = scipy.signal.butter(8, 3000, btype="lowpass", fs=SAMPLE_RATE, output="sos")
    mel = MelSpectrogram()
    out: dict[str, list[np.ndarray]] = {"clean": clips, "noise 20 dB": [], "low-pass 3 kHz": [], "Griffin-Lim": []}
    for c in clips:
        rms = np.sqrt(np.mean(c.astype(np.float64) ** 2))
        out["noise 20 dB"].append((c + rng.standard_normal(c.size) * rms / 10).astype(np.float32))
        out["low-pass 3 kHz"].append(scipy.signal.sosfiltfilt(sos, c).astype(np.float32))
        with torch.inference_mode():
            out["Griffin-Lim"].append(griffin_lim(mel(torch.from_numpy(c)), n_iter=32, seed=seed).numpy())
    return out


def fad_table(trained: Clap, data: str, seed: int) -> tuple[dict, list[str]]:
    """FAD(valid, test variant) for the clap and mel-stats embedders, and ratios to the clean value."""
    folder = Path(data)
    reference = [load_audio(folder / r["path"]) for r in read_manifest(folder, "valid")]
    variants = degradations([load_audio(folder / r["path"]) for r in read_manifest(folder, "test")], seed)
    out: dict = {"n_reference": len(reference), "n_generated": len(variants["clean"]), "embedders": {}}
    for emb in (ClapEmbedder(trained), MelStatsEmbedder()):
        ref = embed_audio(reference, emb)
        values = {name: fad_from_embeddings(ref, embed_audio(clips, emb), emb.name).fad for name, clips in variants.items()}
        out["embedders"][emb.name] = values
    names = list(out["embedders"])
    lines = [
        f"## CLAP as the FAD embedder: FAD(valid, test variant), N_ref={out['n_reference']}, N_gen={out['n_generated']}", "",
        "| test variant | " + " | ".join(f"FAD {n}" for n in names) + " | " + " | ".join(f"{n} / clean" for n in names) + " |",
        "|---|" + "---:|" * (2 * len(names)),
    ]
    for variant in variants:
        vals = [out["embedders"][n][variant] for n in names]
        ratios = [v / out["embedders"][n]["clean"] for v, n in zip(vals, names)]
        lines.append(f"| {variant} | " + " | ".join(f"{v:.4g}" for v in vals) + " | " + " | ".join(f"{r:.2f}x" for r in ratios) + " |")
    lines += ["", "FAD is biased upward at small N; the two embedders' values are in different units, so compare the ratios.", ""]
    return out, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/corpus-small")
    parser.add_argument("--model", default=str(WEIGHTS_DIR), help="CLAP model folder")
    parser.add_argument("--splits", nargs="+", default=["test", "test,valid"], help="held-out sets; each a comma-separated union of splits")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(RESULTS / "clap"))
    parser.add_argument("--no-fad", action="store_true", help="skip the FAD table")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    start = time.perf_counter()
    trained = Clap.load(args.model)
    config = load_model_config(args.model)
    sets, lines = [], [
        "# CLAP retrieval on held-out clips", "",
        f"Model `{_display(args.model)}` (trained {config.get('train_step')} steps); data `{args.data}`; commit {commit()}, seed {args.seed}, "
        f"{args.threads} thread(s). Chance = a uniformly random ranking; 'untrained' = the same architecture with random "
        "weights (same seed). The valid split was only watched during training, never used to pick a checkpoint.", "",
    ]
    for splits in args.splits:
        result, table = score_set(trained, args.data, splits, args.seed)
        sets.append(result)
        lines += table
    fad_result = None
    if not args.no_fad:
        fad_result, table = fad_table(trained, args.data, args.seed)
        lines += table
    summary = {
        "benchmark": "clap_retrieval", "commit": commit(), "seed": args.seed, "threads": args.threads, "data": args.data,
        "model": _display(args.model), "model_config": config.get("model"), "train_step": config.get("train_step"), "sets": sets, "fad": fad_result,
        "seconds": round(time.perf_counter() - start, 1), "platform": platform.platform(), "torch": torch.__version__,
    }
    print("\n".join(lines))
    stem = Path(args.out)
    write_json_atomic(stem.with_suffix(".json"), summary)
    atomic_write_text(stem.with_suffix(".md"), "\n".join(lines))
    print(f"wrote {stem.with_suffix('.json')} and {stem.with_suffix('.md')}")


def _display(path: str) -> str:
    """A path relative to the working folder when it lies inside it (results stay machine-independent)."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def load_model_config(folder: str) -> dict:
    return json.loads((Path(folder) / "config.json").read_text())


if __name__ == "__main__":
    main()
