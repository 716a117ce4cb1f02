"""Vocoder benchmark: speed against peers and reconstruction quality against Griffin-Lim.

    python benchmarks/vocoder.py [--manifest data/corpus-small/manifest.jsonl] [--repeats 5]

Speed: real-time factor (seconds of audio per second of compute, 10 s of audio, 2 threads,
best of N) of the shipped vocoder, the ``vocos`` package's model architecture at a
22.05 kHz-equivalent size (dim 512, intermediate 1536, 8 layers, n_fft 1024, hop 256; random
weights), a HiFi-GAN V1 generator (transformers' ``SpeechT5HifiGan``, upsample rates
[8, 8, 2, 2], kernels [16, 16, 4, 4], 512 channels, 128 mel inputs; random weights) and
Griffin-Lim (32 iterations; also from the locked start, and with every iteration
mel-consistent: the refinement without the network). The shipped vocoder runs at ``load_vocoder``'s "auto" precision
(the network in bfloat16 on a CPU with AMX, else float32); on such a CPU the float32 run and the
vocos peer under the same bfloat16 autocast are timed too, so precision is equal in some row.

``vocos`` cannot be imported as a package without torchaudio (its ``__init__`` pulls in the
feature extractors and its ``heads.py`` imports torchaudio), so its own ``VocosBackbone`` and
``ISTFT`` classes are loaded from the installed package (``pip install vocos --no-deps``)
without running its ``__init__``, and the 6-line ``ISTFTHead.forward`` is restated here.

Quality: mel L1 (the canonical log-mel, natural log) and multi-resolution STFT distance
(spectral convergence + log-magnitude L1 at n_fft 512/1024/2048) between held-out clips and
their reconstruction from the log-mel, for the shipped vocoder and Griffin-Lim.
Writes ``benchmarks/results/vocoder.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cadenza.audio import MelSpectrogram, griffin_lim  # noqa: E402
from cadenza.config import write_json_atomic  # noqa: E402
from cadenza.representations.discriminators import MultiResolutionSTFTLoss  # noqa: E402
from cadenza.representations.vocoder import load_vocoder  # noqa: E402
from cadenza.train.vocoder import heldout_crops  # noqa: E402

SEED = 0
SECONDS = 10.0


def vocos_peer() -> nn.Module | str:
    """The vocos package's architecture (random weights), or a reason it could not be built."""
    spec = importlib.util.find_spec("vocos")
    if spec is None or spec.origin is None:
        return "vocos not installed (pip install vocos --no-deps)"
    stub = types.ModuleType("vocos")
    stub.__path__ = [str(Path(spec.origin).parent)]  # a bare package: skips vocos/__init__.py (torchaudio)
    sys.modules["vocos"] = stub  # this process only benchmarks; the stub is left in place
    try:
        from vocos.models import VocosBackbone
        from vocos.spectral_ops import ISTFT
    except ImportError as exc:
        return f"vocos modules failed to import: {exc}"

    class VocosISTFTHead(nn.Module):  # vocos.heads.ISTFTHead.forward, restated
        def __init__(self, dim: int, n_fft: int, hop: int) -> None:
            super().__init__()
            self.out = nn.Linear(dim, n_fft + 2)
            self.istft = ISTFT(n_fft=n_fft, hop_length=hop, win_length=n_fft, padding="same")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.out(x).transpose(1, 2)
            mag, p = x.chunk(2, dim=1)
            mag = torch.clip(torch.exp(mag), max=1e2)
            return self.istft(mag * (torch.cos(p) + 1j * torch.sin(p)))

    class VocosModel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = VocosBackbone(input_channels=128, dim=512, intermediate_dim=1536, num_layers=8)
            self.head = VocosISTFTHead(512, 1024, 256)

        def forward(self, mel: torch.Tensor) -> torch.Tensor:
            return self.head(self.backbone(mel))

    return VocosModel().eval()


def hifigan_peer() -> nn.Module:
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    config = SpeechT5HifiGanConfig(
        model_in_dim=128, sampling_rate=22050, upsample_initial_channel=512, upsample_rates=[8, 8, 2, 2],
        upsample_kernel_sizes=[16, 16, 4, 4], resblock_kernel_sizes=[3, 7, 11],
        resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5], [1, 3, 5]], normalize_before=False,
    )
    model = SpeechT5HifiGan(config).eval()

    class Wrap(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, mel: torch.Tensor) -> torch.Tensor:
            return self.model(mel.transpose(1, 2))  # it takes (B, T, n_mels)

    return Wrap().eval()


def rtf_interleaved(fns: list, mel: torch.Tensor, repeats: int) -> list[tuple[float, float, int]]:
    """(real-time factor, best seconds, output samples) per function, best of ``repeats``.

    The functions are timed round-robin (one call each per round, after one warm-up call each),
    so on a shared machine a burst of load hits every model alike instead of one of them.
    """
    with torch.inference_mode():
        samples = [int(fn(mel).shape[-1]) for fn in fns]
        best = [float("inf")] * len(fns)
        for _ in range(repeats):
            for i, fn in enumerate(fns):
                t0 = time.perf_counter()
                fn(mel)
                best[i] = min(best[i], time.perf_counter() - t0)
    return [(SECONDS / b, b, n) for b, n in zip(best, samples)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_manifest = ROOT / "data/corpus-small/manifest.jsonl"
    if not default_manifest.exists():
        default_manifest = ROOT / "data/vocoder-synth/manifest.jsonl"
    parser.add_argument("--manifest", type=Path, default=default_manifest)
    parser.add_argument("--model", default="default")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--clip-seconds", type=float, default=4.0)
    parser.add_argument("--per-work", type=int, default=None, help="at most this many held-out clips per work (spreads the sample over works)")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for the speed runs (the goal is stated for 2)")
    parser.add_argument("--out-name", default="vocoder", help="results file stem under benchmarks/results/")
    args = parser.parse_args()
    torch.manual_seed(SEED)
    torch.set_num_threads(args.threads)

    voc = load_vocoder(args.model)
    mel_fn = MelSpectrogram(voc.mel_config)
    n_params = sum(p.numel() for p in voc.generator.parameters())
    rows: list[dict] = []
    if not args.skip_speed:
        t = np.arange(int(SECONDS * 22050)) / 22050
        probe = torch.from_numpy((0.3 * np.sin(2 * np.pi * 220 * t) + 0.01 * np.random.default_rng(SEED).standard_normal(t.size)).astype(np.float32))
        mel = mel_fn(probe)[None]  # (1, 128, 862)
        label = "cadenza vocoder (shipped)" if args.model == "default" else f"cadenza vocoder ({args.model})"
        label = f"{label}, {voc.precision}"
        peers: list[tuple[str, object, int | None]] = [(label, voc.generator, n_params)]
        cfg = voc.generator.config
        if cfg.mel_iters:  # the fast schedule: the same weights, 8 plain refinement iterations
            fast = load_vocoder(args.model, phase_iters=8, mel_iters=0)
            peers.append((f"{label}, fast schedule (phase_iters 8, mel_iters 0)", fast.generator, n_params))
        if cfg.phase_iters:  # the same weights without the Griffin-Lim refinement: what the network alone costs
            peers.append((f"{label}, phase_iters 0", lambda m: voc.generator.synthesize(*voc.generator.spectrum(m), 0), n_params))
        if voc.precision == "bf16":  # the same model in float32, what a CPU without AMX runs
            voc32 = load_vocoder(args.model, precision="fp32")
            peers.append((label.replace(", bf16", ", fp32"), voc32.generator, n_params))
        vocos = vocos_peer()
        if isinstance(vocos, str):
            print(f"vocos peer skipped: {vocos}")
        else:
            vocos_params = sum(p.numel() for p in vocos.parameters())
            peers.append(("vocos architecture (512/1536/8, random weights), fp32", vocos, vocos_params))
            if voc.precision == "bf16":  # the peer under the same bfloat16 autocast, so precision is equal too

                def vocos_bf16(m: torch.Tensor, model: nn.Module = vocos) -> torch.Tensor:
                    with torch.autocast("cpu", dtype=torch.bfloat16):
                        return model(m)

                peers.append(("vocos architecture (512/1536/8, random weights), bf16 autocast", vocos_bf16, vocos_params))
        hifi = hifigan_peer()
        peers.append(("HiFi-GAN V1 (SpeechT5HifiGan, random weights)", hifi, sum(p.numel() for p in hifi.parameters())))
        peers.append(("Griffin-Lim (32 iterations)", lambda m: griffin_lim(m, voc.mel_config, n_iter=32), None))
        peers.append(("Griffin-Lim (32 iterations, locked start)", lambda m: griffin_lim(m, voc.mel_config, n_iter=32, init="locked"), None))
        peers.append(("Griffin-Lim (32 iterations, locked start, all mel-consistent)",
                      lambda m: griffin_lim(m, voc.mel_config, n_iter=32, init="locked", mel_iters=32), None))
        timings = rtf_interleaved([fn for _, fn, _ in peers], mel, args.repeats)
        for (name, fn, params), (factor, best, samples) in zip(peers, timings):
            rows.append({"model": name, "rtf": round(factor, 1), "seconds": round(best, 4), "params_m": round(params / 1e6, 2) if params else None, "out_samples": samples})
            print(f"{name:60s} {factor:8.1f}x real time ({best * 1000:.1f} ms for {SECONDS:g} s)")
        ours = rows[0]["rtf"]
        for r in rows:
            r["ours_speedup"] = round(ours / r["rtf"], 2)

    audio = heldout_crops(args.manifest, args.clips, args.clip_seconds, seed=SEED, per_work=args.per_work)
    logmel = mel_fn(audio)
    mrstft = MultiResolutionSTFTLoss()
    quality = {}
    with torch.inference_mode():
        candidates = [("cadenza vocoder", voc.decode(logmel)), ("Griffin-Lim (32 it)", griffin_lim(logmel, voc.mel_config, n_iter=32))]
        candidates.append(("Griffin-Lim (32 it, locked start)", griffin_lim(logmel, voc.mel_config, n_iter=32, init="locked")))
        candidates.append(("Griffin-Lim (32 it, locked start, all mel-consistent)",
                           griffin_lim(logmel, voc.mel_config, n_iter=32, init="locked", mel_iters=32)))
        if voc.generator.config.phase_mode == "locked":  # the same weights with other refinement schedules
            spectrum = voc.generator.spectrum(logmel)
            for n, k in ((8, 0), (0, 0), (2, 0), (4, 0), (16, 0), (16, 15), (10, 9), (8, 7)):
                if (n, k) != (voc.generator.config.phase_iters, voc.generator.config.mel_iters):
                    candidates.append((f"cadenza vocoder, phase_iters {n}, mel_iters {k}", voc.generator.synthesize(*spectrum, n, logmel=logmel, mel_iters=k)))
        for name, wave in candidates:
            per_clip = (mel_fn(wave) - logmel).abs().mean(dim=(1, 2))
            quality[name] = {
                "mel_l1": round(float(per_clip.mean()), 4),
                "mel_l1_clips_better_than_gl": None,
                "mrstft": round(float(mrstft(wave, audio)), 4),
                "_per_clip": per_clip,
            }
    ours_q, gl_q = quality["cadenza vocoder"], quality["Griffin-Lim (32 it)"]
    ours_q["mel_l1_clips_better_than_gl"] = int((ours_q["_per_clip"] < gl_q["_per_clip"]).sum())
    # how sure the ratio is: a bootstrap over clips (paired: each resample takes both methods' scores of the same clips)
    ours_clips, gl_clips = ours_q["_per_clip"].double().numpy(), gl_q["_per_clip"].double().numpy()
    picks = np.random.default_rng(SEED).integers(0, len(ours_clips), size=(2000, len(ours_clips)))
    boot = ours_clips[picks].mean(axis=1) / gl_clips[picks].mean(axis=1)
    ratio_ci = [round(float(np.percentile(boot, 2.5)), 3), round(float(np.percentile(boot, 97.5)), 3)]
    for q in quality.values():
        q.pop("_per_clip")
    for name, q in quality.items():
        if name != "cadenza vocoder":
            q.pop("mel_l1_clips_better_than_gl")
    ratios = {"mel_l1_gl_over_ours": round(gl_q["mel_l1"] / ours_q["mel_l1"], 3), "mrstft_gl_over_ours": round(gl_q["mrstft"] / ours_q["mrstft"], 3),
              "mel_l1_ours_over_gl": round(ours_q["mel_l1"] / gl_q["mel_l1"], 3), "mel_l1_ours_over_gl_ci95": ratio_ci}
    for name, q in quality.items():
        print(f"{name:22s} mel L1 {q['mel_l1']:.4f}   MR-STFT {q['mrstft']:.4f}")
    print(f"Griffin-Lim / ours: mel L1 {ratios['mel_l1_gl_over_ours']}x, MR-STFT {ratios['mrstft_gl_over_ours']}x (>1: ours better)")
    print(f"ours / Griffin-Lim mel L1: {ratios['mel_l1_ours_over_gl']} (95 % bootstrap interval over clips {ratio_ci})")

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    result = {
        "config": {
            "audio_seconds": SECONDS, "threads": args.threads, "repeats": args.repeats, "model": args.model, "params": n_params,
            "vocoder_config": {k: voc.config.get(k) for k in ("model", "mel")}, "training": voc.config.get("training"),
            "heldout_manifest": str(args.manifest.relative_to(ROOT) if args.manifest.is_relative_to(ROOT) else args.manifest),
            "heldout_clips": len(audio), "clip_seconds": args.clip_seconds, "per_work": args.per_work,
            "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}",
            "load_average": [round(x, 2) for x in __import__("os").getloadavg()],
        },
        "git_commit": commit, "seed": SEED, "speed": rows, "quality": quality, "quality_ratios": ratios,
    }
    out = ROOT / "benchmarks/results"
    write_json_atomic(out / f"{args.out_name}.json", result)
    md = [
        "# Vocoder benchmark", "",
        f"commit {commit}, seed {SEED}, {args.threads} thread(s), best of {args.repeats} (timed round-robin), load average at start {result['config']['load_average']}", "",
    ]
    if rows:
        md += [
            "Peers have random weights (speed only). vocos: the installed package's own `VocosBackbone` and `ISTFT` "
            "(its `__init__`/`heads.py` need torchaudio, so they are loaded without it; the 6-line ISTFT head is restated). "
            "HiFi-GAN V1: transformers' `SpeechT5HifiGan`, upsample [8, 8, 2, 2], kernels [16, 16, 4, 4], 512 channels, 128 mels.", "",
        ]
        md += ["## Speed (10 s of audio)", "", "| model | params (M) | real-time factor | ms | ours is × faster |", "|---|---|---|---|---|"]
        md += [f"| {r['model']} | {r['params_m'] if r['params_m'] is not None else '-'} | {r['rtf']} | {r['seconds'] * 1000:.1f} | {r['ours_speedup']} |" for r in rows]
        md.append("")
    md += [
        f"## Reconstruction quality ({len(audio)} held-out test clips × {args.clip_seconds:g} s from `{result['config']['heldout_manifest']}`"
        + (f", at most {args.per_work} per work)" if args.per_work else ")"), "",
        "| method | mel L1 | MR-STFT distance |", "|---|---|---|",
    ]
    md += [f"| {n} | {q['mel_l1']} | {q['mrstft']} |" for n, q in quality.items()]
    md += ["", f"Griffin-Lim / ours: mel L1 {ratios['mel_l1_gl_over_ours']}x, MR-STFT {ratios['mrstft_gl_over_ours']}x (above 1: ours is better); "
           f"ours is better on {ours_q['mel_l1_clips_better_than_gl']} of {len(audio)} clips (mel L1). "
           f"Ours / Griffin-Lim in mel L1: {ratios['mel_l1_ours_over_gl']}, 95 % bootstrap interval over clips "
           f"{ratio_ci[0]}–{ratio_ci[1]} (issue #4's goal: at most 0.5).", ""]
    (out / f"{args.out_name}.md").write_text("\n".join(md))
    print(f"wrote {out / args.out_name}.json and .md")


if __name__ == "__main__":
    main()
