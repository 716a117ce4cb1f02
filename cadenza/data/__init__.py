"""Training data: the rendered music21 corpus, the user's-own-audio index, the feature cache.

Heavy pieces (music21, the synthesiser, torch datasets) are imported by the submodules that
need them, so ``import cadenza.data`` stays cheap.
"""

from cadenza.data.manifest import MANIFEST_NAME, SPLITS, read_manifest, validate_manifest, write_manifest

__all__ = ["MANIFEST_NAME", "SPLITS", "read_manifest", "validate_manifest", "write_manifest"]
