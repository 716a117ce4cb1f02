"""``cadenza eval``: generate every case under every control subset, measure, aggregate, report.

For each case the generator runs once per control subset (Music ControlNet's Table I rows: no
controls, each control alone, each pair, all three), with the same seed in every row so the
rows differ only in what was given. All subsets of one case share a prompt and a length, so
they are sampled as **one batch**. Each output's controls are extracted and compared with the
case's given controls inside their masks (``adherence.compare_controls``) — every row is
scored against all the case's controls, so the no-control row is the floor (chance) and a
melody-only row shows how much rhythm comes along for free. Extracted cases add two reference
rows: the reference audio itself (the ceiling: metric noise only) and the reference through
the vocoder (the loss of the mel + vocoder representation).

Per-case results (scores, CLAP text score, audio) are cached under ``REPORT_DIR/cache`` keyed
by the run's settings, so a rerun skips finished cases and an interrupted run resumes.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import time
import zlib
from collections.abc import Callable, Sequence
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import soundfile as sf
import torch

from cadenza.audio import SAMPLE_RATE, MelSpectrogram
from cadenza.config import write_json_atomic
from cadenza.controls.base import CONTROL_NAMES, ControlSet
from cadenza.controls.registry import control_names
from cadenza.controls.rhythm import describe_rhythm_tracker
from cadenza.data.manifest import atomic_write_text
from cadenza.errors import CadenzaError
from cadenza.eval.adherence import aggregate_scores, compare_controls
from cadenza.eval.cases import Case, load_cases
from cadenza.eval.judges import aggregate_judges, judge_batch
from cadenza.eval.report import to_jsonable
from cadenza.fsutil import atomic_path
from cadenza.protocols import GenerationRequest

if TYPE_CHECKING:
    from cadenza.pipeline import Cadenza

def all_subsets(names: Sequence[str]) -> tuple[tuple[str, ...], ...]:
    """Every subset of ``names`` (Table I's rows): none, then each alone, then pairs…, in registry order."""
    return ((),) + tuple(c for k in range(1, len(names) + 1) for c in combinations(tuple(names), k))


def paper_subsets(names: Sequence[str]) -> tuple[tuple[str, ...], ...]:
    """None, each control alone, all together (the paper's rows)."""
    return ((),) + tuple((n,) for n in names) + (tuple(names),)


SUBSETS_ALL: tuple[tuple[str, ...], ...] = all_subsets(CONTROL_NAMES)  # the shipped controls'
SUBSETS_PAPER: tuple[tuple[str, ...], ...] = paper_subsets(CONTROL_NAMES)
REFERENCE_ROW = "reference"
VOCODER_ROW = "reference → vocoder"
CACHE_VERSION = 3  # 2: rows vocoded one by one (equal to Cadenza.generate); 3: cross-check judges per row


def row_name(subset: Sequence[str]) -> str:
    """Table row label for a control subset (``none`` = text only, the floor)."""
    return "+".join(subset) if subset else "none"


def subsets_for(which: str, names: Sequence[str] = CONTROL_NAMES) -> tuple[tuple[str, ...], ...]:
    """The control subsets an eval run scores, over ``names`` (the model's controls)."""
    if which == "all":
        return all_subsets(names)
    if which == "paper":
        return paper_subsets(names)
    if which == "three":
        return (tuple(names),)
    raise CadenzaError(
        f"unknown --subsets '{which}'", "use 'all' (every subset: Table I's rows), 'paper' (none, each alone, all three) or 'three' (all three only)"
    )


def table_of(case: Case) -> str:
    """Which paper table a case belongs to."""
    if case.span is not None:
        return "III"
    return "I" if case.kind == "extracted" else "II"


def case_seed(seed: int, case_id: str) -> int:
    """Per-case seed that does not shift when cases are added or removed."""
    return (int(seed) * 1_000_003 + zlib.crc32(case_id.encode())) % (2**31)


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _fit(wave: np.ndarray, n: int) -> np.ndarray:
    wave = np.asarray(wave, np.float32).reshape(-1)
    return np.pad(wave, (0, max(0, n - wave.size)))[:n]


def generate_batch(
    gen: Any, prompt: str, controls: list[ControlSet], duration: float, seed: int, steps: int | None, cfg: float | None,
    control_cfg: Any = None,
    dynamics_guidance: float | None = None,
    downbeat_cfg: float | None = None,
) -> np.ndarray:
    """One batch of outputs for one prompt under several control sets (same seed each): (B, samples).

    One request per control set through ``Cadenza.run_batch``, which shares the diffusion steps
    and vocodes row by row, so each row equals ``generate`` for its controls (tested).
    """
    requests = [
        GenerationRequest(prompt, duration=float(duration), seeds=(int(seed),), control_set=cs, steps=steps, cfg=cfg, control_cfg=control_cfg,
                           dynamics_guidance=dynamics_guidance, downbeat_cfg=downbeat_cfg)
        for cs in controls
    ]
    return np.stack([r.wave for r in gen.run_batch(requests)])


def vocoder_round_trip(gen: Any, audio: np.ndarray) -> np.ndarray:
    """Audio → the canonical log-mel → the generator's vocoder: what the representation alone costs.

    A family with its own representation (a codec) has no vocoder: its encode → decode round trip.
    """
    with torch.inference_mode():
        if getattr(gen, "vocoder", None) is None:
            codes = gen.representation.encode(np.ascontiguousarray(audio, dtype=np.float32))
            wave = gen.representation.decode(codes if codes.dim() == 3 else codes[None])  # (K, T) or (1, K, T): codecs differ
            wave = wave.detach().cpu().float().numpy() if isinstance(wave, torch.Tensor) else np.asarray(wave)
            return _fit(wave.reshape(-1), audio.size)
        logmel = MelSpectrogram()(torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)))
        return _fit(gen.vocoder(logmel[None])[0], audio.size)


class _Clap:
    """CLAP text score when the shipped CLAP weights exist, else NaN with a note."""

    def __init__(self) -> None:
        from cadenza.eval.clap import load_clap, shipped_weights_available

        self.model = load_clap() if shipped_weights_available() else None
        self.name = self.model.name if self.model is not None else None

    def __call__(self, waves: Sequence[np.ndarray], prompt: str) -> list[float]:
        if self.model is None:
            return [math.nan] * len(waves)
        return [float(s) for s in np.atleast_1d(self.model.text_audio_score(list(waves), [prompt] * len(waves)))]


def settings_key(settings: dict) -> str:
    return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _cache_paths(cache: Path, case: Case) -> tuple[Path, Path]:
    return cache / f"{case.id}.json", cache / case.id


def _row_file(folder: Path, row: str) -> Path:
    return folder / (row.replace("+", "_").replace(" → ", "_").replace(" ", "_") + ".flac")


def _write_flac(path: Path, wave: np.ndarray) -> None:
    """Write one cached row's audio atomically: an interrupted run leaves no half file for the resume to trust."""
    with atomic_path(path, suffix=".flac") as tmp:
        sf.write(tmp, np.clip(wave, -1, 1), SAMPLE_RATE, format="FLAC", subtype="PCM_16")


def run_case(
    gen: Any, case: Case, root: Path, subsets: Sequence[tuple[str, ...]], settings: dict, clap: _Clap, rhythm_tracker: str
) -> tuple[dict, dict[str, np.ndarray], ControlSet, dict[str, ControlSet]]:
    """Generate and score one case: (result dict, audio per row, given controls, extracted controls per row)."""
    from cadenza.controls.extract import extract_controls_batch

    given = case.load_controls(root)
    names = given.given()
    if not names:
        raise CadenzaError(f"case {case.id} gives no control", "every case needs at least one control to score against")
    rows = [s for s in subsets if set(s) <= set(names)]
    seed = case_seed(settings["seed"], case.id)
    t0 = time.perf_counter()
    waves = generate_batch(
        gen, case.prompt, [given.select(s) for s in rows], case.duration, seed, settings["steps"], settings["cfg"], settings.get("control_cfg", 0.0),
        settings.get("dynamics_guidance", 0.0), settings.get("downbeat_cfg", 0.0),
    )
    gen_s = time.perf_counter() - t0
    audio = {row_name(s): w for s, w in zip(rows, waves)}
    subset_of = {row_name(s): list(s) for s in rows}
    reference = case.load_reference(root)
    if reference is not None:
        audio[REFERENCE_ROW] = reference
        audio[VOCODER_ROW] = vocoder_round_trip(gen, reference)
    labels = list(audio)
    batch = np.stack([audio[k] for k in labels])
    extracted = dict(zip(labels, extract_controls_batch(batch, SAMPLE_RATE, names, rhythm_tracker)))
    clap_scores = clap([audio[k] for k in labels], case.prompt)
    judged = judge_batch(batch, given, SAMPLE_RATE)
    result = {
        "case": case.to_row(), "table": table_of(case), "seed": seed, "settings_key": settings_key(settings),
        "case_digest": case_digest(case, root),
        "cache_version": CACHE_VERSION, "generate_s": round(gen_s, 3), "rows": {},
    }
    for k, c, j in zip(labels, clap_scores, judged):
        result["rows"][k] = {
            "subset": subset_of.get(k), "scores": compare_controls(given, extracted[k]), "clap": c, "judges": j,
            "audio": _row_file(Path(case.id), k).as_posix(),
        }
    return result, audio, given, extracted


def draw_case_figure(case: Case, root: Path, result: dict, cache: Path, figures: Path, rhythm_tracker: str) -> Path:
    """Figure of the case's output with the most controls: given vs achieved (re-extracted from the cached audio)."""
    from cadenza.controls.extract import extract_controls
    from cadenza.eval.tables import case_figure

    rows = {k: r for k, r in result["rows"].items() if r.get("subset") is not None}
    best = max(rows, key=lambda k: len(rows[k]["subset"]))
    wave, _ = sf.read(cache / rows[best]["audio"], dtype="float32")
    given = case.load_controls(root)
    achieved = extract_controls(wave, SAMPLE_RATE, given.given(), rhythm_tracker)
    with torch.inference_mode():
        logmel = MelSpectrogram()(torch.from_numpy(wave)).numpy()
    return case_figure(given, achieved, logmel, figures / f"{case.id}.png", f"{case.id} [{best}]: {case.prompt[:70]}")


def case_digest(case: Case, root: Path) -> str:
    """Fingerprint of what a case asks for: its row (prompt, duration, span, ...) and its controls file.

    Part of the cache check, so a case set remade under the same ids (other controls, another
    beat tracker) is generated again instead of being served stale results.
    """
    h = hashlib.sha1(json.dumps(case.to_row(), sort_keys=True).encode())
    h.update((Path(root) / case.npz).read_bytes())
    return h.hexdigest()[:16]


def load_cached(cache: Path, case: Case, key: str, digest: str | None = None) -> dict | None:
    """The cached result of ``case`` if it was made with these settings (and, given ``digest``,
    from the same case contents) and its audio is all there."""
    path, folder = _cache_paths(cache, case)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if data.get("settings_key") != key or data.get("cache_version") != CACHE_VERSION:
        return None
    if digest is not None and data.get("case_digest") != digest:
        return None
    if not all((cache / r["audio"]).is_file() for r in data["rows"].values()):
        return None
    return data



def _from_json(scores: dict) -> dict:
    """JSON null back to NaN so ``aggregate_scores`` sees undefined values as such."""
    return {k: (math.nan if v is None else v) for k, v in scores.items()}


def _fad_rows(groups: dict[tuple[str, str], list[np.ndarray]], references: list[np.ndarray], embedder: str) -> tuple[dict, str | None]:
    """FAD of each (table, row) set of clips against the pooled reference clips (one embedder)."""
    from cadenza.eval.embedders import get_embedder
    from cadenza.eval.fad import embed_audio, fad_from_embeddings

    out: dict[tuple[str, str], dict] = {}
    if len(references) < 2:
        return {k: {"fad": None, "note": "FAD needs at least 2 reference clips (extracted cases)"} for k in groups}, None
    emb = get_embedder(embedder)
    ref = embed_audio(references, emb, SAMPLE_RATE, "reference")
    for key, clips in groups.items():
        if len(clips) < 2:
            out[key] = {"fad": None, "note": "fewer than 2 clips"}
            continue
        try:
            r = fad_from_embeddings(ref, embed_audio(clips, emb, SAMPLE_RATE, "generated"), emb.name)
            out[key] = {"fad": r.fad, "n_reference": r.n_reference, "n_generated": r.n_generated}
        except CadenzaError as err:
            out[key] = {"fad": None, "note": err.message}
    return out, emb.name


def aggregate(results: list[dict], cache: Path, embedder: str = "default") -> dict:
    """Per table and row: adherence aggregates, mean CLAP score, FAD against the references."""
    groups: dict[tuple[str, str], list[dict]] = {}
    audio: dict[tuple[str, str], list[np.ndarray]] = {}
    references: list[np.ndarray] = []
    for res in results:
        for row, r in res["rows"].items():
            key = (res["table"], row)
            groups.setdefault(key, []).append(r)
            wave, _ = sf.read(cache / r["audio"], dtype="float32")
            audio.setdefault(key, []).append(wave)
            if row == REFERENCE_ROW:
                references.append(wave)
    fads, embedder_name = _fad_rows(audio, references, embedder) if embedder != "none" else ({}, None)
    tables: dict[str, list[dict]] = {}
    for (table, row), rs in groups.items():
        agg = aggregate_scores([_from_json(r["scores"]) for r in rs])
        claps = np.array([np.nan if r["clap"] is None else r["clap"] for r in rs], np.float64)
        entry = {
            "row": row, "subset": rs[0]["subset"], "n_cases": len(rs), **agg,
            **aggregate_judges([None if r.get("judges") is None else _from_json(r["judges"]) for r in rs]),
            "clap_mean": float(np.nanmean(claps)) if np.isfinite(claps).any() else math.nan,
            **{k: v for k, v in fads.get((table, row), {}).items()},
        }
        tables.setdefault(table, []).append(entry)
    order = {row_name(s): i for i, s in enumerate(all_subsets(control_names()))} | {REFERENCE_ROW: 100, VOCODER_ROW: 101}
    for rows in tables.values():
        rows.sort(key=lambda e: order.get(e["row"], 50))
    return {"tables": tables, "fad_embedder": embedder_name, "n_reference_clips": len(references)}


def _decoding(gen: Any) -> dict:
    """A token family's decoding settings (temperature, top-k/p, MAGNeT's iterations): what replaces steps and sampler there."""
    sampling = getattr(getattr(gen, "generator", None), "sampling", None)
    if not isinstance(sampling, dict) or not hasattr(getattr(gen, "generator", None), "frames_for"):
        return {}
    keys = ("temperature", "top_k", "top_p", "iterations", "cfg_min", "remask_noise")
    return {"decoding": {k: sampling[k] for k in keys if k in sampling}}


def run_eval(
    cases_dir: str | os.PathLike | Sequence[str | os.PathLike],
    out: str | os.PathLike,
    model: str | os.PathLike | Cadenza | None = None,
    steps: int | None = None,
    cfg: float | None = None,
    seed: int = 0,
    subsets: str = "all",
    limit: int | None = None,
    cache: str | os.PathLike | None = None,
    embedder: str = "default",
    rhythm_tracker: str = "default",
    max_figures: int = 4,
    progress: Callable[[int, int, str], None] | None = None,
    threads: int | None = None,
    control_cfg: Any = None,
    dynamics_guidance: float | None = None,
    downbeat_cfg: float | None = None,
) -> dict:
    """The whole evaluation: returns the results dict also written to ``out/results.json``.

    ``progress(done, total, case_id)`` is called before each case (``case_id`` is the one about
    to run) and once at the end; the library draws nothing itself, so the caller decides where
    progress goes (the CLI: a bar on stderr, silent with ``--quiet``). ``rhythm_tracker``
    defaults to the trained tracker, as in ``extract_controls`` and ``score_clip``.
    """
    from cadenza.eval.tables import report_markdown
    from cadenza.pipeline import Cadenza

    roots = [Path(cases_dir)] if isinstance(cases_dir, (str, os.PathLike)) else [Path(p) for p in cases_dir]
    if not roots:
        raise CadenzaError("no case set given", "pass one or more folders made by 'cadenza eval make-cases'")
    out = Path(out)
    root_of: dict[str, Path] = {}
    cases: list[Case] = []
    for root in roots:
        for c in load_cases(root):
            if c.id in root_of:
                raise CadenzaError(f"case id {c.id} appears in both {root_of[c.id]} and {root}", "evaluate case sets with distinct ids together")
            root_of[c.id] = root
            cases.append(c)
    if limit is not None:
        if limit < 1:
            raise CadenzaError(f"--limit must be at least 1, got {limit}")
        per_kind: dict[str, int] = {}
        kept = []
        for c in cases:  # the first ``limit`` cases of each table, so every table keeps rows
            t = table_of(c)
            if per_kind.get(t, 0) < limit:
                kept.append(c)
                per_kind[t] = per_kind.get(t, 0) + 1
        cases = kept
    subsets_for(subsets)  # a bad --subsets fails before the model loads
    gen = model if isinstance(model, Cadenza) else Cadenza.load(model, threads=threads)
    chosen = subsets_for(subsets, tuple(getattr(gen, "trained_controls", None) or CONTROL_NAMES))
    used = gen.resolve(GenerationRequest("", steps=steps, cfg=cfg, control_cfg=control_cfg, dynamics_guidance=dynamics_guidance,
                                         downbeat_cfg=downbeat_cfg))  # the model's defaults, checked
    steps_used, cfg_used, sampler, control_cfg_used = used.steps, used.cfg, used.sampler, used.control_cfg
    settings = {"model_id": gen.model_id, "steps": steps_used, "cfg": cfg_used, "sampler": sampler, "seed": int(seed),
                **({"control_cfg": control_cfg_used} if control_cfg_used else {}),
                **({"dynamics_guidance": used.dynamics_guidance} if used.dynamics_guidance else {}),
                **({"downbeat_cfg": used.downbeat_cfg} if used.downbeat_cfg else {}),
                **_decoding(gen), "subsets": [list(s) for s in chosen], "rhythm_tracker": describe_rhythm_tracker(rhythm_tracker), "vocoder": gen.vocoder.name if getattr(gen, "vocoder", None) is not None else str(getattr(gen.representation, "model_id", type(gen.representation).__name__))}
    key = settings_key(settings)
    cache = Path(cache) if cache is not None else out / "cache"
    figures = out / "figures"
    clap = None
    t_start = time.perf_counter()
    results, n_generated, n_figures = [], 0, {}

    report = progress or (lambda done, total, case_id: None)
    for i, case in enumerate(cases):
        report(i, len(cases), case.id)
        cached = load_cached(cache, case, key, case_digest(case, root_of[case.id]))
        if cached is None:
            clap = clap or _Clap()
            result, audio, _, _ = run_case(gen, case, root_of[case.id], chosen, settings, clap, rhythm_tracker)
            for row, wave in audio.items():
                _write_flac(cache / result["rows"][row]["audio"], wave)
            write_json_atomic(_cache_paths(cache, case)[0], to_jsonable(result))
            result = json.loads(_cache_paths(cache, case)[0].read_text())
            n_generated += 1
        else:
            result = cached
        table = result["table"]
        if n_figures.get(table, 0) < max_figures:
            if not (figures / f"{case.id}.png").is_file():
                draw_case_figure(case, root_of[case.id], result, cache, figures, rhythm_tracker)
            n_figures[table] = n_figures.get(table, 0) + 1
        results.append(result)
    report(len(cases), len(cases), "")

    summary = aggregate(results, cache, embedder)
    data = {
        "config": {**settings, "cases": [str(r) for r in roots], "n_cases": len(cases), "limit": limit, "embedder": embedder,
                   "duration_s": sorted({c.duration for c in cases})},
        "model_id": gen.model_id, "commit": git_commit(), "seed": int(seed),
        "clap_model": (clap or _Clap()).name,
        "run": {"cases_generated": n_generated, "cases_from_cache": len(cases) - n_generated, "wall_s": round(time.perf_counter() - t_start, 1),
                "generate_s_all_cases": round(sum(r.get("generate_s", 0.0) for r in results), 1),
                "torch_threads": torch.get_num_threads()},
        **summary,
        "cases": results,
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "results.json", to_jsonable(data))
    atomic_write_text(out / "report.md", report_markdown(to_jsonable(data), figures_dir=figures, out=out))
    return data
