"""Deprecated home of ``control_adherence``: the metrics live in ``cadenza.eval.adherence``."""

from cadenza.eval.adherence import control_adherence

__all__ = ["control_adherence"]
