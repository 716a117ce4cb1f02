"""Evaluation: control adherence, a pitch-tracker cross-check, Fréchet Audio Distance and a small CLAP model."""
