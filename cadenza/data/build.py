"""``cadenza data build``: the music21 corpus rendered into captioned, controlled clips.

Pipeline per work (in a worker process): parse → ``ScoreData`` → a few arrangements →
TinySoundFont render → loudness normalisation with a random level → fixed-length clips
(near-silent ones skipped) → FLAC + exact score controls + audio-extracted controls →
``works/<work>.json`` written last, atomically. A work whose JSON exists is done, so a killed
build resumes where it stopped; the manifest is assembled at the end from the work files,
sorted by id, and is byte-identical for the same seed and options.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cadenza.audio.format import SAMPLE_RATE, num_frames
from cadenza.audio.io import loudness_normalize, save_audio
from cadenza.data import captions as cap
from cadenza.data.arrange import Arrangement, arrange
from cadenza.data.corpus import WorkRef, abc_fields, load_work, select_works, split_for, stable_hash
from cadenza.data.manifest import atomic_write_json, validate_manifest, write_manifest
from cadenza.data.render import add_room, render_midi, resolve_soundfont
from cadenza.data.score import score_data
from cadenza.data.score_controls import score_controls
from cadenza.errors import CadenzaError

log = logging.getLogger(__name__)

BUILD_FORMAT = 1
SILENCE_DB = -45.0  # clips quieter than this after normalisation are skipped
MIN_VOICED = 0.25  # ...and so are clips where the score is silent most of the time


@dataclass(frozen=True)
class Preset:
    """How much of the corpus to render, and how."""

    name: str
    n_works: int | None  # None: every work
    variants: int  # arrangements per work
    max_clips: int  # clips per arrangement at most
    large_soundfont: bool  # FluidR3_GM when installed
    max_size: int | None  # skip works with more source bytes (slow to parse)
    held_out_first: bool = False  # a valid and a test work come first, so every split has one


PRESETS: dict[str, Preset] = {
    "tiny": Preset("tiny", 8, 1, 4, False, 12_000, held_out_first=True),  # ≈ 3 min of audio, under a minute on 2 cores
    "small": Preset("small", 210, 2, 6, True, None),  # ≈ 3 h
    "full": Preset("full", None, 1, 10, True, None),  # every work: ≥ 50 h
}


@dataclass(frozen=True)
class BuildConfig:
    """Everything that decides the content of a build (``identity``) plus how to run it."""

    out: str
    preset: str = "tiny"
    seed: int = 0
    clip_seconds: float = 6.0
    soundfont: str | None = None
    workers: int = 2
    limit_works: int | None = None
    splits: tuple[str, ...] | None = None  # only the selected works in these splits (e.g. ("valid", "test"): a held-out set)
    max_clips: int | None = None
    variants: int | None = None
    drum_probability: float = 0.4
    extract: bool = True
    work_timeout: float = 300.0
    retry_failed: bool = False

    def __post_init__(self) -> None:
        """Counts and times a user gives, refused when negative or absurd (``--limit-works -1`` would build all but one work)."""
        from cadenza.limits import MAX_CONFIG_COUNT, check_count, check_float, check_int

        put = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (a frozen dataclass)
        put("seed", check_int("--seed", self.seed, 0, 2**63 - 1))
        put("workers", check_count("--workers", self.workers, 1, 256, hint="use 1 up to the number of CPU cores, e.g. --workers 2"))
        put("clip_seconds", check_float("--clip-seconds", self.clip_seconds, 0.0, 60.0, lo_open=True, unit=" s"))
        for name in ("limit_works", "max_clips", "variants"):
            value = getattr(self, name)
            if value is not None:
                put(name, check_count(f"--{name.replace('_', '-')}", value, 1, MAX_CONFIG_COUNT))
        put("drum_probability", check_float("drum_probability", self.drum_probability, 0.0, 1.0))
        put("work_timeout", check_float("work_timeout", self.work_timeout, 0.0, 86400.0))

    @property
    def spec(self) -> Preset:
        if self.preset not in PRESETS:
            raise CadenzaError(f"unknown preset '{self.preset}'", f"choose one of {', '.join(PRESETS)}")
        return PRESETS[self.preset]

    @property
    def clip_samples(self) -> int:
        return int(round(self.clip_seconds * SAMPLE_RATE))

    def identity(self, soundfont_name: str) -> dict:
        """The options that change what a work's clips contain (not how many works are done)."""
        spec = self.spec
        return {
            "format": BUILD_FORMAT, "preset": self.preset, "seed": self.seed, "clip_seconds": self.clip_seconds,
            "soundfont": soundfont_name, "max_clips": self.max_clips or spec.max_clips,
            "variants": self.variants or spec.variants, "drum_probability": self.drum_probability, "extract": self.extract,
        }


# ------------------------------------------------------------------ one work
@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Raise TimeoutError after ``seconds`` (main thread only; a no-op elsewhere)."""
    if seconds <= 0 or not hasattr(signal, "SIGALRM"):
        yield
        return

    def _raise(signum, frame):  # noqa: ARG001
        raise TimeoutError(f"gave up after {seconds:g} s")

    try:
        old = signal.signal(signal.SIGALRM, _raise)
    except ValueError:  # not the main thread
        yield
        return
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def work_rng(seed: int, work_id: str, variant: int) -> np.random.Generator:
    """The generator of one variant of one work: independent of order and process."""
    return np.random.default_rng([seed, stable_hash("work", work_id) % (2**63), variant])


def _extract(batch: np.ndarray):
    from cadenza.controls.extract import extract_controls_batch

    return extract_controls_batch(batch, SAMPLE_RATE)


def work_record_path(out: Path, ref: WorkRef) -> Path:
    return out / "works" / f"{ref.slug}.json"


def _clip_rows(
    ref: WorkRef, cfg: BuildConfig, sf_path: str, sf_name: str, variant: int, sd, prov, arr: Arrangement, rng, out: Path,
    skipped: dict[str, int] | None = None,
) -> list[dict]:
    """Render one arrangement, cut, check, save; return its manifest rows.

    ``skipped`` counts what was left out and why (``short``: an arrangement under one clip;
    ``silent`` / ``unvoiced``: clips under the level or voiced-frame thresholds), so a work
    that gives no clip says why in its record instead of vanishing from the manifest."""
    skipped = {} if skipped is None else skipped
    n = cfg.clip_samples
    max_clips = cfg.max_clips or cfg.spec.max_clips
    audio = render_midi(arr.midi, sf_path, arr.duration)
    wet = float(rng.choice([0.0, rng.uniform(0.1, 0.35)]))
    audio = add_room(audio, rng, wet, float(rng.uniform(0.8, 2.2)))
    n_clips = min(max_clips, int(arr.duration * SAMPLE_RATE) // n)
    if n_clips == 0:
        skipped["short"] = skipped.get("short", 0) + 1
        return []
    gain_db = float(rng.uniform(-30.0, -16.0))
    audio = loudness_normalize(audio[: n_clips * n], target_db=gain_db)
    clips = audio.reshape(n_clips, n)
    notes = arr.melodic_notes()
    folder = out / "clips" / ref.collection / ref.slug
    kept: list[tuple[int, np.ndarray, object]] = []
    for c in range(n_clips):
        rms_db = 10 * np.log10(np.mean(np.square(clips[c], dtype=np.float64)) + 1e-20)
        sc = score_controls(notes, arr.beats, c * n / SAMPLE_RATE, n)
        if rms_db < SILENCE_DB or sc.melody_mask.mean() < MIN_VOICED:
            why = "silent" if rms_db < SILENCE_DB else "unvoiced"
            skipped[why] = skipped.get(why, 0) + 1
            continue
        kept.append((c, clips[c], sc))
    if not kept:
        return []
    extracted = _extract(np.stack([k[1] for k in kept])) if cfg.extract else [None] * len(kept)
    captions, tags = cap.describe(
        prov, arr.instruments, arr.bpm, arr.tonic_pc, arr.mode, arr.meter, arr.dynamics_style, arr.drum_style, rng,
        ensemble=arr.ensemble,
    )
    split = split_for(ref.work_id)
    rows = []
    for (c, clip, sc), ex in zip(kept, extracted):
        cid = f"{ref.slug}-v{variant}-c{c:02d}"
        audio_rel = f"clips/{ref.collection}/{ref.slug}/{cid}.flac"
        save_audio(out / audio_rel, clip)
        score_rel = f"clips/{ref.collection}/{ref.slug}/{cid}.score.npz"
        ex_rel = None
        if ex is not None:
            sc = sc.with_control("dynamics", ex)  # the rendered level is the true dynamics
            ex_rel = f"clips/{ref.collection}/{ref.slug}/{cid}.extracted.npz"
            ex.save(out / ex_rel)
        sc.save(out / score_rel)
        rows.append({
            "id": cid, "path": audio_rel, "duration": n / SAMPLE_RATE, "n_samples": n, "n_frames": num_frames(n),
            "caption": captions[0], "captions": captions, "tags": tags, "source": "music21", "work": ref.work_id,
            "split": split, "bpm": round(arr.bpm, 2), "meter": arr.meter, "key": cap.key_name(arr.tonic_pc, arr.mode),
            "programs": arr.programs, "controls": {"score": score_rel, "extracted": ex_rel},
            "collection": ref.collection, "title": sd.title, "composer": prov.composer, "genre": prov.genre,
            "origin": prov.origin, "instruments": arr.instruments, "drums": arr.drums, "drum_style": arr.drum_style,
            "dynamics_style": arr.dynamics_style, "accompaniment": arr.accompaniment, "ensemble": arr.ensemble,
            "transpose": arr.transpose, "variant": variant, "clip": c, "start_s": round(c * n / SAMPLE_RATE, 6),
            "gain_db": round(gain_db, 3), "reverb": round(wet, 3), "soundfont": sf_name,
        })
    return rows


def process_work(ref: WorkRef, cfg: BuildConfig, sf_path: str, sf_name: str) -> dict:
    """Build every clip of one work and write its record; failures are recorded, not raised."""
    out = Path(cfg.out)
    record_path = work_record_path(out, ref)
    t0 = time.perf_counter()
    try:
        with _time_limit(cfg.work_timeout), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # music21 warns about every overfull bar it repairs
            abc = abc_fields(ref)
            sd = score_data(load_work(ref), abc)
            prov = cap.provenance(ref.collection, abc, sd.composer)
            variants = cfg.variants or cfg.spec.variants
            max_seconds = (cfg.max_clips or cfg.spec.max_clips) * cfg.clip_seconds + 0.5
            rows: list[dict] = []
            skipped: dict[str, int] = {}
            for v in range(variants):
                rng = work_rng(cfg.seed, ref.work_id, v)
                arr = arrange(sd, rng, max_seconds, random_start=v > 0, drum_probability=cfg.drum_probability)
                rows += _clip_rows(ref, cfg, sf_path, sf_name, v, sd, prov, arr, rng, out, skipped)
        record = {"work": ref.work_id, "status": "ok", "rows": rows, **({"skipped": skipped} if skipped else {})}
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # a work that fails to convert is recorded with its reason
        reason = f"{type(exc).__name__}: {exc}".strip()
        log.debug("work %s failed:\n%s", ref.work_id, traceback.format_exc())
        record = {"work": ref.work_id, "status": "failed", "reason": reason[:500], "rows": []}
    record["seconds"] = round(time.perf_counter() - t0, 3)
    atomic_write_json(record_path, record)
    return record


def _init_worker() -> None:
    """Worker processes use one thread each: the pool itself is the parallelism."""
    import torch

    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C


def _run_one(args: tuple) -> dict:
    return process_work(*args)


def _clean_temp_files(out: Path) -> int:
    """Remove temporary files left by a killed run (finished files are never temporary)."""
    removed = 0
    for sub in ("works", "clips"):
        for p in (out / sub).rglob(".*.tmp*") if (out / sub).exists() else []:
            p.unlink(missing_ok=True)
            removed += 1
    return removed


def _load_record(path: Path) -> dict | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, json.JSONDecodeError):
        return None


def build(cfg: BuildConfig, progress: Callable[[int, int, dict], None] | None = None) -> dict:
    """Build (or finish building) a corpus; returns the summary also written to ``build.json``."""
    spec = cfg.spec
    if cfg.clip_seconds < 1.0 or cfg.clip_seconds > 60:
        raise CadenzaError(f"--clip-seconds {cfg.clip_seconds:g} is out of range", "use 1 to 60 seconds (6 is the default)")
    if cfg.workers < 1:
        raise CadenzaError(f"--workers {cfg.workers} must be at least 1")
    if cfg.splits is not None and (not cfg.splits or set(cfg.splits) - {"train", "valid", "test"}):
        raise CadenzaError(f"--splits {','.join(cfg.splits)} is not a set of train, valid, test", "e.g. --splits valid,test")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    sf_path, sf_name = resolve_soundfont(cfg.soundfont, spec.large_soundfont)
    identity = cfg.identity(sf_name)
    info_path = out / "build.json"
    previous = _load_record(info_path) if info_path.exists() else None
    if previous and previous.get("config") != identity:
        raise CadenzaError(
            f"{out} holds a build made with other options ({previous.get('config')})",
            "use a new --out folder, or repeat the original options to resume it",
        )
    atomic_write_json(info_path, {"config": identity, "status": "building"})
    _clean_temp_files(out)

    n_works = spec.n_works
    if cfg.limit_works is not None:
        n_works = cfg.limit_works if n_works is None else min(n_works, cfg.limit_works)
    works = select_works(n_works, cfg.seed, spec.max_size, spec.held_out_first)
    if cfg.splits is not None:  # the same works' clips as in the whole build, just fewer works: a later run without it adds the rest
        selected = len(works)
        works = [ref for ref in works if split_for(ref.work_id) in cfg.splits]
        if not works:
            raise CadenzaError(
                f"none of the {selected} selected works is in the {','.join(cfg.splits)} split(s)",
                "raise --limit-works: about 5 % of works are valid and 5 % test",
            )
    todo = []
    for ref in works:
        rec = _load_record(work_record_path(out, ref))
        if rec is None or (cfg.retry_failed and rec.get("status") == "failed"):
            todo.append(ref)
    started = time.perf_counter()
    done = len(works) - len(todo)
    if progress:
        progress(done, len(works), {})
    args = [(ref, cfg, str(sf_path), sf_name) for ref in todo]
    if cfg.workers == 1:
        _init_threads_inline()
        for a in args:
            rec = _run_one(a)
            done += 1
            if progress:
                progress(done, len(works), rec)
    elif args:
        with ProcessPoolExecutor(max_workers=cfg.workers, initializer=_init_worker) as pool:
            pending = set()
            queue = iter(args)
            try:
                for a in queue:  # keep at most 2 tasks per worker in flight, so Ctrl-C stops quickly
                    pending.add(pool.submit(_run_one, a))
                    if len(pending) >= 2 * cfg.workers:
                        finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                        for f in finished:
                            done += 1
                            if progress:
                                progress(done, len(works), f.result())
                for f in pending:
                    rec = f.result()
                    done += 1
                    if progress:
                        progress(done, len(works), rec)
            except BaseException:
                for f in pending:
                    f.cancel()
                raise
    elapsed = time.perf_counter() - started
    return finalize(cfg, works, identity, elapsed, len(todo))


def _init_threads_inline() -> None:
    import torch

    torch.set_num_threads(1)


def finalize(cfg: BuildConfig, works: list[WorkRef], identity: dict, elapsed: float, n_built: int) -> dict:
    """Assemble the manifest and failure list from the work records; write ``build.json``."""
    out = Path(cfg.out)
    rows: list[dict] = []
    failures = []
    empty: list[dict] = []  # works that converted but gave no clip (too short, silent or unvoiced)
    work_seconds = 0.0
    for ref in works:
        rec = _load_record(work_record_path(out, ref))
        if rec is None:
            continue
        work_seconds += float(rec.get("seconds", 0.0))
        if rec["status"] == "ok":
            rows += rec["rows"]
            if not rec["rows"]:
                empty.append({"work": ref.work_id, "skipped": rec.get("skipped", {})})
        else:
            failures.append({"work": ref.work_id, "reason": rec.get("reason", "unknown")})
    if not rows:
        raise CadenzaError(
            f"the build in {out} produced no clips ({len(failures)} of {len(works)} works failed)",
            f"see {out / 'failures.json'} for the reasons",
        ) if failures else CadenzaError(f"the build in {out} produced no clips", "raise --limit-works or --max-clips")
    ids = [r["id"] for r in rows]
    if len(set(ids)) != len(ids):  # a guard: work slugs must be unique
        raise CadenzaError(f"the build in {out} has duplicate clip ids", "report this as a bug")
    write_manifest(out, rows)
    validate_manifest(out, check_files=False)
    atomic_write_json(out / "failures.json", failures)
    hours = sum(r["duration"] for r in rows) / 3600
    splits = {s: sum(r["split"] == s for r in rows) for s in ("train", "valid", "test")}
    summary = {
        # limit_works: this manifest covers only the first N selected works (a later run without it adds the rest)
        "config": identity, "status": "complete", "limit_works": cfg.limit_works,
        "splits": list(cfg.splits) if cfg.splits else None, "works": len(works), "failed": len(failures), "clips": len(rows),
        "hours": round(hours, 4), "clips_per_split": splits, "works_without_clips": empty, "built_works_this_run": n_built,
        "wall_seconds_this_run": round(elapsed, 2), "work_seconds_total": round(work_seconds, 2),
    }
    atomic_write_json(out / "build.json", summary)
    return summary

