"""Token files: a codec's codes in safetensors, with the metadata that makes decoding safe.

A token file holds one tensor ``codes`` (n_q, T), int16 when the codebook fits (int32 otherwise),
and string metadata: the ``format`` tag and its version, the codec's model id (name @ weights
digest), n_q, the codec's codebooks and cardinality, frame and sample rate, and n_samples (the
input length, so decoding returns exactly as many samples). :func:`check_tokens` refuses a file
written by another codec, or whose numbers disagree with each other, before any decoding.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from cadenza.errors import CadenzaError

FORMAT = "cadenza-codec-tokens"
VERSION = "1"
MAX_TOKEN_FILE_BYTES = 1024**3


@dataclass(frozen=True)
class TokenFile:
    """The contents of a token file: codes (n_q, T) int64 and what they were made with."""

    codes: torch.Tensor
    model_id: str
    n_q: int
    codebooks: int
    cardinality: int
    frame_rate: float
    sample_rate: int
    n_samples: int
    token_digest: str = ""  # the writing codec's token space (files from before it was recorded: "")


def save_tokens(path: str | os.PathLike, codes: torch.Tensor, codec, n_samples: int) -> Path:
    """Write ``codes`` (n_q, T) of ``codec`` (a :class:`Codec`) for an input of ``n_samples`` samples."""
    from cadenza.checkpoint import save_safetensors_atomic

    c = torch.as_tensor(codes)
    if c.dim() != 2:
        raise CadenzaError(f"a token file holds one clip's codes (n_q, frames), got shape {tuple(c.shape)}")
    dtype = torch.int16 if codec.cardinality <= 2**15 else torch.int32
    meta = {
        "format": FORMAT, "version": VERSION, "model_id": codec.model_id, "n_q": str(int(c.shape[0])),
        "codebooks": str(codec.codebooks), "cardinality": str(codec.cardinality), "frame_rate": repr(float(codec.frame_rate)),
        "sample_rate": str(codec.sample_rate), "n_samples": str(int(n_samples)), "token_digest": str(getattr(codec, "token_digest", "")),
    }
    return save_safetensors_atomic(path, {"codes": c.to(dtype)}, metadata=meta)


def load_tokens(path: str | os.PathLike) -> TokenFile:
    """Read a token file; a missing, truncated, foreign or inconsistent file is one CadenzaError."""
    from safetensors import safe_open

    from cadenza.limits import check_file_size

    path = Path(path)
    if not path.is_file():
        raise CadenzaError(f"{path}: no such token file", "write one with 'cadenza codec encode IN.wav --out codes.safetensors'")
    check_file_size(path, MAX_TOKEN_FILE_BYTES, "token file")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            keys = list(fh.keys())
            codes = fh.get_tensor("codes") if "codes" in keys else None
    except Exception as exc:  # safetensors raises SafetensorError / OSError with terse text
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CadenzaError(f"{path}: not a readable token file ({detail})", "the file is damaged or not a safetensors file; encode the audio again") from None
    if meta.get("format") != FORMAT or codes is None:
        raise CadenzaError(f"{path}: not a Cadenza codec token file", "write one with 'cadenza codec encode'")
    if meta.get("version") != VERSION:
        raise CadenzaError(f"{path}: token file version {meta.get('version')!r}, this Cadenza reads {VERSION}", "encode the audio again")
    try:
        info = dict(model_id=str(meta["model_id"]), n_q=int(meta["n_q"]), codebooks=int(meta["codebooks"]), cardinality=int(meta["cardinality"]),
                    frame_rate=float(meta["frame_rate"]), sample_rate=int(meta["sample_rate"]), n_samples=int(meta["n_samples"]),
                    token_digest=str(meta.get("token_digest", "")))
    except (KeyError, ValueError) as exc:
        raise CadenzaError(f"{path}: token file metadata is damaged ({type(exc).__name__}: {exc})", "encode the audio again") from None
    if codes.is_floating_point() or codes.dim() != 2 or codes.shape[0] != info["n_q"] or codes.shape[1] == 0:
        raise CadenzaError(f"{path}: codes of shape {tuple(codes.shape)} / {codes.dtype} do not match n_q={info['n_q']}", "the file is damaged; encode the audio again")
    expected_frames = max(1, math.ceil(info["n_samples"] * info["frame_rate"] / info["sample_rate"] - 1e-9))
    if info["n_samples"] < 1 or codes.shape[1] != expected_frames:
        raise CadenzaError(f"{path}: {codes.shape[1]} code frames for {info['n_samples']} samples (expected {expected_frames})", "the file is damaged; encode the audio again")
    return TokenFile(codes.long(), **info)


def check_tokens(tokens: TokenFile, codec, path: str | os.PathLike = "tokens") -> None:
    """Refuse tokens that ``codec`` did not write (another model, rate, codebook) with one clear error.

    A codec whose decoder was retrained on frozen tokens has another model id but the same token
    digest: it reads the old codec's files.
    """
    same_tokens = bool(tokens.token_digest) and tokens.token_digest == getattr(codec, "token_digest", None)
    if tokens.model_id != codec.model_id and not same_tokens:
        raise CadenzaError(f"{path}: written by codec {tokens.model_id}, but the model is {codec.model_id}",
                           "decode with the codec that encoded it (--model), or encode the audio again")
    mismatched = [name for name, mine in (("sample_rate", codec.sample_rate), ("cardinality", codec.cardinality), ("codebooks", codec.codebooks))
                  if getattr(tokens, name) != mine]
    if mismatched or abs(tokens.frame_rate - codec.frame_rate) > 1e-6:
        raise CadenzaError(f"{path}: {', '.join(mismatched) or 'frame_rate'} differ from the codec's", "the file is damaged or from another codec")
    if not 1 <= tokens.n_q <= codec.codebooks:
        raise CadenzaError(f"{path}: n_q={tokens.n_q} outside 1..{codec.codebooks}", "the file is damaged")
    lo, hi = int(tokens.codes.min()), int(tokens.codes.max())
    if lo < 0 or hi >= codec.cardinality:
        raise CadenzaError(f"{path}: codes out of range [{lo}, {hi}] for a codebook of {codec.cardinality}", "the file is damaged")
