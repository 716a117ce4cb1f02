"""Conditioning for the generator: text encoders, control encoders and guidance helpers."""

from cadenza.conditioning.cfg import guide, null_text, replace_with_null, with_unconditional
from cadenza.conditioning.controls import (
    CONTROL_DIMS,
    ControlEncoder,
    controls_to_tensors,
    empty_controls,
    normalize_dynamics,
    pad_controls,
    random_control_masks,
)
from cadenza.conditioning.text import HashTextEncoder, MiniLMTextEncoder, TextEmbedding, TextEncoder, build_text_encoder

__all__ = [
    "CONTROL_DIMS", "ControlEncoder", "HashTextEncoder", "MiniLMTextEncoder", "TextEmbedding", "TextEncoder",
    "build_text_encoder", "controls_to_tensors", "empty_controls", "guide", "normalize_dynamics", "null_text",
    "pad_controls", "random_control_masks", "replace_with_null", "with_unconditional",
]
