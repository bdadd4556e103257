"""InfoPrune: information-guided structural compression of vision-language models.

The library stands alone (no web, database or queue): `compress` a model, `load_compressed` it back.
The names below are imported on first use, so `import infoprune_core.config` (what the service API and
the client need) does not import torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from infoprune_core.artifacts import load_compressed
    from infoprune_core.config import CompressionConfig
    from infoprune_core.errors import InfoPruneError
    from infoprune_core.pipeline import CompressionResult, compress
    from infoprune_core.profiling import profile
    from infoprune_core.progress import ProgressCallback, ProgressEvent

_EXPORTS = {
    "CompressionConfig": "infoprune_core.config",
    "CompressionResult": "infoprune_core.pipeline",
    "InfoPruneError": "infoprune_core.errors",
    "ProgressCallback": "infoprune_core.progress",
    "ProgressEvent": "infoprune_core.progress",
    "compress": "infoprune_core.pipeline",
    "load_compressed": "infoprune_core.artifacts",
    "profile": "infoprune_core.profiling",
}

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


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'infoprune_core' has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
