"""The clip manifest (``manifest.jsonl``, one JSON object per clip) shared by both corpora.

Fields of a row (paths are relative to the data set folder):

- ``id``, ``path`` (audio, 22.05 kHz mono), ``duration`` (s), ``n_samples``, ``n_frames``
  (``n_samples // 256 + 1``);
- ``caption`` (the first of ``captions``), ``captions``, ``tags``;
- ``source`` ("music21" or "user"), ``work`` (the unit of splitting), ``split``
  (train/valid/test);
- ``bpm``, ``meter``, ``key`` (null when unknown), ``programs`` (General MIDI, [] if unknown);
- ``controls``: {"score": npz path or null, "extracted": npz path}.

Rendered clips carry extra facts (collection, instruments, variant, gain...) that readers
may ignore. All writes are atomic (temp file + ``os.replace``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cadenza.audio.format import num_frames
from cadenza.errors import CadenzaError
from cadenza.fsutil import atomic_write_text  # re-exported: the data modules import it from here

MANIFEST_NAME = "manifest.jsonl"
SPLITS = ("train", "valid", "test")
REQUIRED_FIELDS = (
    "id", "path", "duration", "n_samples", "n_frames", "caption", "captions", "tags", "source", "work", "split",
    "bpm", "meter", "key", "programs", "controls",
)


def atomic_write_json(path: str | os.PathLike, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def write_manifest(folder: str | os.PathLike, rows: Iterable[dict]) -> Path:
    """Write ``manifest.jsonl`` sorted by id (so a rebuild gives an identical file)."""
    rows = sorted(rows, key=lambda r: r["id"])
    text = "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in rows)
    return atomic_write_text(Path(folder) / MANIFEST_NAME, text)


def read_manifest(folder: str | os.PathLike, split: str | None = None) -> list[dict]:
    """Rows of ``folder/manifest.jsonl`` (optionally one split), each checked for the required fields."""
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        raise CadenzaError(
            f"{path}: no manifest", "build one with 'cadenza data build' or 'cadenza data index', or check the folder"
        )
    if split is not None and split not in SPLITS:
        raise CadenzaError(f"unknown split '{split}'", f"choose one of {', '.join(SPLITS)}")
    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CadenzaError(f"{path}:{lineno}: not valid JSON ({exc.msg})", "rebuild the manifest") from None
            missing = [k for k in REQUIRED_FIELDS if k not in row]
            if missing:
                raise CadenzaError(f"{path}:{lineno}: row lacks {', '.join(missing)}", "rebuild the manifest with this Cadenza")
            if split is None or row["split"] == split:
                rows.append(row)
    return rows


def validate_manifest(folder: str | os.PathLike, check_files: bool = True) -> dict[str, int]:
    """Check ids are unique, lengths agree, splits are known and share no work; count clips per split.

    With ``check_files`` also checks every audio and controls file exists. Raises
    ``CadenzaError`` naming the first problem.
    """
    folder = Path(folder)
    rows = read_manifest(folder)
    seen: set[str] = set()
    work_split: dict[str, str] = {}
    counts = {s: 0 for s in SPLITS}
    for row in rows:
        rid = row["id"]
        if rid in seen:
            raise CadenzaError(f"manifest: duplicate clip id '{rid}'")
        seen.add(rid)
        if row["split"] not in SPLITS:
            raise CadenzaError(f"manifest: clip '{rid}' has unknown split '{row['split']}'")
        if row["n_frames"] != num_frames(row["n_samples"]):
            raise CadenzaError(f"manifest: clip '{rid}' has {row['n_frames']} frames for {row['n_samples']} samples")
        if work_split.setdefault(row["work"], row["split"]) != row["split"]:
            raise CadenzaError(f"manifest: work '{row['work']}' appears in two splits", "splits must be by work")
        if not row["caption"] or row["caption"] != row["captions"][0]:
            raise CadenzaError(f"manifest: clip '{rid}' caption must be the first of its captions")
        counts[row["split"]] += 1
        if check_files:
            paths = [row["path"]] + [p for p in row["controls"].values() if p]
            for rel in paths:
                if not (folder / rel).is_file():
                    raise CadenzaError(f"manifest: clip '{rid}' file {rel} is missing", "rebuild the data set")
    return counts
