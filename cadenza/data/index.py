"""``cadenza data index``: a folder of the user's own audio turned into the same clip manifest.

Captions come from a CSV/JSONL (columns ``file,caption``), a sidecar ``<name>.txt`` or, last,
the file name. Every file is cut into fixed-length clips (a shorter file, or a long enough
tail, becomes one shorter clip), the three controls are extracted from the audio, and the
splits are by file. A file that cannot be used is listed in ``report.json`` with the reason
and the run goes on; only a folder that yields no clip at all is an error.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cadenza.audio.format import SAMPLE_RATE, num_frames
from cadenza.audio.io import SUPPORTED_EXTENSIONS, load_audio, save_audio
from cadenza.data.captions import caption_from_filename
from cadenza.data.corpus import slugify, split_for
from cadenza.data.manifest import atomic_write_json, write_manifest
from cadenza.errors import CadenzaError

SIDECAR_EXTENSIONS = (".txt", ".csv", ".jsonl", ".json", ".md")
SILENT_DB = -60.0
MIN_CLIP_SECONDS = 2.0


def read_captions(path: str | os.PathLike) -> dict[str, str]:
    """``file -> caption`` from a CSV (header ``file,caption``) or JSONL (``{"file":..., "caption":...}``)."""
    path = Path(path)
    if not path.is_file():
        raise CadenzaError(f"captions file {path} not found", "pass a .csv or .jsonl with columns file,caption")
    from cadenza.limits import MAX_CONTROL_FILE_BYTES, check_file_size

    check_file_size(path, MAX_CONTROL_FILE_BYTES, "captions file")
    out: dict[str, str] = {}
    if path.suffix.lower() == ".csv":
        with open(path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or not {"file", "caption"} <= {f.strip() for f in reader.fieldnames}:
                raise CadenzaError(f"{path}: needs a header with columns 'file' and 'caption'", "e.g. file,caption")
            for row in reader:
                row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
                if row["file"] and row["caption"]:
                    out[row["file"]] = row["caption"]
    elif path.suffix.lower() in (".jsonl", ".json"):
        with open(path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise CadenzaError(f"{path}:{lineno}: not valid JSON ({exc.msg})", "one object per line") from None
                if not isinstance(obj, dict) or "file" not in obj or "caption" not in obj:
                    raise CadenzaError(f"{path}:{lineno}: needs keys 'file' and 'caption'")
                out[str(obj["file"])] = str(obj["caption"]).strip()
    else:
        raise CadenzaError(f"{path}: unsupported captions format '{path.suffix}'", "use .csv or .jsonl")
    return out


def _caption_for(rel: str, path: Path, table: dict[str, str], used: set[str]) -> str:
    for key in (rel, path.name, path.stem):
        if key in table:
            used.add(key)
            return table[key]
    sidecar = path.with_suffix(".txt")
    if sidecar.is_file() and sidecar.stat().st_size <= 1 << 20:  # a caption, not a book: larger sidecars are ignored
        text = sidecar.read_text(encoding="utf-8", errors="replace").strip()
        if text:
            return text.splitlines()[0].strip()
    return caption_from_filename(path.stem)


def cut_clips(audio: np.ndarray, clip_samples: int, min_samples: int) -> list[tuple[int, np.ndarray]]:
    """(start sample, clip) pairs: full clips, plus a shorter tail (or whole short file) if long enough."""
    n_full = len(audio) // clip_samples
    clips = [(i * clip_samples, audio[i * clip_samples : (i + 1) * clip_samples]) for i in range(n_full)]
    tail = len(audio) - n_full * clip_samples
    if tail >= min_samples and (n_full == 0 or tail >= clip_samples // 2):
        clips.append((n_full * clip_samples, audio[n_full * clip_samples :]))
    return clips


def _bpm_from_beats(beats: np.ndarray) -> float | None:
    if len(beats) < 3:
        return None
    return round(float(60.0 / np.median(np.diff(beats[:, 0]))), 2)


def index_folder(
    folder: str | os.PathLike,
    out: str | os.PathLike,
    captions: str | os.PathLike | None = None,
    clip_seconds: float = 6.0,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict:
    """Index every audio file under ``folder`` into ``out``; returns the report (also ``out/report.json``)."""
    from cadenza.controls.extract import extract_controls_batch

    folder, out = Path(folder), Path(out)
    if not folder.is_dir():
        raise CadenzaError(f"{folder} is not a folder", "pass the folder that holds your audio files")
    if not 1.0 <= clip_seconds <= 60.0:
        raise CadenzaError(f"--clip-seconds {clip_seconds:g} is out of range", "use 1 to 60 seconds")
    table = read_captions(captions) if captions else {}
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    audio_files = [p for p in files if p.suffix.lower() in SUPPORTED_EXTENSIONS]
    ignored = [str(p.relative_to(folder)) for p in files if p.suffix.lower() not in SUPPORTED_EXTENSIONS + SIDECAR_EXTENSIONS]
    if out.resolve() == folder.resolve() or folder.resolve() in out.resolve().parents:
        raise CadenzaError(f"--out {out} lies inside the audio folder", "write the index somewhere else")
    clip_samples = int(round(clip_seconds * SAMPLE_RATE))
    min_samples = int(MIN_CLIP_SECONDS * SAMPLE_RATE)
    rows: list[dict] = []
    problems: list[dict] = []
    indexed: list[str] = []
    used: set[str] = set()
    for i, path in enumerate(audio_files):
        rel = path.relative_to(folder).as_posix()
        if progress:
            progress(i, len(audio_files), rel)
        try:
            audio = load_audio(path)
        except CadenzaError as err:
            problems.append({"file": rel, "reason": err.message})
            continue
        except Exception as exc:  # anything else a decoder throws is still a per-file problem
            problems.append({"file": rel, "reason": f"cannot read ({type(exc).__name__}: {exc})"})
            continue
        pieces = cut_clips(audio, clip_samples, min_samples)
        if not pieces:
            problems.append({"file": rel, "reason": f"too short ({len(audio) / SAMPLE_RATE:.2f} s; at least {MIN_CLIP_SECONDS:g} s needed)"})
            continue
        loud = [(s, c) for s, c in pieces if 10 * np.log10(np.mean(np.square(c, dtype=np.float64)) + 1e-20) > SILENT_DB]
        if not loud:
            problems.append({"file": rel, "reason": f"silent (every clip below {SILENT_DB:g} dBFS)"})
            continue
        caption = _caption_for(rel, path, table, used)
        slug = slugify(os.path.splitext(rel)[0])
        work = f"user/{rel}"
        split = split_for(work)
        # clips of equal length share one extraction batch
        by_len: dict[int, list[int]] = {}
        for j, (_, c) in enumerate(loud):
            by_len.setdefault(len(c), []).append(j)
        controls: dict[int, object] = {}
        for idx in by_len.values():
            for j, cs in zip(idx, extract_controls_batch(np.stack([loud[j][1] for j in idx]), SAMPLE_RATE)):
                controls[j] = cs
        for j, (start, clip) in enumerate(loud):
            cid = f"{slug}-c{start // clip_samples:03d}"
            audio_rel = f"clips/{slug}/{cid}.flac"
            ex_rel = f"clips/{slug}/{cid}.extracted.npz"
            save_audio(out / audio_rel, clip)
            controls[j].save(out / ex_rel)
            rows.append({
                "id": cid, "path": audio_rel, "duration": len(clip) / SAMPLE_RATE, "n_samples": len(clip),
                "n_frames": num_frames(len(clip)), "caption": caption, "captions": [caption], "tags": [],
                "source": "user", "work": work, "split": split, "bpm": _bpm_from_beats(controls[j].beats),
                "meter": None, "key": None, "programs": [], "controls": {"score": None, "extracted": ex_rel},
                "file": rel, "start_s": round(start / SAMPLE_RATE, 6),
            })
        indexed.append(rel)
    report = {
        "folder": str(folder), "clip_seconds": clip_seconds, "indexed": indexed, "problems": problems,
        "ignored": ignored, "unused_captions": sorted(set(table) - used), "clips": len(rows),
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "report.json", report)
    if not rows:
        why = "; ".join(f"{p['file']}: {p['reason']}" for p in problems[:5]) or "no audio files found"
        raise CadenzaError(
            f"no clips could be made from {folder} ({why})",
            f"supported audio: {', '.join(SUPPORTED_EXTENSIONS)}; see {out / 'report.json'}",
        )
    write_manifest(out, rows)
    return report
