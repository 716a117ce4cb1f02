"""Benchmark: Cadenza's control extraction against the equivalent librosa pipeline.

Both run in this process on the same synthesised 60 s song (pretty_midi renders a melody,
chords and bass with sawtooth/sine oscillators; kick, snare and hi-hat are synthesised here;
a slow ±6 dB swell shapes the level), so the beat and melody ground truth is known.

The librosa pipeline does the same work step by step: the same middle-C Butterworth
high-pass (``scipy.signal.sosfilt``), ``librosa.feature.chroma_stft`` (n_fft 2048, hop 256,
``tuning=0`` as ours; the default with tuning estimation is timed too), argmax;
``librosa.feature.rms`` (2048 / 256) in dB + ``scipy.signal.savgol_filter`` (87, 1);
``librosa.beat.beat_track`` (hop 256). The two pipelines run alternately, ``--repeats``
rounds after one warm-up run each (so numba's JIT compile in librosa is not counted against
it); the table shows each one's best time, and the median per-round ratio is printed too.

Run: ``python benchmarks/controls.py`` → prints a side-by-side table and writes
``benchmarks/results/controls.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import librosa  # noqa: E402
import mir_eval  # noqa: E402
import pretty_midi  # noqa: E402
import scipy.signal  # noqa: E402
import torch  # noqa: E402

from cadenza.audio import FRAME_RATE, SAMPLE_RATE  # noqa: E402
from cadenza.controls.dynamics import SMOOTH_FRAMES, SMOOTH_ORDER  # noqa: E402
from cadenza.controls.extract import extract_controls, extract_controls_batch  # noqa: E402
from cadenza.controls.melody import highpass_sos  # noqa: E402

SR = SAMPLE_RATE
HOP = 256
N_FFT = 2048


# ---------------------------------------------------------------------------- test signal
def synth_song(seconds: float, bpm: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Melody + chords + bass + drums; returns audio, beat times, downbeat flags, melody pitch class per frame."""
    rng = np.random.default_rng(seed)
    beat = 60.0 / bpm
    n_beats = int(seconds / beat)
    pm = pretty_midi.PrettyMIDI(initial_tempo=bpm)
    lead = pretty_midi.Instrument(program=0, name="lead")
    pads = pretty_midi.Instrument(program=0, name="pads")
    bass = pretty_midi.Instrument(program=0, name="bass")
    scale = np.array([0, 2, 4, 5, 7, 9, 11])
    degree, t = 7, 0.0
    while t < n_beats * beat - 1e-9:
        dur = beat * float(rng.choice([0.5, 1.0, 1.0, 2.0]))
        degree = int(np.clip(degree + rng.integers(-2, 3), 0, 13))
        pitch = 60 + 12 * (degree // 7) + int(scale[degree % 7])
        lead.notes.append(pretty_midi.Note(int(rng.integers(80, 110)), pitch, t, min(t + dur * 0.95, n_beats * beat)))
        t += dur
    roots = [0, 9, 5, 7]  # C Am F G, one chord per bar
    for bar in range(n_beats // 4):
        r = roots[bar % 4]
        start, end = bar * 4 * beat, (bar + 1) * 4 * beat
        for iv in (0, 3 if r == 9 else 4, 7):
            pads.notes.append(pretty_midi.Note(45, 48 + (r + iv) % 12, start, end))
        bass.notes.append(pretty_midi.Note(90, 36 + r, start, end - 0.05))
    pm.instruments += [lead, pads, bass]
    n = int(seconds * SR)
    saw = lambda x: scipy.signal.sawtooth(x)  # noqa: E731
    audio = np.zeros(n)
    for inst, wave, gain in ((lead, saw, 0.5), (pads, np.sin, 0.25), (bass, np.sin, 0.6)):
        solo = pretty_midi.PrettyMIDI(initial_tempo=bpm)
        solo.instruments.append(inst)
        y = solo.synthesize(fs=SR, wave=wave)[:n]
        audio[: y.size] += gain * y / (np.abs(y).max() + 1e-9)
    # drums: kick on 1 and 3, snare on 2 and 4, hats on eighths
    beat_times = np.arange(n_beats) * beat
    tt = np.arange(int(0.25 * SR)) / SR
    kick = np.sin(2 * np.pi * (50 + 90 * np.exp(-tt / 0.03)) * tt) * np.exp(-tt / 0.08)
    snare = rng.standard_normal(tt.size) * np.exp(-tt / 0.05) * 0.5
    hat = np.diff(rng.standard_normal(tt.size + 1)) * np.exp(-tt / 0.015) * 0.15
    for i, bt in enumerate(beat_times):
        for off, sample in ((0.0, kick if i % 2 == 0 else snare), (0.5 * beat, hat), (0.0, hat)):
            s = int(round((bt + off) * SR))
            e = min(n, s + sample.size)
            audio[s:e] += sample[: e - s] * (1.3 if i % 4 == 0 and sample is kick else 1.0)
    swell = 10 ** ((6.0 * np.sin(2 * np.pi * np.arange(n) / n)) / 20)
    audio = audio * swell
    audio = (0.5 * audio / np.abs(audio).max()).astype(np.float32)
    downbeat = (np.arange(n_beats) % 4 == 0).astype(float)
    frames = np.arange(n // HOP + 1) / FRAME_RATE
    mel_pc = np.full(frames.size, -1)
    for note in lead.notes:
        sel = (frames >= note.start + 0.05) & (frames < note.end - 0.05)
        mel_pc[sel] = note.pitch % 12
    return audio, beat_times, downbeat, mel_pc


# ---------------------------------------------------------------------------- the librosa pipeline
def librosa_pipeline(audio: np.ndarray, estimate_tuning: bool = False) -> dict:
    hp = scipy.signal.sosfilt(highpass_sos(SR), audio).astype(np.float32)
    chroma = librosa.feature.chroma_stft(y=hp, sr=SR, n_fft=N_FFT, hop_length=HOP, tuning=None if estimate_tuning else 0.0)
    melody = chroma.argmax(axis=0)
    rms = librosa.feature.rms(y=audio, frame_length=N_FFT, hop_length=HOP)[0]
    dyn = scipy.signal.savgol_filter(20 * np.log10(np.maximum(rms, 1e-5)), SMOOTH_FRAMES, SMOOTH_ORDER)
    _, beats = librosa.beat.beat_track(y=audio, sr=SR, hop_length=HOP, units="time")
    return {"melody": melody, "dynamics": dyn, "beats": beats}


def paired_times(ours, theirs, repeats: int) -> tuple[float, float, float]:
    """Best time of each and the median per-round ratio, running the two alternately.

    Alternating means both face the same background load (this machine is shared); one
    warm-up run each first, so numba's JIT compile in librosa is not counted against it.
    """
    ours(), theirs()
    a, b = [], []
    for _ in range(repeats):
        for fn, acc in ((ours, a), (theirs, b)):
            t0 = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - t0)
    return min(a), min(b), float(np.median(np.array(b) / np.array(a)))


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except Exception:
        return "unknown"


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--bpm", type=float, default=112.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=8, help="clips of 6 s in the batch-throughput comparison")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="limit BLAS/OpenMP/torch threads for both pipelines (0: library defaults)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "controls")
    args = ap.parse_args(argv)
    if args.threads > 0:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]

    audio, beat_times, downbeat, mel_pc = synth_song(args.seconds, args.bpm, args.seed)

    ours_t, ref_t, ref_paired = paired_times(lambda: extract_controls(audio), lambda: librosa_pipeline(audio), args.repeats)
    _, ref_tuned_t, ref_tuned_paired = paired_times(
        lambda: extract_controls(audio), lambda: librosa_pipeline(audio, estimate_tuning=True), max(1, args.repeats // 2)
    )

    ours = extract_controls(audio)
    ref = librosa_pipeline(audio)
    T = min(ours.n_frames, ref["melody"].size)
    voiced = ours.melody_mask[:T] > 0
    pc = ours.pitch_classes()[:T]
    melody_agree = float(np.mean(pc[voiced] == ref["melody"][:T][voiced]))
    judged = mel_pc[:T] >= 0
    melody_truth_ours = float(np.mean(pc[judged] == mel_pc[:T][judged]))
    melody_truth_ref = float(np.mean(ref["melody"][:T][judged] == mel_pc[:T][judged]))
    dyn_r = float(np.corrcoef(ours.dynamics[:T], ref["dynamics"][:T])[0, 1])
    beat_f1_ours = float(mir_eval.beat.f_measure(beat_times, ours.beat_times()))
    beat_f1_ref = float(mir_eval.beat.f_measure(beat_times, ref["beats"]))
    beat_f1_between = float(mir_eval.beat.f_measure(ref["beats"], ours.beat_times()))
    down_f1_ours = float(mir_eval.beat.f_measure(beat_times[downbeat > 0], ours.downbeat_times()))

    # batch throughput: B clips of 6 s, one call vs librosa clip by clip
    clip = int(6.0 * SR)
    batch = np.stack([audio[i * clip : (i + 1) * clip] for i in range(min(args.batch, audio.size // clip))])
    batch_t, batch_ref_t, batch_paired = paired_times(
        lambda: extract_controls_batch(batch), lambda: [librosa_pipeline(x) for x in batch], max(1, args.repeats // 2)
    )

    results = {
        "benchmark": "controls",
        "git_commit": git_commit(),
        "seed": args.seed,
        "config": {
            "seconds": args.seconds, "bpm": args.bpm, "repeats": args.repeats, "batch_clips": int(batch.shape[0]),
            "sample_rate": SR, "hop": HOP, "n_fft": N_FFT, "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "thread_limit": args.threads or None,
            "load_average_1min_before_after": [load_before, os.getloadavg()[0]], "python": platform.python_version(), "torch": torch.__version__,
            "librosa": librosa.__version__, "machine": platform.machine(),
        },
        "time_s": {
            "cadenza_60s": ours_t, "librosa_60s": ref_t, "librosa_60s_with_tuning_estimation": ref_tuned_t,
            "cadenza_batch": batch_t, "librosa_batch": batch_ref_t,
        },
        "speedup": {
            "vs_librosa": ref_t / ours_t, "vs_librosa_with_tuning_estimation": ref_tuned_t / ours_t,
            "batch_vs_librosa": batch_ref_t / batch_t,
            "median_paired_vs_librosa": ref_paired, "median_paired_vs_librosa_with_tuning_estimation": ref_tuned_paired,
            "median_paired_batch_vs_librosa": batch_paired,
        },
        "agreement_with_librosa": {
            "melody_frame_agreement_on_voiced": melody_agree, "voiced_fraction": float(voiced.mean()),
            "dynamics_pearson_r": dyn_r, "beat_f1_between": beat_f1_between,
        },
        "against_ground_truth": {
            "melody_accuracy_cadenza": melody_truth_ours, "melody_accuracy_librosa": melody_truth_ref,
            "beat_f1_cadenza": beat_f1_ours, "beat_f1_librosa": beat_f1_ref, "downbeat_f1_cadenza": down_f1_ours,
        },
    }
    rows = [
        ("extraction time, 60 s (s)", ours_t, ref_t, ref_t / ours_t),
        ("  librosa with tuning estimation (s)", ours_t, ref_tuned_t, ref_tuned_t / ours_t),
        (f"batch of {batch.shape[0]} x 6 s (s)", batch_t, batch_ref_t, batch_ref_t / batch_t),
        ("melody acc. vs score melody line", melody_truth_ours, melody_truth_ref, melody_truth_ours / max(melody_truth_ref, 1e-9)),
        ("beat F1 vs true beats (70 ms)", beat_f1_ours, beat_f1_ref, beat_f1_ours / max(beat_f1_ref, 1e-9)),
    ]
    lines = [
        "# Controls extraction benchmark",
        "",
        f"git commit `{results['git_commit']}`, seed {args.seed}, {args.seconds:g} s synthesised song at {args.bpm:g} BPM, "
        f"best of {args.repeats} alternating runs after a warm-up, thread limit {args.threads or 'none'}, {os.cpu_count()} CPUs shared with other jobs "
        f"(1-min load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after: absolute times are noisy, the ratio is measured in one process).",
        "",
        "| measure | cadenza | librosa pipeline | ratio (librosa/cadenza for time, cadenza/librosa otherwise) |",
        "|---|---:|---:|---:|",
        *[f"| {name} | {a:.4f} | {b:.4f} | {r:.2f}x |" for name, a, b, r in rows],
        "",
        f"Median of per-round time ratios (runs alternate, so both see the same load): 60 s {ref_paired:.2f}x, "
        f"with tuning estimation {ref_tuned_paired:.2f}x, batch {batch_paired:.2f}x.",
        "",
        "Agreement with the librosa pipeline:",
        "",
        f"- melody frame agreement (on Cadenza's voiced frames, {voiced.mean():.1%} of frames): {melody_agree:.2%}",
        f"- dynamics Pearson r: {dyn_r:.4f}",
        f"- beat F1 between the two trackers: {beat_f1_between:.3f}",
        f"- Cadenza downbeat F1 vs truth: {down_f1_ours:.3f} (librosa has no downbeats)",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    write_atomic(args.out.with_suffix(".json"), json.dumps(results, indent=2) + "\n")
    write_atomic(args.out.with_suffix(".md"), text)
    return results


if __name__ == "__main__":
    main()
