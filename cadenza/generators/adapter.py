"""The Music ControlNet network as a ``cadenza.protocols.Generator``.

Why: a pipeline that serves every family calls ``generator.sample(request, conditions,
progress)`` and nothing family-specific. This thin adapter gives the existing network that
call for one window of frames; windowing long outputs, continuation and inpainting stay with
the pipeline (``cadenza.pipeline.Cadenza.run``), which hands the known frames in through
``conditions``. Frames are normalised mels (``cadenza.representations.mel``); the network's
per-bin standardisation stays inside this adapter.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from cadenza.errors import CadenzaError
from cadenza.generators.controlnet import MusicControlNet
from cadenza.generators.diffusion import SAMPLERS, sample
from cadenza.protocols import GenerationRequest, ProgressCallback


class ControlNetGenerator:
    """``sample(request, conditions, progress)`` → normalised mels (B = one per seed, n_mels, T).

    ``conditions``: ``text`` (a ``TextEmbedding`` of the prompt), ``n_frames``, and optionally
    ``controls`` (``controls_to_tensors`` output), ``known`` (normalised mels) with ``known_mask``,
    and ``generators`` (one ``torch.Generator`` per seed): the pipeline passes the same ones to
    every window of a long output, so the windows draw one noise stream, not the same noise again.
    """

    samplers: tuple[str, ...] = SAMPLERS  # what ``request.sampler`` may name (the pipeline checks it)
    supports_dynamics_guidance = True  # the sampler can correct loudness inside the dynamics mask
    supports_downbeat_cfg = True  # the sampler has the downbeat guidance branch

    def __init__(self, net: MusicControlNet, config: dict) -> None:
        self.net, self.config = net, config

    @property
    def sampling(self) -> dict:
        return self.config.get("sampling", {})

    @property
    def control_names(self) -> tuple[str, ...]:
        """The controls the network was trained on (the pipeline refuses others up front)."""
        return self.net.control_names

    def to_native(self, frames: torch.Tensor) -> torch.Tensor:
        """Normalised mels → the standardised mels the sampler diffuses (the network's per-bin statistics)."""
        return self.net.standardize(frames)

    def from_native(self, x: torch.Tensor) -> torch.Tensor:
        """Standardised mels → normalised mels (the representation's frames)."""
        return self.net.destandardize(x)

    def sample(self, request: GenerationRequest, conditions: Mapping[str, Any], progress: ProgressCallback | None = None) -> torch.Tensor:
        """Normalised mels (B, n_mels, n_frames); ``known`` in normalised mels too (the protocol's form)."""
        if conditions.get("known") is not None:
            conditions = {**conditions, "known": self.to_native(conditions["known"])}
        return self.from_native(self.sample_native(request, conditions, progress))

    def sample_native(self, request: GenerationRequest, conditions: Mapping[str, Any], progress: ProgressCallback | None = None) -> torch.Tensor:
        """``sample`` in standardised units, in and out.

        Why: the pipeline's long-form buffer stays in these units, so frames of earlier windows reach
        later ones exactly instead of through a float32 round trip per window (which drifted outputs
        over 24 s by up to 1e-3 from before the pipeline rewrite).
        """
        request = request.with_defaults({"steps": 25, "cfg": 3.0, "sampler": "dpmsolver++", **self.sampling})
        if "text" not in conditions or "n_frames" not in conditions:
            raise CadenzaError("the generator needs conditions 'text' and 'n_frames'", "the pipeline prepares them")
        b = len(request.seeds)
        text = conditions["text"]
        if len(text) != b:
            text = text.repeat(b // len(text))
        controls = conditions.get("controls")
        if controls is not None:
            controls = {k: v.expand(b, *v.shape[1:]).contiguous() for k, v in controls.items()}
        known, known_mask = conditions.get("known"), conditions.get("known_mask")
        if known is not None:
            known = known.expand(b, -1, -1).clone()
            known_mask = known_mask.expand(b, -1).clone().float()
        gens = conditions.get("generators") or [torch.Generator().manual_seed(int(s)) for s in request.seeds]
        x = sample(
            self.net, text, controls, int(conditions["n_frames"]), gens, steps=int(request.steps), cfg=float(request.cfg),
            sampler=str(request.sampler), diffusion=self.config.get("diffusion"), known=known, known_mask=known_mask,
            callback=progress, control_cfg=request.control_cfg or 0.0, dynamics_guidance=float(request.dynamics_guidance or 0.0),
            downbeat_cfg=float(request.downbeat_cfg or 0.0),
        )
        return x
