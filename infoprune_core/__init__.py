"""InfoPrune: information-guided structural compression of vision-language models.

The library stands alone (no web, database or queue): `compress` a model, `load_compressed` it back.
"""

from infoprune_core.artifacts import load_compressed
from infoprune_core.config import CompressionConfig
from infoprune_core.errors import InfoPruneError
from infoprune_core.pipeline import CompressionResult, compress, profile
from infoprune_core.progress import ProgressCallback, ProgressEvent

__all__ = [
    "CompressionConfig",
    "CompressionResult",
    "InfoPruneError",
    "ProgressCallback",
    "ProgressEvent",
    "compress",
    "load_compressed",
    "profile",
]
