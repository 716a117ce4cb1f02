"""Token data: a corpus encoded once by a codec into shards, and the dataset the token models train on.

Why encode once: a codec's encoder costs far more than a training step of a small token model,
and the tokens of a clip never change for one codec. ``encode_corpus`` reads the corpus through
its manifest (``cadenza.data.manifest``: audio path, captions, controls npz), encodes equal-length
clips in batches and stores per split, in shards of ``shard_size`` clips:

- ``<split>-NNNNN.safetensors``: ``codes`` (K, ΣT) int16/int32, ``offsets`` (n + 1,) int64, and
  the clip's controls pooled to the codec rate (``conditioning.resample_controls``): ``melody``
  (ΣT,) int8 pitch class (-1 none), ``dynamics`` (ΣT,) float32 dB, ``rhythm`` (ΣT, 2) float16 and a
  uint8 mask per control;
- ``<split>-NNNNN.json``: ids, captions, frames per clip (written last: a shard is done when its
  JSON names the same ids);
- ``index.json``: format, the codec (id, codebooks, cardinality, frame rate), the manifest's
  digest and the shards per split.

Writes are atomic; a rerun skips the shards already done, and a changed manifest or codec makes
every shard stale. ``TokenDataset`` checks the files on opening (readable, expected arrays and
shapes, codes inside the codec's range) and answers one ``CadenzaError`` naming the bad file.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from cadenza.audio.format import SAMPLE_RATE
from cadenza.audio.io import load_audio
from cadenza.conditioning.controls import controls_to_tensors
from cadenza.controls.base import CONTROL_NAMES, ControlSet
from cadenza.data.cache import _controls_path
from cadenza.data.manifest import MANIFEST_NAME, atomic_write_json, read_manifest
from cadenza.errors import CadenzaError
from cadenza.fsutil import atomic_path
from cadenza.generators.tokens.conditioning import resample_controls

TOKENS_FORMAT = 1
ARRAYS = ("codes", "offsets", "melody", "melody_mask", "dynamics", "dynamics_mask", "rhythm", "rhythm_mask")
REDO_HINT = "delete the file and run the encoding again (shards already done are skipped)"


def codec_record(representation: Any, codec_id: str | None = None) -> dict:
    """What an encoded folder says of the codec its tokens come from."""
    name = codec_id or getattr(representation, "model_id", None) or type(representation).__name__
    return {
        "id": str(name), "codebooks": int(representation.codebooks), "cardinality": int(representation.cardinality),
        "frame_rate": float(representation.frame_rate), "sample_rate": int(representation.sample_rate),
    }


def _encode(representation: Any, waves: list[np.ndarray], batch_size: int) -> list[torch.Tensor]:
    """Codes (K, T) per wave; clips of one length go through the encoder together."""
    out: list[torch.Tensor | None] = [None] * len(waves)
    by_length: dict[int, list[int]] = {}
    for i, w in enumerate(waves):
        by_length.setdefault(len(w), []).append(i)
    with torch.no_grad():
        for idx in by_length.values():
            for k in range(0, len(idx), batch_size):
                chunk = idx[k : k + batch_size]
                codes = representation.encode(torch.from_numpy(np.stack([waves[i] for i in chunk])))
                for i, c in zip(chunk, codes):
                    out[i] = c.long().cpu()
    return out  # type: ignore[return-value]


def _pooled_controls(sets: list[ControlSet], lengths: list[int], frame_rate: float) -> list[dict[str, torch.Tensor]]:
    """Each clip's controls on the codec grid (clips of one length pooled as one batch)."""
    out: list[dict[str, torch.Tensor] | None] = [None] * len(sets)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (cs, n) in enumerate(zip(sets, lengths)):
        groups.setdefault((cs.n_frames, n), []).append(i)
    for (_, n), idx in groups.items():
        pooled = resample_controls(controls_to_tensors([sets[i] for i in idx]), n, frame_rate)
        for j, i in enumerate(idx):
            out[i] = {k: v[j] for k, v in pooled.items()}
    return out  # type: ignore[return-value]


def _shard_arrays(folder: Path, rows: list[dict], representation: Any, controls: str, batch_size: int) -> dict[str, np.ndarray]:
    waves = [load_audio(folder / r["path"]) for r in rows]
    codes = _encode(representation, waves, batch_size)
    lengths = [int(c.shape[-1]) for c in codes]
    sets = [ControlSet.load(folder / _controls_path(r, controls)) for r in rows]
    ctrl = _pooled_controls(sets, lengths, float(representation.frame_rate))
    cat = lambda key: torch.cat([c[key] for c in ctrl]).numpy()  # noqa: E731
    melody = cat("melody")
    code_dtype = np.int16 if int(representation.cardinality) <= np.iinfo(np.int16).max else np.int32
    return {
        "codes": torch.cat(codes, dim=-1).numpy().astype(code_dtype),
        "offsets": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        "melody": np.where(melody.max(-1) > 0, melody.argmax(-1), -1).astype(np.int8),
        "melody_mask": cat("melody_mask").astype(np.uint8),
        "dynamics": cat("dynamics")[:, 0].astype(np.float32),
        "dynamics_mask": cat("dynamics_mask").astype(np.uint8),
        "rhythm": cat("rhythm").astype(np.float16),
        "rhythm_mask": cat("rhythm_mask").astype(np.uint8),
    }


def encode_corpus(
    corpus_dir: str | os.PathLike,
    representation: Any,
    out_dir: str | os.PathLike,
    splits: Sequence[str] = ("train", "valid"),
    controls: str = "extracted",
    shard_size: int = 256,
    batch_size: int = 8,
    codec_id: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Encode the corpus's clips of ``splits`` into ``out_dir`` (see the module docstring); returns the index."""
    folder, out = Path(corpus_dir), Path(out_dir)
    if int(representation.sample_rate) != SAMPLE_RATE:
        raise CadenzaError(f"the codec runs at {representation.sample_rate} Hz, the corpus at {SAMPLE_RATE} Hz", "use a 22.05 kHz codec")
    if shard_size < 1 or batch_size < 1:
        raise CadenzaError("shard_size and batch_size must be at least 1")
    rows = read_manifest(folder)
    digest = hashlib.sha1((folder / MANIFEST_NAME).read_bytes()).hexdigest()
    codec = codec_record(representation, codec_id)
    head = {"format": TOKENS_FORMAT, "manifest_sha1": digest, "codec": codec, "controls": controls}
    index_path = out / "index.json"
    if index_path.is_file():
        try:
            old = json.loads(index_path.read_text())
        except json.JSONDecodeError:
            old = {}
        if {k: old.get(k) for k in head} != head:  # another manifest or codec: every shard is stale
            for p in out.glob("*-*.*"):
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    plan = []
    for split in splits:
        split_rows = sorted((r for r in rows if r["split"] == split), key=lambda r: r["id"])
        plan += [(split, k // shard_size, split_rows[k : k + shard_size]) for k in range(0, len(split_rows), shard_size)]
    index: dict = {**head, "splits": {}}
    from safetensors.numpy import save_file

    for i, (split, number, shard_rows) in enumerate(plan):
        name = f"{split}-{number:05d}"
        tensors, meta = out / f"{name}.safetensors", out / f"{name}.json"
        ids = [r["id"] for r in shard_rows]
        done = tensors.is_file() and meta.is_file() and _json_or_none(meta, "ids") == ids
        if not done:
            arrays = _shard_arrays(folder, shard_rows, representation, controls, batch_size)
            with atomic_path(tensors) as tmp:
                save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp), metadata={"format": str(TOKENS_FORMAT)})
            lengths = np.diff(arrays["offsets"]).tolist()
            atomic_write_json(meta, {"ids": ids, "captions": [r["captions"] for r in shard_rows], "n_frames": lengths})
            frames = int(sum(lengths))
        else:
            frames = int(sum(_json_or_none(meta, "n_frames") or []))
        entry = index["splits"].setdefault(split, {"shards": [], "clips": 0, "frames": 0})
        entry["shards"].append(name)
        entry["clips"] += len(shard_rows)
        entry["frames"] += frames
        if progress is not None:
            progress(i + 1, len(plan))
    atomic_write_json(index_path, index)
    return index


def _json_or_none(path: Path, key: str) -> Any:
    try:
        return json.loads(path.read_text()).get(key)
    except (OSError, json.JSONDecodeError, AttributeError):
        return None


def load_token_index(folder: str | os.PathLike) -> dict:
    """An encoded folder's index, or one CadenzaError saying what is wrong and how to make it."""
    path = Path(folder) / "index.json"
    if not path.is_file():
        raise CadenzaError(f"no token shards at {folder} (no index.json)", "encode a corpus first: cadenza.generators.tokens.data.encode_corpus, or train with data.source=corpus")
    try:
        index = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CadenzaError(f"{path}: invalid JSON ({exc.msg})", REDO_HINT) from None
    if not isinstance(index, dict) or index.get("format") != TOKENS_FORMAT or not isinstance(index.get("codec"), dict):
        raise CadenzaError(f"{path}: not a token index of format {TOKENS_FORMAT}", REDO_HINT)
    return index


class TokenDataset(Dataset):
    """Crops of ``frames`` codec frames from an encoded folder: ``codes`` (K, F) long, the controls on the
    codec grid with masks, ``valid`` (F,) (0 on padding of shorter clips), ``caption``, ``id``.

    ``codebooks`` / ``cardinality``, when given, must match the folder's codec (a model of another
    shape cannot train on it). ``random_crop=False`` takes the first frames and the first caption.
    """

    def __init__(
        self, folder: str | os.PathLike, split: str = "train", frames: int | None = None, codebooks: int | None = None,
        cardinality: int | None = None, random_crop: bool = True, random_caption: bool = True,
    ) -> None:
        self.folder = Path(folder)
        index = load_token_index(folder)
        codec = index["codec"]
        self.codebooks, self.cardinality = int(codec["codebooks"]), int(codec["cardinality"])
        for what, want, got in (("codebooks", codebooks, self.codebooks), ("cardinality", cardinality, self.cardinality)):
            if want is not None and int(want) != got:
                raise CadenzaError(
                    f"{folder}: tokens of codec '{codec.get('id')}' have {got} {what}, the model {want}",
                    "encode the corpus with the model's codec, or build the model for this codec",
                )
        self.frames, self.random_crop, self.random_caption = frames, random_crop, random_caption
        self.shards = list(index.get("splits", {}).get(split, {}).get("shards", []))
        if not self.shards:
            raise CadenzaError(f"split '{split}' of {folder} has no encoded clips", "encode that split or use another one")
        self.items: list[tuple[int, int, int]] = []  # shard, first frame, length
        self.ids: list[str] = []
        self.captions: list[list[str]] = []
        for s, name in enumerate(self.shards):
            meta = self._check_shard(name)
            offsets = np.concatenate([[0], np.cumsum(meta["n_frames"])])
            self.items += [(s, int(offsets[r]), int(n)) for r, n in enumerate(meta["n_frames"])]
            self.ids += meta["ids"]
            self.captions += meta["captions"]
        self._handles: dict[int, Any] = {}
        self._pid = os.getpid()

    def _check_shard(self, name: str) -> dict:
        """The shard's metadata, after checking both files are readable and agree with each other."""
        from safetensors import safe_open

        meta_path, path = self.folder / f"{name}.json", self.folder / f"{name}.safetensors"
        try:
            meta = json.loads(meta_path.read_text())
        except FileNotFoundError:
            raise CadenzaError(f"{meta_path}: missing", REDO_HINT) from None
        except json.JSONDecodeError as exc:
            raise CadenzaError(f"{meta_path}: invalid JSON ({exc.msg})", REDO_HINT) from None
        if not isinstance(meta, dict) or not all(isinstance(meta.get(k), list) for k in ("ids", "captions", "n_frames")) or not (
            len(meta["ids"]) == len(meta["captions"]) == len(meta["n_frames"])
        ):
            raise CadenzaError(f"{meta_path}: not a token shard's metadata (ids, captions, n_frames of one length)", REDO_HINT)
        try:
            with safe_open(str(path), framework="pt") as f:
                keys = set(f.keys())
                shapes = {k: tuple(f.get_slice(k).get_shape()) for k in keys}
        except Exception as exc:  # safetensors raises its own error types for truncated or foreign files
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise CadenzaError(f"{path}: unreadable token shard ({first})", REDO_HINT) from None
        missing = [k for k in ARRAYS if k not in keys]
        total = int(sum(meta["n_frames"]))
        want = {"codes": (self.codebooks, total), "offsets": (len(meta["ids"]) + 1,), "melody": (total,), "rhythm": (total, 2)}
        bad = [k for k, shape in want.items() if k in shapes and shapes[k] != shape]
        if missing or bad:
            what = f"lacks {', '.join(missing)}" if missing else f"{bad[0]} has shape {shapes[bad[0]]}, expected {want[bad[0]]}"
            raise CadenzaError(f"{path}: damaged token shard ({what})", REDO_HINT)
        return meta

    def __len__(self) -> int:
        return len(self.items)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_handles"] = {}
        return state

    def _shard(self, s: int) -> Any:
        from safetensors import safe_open

        if self._pid != os.getpid():
            self._handles, self._pid = {}, os.getpid()
        if s not in self._handles:
            self._handles[s] = safe_open(str(self.folder / f"{self.shards[s]}.safetensors"), framework="pt")
        return self._handles[s]

    def __getitem__(self, i: int) -> dict[str, Any]:
        s, first, length = self.items[i]
        n = self.frames or length
        start = int(torch.randint(0, length - n + 1, ()).item()) if (self.random_crop and length > n) else 0
        take = min(n, length)
        a, b = first + start, first + start + take
        f = self._shard(s)
        codes = f.get_slice("codes")[:, a:b].long()
        if take and (int(codes.min()) < 0 or int(codes.max()) >= self.cardinality):
            raise CadenzaError(f"{self.folder / self.shards[s]}.safetensors: codes outside 0..{self.cardinality - 1}", REDO_HINT)
        out: dict[str, Any] = {"codes": torch.zeros(self.codebooks, n, dtype=torch.long), "valid": torch.zeros(n)}
        out["codes"][:, :take] = codes
        out["valid"][:take] = 1.0
        pitch = f.get_slice("melody")[a:b].long()
        out["melody"] = torch.zeros(n, 12)
        voiced = pitch >= 0
        out["melody"][:take][voiced, pitch[voiced]] = 1.0
        for name in CONTROL_NAMES:
            out[f"{name}_mask"] = torch.zeros(n)
            out[f"{name}_mask"][:take] = f.get_slice(f"{name}_mask")[a:b].float()
        out["dynamics"] = torch.zeros(n, 1)
        out["dynamics"][:take, 0] = f.get_slice("dynamics")[a:b].float()
        out["rhythm"] = torch.zeros(n, 2)
        out["rhythm"][:take] = f.get_slice("rhythm")[a:b].float()
        caps = self.captions[i]
        k = int(torch.randint(0, len(caps), ()).item()) if (self.random_caption and len(caps) > 1) else 0
        out.update(caption=str(caps[k]), id=self.ids[i])
        return out
