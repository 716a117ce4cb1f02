"""Discrete-token generators over a codec's RVQ codes: the AR LM (MusicGen-style) and MAGNeT.

See ``docs/tokens/README.md``; the ``sample`` contract is in ``generator.py``.
"""
