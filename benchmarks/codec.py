"""Codec benchmark: bitrate, reconstruction quality and speed, against the mel vocoder, Griffin-Lim, DAC and EnCodec.

    python benchmarks/codec.py --model runs/codec-small/best --manifest data/corpus-small/manifest.jsonl

Quality (held-out TEST clips, one per work, scored once; nothing was chosen on them): mel L1
(the canonical log-mel, natural log), the multi-resolution STFT distance (spectral
convergence + log-magnitude L1 at n_fft 512/1024/2048, the vocoder benchmark's) and melody
agreement (the melody control extracted from output and clip) between each clip and its reconstruction, for the codec at several ``n_q`` (its bitrate beside it), the
shipped mel vocoder on the clip's true mel (an upper bound for a codec that decodes through
it) and Griffin-Lim (32 iterations) on the true mel.

Speed: real-time factor of encode + decode of 10 s of audio on 2 threads (best of N, timed
round-robin with ``benchmarks/vocoder.py``'s ``rtf_interleaved``) for the codec and, with
random weights, the published architectures of DAC (44.1 kHz model: encoder 64 [2, 4, 8, 8],
decoder 1536 [8, 8, 4, 2], 9 codebooks of 1024, 7.75 kbps) and EnCodec (24 kHz SEANet, causal,
weight norm, 8 codebooks of 1024: 6 kbps), each at its own sample rate. Both packages import
torchaudio (EnCodec directly, DAC through audiotools) at their package roots, so their model
modules are loaded from the installed packages (``pip install --no-deps descript-audio-codec
encodec``) as bare packages, with ``audiotools`` stood in for by the two names DAC's modules
refer to at import (it is never called). Writes ``benchmarks/results/codec.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import platform
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.vocoder import SECONDS, rtf_interleaved  # noqa: E402
from cadenza.audio import MelSpectrogram, griffin_lim  # noqa: E402
from cadenza.config import write_json_atomic  # noqa: E402
from cadenza.representations.codec import load_codec  # noqa: E402
from cadenza.representations.discriminators import MultiResolutionSTFTLoss  # noqa: E402
from cadenza.representations.vocoder import load_vocoder  # noqa: E402
from cadenza.train.vocoder import heldout_crops  # noqa: E402

SEED = 0
GOAL_KBPS, GOAL_RATIO, GOAL_RTF = 6.0, 1.3, 50.0


def bare_package(name: str) -> str | None:
    """Register ``name`` (and its installed sub-packages on demand) without running its ``__init__``; None if not installed."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        return None
    stub = types.ModuleType(name)
    stub.__path__ = [str(Path(spec.origin).parent)]
    sys.modules[name] = stub
    return stub.__path__[0]


def dac_peer() -> tuple[object, int, int] | str:
    """(encode+decode function, sample rate, params) of DAC's 44.1 kHz architecture, or why not."""
    where = bare_package("dac")
    if where is None:
        return "descript-audio-codec not installed (pip install --no-deps descript-audio-codec)"
    for sub in ("nn", "model"):
        pkg = types.ModuleType(f"dac.{sub}")
        pkg.__path__ = [str(Path(where) / sub)]
        sys.modules[f"dac.{sub}"] = pkg
    if "audiotools" not in sys.modules:  # the names dac.model.{dac,base} import; the timed path never touches them
        audiotools = types.ModuleType("audiotools")
        audiotools.AudioSignal = type("AudioSignal", (), {})
        ml = types.ModuleType("audiotools.ml")
        ml.BaseModel = nn.Module
        audiotools.ml = ml
        sys.modules.update({"audiotools": audiotools, "audiotools.ml": ml})
    from dac.model.dac import DAC

    model = DAC().eval()  # the 44.1 kHz defaults

    def run(x: torch.Tensor) -> torch.Tensor:
        z = model.encoder(x)
        _, codes, *_ = model.quantizer(z)
        return model.decoder(model.quantizer.from_codes(codes)[0])

    return run, 44100, sum(p.numel() for p in model.parameters())


def encodec_peer() -> tuple[object, int, int] | str:
    """(encode+decode function, sample rate, params) of EnCodec's 24 kHz architecture at 6 kbps, or why not."""
    if bare_package("encodec") is None:
        return "encodec not installed (pip install --no-deps encodec)"
    from encodec import modules, quantization

    encoder = modules.SEANetEncoder(channels=1, norm="weight_norm", causal=True).eval()
    decoder = modules.SEANetDecoder(channels=1, norm="weight_norm", causal=True).eval()
    frame_rate = math.ceil(24000 / encoder.hop_length)
    quantizer = quantization.ResidualVectorQuantizer(dimension=encoder.dimension, n_q=8, bins=1024).eval()

    def run(x: torch.Tensor) -> torch.Tensor:
        codes = quantizer.encode(encoder(x), frame_rate, 6.0)
        return decoder(quantizer.decode(codes))

    return run, 24000, sum(p.numel() for m in (encoder, decoder, quantizer) for p in m.parameters())


def melody_agreement(melody, given: list, wave: torch.Tensor, sample_rate: int) -> float:
    """Mean melody accuracy (the project's chroma-melody control, extracted) of each output against its clip's: is the tune still there?"""
    scores = [melody.score(g, melody.extract(w, sample_rate))["melody_accuracy"] for g, w in zip(given, wave.numpy())]
    return float(np.mean(scores))


def quality_rows(codec, voc, audio: torch.Tensor, n_qs: list[int], label: str = "cadenza codec", references: bool = True) -> list[dict]:
    """Mel L1, MR-STFT and melody agreement per method on (B, N) clips (per-clip mel L1 kept for the ratio's interval).

    ``label`` names the codec's rows; ``references`` adds the vocoder and Griffin-Lim on the true mel.
    """
    from cadenza.controls.registry import control

    mel_fn, mrstft, melody = MelSpectrogram(voc.mel_config), MultiResolutionSTFTLoss(), control("melody")
    given = [melody.extract(a, codec.sample_rate) for a in audio.numpy()]
    logmel = mel_fn(audio)
    candidates: list[tuple[str, float | None, torch.Tensor]] = []
    with torch.inference_mode():
        for k in n_qs:
            candidates.append((f"{label}, n_q {k}", codec.bitrate(k), codec.decode(codec.encode(audio, n_q=k), n_samples=audio.shape[-1])))
        if references:
            candidates.append(("cadenza mel vocoder on the true mel (shipped)", None, voc.decode(logmel)))
            candidates.append(("Griffin-Lim (32 it) on the true mel", None, griffin_lim(logmel, voc.mel_config, n_iter=32)))
        rows = []
        for name, bps, wave in candidates:
            n = min(wave.shape[-1], audio.shape[-1])
            per_clip = (mel_fn(wave[..., :n]) - mel_fn(audio[..., :n])).abs().mean(dim=(1, 2))
            rows.append({"method": name, "kbps": round(bps / 1000, 3) if bps else None, "mel_l1": round(float(per_clip.mean()), 4),
                         "mrstft": round(float(mrstft(wave[..., :n], audio[..., :n])), 4),
                         "melody_accuracy": round(melody_agreement(melody, given, wave, codec.sample_rate), 3), "_per_clip": per_clip.double().numpy()})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default", help="codec folder ('default': the shipped one)")
    parser.add_argument("--manifest", type=Path, default=ROOT / "data/corpus-small/manifest.jsonl")
    parser.add_argument("--split", default="test")
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--clip-seconds", type=float, default=5.0)
    parser.add_argument("--per-work", type=int, default=1)
    parser.add_argument("--n-q", default="1,2,4,8,12", help="comma-separated codebook counts to score (those above the codec's are dropped)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--previous", default=None, help="another codec folder scored on the same clips (e.g. the one --model replaces), with paired ratios")
    parser.add_argument("--out-name", default="codec")
    args = parser.parse_args()
    torch.manual_seed(SEED)
    torch.set_num_threads(args.threads)
    codec = load_codec(args.model)
    voc = load_vocoder("default")
    n_qs = [k for k in (int(s) for s in args.n_q.split(",")) if 1 <= k <= codec.codebooks]
    load0 = [round(x, 2) for x in os.getloadavg()]

    speed: list[dict] = []
    if not args.skip_speed:
        t = np.arange(int(SECONDS * 22050)) / 22050
        probe = torch.from_numpy((0.3 * np.sin(2 * np.pi * 220 * t) + 0.01 * np.random.default_rng(SEED).standard_normal(t.size)).astype(np.float32))[None]
        params = sum(p.numel() for p in codec.net.parameters())
        peers = [(f"cadenza codec ({codec.codebooks} codebooks, {codec.bitrate() / 1000:.2f} kbps; vocoder {codec.vocoder.precision})",
                  lambda: codec.decode(codec.encode(probe)), params, sum(p.numel() for p in codec.vocoder.generator.parameters()))]
        for k in sorted({min(n_qs), 8} & set(n_qs)):
            if k != codec.codebooks:
                peers.append((f"cadenza codec, n_q {k} ({codec.bitrate(k) / 1000:.2f} kbps)", lambda k=k: codec.decode(codec.encode(probe, n_q=k)), params, None))
        for name, build in (("DAC 44.1 kHz architecture (9 × 1024, 7.75 kbps; random weights)", dac_peer),
                            ("EnCodec 24 kHz architecture (8 × 1024, 6 kbps; random weights)", encodec_peer)):
            peer = build()
            if isinstance(peer, str):
                print(f"{name}: skipped, {peer}")
                speed.append({"model": name, "skipped": peer})
                continue
            fn, sr, n = peer
            x = torch.from_numpy(np.random.default_rng(SEED).standard_normal(int(SECONDS * sr)).astype(np.float32) * 0.1)[None, None]
            peers.append((name, lambda fn=fn, x=x: fn(x), n, None))
        timings = rtf_interleaved([lambda _, f=f: f() for _, f, _, _ in peers], probe, args.repeats)
        for (name, _, n, voc_params), (factor, best, _) in zip(peers, timings):
            row = {"model": name, "rtf": round(factor, 1), "seconds": round(best, 4), "params_m": round(n / 1e6, 2)}
            if voc_params:
                row["vocoder_params_m"] = round(voc_params / 1e6, 2)
            speed.append(row)
            print(f"{name:80s} {factor:7.1f}x real time ({best * 1000:.0f} ms for {SECONDS:g} s)")

    audio = heldout_crops(args.manifest, args.clips, args.clip_seconds, seed=SEED, split=args.split, per_work=args.per_work)
    rows = quality_rows(codec, voc, audio, n_qs)
    paired = []
    if args.previous:
        previous = load_codec(args.previous)
        old = quality_rows(previous, voc, audio, n_qs, label=f"previous codec `{previous.model_id}`", references=False)
        picks = np.random.default_rng(SEED).integers(0, len(audio), size=(2000, len(audio)))
        for k, new_row, old_row in zip(n_qs, rows, old):
            boot = new_row["_per_clip"][picks].mean(axis=1) / old_row["_per_clip"][picks].mean(axis=1)
            paired.append({"n_q": k, "ratio": round(new_row["mel_l1"] / old_row["mel_l1"], 3),
                           "ci95": [round(float(np.percentile(boot, 2.5)), 3), round(float(np.percentile(boot, 97.5)), 3)]})
        rows = rows[: len(n_qs)] + old + rows[len(n_qs):]
    vocoder_row = next(r for r in rows if r["method"].startswith("cadenza mel vocoder"))
    within = [r for r in rows if r["kbps"] is not None and r["kbps"] <= GOAL_KBPS and r["method"].startswith("cadenza codec")]
    best = min(within, key=lambda r: r["mel_l1"]) if within else None
    ratio = ci = None
    if best is not None:
        ratio = round(best["mel_l1"] / vocoder_row["mel_l1"], 3)
        picks = np.random.default_rng(SEED).integers(0, len(audio), size=(2000, len(audio)))
        boot = best["_per_clip"][picks].mean(axis=1) / vocoder_row["_per_clip"][picks].mean(axis=1)
        ci = [round(float(np.percentile(boot, 2.5)), 3), round(float(np.percentile(boot, 97.5)), 3)]
    for r in rows:
        r.pop("_per_clip")
        print(f"{r['method']:50s} {r['kbps'] or '':>6} kbps  mel L1 {r['mel_l1']:.4f}  MR-STFT {r['mrstft']:.4f}  melody {r['melody_accuracy']:.3f}")
    ours_rtf = speed[0]["rtf"] if speed else None
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    manifest = str(args.manifest.relative_to(ROOT) if args.manifest.is_relative_to(ROOT) else args.manifest)
    result = {
        "config": {"model": args.model, "model_id": codec.model_id, "codebooks": codec.codebooks, "cardinality": codec.cardinality,
                   "frame_rate": codec.frame_rate, "training": codec.config.get("training"), "threads": args.threads, "repeats": args.repeats,
                   "manifest": manifest, "split": args.split, "clips": len(audio), "clip_seconds": args.clip_seconds, "per_work": args.per_work,
                   "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}", "load_average": load0},
        "git_commit": commit, "seed": SEED, "speed": speed, "quality": rows, "previous": args.previous, "paired_with_previous": paired,
        "goal": {"best_within_6kbps": best and best["method"], "mel_l1_over_vocoder": ratio, "ci95": ci, "ratio_goal": GOAL_RATIO,
                 "rtf": ours_rtf, "rtf_goal": GOAL_RTF},
    }
    out = ROOT / "benchmarks/results"
    write_json_atomic(out / f"{args.out_name}.json", result)
    md = ["# Codec benchmark", "",
          f"commit {commit}, codec `{codec.model_id}` ({args.model}), seed {SEED}, {args.threads} thread(s), load average at start {load0} "
          "(a machine shared with other jobs: speed figures are a floor)", ""]
    md += [f"## Reconstruction ({len(audio)} held-out {args.split} clips × {args.clip_seconds:g} s, at most {args.per_work} per work, from `{manifest}`)", "",
           "| method | kbps | mel L1 | MR-STFT | melody agreement |", "|---|---|---|---|---|"]
    md += [f"| {r['method']} | {r['kbps'] if r['kbps'] is not None else '-'} | {r['mel_l1']} | {r['mrstft']} | {r['melody_accuracy']} |" for r in rows]
    md += ["", "Melody agreement: the melody control (chroma argmax per frame) extracted from the output, scored against the one "
           "extracted from the clip (`cadenza.controls.registry.control('melody').score`): 1.0 = the same tune frame by frame."]
    if paired:
        md += ["", f"Against the previous codec on the same clips (mel L1 ratio, this / previous; 95 % bootstrap interval over clips): "
               + "; ".join(f"n_q {p['n_q']} {p['ratio']} [{p['ci95'][0]}, {p['ci95'][1]}]" for p in paired) + "."]
    if best is not None:
        md += ["", f"Goal (issue #19): at ≤ {GOAL_KBPS:g} kbps, mel L1 within {GOAL_RATIO}x of the mel vocoder's. Best at ≤ {GOAL_KBPS:g} kbps: "
               f"{best['method']} ({best['kbps']} kbps), {ratio}x the vocoder's mel L1 (95 % bootstrap interval over clips {ci[0]}–{ci[1]}): "
               + ("**met**." if ratio <= GOAL_RATIO else "**not met**.")]
    if speed:
        md += ["", f"## Speed: encode + decode of {SECONDS:g} s of audio, best of {args.repeats}, timed round-robin", "",
               "Peers have random weights (speed only), each at its own sample rate; see the script's docstring for how they are built.", "",
               "| model | params (M) | real-time factor | ms |", "|---|---|---|---|"]
        for r in speed:
            if "skipped" in r:
                md.append(f"| {r['model']} | - | skipped: {r['skipped']} | - |")
            else:
                extra = f" + {r['vocoder_params_m']} vocoder" if r.get("vocoder_params_m") else ""
                md.append(f"| {r['model']} | {r['params_m']}{extra} | {r['rtf']} | {r['seconds'] * 1000:.0f} |")
        md += ["", f"Goal: ≥ {GOAL_RTF:g}x real time on 2 threads: {ours_rtf}x, " + ("**met**." if ours_rtf >= GOAL_RTF else "**not met**.")]
    (out / f"{args.out_name}.md").write_text("\n".join(md) + "\n")
    print(f"wrote {out / args.out_name}.json and .md")


if __name__ == "__main__":
    main()
