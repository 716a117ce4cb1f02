"""Map-style torch datasets over a built or indexed data set.

``ClipDataset`` reads the feature cache (mel + controls + captions) for the generator;
``AudioClipDataset`` reads random waveform crops (with their mel) for the vocoder. Both work
with a multi-worker ``DataLoader``: shard files are opened lazily in each worker (safetensors
memory-maps them, so only the frames asked for are read) and crops use torch's random state,
which the DataLoader seeds differently per worker.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset

from cadenza.audio.format import HOP_LENGTH, SAMPLE_RATE
from cadenza.audio.mel import LOG_MEL_MIN, MelSpectrogram
from cadenza.data.cache import cache_dir, load_index
from cadenza.data.manifest import SPLITS, read_manifest
from cadenza.errors import CadenzaError


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise CadenzaError(f"unknown split '{split}'", f"choose one of {', '.join(SPLITS)}")


class ClipDataset(Dataset):
    """Cached clips as dicts of tensors: one class for the rendered corpus and the user's audio.

    Each item: ``mel`` (n_mels, F) float32 log-mel; ``melody`` (F, 12) one-hot, ``dynamics``
    (F,) dB, ``rhythm`` (F, 2), a ``*_mask`` (F,) per control; ``valid`` (F,) 1 on real
    frames (0 on padding when a clip is shorter than ``frames``); ``caption`` (str), ``id``,
    ``start`` (first frame of the crop). ``frames=None`` returns whole clips (equal length
    only when the clips are). ``random_crop=False`` takes the first ``frames`` frames and the
    first caption, for evaluation.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        split: str = "train",
        frames: int | None = None,
        controls: str = "score",
        random_crop: bool = True,
        random_caption: bool = True,
    ) -> None:
        _check_split(split)
        if frames is not None and frames < 1:
            raise CadenzaError(f"frames must be positive, got {frames}")
        self.folder = Path(folder)
        self.split, self.frames, self.random_crop = split, frames, random_crop
        self.random_caption = random_caption
        index = load_index(folder, controls)
        self.dir = cache_dir(folder, controls)
        self.shards: list[str] = list(index["splits"].get(split, {}).get("shards", []))
        if not self.shards:
            raise CadenzaError(f"split '{split}' of {folder} has no clips", "use another split or a bigger data set")
        self.n_mels = int(index["mel"]["n_mels"])
        self.items: list[tuple[int, int, int, int]] = []  # shard, row, first frame, length
        self.ids: list[str] = []
        self.captions: list[list[str]] = []
        for s, name in enumerate(self.shards):
            meta = json.loads((self.dir / f"{name}.json").read_text())
            offsets = np.concatenate([[0], np.cumsum(meta["n_frames"])])
            for r, cid in enumerate(meta["ids"]):
                self.items.append((s, r, int(offsets[r]), int(meta["n_frames"][r])))
            self.ids += meta["ids"]
            self.captions += meta["captions"]
        self._handles: dict[int, object] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.items)

    def _shard(self, s: int):
        from safetensors import safe_open

        if self._pid != os.getpid():  # forked into a DataLoader worker: reopen files there
            self._handles, self._pid = {}, os.getpid()
        if s not in self._handles:
            self._handles[s] = safe_open(str(self.dir / f"{self.shards[s]}.safetensors"), framework="pt")
        return self._handles[s]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_handles"] = {}  # file handles never cross process boundaries
        return state

    def __getitem__(self, i: int) -> dict:
        s, r, first, length = self.items[i]
        F = self.frames or length
        start = 0
        if length > F:
            start = int(torch.randint(0, length - F + 1, ()).item()) if self.random_crop else 0
        take = min(F, length)
        a, b = first + start, first + start + take
        f = self._shard(s)
        mel = f.get_slice("mel")[:, a:b].float()
        pitch = f.get_slice("melody")[a:b].long()
        out = {
            "mel": torch.full((self.n_mels, F), LOG_MEL_MIN),
            "melody": torch.zeros(F, 12),
            "melody_mask": torch.zeros(F),
            "dynamics": torch.zeros(F),
            "dynamics_mask": torch.zeros(F),
            "rhythm": torch.zeros(F, 2),
            "rhythm_mask": torch.zeros(F),
            "valid": torch.zeros(F),
        }
        out["mel"][:, :take] = mel
        voiced = pitch >= 0
        out["melody"][:take][voiced, pitch[voiced]] = 1.0
        for name in ("melody_mask", "dynamics", "dynamics_mask", "rhythm", "rhythm_mask"):
            out[name][:take] = f.get_slice(name)[a:b].float()
        out["valid"][:take] = 1.0
        caps = self.captions[i]
        k = int(torch.randint(0, len(caps), ()).item()) if (self.random_caption and len(caps) > 1) else 0
        out.update(caption=caps[k], id=self.ids[i], start=start)
        return out


class AudioClipDataset(Dataset):
    """Random waveform crops with their mel, for training a vocoder.

    ``segment`` samples are cut at a frame boundary (a multiple of the hop), so the crop's
    mel has ``segment // 256 + 1`` frames whether it is computed on the fly
    (``mel_source="compute"``, the default) or sliced from the feature cache
    (``mel_source="cache"``, frames centred inside the crop). Clips shorter than the segment
    are zero-padded. Items: ``audio`` (segment,), ``mel`` (n_mels, frames), ``id``.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        split: str = "train",
        segment: int = 8192,
        mel_source: str = "compute",
        controls: str = "score",
        random_crop: bool = True,
    ) -> None:
        _check_split(split)
        if segment < HOP_LENGTH * 4 or segment % HOP_LENGTH:
            raise CadenzaError(f"segment {segment} must be a multiple of {HOP_LENGTH} and at least {HOP_LENGTH * 4}")
        if mel_source not in ("compute", "cache"):
            raise CadenzaError(f"unknown mel_source '{mel_source}'", "choose 'compute' or 'cache'")
        self.folder = Path(folder)
        self.segment, self.mel_source, self.random_crop = segment, mel_source, random_crop
        self.rows = sorted(read_manifest(folder, split), key=lambda r: r["id"])
        if not self.rows:
            raise CadenzaError(f"split '{split}' of {folder} has no clips", "use another split or a bigger data set")
        self._mel: MelSpectrogram | None = None
        self._clips: ClipDataset | None = None
        if mel_source == "cache":
            self._clips = ClipDataset(folder, split, frames=None, controls=controls, random_crop=False, random_caption=False)
            self._pos = {cid: i for i, cid in enumerate(self._clips.ids)}

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        row = self.rows[i]
        n = int(row["n_samples"])
        n_frames_seg = self.segment // HOP_LENGTH + 1
        max_start_frame = max((n - self.segment) // HOP_LENGTH, 0)
        k = int(torch.randint(0, max_start_frame + 1, ()).item()) if self.random_crop and max_start_frame else 0
        a = k * HOP_LENGTH
        data, sr = sf.read(str(self.folder / row["path"]), start=a, stop=min(a + self.segment, n), dtype="float32", always_2d=True)
        if sr != SAMPLE_RATE:
            raise CadenzaError(f"{row['path']}: sample rate {sr}, expected {SAMPLE_RATE}", "rebuild the data set")
        audio = torch.zeros(self.segment)
        audio[: len(data)] = torch.from_numpy(data.mean(axis=1))
        if self.mel_source == "compute":
            if self._mel is None:
                self._mel = MelSpectrogram()
            with torch.no_grad():
                mel = self._mel(audio)
        else:
            item = self._clips[self._pos[row["id"]]]
            full = item["mel"]
            mel = torch.full((full.shape[0], n_frames_seg), LOG_MEL_MIN)
            part = full[:, k : k + n_frames_seg]
            mel[:, : part.shape[1]] = part
        return {"audio": audio, "mel": mel, "id": row["id"]}
