"""``cadenza data cache``: mel spectrograms and control arrays precomputed into shards.

Per split, clips (sorted by id) are grouped into shards of ``shard_size``; each shard is a
safetensors file of arrays concatenated along time plus a JSON file of ids and captions:

- ``mel`` (n_mels, ΣT) float16 log-mel (the canonical ``MelSpectrogram``);
- ``offsets`` (n + 1,) int64: clip ``i`` is frames ``offsets[i]:offsets[i+1]``;
- ``melody`` (ΣT,) int8 pitch class (-1 unvoiced), ``dynamics`` (ΣT,) float32 dB,
  ``rhythm`` (ΣT, 2) float16, and a uint8 mask per control.

Controls come from the exact-score npz when a clip has one (``controls="score"``) or always
from the audio-extracted one (``controls="extracted"``). Shards are written atomically and
skipped when already complete, so an interrupted cache run resumes.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from cadenza.audio.io import load_audio
from cadenza.audio.mel import MelConfig, MelSpectrogram
from cadenza.controls.base import ControlSet
from cadenza.data.manifest import MANIFEST_NAME, SPLITS, atomic_write_json, read_manifest
from cadenza.errors import CadenzaError
from cadenza.fsutil import atomic_path

CACHE_FORMAT = 1
CONTROL_SOURCES = ("score", "extracted")


def cache_dir(folder: str | os.PathLike, controls: str = "score") -> Path:
    return Path(folder) / "cache" / controls


def _manifest_digest(folder: Path) -> str:
    return hashlib.sha1((folder / MANIFEST_NAME).read_bytes()).hexdigest()


def _controls_path(row: dict, controls: str) -> str:
    paths = row["controls"]
    rel = paths.get("score") if controls == "score" else None
    rel = rel or paths.get("extracted")
    if not rel:
        raise CadenzaError(f"clip '{row['id']}' has no controls file", "rebuild or re-index the data set")
    return rel


def _save_safetensors(path: Path, arrays: dict[str, np.ndarray]) -> None:
    from safetensors.numpy import save_file

    with atomic_path(path) as tmp:
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, tmp, metadata={"format": str(CACHE_FORMAT)})


def _shard_arrays(folder: Path, rows: list[dict], controls: str, mel: MelSpectrogram, batch_size: int) -> dict[str, np.ndarray]:
    """Mel + control arrays of ``rows``, concatenated along time."""
    mels: list[np.ndarray] = []
    # equal-length clips go through the mel front end together
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        waves = [load_audio(folder / r["path"]) for r in chunk]
        if len({len(w) for w in waves}) == 1:
            with torch.no_grad():
                out = mel(torch.from_numpy(np.stack(waves))).numpy()
            mels += list(out)
        else:
            with torch.no_grad():
                mels += [mel(torch.from_numpy(w)).numpy() for w in waves]
    lengths = np.array([m.shape[-1] for m in mels])
    for r, m in zip(rows, mels):
        if m.shape[-1] != r["n_frames"]:
            raise CadenzaError(f"clip '{r['id']}': audio gives {m.shape[-1]} frames, manifest says {r['n_frames']}", "rebuild the data set")
    sets = []
    for r in rows:
        cs = ControlSet.load(folder / _controls_path(r, controls))
        if cs.n_frames != r["n_frames"]:
            raise CadenzaError(f"clip '{r['id']}': controls have {cs.n_frames} frames, audio {r['n_frames']}", "rebuild the data set")
        sets.append(cs)
    cat = lambda xs: np.concatenate(xs, axis=0)  # noqa: E731
    return {
        "mel": np.concatenate(mels, axis=-1).astype(np.float16),
        "offsets": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        "melody": cat([cs.pitch_classes().astype(np.int8) for cs in sets]),
        "melody_mask": cat([cs.melody_mask.astype(np.uint8) for cs in sets]),
        "dynamics": cat([cs.dynamics.astype(np.float32) for cs in sets]),
        "dynamics_mask": cat([cs.dynamics_mask.astype(np.uint8) for cs in sets]),
        "rhythm": cat([cs.rhythm.astype(np.float16) for cs in sets]),
        "rhythm_mask": cat([cs.rhythm_mask.astype(np.uint8) for cs in sets]),
    }


def build_cache(
    folder: str | os.PathLike,
    controls: str = "score",
    shard_size: int = 256,
    batch_size: int = 16,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Write (or finish) the cache of ``folder``; returns its index (also ``index.json``)."""
    folder = Path(folder)
    if controls not in CONTROL_SOURCES:
        raise CadenzaError(f"unknown controls source '{controls}'", f"choose {' or '.join(CONTROL_SOURCES)}")
    if shard_size < 1 or batch_size < 1:
        raise CadenzaError("--shard-size and --batch-size must be at least 1")
    rows = read_manifest(folder)
    if not rows:
        raise CadenzaError(f"{folder / MANIFEST_NAME} holds no clips", "build or index a data set first")
    target = cache_dir(folder, controls)
    target.mkdir(parents=True, exist_ok=True)
    digest = _manifest_digest(folder)
    mel_cfg = MelConfig()
    index_path = target / "index.json"
    if index_path.exists():
        old = json.loads(index_path.read_text())
        if old.get("manifest_sha1") != digest or old.get("mel") != mel_cfg.to_dict():
            for p in target.glob("*"):  # the manifest changed: every shard is stale
                p.unlink()
    mel = MelSpectrogram(mel_cfg)
    plan = []
    for split in SPLITS:
        split_rows = sorted((r for r in rows if r["split"] == split), key=lambda r: r["id"])
        for k in range(0, len(split_rows), shard_size):
            plan.append((split, k // shard_size, split_rows[k : k + shard_size]))
    index: dict = {"format": CACHE_FORMAT, "manifest_sha1": digest, "mel": mel_cfg.to_dict(), "controls": controls, "splits": {}}
    for i, (split, number, shard_rows) in enumerate(plan):
        name = f"{split}-{number:05d}"
        tensors, meta = target / f"{name}.safetensors", target / f"{name}.json"
        ids = [r["id"] for r in shard_rows]
        done = tensors.exists() and meta.exists() and json.loads(meta.read_text()).get("ids") == ids
        if not done:
            arrays = _shard_arrays(folder, shard_rows, controls, mel, batch_size)
            _save_safetensors(tensors, arrays)
            atomic_write_json(meta, {
                "ids": ids, "captions": [r["captions"] for r in shard_rows], "tags": [r["tags"] for r in shard_rows],
                "work": [r["work"] for r in shard_rows], "n_frames": [r["n_frames"] for r in shard_rows],
                "paths": [r["path"] for r in shard_rows],
            })
        entry = index["splits"].setdefault(split, {"shards": [], "clips": 0, "frames": 0})
        entry["shards"].append(name)
        entry["clips"] += len(shard_rows)
        entry["frames"] += int(sum(r["n_frames"] for r in shard_rows))
        if progress:
            progress(i + 1, len(plan))
    atomic_write_json(index_path, index)
    return index


def load_index(folder: str | os.PathLike, controls: str = "score") -> dict:
    """The cache index, or a CadenzaError that says how to make it."""
    path = cache_dir(folder, controls) / "index.json"
    if not path.is_file():
        raise CadenzaError(f"no feature cache at {path.parent}", f"run: cadenza data cache {folder} --controls {controls}")
    index = json.loads(path.read_text())
    if index.get("format") != CACHE_FORMAT:
        raise CadenzaError(f"{path}: cache format {index.get('format')} is not {CACHE_FORMAT}", "run 'cadenza data cache' again")
    manifest = Path(folder) / MANIFEST_NAME
    if manifest.exists() and index.get("manifest_sha1") != _manifest_digest(Path(folder)):
        raise CadenzaError(f"the cache in {path.parent} is older than the manifest", f"run: cadenza data cache {folder}")
    return index
