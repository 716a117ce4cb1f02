"""Learned audio representations: the neural vocoder (log-mel → waveform)."""

from cadenza.representations.vocoder import (
    GeneratorConfig,
    Vocoder,
    VocosGenerator,
    build_generator,
    export_vocoder,
    load_vocoder,
    save_vocoder,
)

__all__ = ["GeneratorConfig", "Vocoder", "VocosGenerator", "build_generator", "export_vocoder", "load_vocoder", "save_vocoder"]
