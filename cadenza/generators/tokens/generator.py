"""What the two token ``Generator``s share: their codec, and turning a request into tensors.

The sample contract (what a pipeline hands ``sample(request, conditions, progress)``):

- ``conditions["n_frames"]``: frames **of the codec** to produce (``≈ duration · codec.frame_rate``);
- ``conditions["text"]``: a ``TextEmbedding`` of the prompt (1 row, or one per seed);
- ``conditions["controls"]`` (optional): ``controls_to_tensors`` output **on the mel grid**
  (86.13 fps, any length covering the window); resampled here to ``n_frames`` codec frames
  (``conditioning.resample_controls``), so the pipeline's control code stays as it is;
- ``conditions["known"]`` (optional): codes (1 or B, K, n_frames) with ``known_mask``
  (1 or B, n_frames) at the codec rate, 1 = keep that frame;
- ``conditions["generators"]`` (optional): one ``torch.Generator`` per seed, shared by every
  window of a long output; without it each seed gets a fresh generator.

It returns codes (B = one per seed, K, n_frames); ``generator.representation`` (the loaded codec)
decodes them, so the pipeline's hook is: encode known audio with ``representation``, pass its
frame count as ``n_frames``, decode the result with ``representation``.

The model config names its codec: ``"codec": PATH_OR_ID`` (an absolute path, a folder relative
to the model folder, or a shipped id under ``cadenza/weights``) and records ``codec_info``
(codebooks, cardinality, frame rate, model id) when trained; a missing codec or one of another
shape or other weights is one ``CadenzaError`` at load.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from cadenza.conditioning.controls import empty_controls
from cadenza.conditioning.text import TextEmbedding
from cadenza.errors import CadenzaError
from cadenza.generators.tokens.conditioning import resample_controls
from cadenza.generators.tokens.net import TokenNet
from cadenza.protocols import GenerationRequest

WEIGHTS_ROOT = Path(__file__).resolve().parents[2] / "weights"
CODEC_MEMBERS = ("encode", "decode", "sample_rate", "frame_rate", "codebooks", "cardinality")


def codec_candidates(codec: str, folder: Path | None) -> list[Path]:
    """Where ``codec`` may be, in order: as given (absolute), beside the model folder, shipped, the working directory."""
    path = Path(codec).expanduser()
    if path.is_absolute():
        return [path]
    out = [folder / path] if folder is not None else []
    return [*out, WEIGHTS_ROOT / path, Path.cwd() / path]


def find_codec(codec: Any, folder: Path | None = None) -> Path:
    """The folder a config's ``codec`` entry names (see ``codec_candidates``), or one CadenzaError."""
    where = f"{folder}: " if folder is not None else ""
    if not isinstance(codec, str) or not codec.strip():
        raise CadenzaError(f"{where}config names no codec ('codec' is {codec!r})", "set \"codec\" to the codec model folder the tokens come from")
    tried = codec_candidates(codec, folder)
    found = next((p for p in tried if (p / "config.json").is_file()), None)
    if found is None:
        raise CadenzaError(
            f"{where}the codec '{codec}' is missing (looked in {', '.join(str(p) for p in tried)})",
            "train or copy the codec folder there, or set \"codec\" to its path",
        )
    return found


def load_codec(codec: Any, folder: Path | None = None) -> tuple[Any, Path, str]:
    """(representation, its folder, its model id) for a config's ``codec`` entry, or one CadenzaError."""
    from cadenza.registry import load_model

    where = f"{folder}: " if folder is not None else ""
    found = find_codec(codec, folder)
    loaded = load_model(found)
    rep = loaded.model
    lacking = [m for m in CODEC_MEMBERS if not hasattr(rep, m)]
    if lacking or getattr(rep, "discrete", True) is False:
        raise CadenzaError(
            f"{where}{found} ({loaded.family.key}) is not a discrete codec (lacks {', '.join(lacking) or 'discrete codes'})",
            "point \"codec\" at a codec folder (encode → codes (B, K, T), codebooks, cardinality)",
        )
    return rep, found, loaded.model_id


def codec_info(rep: Any, model_id: str) -> dict:
    """What a trained model records of its codec (checked again at every load)."""
    return {
        "codebooks": int(rep.codebooks), "cardinality": int(rep.cardinality), "frame_rate": float(rep.frame_rate),
        "sample_rate": int(rep.sample_rate), "model_id": model_id,
        "codec_codebooks": int(getattr(rep, "full_codebooks", rep.codebooks)),
        **({"token_digest": str(rep.token_digest)} if getattr(rep, "token_digest", None) else {}),
    }


class CodebookPrefix:
    """A codec seen through its first ``codebooks`` RVQ levels.

    Why: an RVQ codec trained with quantizer dropout decodes any prefix of its levels, so one
    codec serves token models of several sizes; fewer levels mean fewer tokens per frame (each
    LM step and MAGNeT level costs less), at the prefix's bitrate. Everything but ``encode``,
    ``codebooks`` and ``bitrate`` is the codec's own.
    """

    def __init__(self, codec: Any, codebooks: int) -> None:
        self.codec, self.codebooks = codec, int(codebooks)
        self.full_codebooks = int(codec.codebooks)

    def encode(self, wave: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.codec.encode(wave, *args, **kwargs)[:, : self.codebooks]

    def bitrate(self, n_q: int | None = None) -> float:
        return float(self.codec.bitrate(self.codebooks if n_q is None else min(int(n_q), self.codebooks)))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["codec"], name)


def codec_view(rep: Any, codebooks: Any, folder: Path | None = None) -> Any:
    """``rep`` itself, or its first ``codebooks`` levels (``model.codebooks`` smaller than the codec's); more is one CadenzaError."""
    if codebooks is None or int(codebooks) == int(rep.codebooks):
        return rep
    where = f"{folder}: " if folder is not None else ""
    if isinstance(codebooks, bool) or not 1 <= int(codebooks) < int(rep.codebooks):
        raise CadenzaError(
            f"{where}model.codebooks is {codebooks!r} but the codec has {int(rep.codebooks)} codebooks",
            f"set model.codebooks to 1..{int(rep.codebooks)} (a prefix of the codec's levels), or null for all",
        )
    return CodebookPrefix(rep, int(codebooks))


def check_codec(config: dict, rep: Any, model_id: str, folder: Path | None) -> None:
    """The codec must have the shape the network was built for (and the recorded weights, when recorded)."""
    where = f"{folder}: " if folder is not None else ""
    model = config.get("model", {})
    got = {"codebooks": int(rep.codebooks), "cardinality": int(rep.cardinality)}
    want = {k: model.get(k) for k in got}
    if got != want:
        raise CadenzaError(
            f"{where}the codec gives {got['codebooks']} codebooks of {got['cardinality']} codes but the model was built for "
            f"{want['codebooks']} of {want['cardinality']}",
            "load the model with the codec it was trained on (config 'codec')",
        )
    info = config.get("codec_info") or {}
    recorded, tokens = info.get("model_id"), info.get("token_digest")
    # a codec whose decoder was retrained on frozen tokens (same encoder and codebooks) gives the same codes: accepted
    same_tokens = bool(tokens) and tokens == getattr(rep, "token_digest", None)
    if recorded and recorded != model_id and not same_tokens:
        raise CadenzaError(
            f"{where}the codec's weights ({model_id}) are not the ones the model was trained on ({recorded})",
            "point 'codec' at the codec folder the model was trained with (or one whose decoder was retrained on its tokens)",
        )


class TokenGenerator:
    """Base of ``TokenLMGenerator`` and ``MagnetGenerator``: the codec and the request's tensors."""

    defaults: dict = {"cfg": 3.0, "temperature": 1.0, "top_k": 0, "top_p": 0.0}

    def __init__(self, net: TokenNet, config: dict, folder: Path | None = None, representation: Any = None) -> None:
        self.net, self.config, self.folder = net, config, folder
        if representation is None:
            representation, _, model_id = load_codec(config.get("codec"), folder)
            representation = codec_view(representation, config.get("model", {}).get("codebooks"), folder)
            check_codec(config, representation, model_id, folder)
        self.representation = representation

    @property
    def sampling(self) -> dict:
        return {**self.defaults, **self.config.get("sampling", {})}

    @property
    def frame_rate(self) -> float:
        return float(self.representation.frame_rate)

    def frames_for(self, seconds: float) -> int:
        """Codec frames for a duration (what the pipeline's hook passes as ``n_frames``)."""
        return max(1, int(math.ceil(seconds * self.frame_rate)))

    def options(self, conditions: Mapping[str, Any]) -> dict:
        """Sampling options: the config's ``sampling``, overridden by ``conditions["sampling"]`` (temperature, top_k, top_p, …)."""
        return {**self.sampling, **dict(conditions.get("sampling") or {})}

    def prepare(self, request: GenerationRequest, conditions: Mapping[str, Any]) -> dict[str, Any]:
        """Text (one row per seed), controls on the codec grid, known codes/mask (B rows) and generators."""
        if "text" not in conditions or "n_frames" not in conditions:
            raise CadenzaError("the token generator needs conditions 'text' and 'n_frames'", "the pipeline prepares them")
        b = len(request.seeds)
        n = int(conditions["n_frames"])
        if n < 1:
            raise CadenzaError(f"nothing to generate in {n} codec frames", "ask for a longer duration")
        text: TextEmbedding = conditions["text"]
        if len(text) != b:
            text = text.repeat(b // len(text))
        controls = conditions.get("controls")
        if controls is None:
            controls = empty_controls(b, n)
        else:
            controls = resample_controls({k: v.expand(b, *v.shape[1:]) for k, v in controls.items()}, n, self.frame_rate)
        known, known_mask = conditions.get("known"), conditions.get("known_mask")
        if known is not None:
            k = self.net.codebooks
            if known.dim() != 3 or known.shape[1] != k or known.shape[2] != n:
                raise CadenzaError(f"known codes have shape {tuple(known.shape)}, expected (B, {k}, {n})", "encode the known audio with this model's codec")
            known = known.long().expand(b, -1, -1)
            if int(known.min()) < 0 or int(known.max()) >= self.net.cardinality:
                raise CadenzaError(f"known codes fall outside 0..{self.net.cardinality - 1}", "encode the known audio with this model's codec")
            known_mask = (torch.ones(b, n) if known_mask is None else known_mask.expand(b, -1)).float() > 0
        gens = conditions.get("generators") or [torch.Generator().manual_seed(int(s)) for s in request.seeds]
        if len(gens) != b:
            raise CadenzaError(f"{len(gens)} random generators for {b} seeds")
        return {"text": text, "controls": controls, "n_frames": n, "known": known, "known_mask": known_mask, "generators": list(gens)}
