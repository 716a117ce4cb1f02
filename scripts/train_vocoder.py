"""Driver for the vocoder: make stand-in training audio, train (resumable), ship the best checkpoint.

    python scripts/train_vocoder.py synth --out data/vocoder-synth --clips 360 --seconds 8
    nohup nice python scripts/train_vocoder.py train --manifest data/vocoder-synth/manifest.jsonl \\
        --run runs/vocoder/default --max-minutes 55 > runs/vocoder/default.log 2>&1 &
    python scripts/train_vocoder.py ship --run runs/vocoder/default --manifest data/vocoder-synth/manifest.jsonl

``synth`` renders random multi-instrument General MIDI parts (FluidR3_GM through tinysoundfont)
so the vocoder can be trained before (or besides) the real corpus; the manifest format is the
corpus one (JSONL rows with ``path`` and ``split``). ``train`` is a thin call to the one runner
(``cadenza train vocoder``, docs/training.md): its run folder, checkpoints and resume (automatic
here when the folder holds checkpoints). ``ship`` and ``examples`` read that folder.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cadenza.audio import SAMPLE_RATE, MelSpectrogram, griffin_lim, save_audio  # noqa: E402
from cadenza.representations.vocoder import WEIGHTS_DIR, build_generator, save_vocoder  # noqa: E402
from cadenza.train.vocoder import heldout_crops, mel_l1  # noqa: E402

SOUNDFONTS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/default-GM.sf2")
SCALES = {"major": [0, 2, 4, 5, 7, 9, 11], "minor": [0, 2, 3, 5, 7, 8, 10], "penta": [0, 2, 4, 7, 9], "blues": [0, 3, 5, 6, 7, 10]}


# ---------------------------------------------------------------------------------------------- synth
def _random_part(rng: np.random.Generator, seconds: float) -> list[tuple[float, float, int, int, int]]:
    """Notes (start, end, pitch, velocity, channel) for 1-4 pitched parts plus optional drums."""
    bpm = rng.uniform(70, 160)
    beat = 60.0 / bpm
    root = int(rng.integers(0, 12))
    scale = SCALES[rng.choice(list(SCALES))]
    notes = []
    n_parts = int(rng.integers(1, 5))
    for ch in range(n_parts):
        register = int(rng.choice([36, 48, 60, 72]))
        style = rng.choice(["melody", "chords", "arp", "pad"])
        t = 0.0
        while t < seconds:
            dur = beat * float(rng.choice([0.25, 0.5, 1, 1, 2, 4] if style != "pad" else [2, 4, 8]))
            if rng.random() < 0.15:
                t += dur
                continue
            degree = int(rng.integers(0, len(scale) * 2))
            pitch = register + root + scale[degree % len(scale)] + 12 * (degree // len(scale))
            vel = int(np.clip(rng.normal(85, 20), 20, 127))
            chord = [0, 4, 7] if style in ("chords", "pad") else [0]
            for off in chord:
                notes.append((t, min(t + dur * rng.uniform(0.6, 1.0), seconds), min(pitch + off, 120), vel, ch))
            t += dur if style != "arp" else dur / 2
    if rng.random() < 0.6:
        kit = [(36, [0, 2]), (38, [1, 3]), (42, [0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5])]
        bar = 0.0
        while bar < seconds:
            for pitch, beats in kit:
                for b in beats:
                    t = bar + b * beat
                    if t < seconds and rng.random() < 0.9:
                        notes.append((t, t + 0.1, pitch, int(rng.integers(60, 127)), 9))
            bar += 4 * beat
    return notes


def render_clip(rng: np.random.Generator, seconds: float, soundfont: str) -> np.ndarray:
    """Render one random clip to mono float32 at 22.05 kHz with tinysoundfont."""
    import tinysoundfont

    synth = tinysoundfont.Synth(samplerate=SAMPLE_RATE)
    sfid = synth.sfload(soundfont)
    for ch in range(4):
        for _ in range(10):  # some presets are missing from smaller soundfonts
            try:
                synth.program_select(ch, sfid, 0, int(rng.integers(0, 104)))
                break
            except Exception:
                continue
    synth.program_select(9, sfid, 128, 0, True)
    events = []
    for start, end, pitch, vel, ch in _random_part(rng, seconds):
        events.append((start, 1, ch, pitch, vel))
        events.append((end, 0, ch, pitch, 0))
    events.sort(key=lambda e: (e[0], e[1]))
    total = int(seconds * SAMPLE_RATE)
    out, pos = [], 0
    for t, on, ch, pitch, vel in events:
        s = min(int(t * SAMPLE_RATE), total)
        if s > pos:
            out.append(np.frombuffer(synth.generate(s - pos), dtype=np.float32).copy())
            pos = s
        synth.noteon(ch, pitch, vel) if on else synth.noteoff(ch, pitch)
    if pos < total:
        out.append(np.frombuffer(synth.generate(total - pos), dtype=np.float32).copy())
    stereo = np.concatenate(out).reshape(-1, 2)
    mono = stereo.mean(axis=1)
    peak = float(np.abs(mono).max())
    level = 10 ** (rng.uniform(-12, -1) / 20)
    return (mono * (level / peak) if peak > 1e-6 else mono).astype(np.float32)


def cmd_synth(args: argparse.Namespace) -> None:
    out = Path(args.out)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    sf = next((p for p in SOUNDFONTS if Path(p).exists()), None)
    if sf is None:
        raise SystemExit("no General MIDI soundfont found; install fluid-soundfont-gm")
    rng = np.random.default_rng(args.seed)
    rows = []
    for i in range(args.clips):
        path = out / "clips" / f"synth_{i:04d}.wav"
        save_audio(path, render_clip(rng, args.seconds, sf))
        split = "test" if i % 20 == 19 else "train"
        rows.append({"path": f"clips/{path.name}", "split": split, "seconds": args.seconds})
    tmp = out / "manifest.jsonl.tmp"
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    os.replace(tmp, out / "manifest.jsonl")
    print(f"wrote {len(rows)} clips to {out}")


# ---------------------------------------------------------------------------------------------- train
def cmd_train(args: argparse.Namespace) -> None:
    """The one runner: ``cadenza train vocoder CONFIG train.data=MANIFEST ... --out RUN [--resume]``.

    Resumes by itself when ``RUN`` already holds checkpoints (as this script always did); "best"
    follows ``val_mel_l1`` on fixed held-out crops of the manifest's test split.
    """
    from cadenza.train.runner import fit_folder

    overrides = [
        f"train.data={args.manifest}", f"data.val_clips={args.val_clips}", f"data.val_seconds={args.val_seconds}",
        f"log.val_every_steps={args.val_every}", f"log.every_steps={args.log_every}", f"checkpoint.every_steps={args.checkpoint_every}", *args.set,
    ]
    fit_folder("vocoder", args.config, overrides, args.run, args.max_minutes, args.threads)


def trained_generator(run: Path, which: str) -> tuple[dict[str, torch.Tensor], dict, float | None]:
    """(generator weights, config, training hours) of a runner folder: ``best``/``latest`` checkpoint or ``model``."""
    from cadenza.checkpoint import load_model_folder
    from cadenza.train.state import CheckpointManager

    if which == "model":
        state, config = load_model_folder(run / "model")
        return state, config, None
    manager = CheckpointManager(run)
    best = manager.best()
    folder = manager.root / best["name"] if which == "best" and best else manager.latest()
    if folder is None or manager.verify(folder) is not None:
        raise SystemExit(f"{run}: no intact '{which}' checkpoint (runs of the older script cannot be shipped by this one)")
    loaded = manager.load(prefer=folder)
    state = {k[len("generator."):]: v for k, v in loaded.model.items() if k.startswith("generator.")}
    return state, {**loaded.config, "training": {"steps": loaded.progress.step, **loaded.progress.metrics}}, loaded.progress.elapsed_s / 3600


# ---------------------------------------------------------------------------------------------- ship
def _cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (else the platform's machine name), for the training facts."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def cmd_ship(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    run = Path(args.run)
    state, config, hours = trained_generator(run, args.which)
    gen = build_generator(config)
    gen.load_state_dict(state)
    gen.eval()
    audio = heldout_crops(args.manifest, args.val_clips, args.val_seconds, seed=1)
    mel = MelSpectrogram()
    ours = mel_l1(gen, audio, mel)
    logmel = mel(audio)
    gl = float((mel(griffin_lim(logmel, n_iter=32)) - logmel).abs().mean())
    print(json.dumps({"vocoder_mel_l1": ours, "griffin_lim_mel_l1": gl, "clips": int(audio.shape[0])}))
    if ours >= gl and not args.force:
        raise SystemExit("not shipped: the vocoder does not beat Griffin-Lim on held-out mel L1")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    training = {
        **config.get("training", {}),
        "data": config["train"].get("data"),
        "wall_hours": round(hours, 3) if hours else None,
        "hardware": f"{config.get('launch', {}).get('threads', '?')} CPU thread(s) ({_cpu_name()}), torch {torch.__version__}",
        "heldout_mel_l1": round(ours, 4),
        "heldout_griffin_lim_mel_l1": round(gl, 4),
        "heldout_clips": int(audio.shape[0]),
        "code_commit": commit,
    }
    tmp = WEIGHTS_DIR.parent / ".vocoder.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    save_vocoder(tmp, gen, {**config, "training": training})
    if WEIGHTS_DIR.exists():
        shutil.rmtree(WEIGHTS_DIR)
    os.replace(tmp, WEIGHTS_DIR)
    print(f"shipped {run / args.which} → {WEIGHTS_DIR}")


def cmd_examples(args: argparse.Namespace) -> None:
    """Short listening examples: original, vocoder and Griffin-Lim for a few held-out clips (FLAC)."""
    from cadenza.representations.vocoder import load_vocoder

    torch.set_num_threads(args.threads)
    voc = load_vocoder(args.model)
    audio = heldout_crops(args.manifest, args.clips, args.seconds, seed=2)
    mel = MelSpectrogram(voc.mel_config)
    logmel = mel(audio)
    out = Path(args.out)
    rows = []
    for i, (wave, vo, gl) in enumerate(zip(audio, voc.decode(logmel), griffin_lim(logmel, n_iter=32))):
        for tag, w in (("original", wave[: vo.shape[-1]]), ("vocoder", vo), ("griffinlim", gl)):
            save_audio(out / f"clip{i}_{tag}.flac", w.numpy())
        rows.append(f"| clip{i} | {float((mel(vo) - logmel[i]).abs().mean()):.3f} | {float((mel(gl) - logmel[i]).abs().mean()):.3f} |")
    print("| clip | vocoder mel L1 | Griffin-Lim mel L1 |\n|---|---|---|\n" + "\n".join(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("synth", help="render random General MIDI clips as stand-in training audio")
    p.add_argument("--out", default="data/vocoder-synth")
    p.add_argument("--clips", type=int, default=360)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--seed", type=int, default=0)
    for name in ("train", "ship"):
        p = sub.add_parser(name)
        p.add_argument("--manifest", required=True)
        p.add_argument("--run", default="runs/vocoder/default")
        p.add_argument("--threads", type=int, default=1)
        p.add_argument("--val-clips", type=int, default=12)
        p.add_argument("--val-seconds", type=float, default=3.0)
        if name == "train":
            p.add_argument("--config", default="default")
            p.add_argument("--set", nargs="*", default=[], help="config overrides key=value")
            p.add_argument("--max-minutes", type=float, default=55.0)
            p.add_argument("--checkpoint-every", type=int, default=250, help="steps between checkpoints")
            p.add_argument("--val-every", type=int, default=250)
            p.add_argument("--log-every", type=int, default=50)
        else:
            p.add_argument("--which", default="best", help="best | latest (checkpoints of the run) | model (its exported model)")
            p.add_argument("--force", action="store_true")
    p = sub.add_parser("examples", help="write listening examples (original / vocoder / Griffin-Lim)")
    p.add_argument("--manifest", required=True)
    p.add_argument("--model", default="default")
    p.add_argument("--out", default="docs/vocoder/examples")
    p.add_argument("--clips", type=int, default=3)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    {"synth": cmd_synth, "train": cmd_train, "ship": cmd_ship, "examples": cmd_examples}[args.cmd](args)


if __name__ == "__main__":
    main()
