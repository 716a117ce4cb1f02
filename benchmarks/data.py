"""Benchmark: corpus build throughput, and how far audio-extracted controls are from the score's.

1. Throughput: builds a slice of the ``small`` preset (``--works`` works, FluidR3_GM) into a
   temporary folder with one worker and reports seconds of audio per second of wall time,
   beside the same slice rendered with TimGM6mb. The render stage alone is also timed
   against ``pretty_midi``'s own sine-wave ``synthesize`` on the same arrangements, and the
   score-to-notes step (tied notes merged) against music21's ``stripTies``, which it replaced.
2. Agreement over the clips of a data set (``--data``, default: the slice just built):
   frame pitch-class agreement between the score melody (top voice) and the extracted melody
   on frames voiced in both, and beat / downbeat F1 (mir_eval, ±70 ms) of the extracted beats
   against the score's beat grid. The controls are extracted afresh from each clip's audio by
   the current default extractor (the shipped beat tracker), and the ``*.extracted.npz`` stored
   in the data set are scored beside them: those were made by whatever extractor ran at build
   time, which is what a model trained on the set saw. The peer is the same comparison with
   every score paired to another clip's extraction (chance level for this data).

Run: ``python benchmarks/data.py [--works 12] [--data data/corpus-small]`` → prints a table
and writes ``benchmarks/results/data.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import mir_eval  # noqa: E402
import torch  # noqa: E402

from cadenza.audio.format import FRAME_RATE, SAMPLE_RATE  # noqa: E402
from cadenza.audio.io import load_audio  # noqa: E402
from cadenza.config import write_json_atomic  # noqa: E402
from cadenza.controls.base import ControlSet  # noqa: E402
from cadenza.controls.extract import extract_controls  # noqa: E402
from cadenza.data.arrange import arrange  # noqa: E402
from cadenza.data.build import BuildConfig, build, work_rng  # noqa: E402
from cadenza.data.corpus import load_work, select_works  # noqa: E402
from cadenza.data.manifest import atomic_write_text, read_manifest  # noqa: E402
from cadenza.data.render import render_midi, resolve_soundfont  # noqa: E402
from cadenza.data.score import score_data  # noqa: E402


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except Exception:
        return "unknown"


def throughput(works: int, seed: int, soundfont: str, tmp: Path) -> dict:
    """Wall time and audio seconds for building ``works`` works of the small preset."""
    # warm-up: imports, music21's first parse and the SoundFont load are not counted
    build(BuildConfig(out=str(tmp / f"warm-{soundfont}"), preset="tiny", seed=seed, workers=1, limit_works=1, soundfont=soundfont))
    out = tmp / f"slice-{soundfont}"
    cfg = BuildConfig(out=str(out), preset="small", seed=seed, workers=1, limit_works=works, soundfont=soundfont)
    t0, c0 = time.perf_counter(), time.process_time()
    summary = build(cfg)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    audio_s = summary["hours"] * 3600
    return {"soundfont": soundfont, "works": works, "clips": summary["clips"], "audio_seconds": audio_s,
            "wall_seconds": wall, "cpu_seconds": cpu, "audio_per_wall": audio_s / wall, "audio_per_cpu": audio_s / cpu,
            "folder": str(out)}


def stripties_notes(part) -> np.ndarray:
    """The peer: the notes as ``score._part_notes`` made them before, through music21's ``stripTies``."""
    from music21 import chord, note

    rows = []
    for el in part.stripTies(inPlace=False).flatten().notes:
        dur = float(el.quarterLength)
        if dur <= 0:
            continue
        pitches = [el.pitch.midi] if isinstance(el, note.Note) else [p.midi for p in el.pitches] if isinstance(el, chord.Chord) else []
        rows.extend((float(el.offset), dur, int(p)) for p in pitches)
    arr = np.array(rows, dtype=np.float64).reshape(-1, 3)
    return arr[np.lexsort((arr[:, 2], arr[:, 0]))] if len(arr) else arr


def tie_merge_speed(works: int, seed: int) -> dict:
    """Score → notes for the slice's works: Cadenza's read-only tie merge vs music21's stripTies.

    Both give (onset, duration, pitch) rows per part; ``identical_parts`` counts parts where
    the two arrays are equal (it must be all of them).
    """
    from cadenza.data.score import _part_notes

    parts, same, t_new, t_old = 0, 0, 0.0, 0.0
    for ref in select_works(works, seed):
        try:
            score = load_work(ref)
        except Exception:
            continue
        for part in score.parts:
            t0 = time.perf_counter()
            ours = _part_notes(part)
            t1 = time.perf_counter()
            theirs = stripties_notes(part)
            t2 = time.perf_counter()
            t_new, t_old = t_new + t1 - t0, t_old + t2 - t1
            parts += 1
            same += int(ours.shape == theirs.shape and np.array_equal(ours, theirs))
    return {"works": works, "parts": parts, "identical_parts": same, "cadenza_seconds": t_new, "stripties_seconds": t_old,
            "speedup": t_old / max(t_new, 1e-9)}


def render_speed(works: int, seed: int, repeats: int = 2) -> dict:
    """Render stage only: TinySoundFont (FluidR3 and TimGM6mb) vs pretty_midi.synthesize (sines)."""
    arrangements = []
    for ref in select_works(works, seed):
        try:
            sd = score_data(load_work(ref))
        except Exception:
            continue
        arrangements.append(arrange(sd, work_rng(seed, ref.work_id, 0), 36.5))
    total = sum(a.duration + 1.0 for a in arrangements)
    res = {"arrangements": len(arrangements), "audio_seconds": total}
    fonts = {"tinysoundfont_fluidr3": resolve_soundfont("fluidr3", True)[0], "tinysoundfont_timgm6mb": resolve_soundfont("timgm6mb", False)[0]}
    for name, path in fonts.items():
        render_midi(arrangements[0].midi, path, 1.0)  # load the SoundFont outside the timing
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            for a in arrangements:
                render_midi(a.midi, path, a.duration)
            best = min(best, time.perf_counter() - t0)
        res[name] = total / best
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for a in arrangements:
            a.midi.synthesize(fs=SAMPLE_RATE)
        best = min(best, time.perf_counter() - t0)
    res["pretty_midi_synthesize"] = total / best
    return res


def agreement(folder: Path, max_clips: int | None, seed: int) -> dict:
    """Score vs extracted controls: melody agreement and beat/downbeat F1, plus a mismatched-pair peer."""
    rows = [r for r in read_manifest(folder) if r["controls"].get("score") and r["controls"].get("extracted")]
    if max_clips and len(rows) > max_clips:
        pick = np.random.default_rng(seed).choice(len(rows), max_clips, replace=False)
        rows = [rows[i] for i in sorted(pick)]
    score = [ControlSet.load(folder / r["controls"]["score"]) for r in rows]
    stored = [ControlSet.load(folder / r["controls"]["extracted"]) for r in rows]
    started = time.perf_counter()
    extracted = [extract_controls(load_audio(folder / r["path"]), SAMPLE_RATE) for r in rows]
    extract_seconds = time.perf_counter() - started
    audio_seconds = sum(cs.n_frames for cs in extracted) / FRAME_RATE

    def compare(pairs: list[tuple[ControlSet, ControlSet]]) -> dict:
        agree = voiced = 0
        per_clip, beat_f, down_f = [], [], []
        for s, e in pairs:
            ps, pe = s.pitch_classes(), e.pitch_classes()
            both = (ps >= 0) & (pe >= 0)
            agree += int((ps[both] == pe[both]).sum())
            voiced += int(both.sum())
            if both.any():
                per_clip.append(float((ps[both] == pe[both]).mean()))
            beat_f.append(mir_eval.beat.f_measure(s.beat_times(), e.beat_times(), 0.07))
            if len(s.downbeat_times()):
                down_f.append(mir_eval.beat.f_measure(s.downbeat_times(), e.downbeat_times(), 0.07))
        return {
            "melody_agreement_frames": agree / max(voiced, 1), "melody_agreement_clip_mean": float(np.mean(per_clip)),
            "beat_f1": float(np.mean(beat_f)), "downbeat_f1": float(np.mean(down_f)) if down_f else None,
        }

    matched = compare(list(zip(score, extracted)))
    matched_stored = compare(list(zip(score, stored)))
    shifted = compare(list(zip(score, extracted[1:] + extracted[:1])))
    by_kind: dict[str, dict] = {}
    for kind, sel in (("generated accompaniment", lambda r: r.get("accompaniment") is not None),
                      ("parts as written", lambda r: r.get("accompaniment") is None),
                      ("with drums", lambda r: bool(r.get("drums"))), ("without drums", lambda r: not r.get("drums")),
                      # the shipped beat tracker learnt from corpus train splits: held-out works are the fair figure
                      ("train split", lambda r: r.get("split") == "train"),
                      ("held-out splits (valid, test)", lambda r: r.get("split") in ("valid", "test"))):
        idx = [i for i, r in enumerate(rows) if sel(r)]
        if idx:
            by_kind[kind] = {"clips": len(idx), **compare([(score[i], extracted[i]) for i in idx])}
    return {"folder": str(folder), "clips": len(rows), "matched": matched, "stored": matched_stored, "mismatched_peer": shifted,
            "by_kind": by_kind, "extract_x_real_time": audio_seconds / extract_seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--works", type=int, default=12, help="works of the small preset to build for throughput")
    ap.add_argument("--data", type=Path, default=None, help="data set for the agreement (default: the slice built)")
    ap.add_argument("--max-clips", type=int, default=None, help="agreement on a random subset of this many clips")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")  # music21's repaired-bar notes and mir_eval's empty-beat notes

    with tempfile.TemporaryDirectory() as tmp:
        fluid = throughput(args.works, args.seed, "fluidr3", Path(tmp))
        tim = throughput(args.works, args.seed, "timgm6mb", Path(tmp))
        render = render_speed(min(args.works, 8), args.seed)
        ties = tie_merge_speed(args.works, args.seed)
        agree = agreement(args.data or Path(fluid["folder"]), args.max_clips, args.seed)

    result = {
        "benchmark": "data", "git_commit": git_commit(), "seed": args.seed, "python": platform.python_version(),
        "torch_threads": 1, "cpu": platform.processor() or platform.machine(),
        "config": {"works": args.works, "preset": "small", "workers": 1, "clip_seconds": 6.0, "data": str(args.data) if args.data else None},
        "throughput": {"fluidr3": fluid, "timgm6mb": tim}, "render_stage": render, "tie_merge": ties, "agreement": agree,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out / "data.json", result)

    m, st, p = agree["matched"], agree["stored"], agree["mismatched_peer"]
    lines = [
        "# Data benchmark", "",
        f"commit `{result['git_commit'][:10]}`, seed {args.seed}, 1 worker, torch 1 thread, machine shared with other jobs", "",
        "## Build throughput (seconds of audio per second of wall time, small-preset slice)", "",
        "| build | works | clips | audio s | wall s | audio/wall | CPU s | audio/CPU | ratio (audio/CPU) |",
        "|---|---|---|---|---|---|---|---|---|",
        *[f"| {name} | {r['works']} | {r['clips']} | {r['audio_seconds']:.0f} | {r['wall_seconds']:.1f} | {r['audio_per_wall']:.1f} | "
          f"{r['cpu_seconds']:.1f} | {r['audio_per_cpu']:.1f} | {r['audio_per_cpu'] / fluid['audio_per_cpu']:.2f} |"
          for name, r in (("FluidR3_GM (small default)", fluid), ("TimGM6mb", tim))],
        "", f"## Render stage only ({render['arrangements']} arrangements, {render['audio_seconds']:.0f} s of audio; x real time)", "",
        "| renderer | x real time | ratio to TinySoundFont+FluidR3 |", "|---|---|---|",
        *[f"| {k} | {render[k]:.0f} | {render[k] / render['tinysoundfont_fluidr3']:.2f} |"
          for k in ("tinysoundfont_fluidr3", "tinysoundfont_timgm6mb", "pretty_midi_synthesize")],
        "", f"## Score to notes ({ties['works']} works, {ties['parts']} parts): tied notes merged", "",
        "| method | seconds | ratio to Cadenza | parts identical to stripTies |", "|---|---|---|---|",
        f"| Cadenza (`score._part_notes`, read-only tie merge) | {ties['cadenza_seconds']:.2f} | 1.00 | {ties['identical_parts']} / {ties['parts']} |",
        f"| music21 `stripTies` (the previous path) | {ties['stripties_seconds']:.2f} | {ties['speedup']:.1f} | — |",
        "", f"## Score vs audio-extracted controls ({agree['clips']} clips of {agree['folder']})", "",
        f"Extracted afresh by the current default extractor ({agree['extract_x_real_time']:.0f}x real time, one clip at a time, "
        "1 thread); `stored` = the set's own `*.extracted.npz`, made at build time.", "",
        "| metric | score vs own audio | stored | peer: score vs another clip | ratio own / peer |", "|---|---|---|---|---|",
        *[f"| {label} | {m[k]:.3f} | {st[k]:.3f} | {p[k]:.3f} | {m[k] / max(p[k], 1e-9):.2f} |"
          for label, k in (("melody agreement (frames voiced in both)", "melody_agreement_frames"),
                           ("beat F1 (70 ms)", "beat_f1"), ("downbeat F1 (70 ms)", "downbeat_f1"))],
        "", "Current extractor, by kind of clip:", "",
        "| subset | clips | melody agreement | beat F1 | downbeat F1 |", "|---|---|---|---|---|",
        *[f"| {k} | {v['clips']} | {v['melody_agreement_frames']:.3f} | {v['beat_f1']:.3f} | {v['downbeat_f1'] if v['downbeat_f1'] is None else round(v['downbeat_f1'], 3)} |"
          for k, v in agree["by_kind"].items()],
    ]
    atomic_write_text(args.out / "data.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
