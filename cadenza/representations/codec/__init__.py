"""The RVQ neural codec family: ``load_codec(folder)`` → :class:`Codec` (waveform ↔ tokens)."""

from cadenza.representations.codec.codec import Codec, build_codec, load_codec

__all__ = ["Codec", "build_codec", "load_codec"]
