"""What bounds the vocoder's mel distance: magnitude and phase taken apart, and the refinement budget.

Mel L1 (the canonical log-mel, natural log) of the re-analysed output against the input
log-mel, on the crops ``benchmarks/vocoder.py`` scores (test split, 16 × 4 s, seed 0), for:

- Griffin-Lim (32 iterations, random start), the peer of the shipping rule;
- fixed mel → linear magnitudes (the pseudo-inverse, and the smooth "mean" map) with the
  **true** phase: the best a magnitude from the mel alone does when the phase is perfect;
- the **true** magnitude with Griffin-Lim's phase, and with the locked phase
  (``cadenza.audio.phase``) plus 0, 2 and 8 refinement iterations: what the phase costs;
- the shipped vocoder's own magnitude with the true phase.

Then refinement schedules of the shipped vocoder (``phase_iters`` fast Griffin-Lim iterations,
the last ``mel_iters`` of them mel-consistent, over-relaxed by ``mel_relax``) against mel L1, MR-STFT and synthesis time on
the **valid** split (24 × 4 s, seed 3), the data the shipped schedule is chosen on: the rule
is the cheapest schedule within half of Griffin-Lim's mel L1 there. And, on test, Griffin-Lim
itself with mel-consistent iterations: the refinement without the network.

    python benchmarks/vocoder_bounds.py [--manifest data/corpus-small/manifest.jsonl]

Writes ``benchmarks/results/vocoder_bounds.json`` and ``.md`` (config, commit, seed).
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from cadenza.audio import MelSpectrogram, griffin_lim  # noqa: E402
from cadenza.audio.mel import _mel_pinv  # noqa: E402
from cadenza.audio.phase import inverse_stft, phase_from_magnitude, refine_phase  # noqa: E402
from cadenza.config import write_json_atomic  # noqa: E402
from cadenza.representations.discriminators import MultiResolutionSTFTLoss  # noqa: E402
from cadenza.representations.vocoder import load_vocoder, mel_to_linear_log_map  # noqa: E402
from cadenza.train.vocoder import heldout_crops  # noqa: E402

SEED = 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", type=Path, default=ROOT / "data/corpus-small/manifest.jsonl")
    ap.add_argument("--model", default="default")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--valid-manifest", type=Path, default=None, help="where the schedules are chosen (default: --manifest's valid split)")
    ap.add_argument("--valid-clips", type=int, default=24)
    ap.add_argument("--per-work", type=int, default=None, help="at most this many valid clips per work")
    ap.add_argument("--out-name", default="vocoder_bounds", help="results file stem under benchmarks/results/")
    args = ap.parse_args()
    valid_manifest = args.valid_manifest or args.manifest
    torch.set_num_threads(args.threads)
    mel = MelSpectrogram()
    c = mel.config
    window = torch.hann_window(c.n_fft)
    voc = load_vocoder(args.model)
    gen = voc.generator

    def stft(wave: torch.Tensor) -> torch.Tensor:
        return torch.stft(wave, c.n_fft, c.hop_length, c.n_fft, window, center=True, return_complex=True)

    def scorer(logmel: torch.Tensor):
        def score(spec: torch.Tensor) -> float:
            wave = inverse_stft(spec, c.n_fft, c.hop_length, window, c.hop_length * (spec.shape[-1] - 1))
            return round(float((mel(wave) - logmel).abs().mean()), 4)
        return score

    rows: list[tuple[str, float]] = []
    with torch.inference_mode():
        audio = heldout_crops(args.manifest, 16, 4.0, seed=SEED)
        logmel = mel(audio)
        score = scorer(logmel)
        true = stft(audio)
        true_mag, true_unit = true.abs(), true / true.abs().clamp(min=1e-8)
        gl = griffin_lim(logmel, c, 32)
        rows.append(("Griffin-Lim, 32 iterations (random start)", round(float((mel(gl) - logmel).abs().mean()), 4)))
        pinv = torch.clamp(_mel_pinv(c) @ torch.exp(logmel), min=0.0)
        weights, offset = mel_to_linear_log_map(c)
        mean_map = torch.exp(weights @ logmel + offset[:, None])
        rows.append(("pseudo-inverse magnitude + true phase", score(pinv * true_unit)))
        rows.append(("smooth 'mean' magnitude + true phase", score(mean_map * true_unit)))
        gl_spec = stft(gl)[..., : true.shape[-1]]
        rows.append(("true magnitude + Griffin-Lim's phase", score(true_mag * gl_spec / gl_spec.abs().clamp(min=1e-8))))
        locked = torch.polar(torch.ones_like(true_mag), phase_from_magnitude(true_mag, c.n_fft, c.hop_length))
        for n in (0, 2, 8):
            rows.append((f"true magnitude + locked phase + {n} iterations", score(refine_phase(true_mag, locked, n, c.n_fft, c.hop_length, window))))
        log_mag, _, _ = gen.spectrum(logmel)
        rows.append(("shipped vocoder's magnitude + true phase", score(torch.exp(log_mag) * true_unit)))

        valid = heldout_crops(valid_manifest, args.valid_clips, 4.0, seed=3, split="valid", per_work=args.per_work)
        vlog = mel(valid)
        spectrum = gen.spectrum(vlog)
        probe = gen.spectrum(vlog[:1, :, :].repeat(1, 1, 4)[..., :862])  # ~10 s of real mel for timing
        probe_mel = vlog[:1, :, :].repeat(1, 1, 4)[..., :862]
        mrstft = MultiResolutionSTFTLoss()
        sweep = []
        grid = [(n, 0, 1.0) for n in (0, 2, 4, 6, 8, 12, 16, 32)]
        grid += [(n, k, 1.0) for n in (6, 8, 9, 10, 12, 16) for k in (n // 2, n - 1, n)]
        grid += [(8, 7, r) for r in (1.4, 1.5, 1.7, 1.8)]  # the over-relaxation, chosen on this split
        grid += [(n, n - 1, 1.6) for n in (6, 7, 8, 9, 10, 12)]
        relax0 = gen.config.mel_relax
        for n, k, relax in grid:
            gen.config = dataclasses.replace(gen.config, mel_relax=relax)
            wave = gen.synthesize(*spectrum, n, logmel=vlog, mel_iters=k)
            gen.synthesize(*probe, n, logmel=probe_mel, mel_iters=k)
            best = float("inf")
            for _ in range(3):
                t0 = time.perf_counter()
                gen.synthesize(*probe, n, logmel=probe_mel, mel_iters=k)
                best = min(best, time.perf_counter() - t0)
            sweep.append({"phase_iters": n, "mel_iters": k, "mel_relax": relax, "mel_l1": round(float((mel(wave) - vlog).abs().mean()), 4),
                          "mrstft": round(float(mrstft(wave, valid[:, : wave.shape[-1]])), 4), "synthesis_ms_10s": round(best * 1000, 1)})
        gen.config = dataclasses.replace(gen.config, mel_relax=relax0)
        vgl = round(float((mel(griffin_lim(vlog, c, 32)) - vlog).abs().mean()), 4)
        # the shipping rule for the refinement: the cheapest schedule within half of Griffin-Lim's mel L1 on valid
        meeting = [r for r in sweep if r["mel_l1"] <= vgl / 2]
        choice = min(meeting, key=lambda r: r["synthesis_ms_10s"]) if meeting else None
        # the refinement without the network: Griffin-Lim from the locked start with mel-consistent iterations (test split)
        for n, k in ((32, 16), (32, 32)):
            rows.append((f"Griffin-Lim, {n} iterations from the locked start, last {k} mel-consistent",
                         round(float((mel(griffin_lim(logmel, c, n, init="locked", mel_iters=k)) - logmel).abs().mean()), 4)))

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    result = {"config": {"manifest": str(args.manifest), "model": args.model, "threads": args.threads, "test_crops": "16 x 4 s, seed 0",
                         "valid_manifest": str(valid_manifest),
                         "valid_crops": f"{len(valid)} x 4 s, seed 3, per work {args.per_work}"}, "git_commit": commit, "seed": SEED,
              "bounds": dict(rows), "phase_iters_valid": sweep, "griffin_lim_valid": vgl, "choice_valid": choice}
    out = ROOT / "benchmarks/results"
    write_json_atomic(out / f"{args.out_name}.json", result)
    md = ["# What bounds the vocoder's mel distance", "", f"commit {commit}; {args.threads} threads; test split 16 × 4 s (seed 0), "
          "the crops of `vocoder.md`; mel L1 of the re-analysed output against the input log-mel.", "",
          "| magnitude + phase | mel L1 |", "|---|---|"]
    md += [f"| {name} | {value} |" for name, value in rows]
    md += ["", f"Half of Griffin-Lim's (issue #4's goal): {rows[0][1] / 2:.4f}.", "",
           f"## Refinement schedules of the shipped vocoder (valid split of `{valid_manifest}`, {len(valid)} × 4 s, seed 3, "
           f"at most {args.per_work or 'all'} clip(s) per work)", "",
           "`phase_iters` fast Griffin-Lim iterations after the network, the last `mel_iters` of them mel-consistent "
           "(`cadenza.audio.phase.MelTarget`). Time: best of 3, ~10 s of real mel, everything after the network.", "",
           "| phase_iters | mel_iters | mel_relax | mel L1 | MR-STFT | synthesis ms for ~10 s |", "|---|---|---|---|---|---|"]
    md += [f"| {r['phase_iters']} | {r['mel_iters']} | {r['mel_relax']} | {r['mel_l1']} | {r['mrstft']} | {r['synthesis_ms_10s']} |" for r in sweep]
    md += [f"| Griffin-Lim, 32 iterations | | | {vgl} | | |", ""]
    md += [f"Half of Griffin-Lim's on valid: {vgl / 2:.4f}. " + (
        f"The cheapest schedule within it: phase_iters {choice['phase_iters']}, mel_iters {choice['mel_iters']}, mel_relax {choice['mel_relax']} "
        f"(mel L1 {choice['mel_l1']}, {choice['synthesis_ms_10s']} ms)." if choice else "No schedule reaches it."), ""]
    (out / f"{args.out_name}.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
