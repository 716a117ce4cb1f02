"""Generation speed: Cadenza (text + melody + dynamics + rhythm + CFG) vs MusicGen-small, on a CPU.

Each run happens in a fresh subprocess (so peak RSS is that run's alone) limited to
``--threads`` torch threads. Cadenza generates with its default steps, sampler and control
guidance and all three controls (plus one 6 s row with control, dynamics and downbeat guidance off, what they cost); MusicGen is ``MusicgenForConditionalGeneration`` built by hand from the
musicgen-small configuration (T5-base text encoder, 24-layer 1024-d decoder over 4 EnCodec
codebooks at 50 Hz, 32 kHz EnCodec) with **random weights** — no download — generating the same
duration with CFG 3 (its default). Speed does not depend on the weights, quality does, so only
time and memory are compared. Writes ``benchmarks/results/generate.json`` + ``.md``.

    python benchmarks/generate.py --threads 2 --durations 6 60 --musicgen-durations 6
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
MELODY_BAR = "C4:1 E4:1 G4:1 E4:1 F4:1 A4:1 G4:2 "


def run_cadenza(duration: float, threads: int, model: str | None, seed: int, control_cfg: str | None = None) -> dict:
    """``control_cfg`` "0": every guidance on the controls off (control, dynamics and downbeat guidance), text CFG kept."""
    import torch

    torch.set_num_threads(threads)
    from cadenza import Cadenza

    t0 = time.perf_counter()
    gen = Cadenza.load(model)
    gen.text_encoder.encode(["warm up"])  # load MiniLM outside the timed region, as a server would
    load_s = time.perf_counter() - t0
    bars = int(duration * 100 / 60 / 8) + 1  # 8 beats per melody bar at 100 bpm
    def once(run_seed: int) -> tuple[float, np.ndarray, int]:
        t1 = time.perf_counter()
        wave, sr = gen.generate(
            "a cheerful folk tune on fiddle and guitar", melody=MELODY_BAR * bars, dynamics="swell", bpm=100,
            duration=duration, seed=run_seed, cfg=3.0, control_cfg=control_cfg,
            **({"dynamics_guidance": 0.0, "downbeat_cfg": 0.0} if control_cfg == "0" else {}),
        )
        return time.perf_counter() - t1, wave, sr

    # The first call in a process also pays one-time setup (oneDNN kernel selection for these
    # shapes, allocator growth); a server or the studio pays it once. Both are reported.
    cold, _, _ = once(seed + 1)
    wall, wave, sr = once(seed)
    info = gen.last_info
    decoding = getattr(getattr(gen, "generator", None), "sampling", None)
    token_family = hasattr(getattr(gen, "generator", None), "frames_for")
    system = "cadenza" if control_cfg is None else "cadenza-controls-unguided"
    if token_family:  # a token family (AR LM or MAGNeT over codec tokens): steps and sampler do not apply
        system = f"cadenza-{gen.config.get('type', 'tokens')} ({gen.config.get('name', '')})"
    return {
        "system": system, **({"decoding": {k: decoding[k] for k in ("temperature", "top_k", "top_p", "iterations") if k in decoding}} if token_family else {}), "duration_s": duration, "wall_s": round(wall, 2), "cold_wall_s": round(cold, 2), "load_s": round(load_s, 2),
        "rtf": round(wall / duration, 3), "steps": None if token_family else info["steps"], "sampler": None if token_family else info["sampler"], "cfg": info["cfg"],
        "control_cfg": info.get("control_cfg"), "dynamics_guidance": info.get("dynamics_guidance"), "downbeat_cfg": info.get("downbeat_cfg"),
        "vocoder": info["vocoder"], "timings": info["timings"], "model_id": info["model_id"],
        "params_M": round(sum(p.numel() for p in gen.net.parameters()) / 1e6, 2), "samples": int(len(wave)), "sample_rate": sr,
    }


def musicgen_small_random():
    from transformers import EncodecConfig, MusicgenConfig, MusicgenDecoderConfig, MusicgenForConditionalGeneration, T5Config

    text = T5Config(vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12, relative_attention_num_buckets=32)
    audio = EncodecConfig(
        sampling_rate=32000, audio_channels=1, codebook_size=2048, codebook_dim=128, hidden_size=128, num_filters=64,
        upsampling_ratios=[8, 5, 4, 4], target_bandwidths=[2.2], norm_type="weight_norm", normalize=False,
        num_lstm_layers=2, num_residual_layers=1, use_causal_conv=False, pad_mode="reflect", compress=2,
    )
    decoder = MusicgenDecoderConfig(
        vocab_size=2048, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, ffn_dim=4096, num_codebooks=4,
        max_position_embeddings=2048, pad_token_id=2048, bos_token_id=2048,
    )
    config = MusicgenConfig(text_encoder=text.to_dict(), audio_encoder=audio.to_dict(), decoder=decoder.to_dict())
    config.decoder_start_token_id = 2048
    config.pad_token_id = 2048
    model = MusicgenForConditionalGeneration(config).eval()
    return model


def run_musicgen(duration: float, threads: int, seed: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    model = musicgen_small_random()
    load_s = time.perf_counter() - t0
    ids = torch.randint(5, 32000, (1, 12))
    frames = int(round(duration * model.config.audio_encoder.frame_rate))
    with torch.inference_mode():  # a short warm-up call, as Cadenza's timed call is its second one
        model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=True, guidance_scale=3.0)
    t1 = time.perf_counter()
    with torch.inference_mode():
        audio = model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=frames, do_sample=True, guidance_scale=3.0
        )
    wall = time.perf_counter() - t1
    return {
        "system": "musicgen-small (random weights)", "duration_s": duration, "wall_s": round(wall, 2), "load_s": round(load_s, 2),
        "rtf": round(wall / duration, 3), "tokens": frames, "cfg": 3.0,
        "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 1), "samples": int(audio.shape[-1]), "sample_rate": 32000,
    }


def worker(args: argparse.Namespace) -> None:
    if args.worker == "cadenza":
        row = run_cadenza(args.duration, args.threads, args.model, args.seed, args.control_cfg)
    else:
        row = run_musicgen(args.duration, args.threads, args.seed)
    row["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print("RESULT " + json.dumps(row), flush=True)


def spawn(kind: str, duration: float, args: argparse.Namespace, control_cfg: str | None = None, model: str | None = None) -> dict:
    if model is not None:
        args = argparse.Namespace(**{**vars(args), "model_override": model})
    cmd = [sys.executable, __file__, "--worker", kind, "--duration", str(duration), "--threads", str(args.threads), "--seed", str(args.seed)]
    if control_cfg is not None:
        cmd += ["--control-cfg", control_cfg]
    model = getattr(args, "model_override", None) or args.model
    if model:
        cmd += ["--model", model]
    print("running", " ".join(cmd[2:]), flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            row = json.loads(line[7:])
            print(json.dumps(row), flush=True)
            return row
    raise RuntimeError(f"{kind} {duration}s failed:\n{proc.stderr[-3000:]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--durations", type=float, nargs="+", default=[6.0, 60.0])
    ap.add_argument("--musicgen-durations", type=float, nargs="*", default=[6.0])
    ap.add_argument("--model", default=None, help="generator folder (default: shipped)")
    ap.add_argument("--token-models", nargs="*", default=[], help="token model folders (AR LM, MAGNeT) timed beside it at --durations")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--worker", choices=["cadenza", "musicgen"], help=argparse.SUPPRESS)
    ap.add_argument("--duration", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--control-cfg", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return

    load_start = [round(x, 2) for x in os.getloadavg()]
    rows = [spawn("cadenza", d, args) for d in args.durations]
    rows.append(spawn("cadenza", 6.0, args, control_cfg="0"))  # text guidance only: what the guidance on the controls costs
    rows += [spawn("cadenza", d, args, model=folder) for folder in args.token_models for d in args.durations]
    rows += [spawn("musicgen", d, args) for d in args.musicgen_durations]
    by = {(r["system"].split()[0], r["duration_s"]): r for r in rows}
    plain = next((r for r in rows if r["system"] == "cadenza-controls-unguided"), None)
    ratios = {}
    for d in args.musicgen_durations:
        if ("cadenza", d) in by and ("musicgen-small", d) in by:
            c, m = by[("cadenza", d)], by[("musicgen-small", d)]
            ratios[f"{d:g}s"] = {
                "musicgen_over_cadenza_wall": round(m["wall_s"] / c["wall_s"], 2),
                "musicgen_over_cadenza_peak_rss": round(m["peak_rss_mb"] / c["peak_rss_mb"], 2),
            }
    goals = {}
    c6, c60 = by.get(("cadenza", 6.0)), by.get(("cadenza", 60.0))
    if c6:
        goals["6s_wall_le_2s"] = c6["wall_s"] <= 2.0
        goals["peak_rss_le_1.5GB"] = max(r["peak_rss_mb"] for r in rows if r["system"] == "cadenza") <= 1536
    if "6s" in ratios:
        goals["ge_20x_faster_than_musicgen_small"] = ratios["6s"]["musicgen_over_cadenza_wall"] >= 20
    if c6 and plain:
        ratios["control_dynamics_downbeat_guidance_cost_6s"] = round(c6["wall_s"] / plain["wall_s"], 2)
    for r in rows:  # each token model against the diffusion model at the same duration
        if r.get("decoding") is not None and ("cadenza", r["duration_s"]) in by:
            ratios[f"{r['system']} over cadenza wall, {r['duration_s']:g}s"] = round(r["wall_s"] / by[("cadenza", r["duration_s"])]["wall_s"], 2)
    if c6 and c60:
        ratios["cadenza_60s_over_6s_wall"] = round(c60["wall_s"] / c6["wall_s"], 2)
        goals["60s_cost_le_10.5x_6s"] = ratios["cadenza_60s_over_6s_wall"] <= 10.5
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    result = {
        "benchmark": "generate", "config": {k: v for k, v in vars(args).items() if k not in ("worker", "duration")},
        "git_commit": commit, "seed": args.seed, "machine": platform.machine(), "python": platform.python_version(),
        "rows": rows, "ratios": ratios, "load_average_at_start": load_start, "goals": goals,
        "notes": "MusicGen has random weights (speed only). Cadenza: text + melody + dynamics + rhythm, CFG 3, default steps/sampler/control, dynamics and downbeat guidance, "
        "vocoder included. Shared 2-core machine: other jobs may have been running.",
    }
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from cadenza.config import write_json_atomic

    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json_atomic(RESULTS / "generate.json", result)
    lines = [
        "# Generation speed on CPU: Cadenza vs MusicGen-small (random weights)", "",
        f"{args.threads} torch threads; commit {commit}; seed {args.seed}; load average at start {load_start}. "
        "Wall time excludes model loading; Cadenza's is its second call in the process (the first, with one-time "
        "kernel setup, is in the JSON as cold_wall_s and in the settings column).", "",
        "| system | duration (s) | wall (s) | real-time factor | peak RSS (MB) | params (M) | settings |", "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        settings = (
            f"{r.get('steps', '')} steps {r.get('sampler', '')}, cfg {r['cfg']}, control cfg {r.get('control_cfg')}, dynamics guidance {r.get('dynamics_guidance')}, "
            f"downbeat cfg {r.get('downbeat_cfg')}, {r.get('vocoder', 'EnCodec')}; first call {r.get('cold_wall_s')} s"
            if r["system"].startswith("cadenza") and r.get("decoding") is None
            else f"decoding {r['decoding']}, cfg {r['cfg']}, control cfg {r.get('control_cfg')}, codec {r.get('vocoder')}; first call {r.get('cold_wall_s')} s"
            if r.get("decoding") is not None else f"{r['tokens']} tokens × 4 codebooks, cfg {r['cfg']}"
        )
        lines.append(f"| {r['system']} | {r['duration_s']:g} | {r['wall_s']} | {r['rtf']} | {r['peak_rss_mb']} | {r['params_M']} | {settings} |")
    lines += ["", "Ratios: " + json.dumps(ratios), "", "Goals met: " + json.dumps(goals), "", result["notes"]]
    (RESULTS / "generate.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
