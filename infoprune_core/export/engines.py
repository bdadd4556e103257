"""Which engines load an artifact: the `"engines"` list of infoprune.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from infoprune_core.errors import InfoPruneError

LOAD_COMPRESSED = "load_compressed"
# A stock config.json: what these engines read (they are not run by the test suite).
FROM_PRETRAINED = ("transformers from_pretrained", "vLLM", "SGLang", "TGI")
LLAMA_CPP = "llama.cpp (via infoprune export-gguf)"


def engines_for(document: dict[str, Any], directory: Path) -> list[str]:
    """Engines for the manifest `document` of the artifact whose other files are in `directory`."""
    from infoprune_core.export.plan import plan_export

    engines = [LOAD_COMPRESSED]
    if document.get("plain_from_pretrained"):
        engines.extend(FROM_PRETRAINED)
    try:
        plan_export(directory, document)
    except (InfoPruneError, KeyError, TypeError, ValueError):  # refused, or a config the export cannot read
        return engines
    return [*engines, LLAMA_CPP]
