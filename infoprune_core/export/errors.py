"""The one error the GGUF export raises for a model llama.cpp cannot express."""

from __future__ import annotations

from infoprune_core.errors import InfoPruneError


class ExportRefused(InfoPruneError):
    """The artifact (or its tokenizer) has a shape llama.cpp cannot load; the message names what to set."""
