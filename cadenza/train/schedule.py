"""The learning-rate shape every training task uses: linear warm-up, then cosine decay to a floor.

Why one function: each task (generator, token models, vocoder, beats, CLAP, instruments) had
its own copy of the same three lines, with only the floor differing.
"""

from __future__ import annotations

import math


def warmup_cosine(step: int, warmup: int, total: int, floor: float) -> float:
    """The multiplier of the peak learning rate at ``step``.

    ``(step + 1) / warmup`` during warm-up, then a cosine from 1 down to ``floor`` at ``total``,
    and ``floor`` after it.
    """
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(max(step - warmup, 0) / max(total - warmup, 1), 1.0)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
