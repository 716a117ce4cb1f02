"""Which backbone for a CPU diffusion model over mel spectrograms: 1-D over time, or 2-D image UNet?

Times forward passes (and forward+backward) of Cadenza's 1-D UNet (mel bins as channels)
against diffusers' ``UNet2DConditionModel`` over the 128 × T spectrogram image, at similar
parameter counts, both with text cross-attention, on a fixed number of CPU threads. Prints the
2-D/1-D time ratio and writes ``benchmarks/results/generator_arch.json`` + ``.md``.

    python benchmarks/generator_arch.py --threads 1 --frames 256 --batch 4
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from pathlib import Path

import torch

from cadenza.config import write_json_atomic
from cadenza.generators.unet import UNet1D, UNetConfig

RESULTS = Path(__file__).parent / "results"


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def time_it(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def build_1d(channels: list[int]) -> torch.nn.Module:
    attn = [False] + [True] * (len(channels) - 1)
    return UNet1D(UNetConfig(channels=channels, attn_stages=attn))


def build_2d(channels: list[int]):
    from diffusers import UNet2DConditionModel

    n = len(channels)
    down = ["DownBlock2D"] * (n - 2) + ["CrossAttnDownBlock2D"] * 2
    up = ["CrossAttnUpBlock2D"] * 2 + ["UpBlock2D"] * (n - 2)
    return UNet2DConditionModel(
        sample_size=(128, 256), in_channels=1, out_channels=1, block_out_channels=tuple(channels),
        down_block_types=tuple(down), up_block_types=tuple(up), layers_per_block=1, cross_attention_dim=384,
        attention_head_dim=8, norm_num_groups=16,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--frames", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    B, T = args.batch, args.frames
    ctx, mask, pooled = torch.randn(B, 12, 384), torch.ones(B, 12, dtype=torch.bool), torch.randn(B, 384)
    t = torch.randint(0, 1000, (B,))

    rows = []
    candidates = [
        ("1d", [128, 192, 256], build_1d),
        ("1d", [96, 160, 224, 288], build_1d),
        ("2d", [32, 64, 96, 128], build_2d),
        ("2d", [64, 64, 128, 128, 256], build_2d),  # the paper's stage widths
    ]
    for kind, channels, build in candidates:
        model = build(channels)
        if kind == "1d":
            x = torch.randn(B, 128, T)
            fwd = lambda m=model, x=x: m(x, t, ctx, mask, pooled)  # noqa: E731
        else:
            x = torch.randn(B, 1, 128, T)
            fwd = lambda m=model, x=x: m(x, t, encoder_hidden_states=ctx).sample  # noqa: E731

        def infer(fwd=fwd):
            with torch.no_grad():
                fwd()

        def train(fwd=fwd, model=model):
            model.zero_grad(set_to_none=True)
            fwd().square().mean().backward()

        row = {
            "kind": kind, "channels": channels, "params_M": round(n_params(model) / 1e6, 2),
            "forward_s": round(time_it(infer, args.repeats), 4), "train_step_s": round(time_it(train, args.repeats), 4),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)

    base = rows[0]
    for row in rows:
        row["forward_ratio_vs_1d_small"] = round(row["forward_s"] / base["forward_s"], 2)
        row["train_ratio_vs_1d_small"] = round(row["train_step_s"] / base["train_step_s"], 2)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    result = {
        "benchmark": "generator_arch", "config": vars(args), "git_commit": commit, "seed": args.seed,
        "machine": platform.processor() or platform.machine(), "torch": torch.__version__, "rows": rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json_atomic(RESULTS / "generator_arch.json", result)
    lines = [
        "# Backbone timing: 1-D UNet (mel bins as channels) vs 2-D UNet (spectrogram image)", "",
        f"batch {B} × {T} frames, {args.threads} CPU thread(s), best of {args.repeats}; commit {commit}", "",
        "| backbone | stage widths | params (M) | forward (s) | train step (s) | forward ×1-D small | train ×1-D small |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['kind']} | {r['channels']} | {r['params_M']} | {r['forward_s']} | {r['train_step_s']} | "
            f"{r['forward_ratio_vs_1d_small']} | {r['train_ratio_vs_1d_small']} |"
        )
    (RESULTS / "generator_arch.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
