"""Where does the codec lose quality? The shipped codec's bottleneck on valid clips, and short training ablations.

    python benchmarks/codec_ablations.py --runs base=runs/codecx-base lat128=runs/codecx-lat128 ...

1. **Bottleneck** (the shipped codec, ``--codec``, on fixed crops of the VALID split): mel L1 of
   the decoder's output (natural-log mel, the training loss, before the vocoder) from the
   encoder's continuous latents, i.e. no quantization at all, and from 12, 8, 4 and 1 RVQ
   levels; beside it a linear baseline, PCA of frame pairs fitted on train crops with as many
   components as the latent has. If the unquantized row is about as bad as 12 levels, the
   bits are not what limits the codec: the encoder/decoder are.
2. **Ablations** (``--runs NAME=RUN_FOLDER``): each run's valid ``decoded_mel_l1`` at fixed steps
   and its seconds per step, read from its ``train_log.jsonl`` (runs made with
   ``cadenza train codec small --out RUN train.max_steps=2000 ...``; the overrides are in each
   run's config.json and are printed). All on valid data; nothing here touches the test split.

Writes ``benchmarks/results/codec_ablations.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cadenza.audio import MelSpectrogram  # noqa: E402
from cadenza.config import write_json_atomic  # noqa: E402
from cadenza.representations.codec import load_codec  # noqa: E402
from cadenza.train.vocoder import heldout_crops  # noqa: E402

STEPS = (500, 1000, 1500, 2000)
CHANGED = ("latent_dim", "dim", "intermediate_dim", "encoder_layers", "decoder_layers", "decoder_post_layers", "decoder_dim", "decoder_intermediate_dim")


def pairs(mel: torch.Tensor) -> torch.Tensor:
    """(B, n_mels, T) → (B·T/2, 2·n_mels): frame pairs, the span of one code frame."""
    mel = mel[..., : mel.shape[-1] // 2 * 2]
    b, c, t = mel.shape
    return mel.transpose(1, 2).reshape(b, t // 2, 2 * c).reshape(-1, 2 * c)


@torch.no_grad()
def bottleneck(codec_name: str, manifest: str, n_val: int, n_train: int, seconds: float) -> list[dict]:
    codec = load_codec(codec_name)
    net = codec.net.eval()
    mel_fn = MelSpectrogram(codec.vocoder.mel_config)
    val = heldout_crops(manifest, n_val, seconds, split="valid")
    target = mel_fn(val)
    z = net.latents(val)
    rows = []
    for k in (None, 12, 8, 4, 1):
        if k is not None and k > net.config.codebooks:
            continue
        zq = z if k is None else net.dequantize(net.quantize(z, k))
        out = net.mel(zq)
        n = min(out.shape[-1], target.shape[-1])
        rows.append({"method": "encoder → decoder, no quantization" if k is None else f"encoder → {k} RVQ levels → decoder",
                     "kbps": None if k is None else round(codec.bitrate(k) / 1000, 3), "mel_l1": round(float((out[..., :n] - target[..., :n]).abs().mean()), 4)})
    train = mel_fn(heldout_crops(manifest, n_train, seconds, split="train", seed=1))
    x = pairs(train)
    mean = x.mean(0)
    _, _, v = torch.pca_lowrank(x - mean, q=min(2 * net.config.latent_dim, x.shape[1]), center=False)
    p = v[:, : net.config.latent_dim]
    y = pairs(target)
    rec = (y - mean) @ p @ p.T + mean
    rows.append({"method": f"PCA of frame pairs, {net.config.latent_dim} components (linear, continuous)", "kbps": None,
                 "mel_l1": round(float((rec - y).abs().mean()), 4)})
    return rows


def ablation(name: str, folder: Path, base: dict) -> dict:
    log = [json.loads(line) for line in (folder / "train_log.jsonl").read_text().splitlines()]
    val = {r["step"]: r for r in log if "val_decoded_mel_l1" in r}
    last = max(val)
    model = json.loads((folder / "config.json").read_text()).get("model", {})
    train = json.loads((folder / "config.json").read_text()).get("train", {})
    changes = {k: model.get(k) for k in CHANGED if model.get(k) != base.get(k)}
    if train.get("freeze_tokens"):
        changes["frozen tokens from"] = train.get("init_from")
        if "decoder" in (train.get("init_parts") or ()):
            changes["decoder continued from"] = train.get("init_from")
    if train.get("lr") != 1e-3:
        changes["lr"] = train.get("lr")
    return {"name": name, "changes": changes, "val": {s: round(val[s]["val_decoded_mel_l1"], 4) for s in STEPS if s in val},
            "s_per_step": round(val[last]["elapsed_s"] / last, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--codec", default="default")
    ap.add_argument("--manifest", default=str(ROOT / "data/corpus-small/manifest.jsonl"))
    ap.add_argument("--val-clips", type=int, default=12)
    ap.add_argument("--train-clips", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--runs", nargs="*", default=[], help="NAME=RUN_FOLDER, the first is the baseline")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/codec_ablations"))
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    rows = bottleneck(args.codec, args.manifest, args.val_clips, args.train_clips, args.seconds)
    base = json.loads((ROOT / "cadenza/configs/codec/small.json").read_text())["model"]
    runs = []
    for spec in args.runs:
        name, _, folder = spec.partition("=")
        runs.append(ablation(name, Path(folder), base))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    result = {"benchmark": "codec_ablations", "git_commit": commit, "config": vars(args), "bottleneck": rows, "ablations": runs}
    write_json_atomic(Path(args.out).with_suffix(".json"), result)
    md = ["# Where the codec loses quality (valid split only)", "",
          f"Commit {commit}, codec `{load_codec(args.codec).model_id}`, {args.val_clips} valid crops × {args.seconds:g} s, seed 0. "
          "Mel L1: the decoder's log-mel (natural log, before the vocoder) against the clip's.", "",
          "## Bottleneck of the shipped codec", "", "| path | kbps | mel L1 |", "|---|---:|---:|"]
    md += [f"| {r['method']} | {r['kbps'] if r['kbps'] is not None else '–'} | {r['mel_l1']} |" for r in rows]
    if runs:
        md += ["", "## Short training runs (valid decoded mel L1; cosine schedule over 2,000 steps)", "",
               "| run | change from `small` | " + " | ".join(f"step {s}" for s in STEPS) + " | s/step |", "|---|---|" + "---:|" * (len(STEPS) + 1)]
        for r in runs:
            change = ", ".join(f"{k} {v}" for k, v in r["changes"].items()) or "none (the shipped recipe)"
            md.append(f"| {r['name']} | {change} | " + " | ".join(str(r["val"].get(s, "–")) for s in STEPS) + f" | {r['s_per_step']} |")
        md += ["", "s/step: on a 2-core machine shared with the other runs and tests (a floor, not a speed figure)."]
    Path(args.out).with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
