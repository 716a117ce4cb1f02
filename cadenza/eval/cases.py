"""Evaluation case sets: a folder of ``cases.jsonl`` plus per-case controls (and reference audio).

Music ControlNet evaluates on two kinds of controls, and so do we:

- ``extracted`` (Table I): controls extracted from held-out corpus clips, with the clip itself
  kept as reference audio (for the ceiling row, the vocoder round trip and FAD);
- ``created`` (Tables II and III): controls a creator would type — random diatonic note strings,
  dynamics curves (linear / tanh / cosine, 6-15 dB), tempo templates stretched 0.8-1.2x — some
  given only over a partial span (Table III scores those inside the span only).

A case set is a folder::

    CASES/cases.jsonl                 one JSON row per case (sorted by id)
    CASES/controls/<id>/controls.npz  the exact frame-level controls (masks included)
    CASES/controls/<id>/*.csv         the same controls as the creator CSV contract (for people)
    CASES/audio/<id>.flac             reference audio (extracted cases only)

Rows hold ``id, prompt, duration, controls (folder, relative), npz (relative), reference
(relative or null), kind, subset (the controls the case gives), span ([start_s, end_s] or null),
seed``. Everything is derived from the seed, so a rebuild writes the same rows and arrays.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cadenza.audio.format import FRAME_RATE, SAMPLE_RATE, frames_for_duration
from cadenza.audio.io import load_audio, save_audio
from cadenza.controls.base import CONTROL_NAMES, ControlSet
from cadenza.controls.registry import control_names
from cadenza.data.manifest import atomic_write_text, read_manifest
from cadenza.errors import CadenzaError

CASES_NAME = "cases.jsonl"
KINDS = ("extracted", "created")
NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
MAJOR_STEPS = (0, 2, 4, 5, 7, 9, 11)
MINOR_STEPS = (0, 2, 3, 5, 7, 8, 10)
TEMPLATE_BPMS = (80.0, 90.0, 100.0, 110.0, 120.0, 128.0)
STRETCH = (0.8, 1.2)
DYN_RANGE_DB = (6.0, 15.0)
PARTIAL_EVERY = 2  # every 2nd created case gives its controls over a partial span only (Table III)
_GENRES = ("folk tune", "waltz", "march", "chorale", "jig", "ballad", "dance", "air")
_INSTRUMENTS = ("piano", "violin and cello", "flute and strings", "acoustic guitar", "string quartet", "organ", "clarinet and piano", "brass ensemble")
_MOODS = ("calm", "cheerful", "melancholic", "energetic", "tender", "solemn", "playful", "warm")


@dataclass(frozen=True)
class Case:
    """One evaluation case; paths are relative to the case-set folder."""

    id: str
    prompt: str
    duration: float
    controls: str
    npz: str
    kind: str
    subset: tuple[str, ...]
    reference: str | None = None
    span: tuple[float, float] | None = None
    seed: int = 0

    def load_controls(self, root: str | os.PathLike) -> ControlSet:
        """The case's controls fitted to its duration (the npz is the exact form)."""
        return ControlSet.load(Path(root) / self.npz).fit_length(frames_for_duration(self.duration))

    def load_reference(self, root: str | os.PathLike) -> np.ndarray | None:
        """Reference audio at 22.05 kHz, exactly ``duration`` long, or None for created cases."""
        if self.reference is None:
            return None
        audio = load_audio(Path(root) / self.reference)
        n = int(round(self.duration * SAMPLE_RATE))
        return np.pad(audio, (0, max(0, n - audio.size)))[:n].astype(np.float32)

    def to_row(self) -> dict:
        row = asdict(self)
        row["subset"] = list(self.subset)
        row["span"] = list(self.span) if self.span is not None else None
        return row

    @classmethod
    def from_row(cls, row: dict, where: str) -> "Case":
        missing = [k for k in ("id", "prompt", "duration", "controls", "npz", "kind", "subset") if k not in row]
        if missing:
            raise CadenzaError(f"{where}: case lacks {', '.join(missing)}", "rebuild the case set with 'cadenza eval make-cases'")
        if row["kind"] not in KINDS:
            raise CadenzaError(f"{where}: unknown case kind '{row['kind']}'", f"kind is one of {', '.join(KINDS)}")
        subset = tuple(row["subset"])
        if set(subset) - set(control_names()):
            raise CadenzaError(f"{where}: unknown control(s) in subset {list(subset)}", f"choose from {', '.join(control_names())}")
        duration = float(row["duration"])
        if not (math.isfinite(duration) and 0 < duration <= 600):
            raise CadenzaError(f"{where}: duration {duration:g} s is out of range", "give a duration between 0 and 600 s")
        span = row.get("span")
        if span is not None:
            span = (float(span[0]), float(span[1]))
            if not 0 <= span[0] < span[1] <= duration + 1e-6:
                raise CadenzaError(f"{where}: span {list(span)} is not inside 0-{duration:g} s", "give 0 <= start < end <= duration")
        return cls(
            id=str(row["id"]), prompt=str(row["prompt"]), duration=duration, controls=str(row["controls"]), npz=str(row["npz"]),
            kind=row["kind"], subset=subset, reference=row.get("reference"), span=span, seed=int(row.get("seed", 0)),
        )


def write_cases(folder: str | os.PathLike, cases: list[Case]) -> Path:
    """``cases.jsonl`` sorted by id, atomically."""
    ids = [c.id for c in cases]
    if len(set(ids)) != len(ids):
        raise CadenzaError("case ids are not unique", "give every case its own id")
    text = "".join(json.dumps(c.to_row(), sort_keys=True) + "\n" for c in sorted(cases, key=lambda c: c.id))
    return atomic_write_text(Path(folder) / CASES_NAME, text)


def load_cases(folder: str | os.PathLike, check_files: bool = True) -> list[Case]:
    """Read and check a case set (rows valid, ids unique, referenced files present)."""
    folder = Path(folder)
    path = folder / CASES_NAME
    if not path.is_file():
        raise CadenzaError(f"{folder}: no {CASES_NAME}", "make a case set with 'cadenza eval make-cases --from-corpus DIR' or '--created'")
    cases = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CadenzaError(f"{path}:{lineno}: not valid JSON ({exc.msg})", "rebuild the case set") from None
            cases.append(Case.from_row(row, f"{path}:{lineno}"))
    if not cases:
        raise CadenzaError(f"{path}: holds no cases", "rebuild the case set with a larger --n")
    if len({c.id for c in cases}) != len(cases):
        raise CadenzaError(f"{path}: case ids are not unique", "rebuild the case set")
    if check_files:
        for c in cases:
            for rel in [c.npz] + ([c.reference] if c.reference else []):
                if not (folder / rel).is_file():
                    raise CadenzaError(f"{path}: case {c.id} refers to missing file {rel}", "rebuild the case set or copy it whole")
    return cases


def _save_case_controls(folder: Path, case_id: str, cs: ControlSet) -> tuple[str, str]:
    from cadenza.controls.files import save_csvs

    rel = Path("controls") / case_id
    cs.save(folder / rel / "controls.npz")
    with warnings.catch_warnings():  # a silent reference has no melody note to write: the npz still holds it
        warnings.simplefilter("ignore")
        save_csvs(cs, folder / rel)
    return rel.as_posix(), (rel / "controls.npz").as_posix()


def make_corpus_cases(
    corpus: str | os.PathLike,
    out: str | os.PathLike,
    split: str = "test",
    n: int = 32,
    seed: int = 0,
    duration: float | None = None,
    rhythm_tracker: str = "default",
) -> list[Case]:
    """``n`` held-out clips of ``split``: their controls extracted from the audio, the audio kept as reference.

    Controls are re-extracted with the extractor that ``cadenza eval`` scores with, so the
    reference row's ceiling measures the metric, not a mismatch between two extractors.
    """
    from cadenza.controls.extract import extract_controls_batch

    corpus, out = Path(corpus), Path(out)
    rows = sorted(read_manifest(corpus, split), key=lambda r: r["id"])
    if not rows:
        raise CadenzaError(f"{corpus}: split '{split}' has no clips", "choose another --split (test or valid)")
    if n < 1:
        raise CadenzaError(f"--n must be at least 1, got {n}")
    rng = np.random.default_rng(seed)
    picked = [rows[i] for i in sorted(rng.choice(len(rows), size=min(n, len(rows)), replace=False))]
    audios, durations = [], []
    for row in picked:
        audio = load_audio(corpus / row["path"])
        d = float(duration) if duration is not None else float(row["duration"])
        if d <= 0:
            raise CadenzaError(f"--duration must be positive, got {d:g}")
        n_samples = int(round(d * SAMPLE_RATE))
        audios.append(np.pad(audio, (0, max(0, n_samples - audio.size)))[:n_samples].astype(np.float32))
        durations.append(d)
    cases = []
    for length in sorted({a.size for a in audios}):
        idx = [i for i, a in enumerate(audios) if a.size == length]
        for i, cs in zip(idx, extract_controls_batch(np.stack([audios[i] for i in idx]), SAMPLE_RATE, CONTROL_NAMES, rhythm_tracker)):
            row = picked[i]
            case_id = f"x-{row['id']}"
            ref_rel = f"audio/{case_id}.flac"
            save_audio(out / ref_rel, audios[i])
            ctrl_rel, npz_rel = _save_case_controls(out, case_id, cs)
            cases.append(Case(case_id, row["caption"], durations[i], ctrl_rel, npz_rel, "extracted", tuple(cs.given()), ref_rel, None, seed))
    write_cases(out, cases)
    return sorted(cases, key=lambda c: c.id)


def random_melody(rng: np.random.Generator, bpm: float, seconds: float) -> str:
    """A diatonic note string (major or minor key, octave 4-5, steps and small leaps) lasting ``seconds``."""
    tonic = int(rng.integers(12))
    steps = MAJOR_STEPS if rng.random() < 0.6 else MINOR_STEPS
    scale = np.array([60 + tonic + 12 * o + s for o in (-1, 0, 1) for s in steps])
    scale = scale[(scale >= 60) & (scale <= 84)]
    beats_needed = seconds * bpm / 60.0
    lengths = rng.choice([0.5, 1.0, 1.0, 1.5, 2.0], size=max(4, int(beats_needed * 2) + 4))
    lengths = lengths[: int(np.searchsorted(np.cumsum(lengths), beats_needed)) + 1]
    moves = rng.choice([-2, -1, -1, 1, 1, 2, 3, -3], size=lengths.size)
    walk = int(rng.integers(2, scale.size - 2)) + np.cumsum(moves)
    period = 2 * (scale.size - 1)  # reflect at the range's ends: clipping would park the tune on one note
    pos = np.abs((walk + scale.size - 1) % period - (scale.size - 1))
    pos = scale.size - 1 - pos if rng.random() < 0.5 else pos
    return " ".join(f"{NOTE_NAMES[p % 12]}{p // 12 - 1}:{b:g}" for p, b in zip(scale[pos], lengths))


def _created_controls(rng: np.random.Generator, duration: float, span: tuple[float, float] | None) -> tuple[ControlSet, dict]:
    from cadenza.controls import files

    T = frames_for_duration(duration)
    template_bpm = float(rng.choice(TEMPLATE_BPMS))
    meter = int(rng.choice([3, 4]))
    factor = round(float(rng.uniform(*STRETCH)), 3)
    bpm = template_bpm / factor
    notes = random_melody(rng, bpm, duration)
    melody = files.read_melody(notes, T, bpm=bpm)
    shape = str(rng.choice(["crescendo", "decrescendo", "swell"]))
    curve = str(rng.choice(files.CURVES))
    range_db = round(float(rng.uniform(*DYN_RANGE_DB)), 2)
    start_db = round(float(rng.uniform(-34.0, -22.0)) if shape != "decrescendo" else float(rng.uniform(-22.0, -12.0)), 2)
    lo, hi = span if span is not None else (0.0, None)
    dynamics = files.dynamics_shape(shape, T, start_db=start_db, range_db=range_db, start=lo, end=hi, curve=curve)
    template = files.rhythm_from_bpm(template_bpm, meter, T + int(FRAME_RATE * duration))  # long enough to stretch
    rhythm = files.stretch_rhythm(template, factor, T)
    cs = ControlSet.empty(T).with_control("melody", melody).with_control("dynamics", dynamics).with_control("rhythm", rhythm)
    if span is not None:
        f0, f1 = int(np.floor(span[0] * FRAME_RATE)), min(T, int(np.ceil(span[1] * FRAME_RATE)) + 1)
        keep = np.zeros(T, np.float32)
        keep[f0:f1] = 1
        cs.melody_mask, cs.dynamics_mask, cs.rhythm_mask = cs.melody_mask * keep, cs.dynamics_mask * keep, cs.rhythm_mask * keep
        t0, t1 = f0 / FRAME_RATE, (f1 - 1) / FRAME_RATE
        cs.melody_notes = cs.melody_notes[(cs.melody_notes[:, 1] > t0) & (cs.melody_notes[:, 0] <= t1)]
        cs.beats = cs.beats[(cs.beats[:, 0] >= t0) & (cs.beats[:, 0] <= t1)]
        cs.validate()
    info = {"notes": notes, "bpm": round(bpm, 3), "template_bpm": template_bpm, "stretch": factor, "meter": meter,
            "shape": shape, "curve": curve, "start_db": start_db, "range_db": range_db}
    return cs, info


def make_created_cases(out: str | os.PathLike, n: int = 32, seed: int = 0, duration: float = 6.0) -> list[Case]:
    """``n`` cases with creator-made controls; every ``PARTIAL_EVERY``-th gives them over a partial span."""
    out = Path(out)
    if n < 1:
        raise CadenzaError(f"--n must be at least 1, got {n}")
    if not (math.isfinite(duration) and 1.0 <= duration <= 600):
        raise CadenzaError(f"--duration {duration:g} s is out of range", "created cases need at least 1 s (a few notes and beats)")
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(n):
        span = None
        if i % PARTIAL_EVERY == 1:
            length = float(rng.uniform(0.35, 0.65)) * duration
            start = float(rng.uniform(0, duration - length))
            span = (round(start, 3), round(start + length, 3))
        cs, info = _created_controls(rng, duration, span)
        mood = str(rng.choice(_MOODS))
        prompt = f"{'An' if mood[0] in 'aeiou' else 'A'} {mood} {rng.choice(_GENRES)} played on {rng.choice(_INSTRUMENTS)}."
        case_id = f"c-{i:03d}" + ("-partial" if span else "")
        ctrl_rel, npz_rel = _save_case_controls(out, case_id, cs)
        atomic_write_text(out / ctrl_rel / "recipe.json", json.dumps(info, sort_keys=True, indent=1) + "\n")
        cases.append(Case(case_id, prompt, float(duration), ctrl_rel, npz_rel, "created", tuple(cs.given()), None, span, seed))
    write_cases(out, cases)
    return cases
