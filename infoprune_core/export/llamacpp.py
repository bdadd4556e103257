"""Open an exported GGUF in llama.cpp through llama-cpp-python (the `gguf` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def open_llama(path: Path, n_ctx: int, all_logits: bool = True, threads: int = 1) -> Any:
    """A `llama_cpp.Llama` with `threads` threads and one batch of `n_ctx` tokens.

    With `all_logits`, every position's logits are kept (`scores`) and the KV cache is f32 rather
    than llama.cpp's default f16, which rounds keys and values: what a comparison with PyTorch needs.
    """
    from llama_cpp import GGML_TYPE_F32, Llama

    cache = GGML_TYPE_F32 if all_logits else None  # None: llama.cpp's default (f16)
    return Llama(
        model_path=str(path),
        n_ctx=n_ctx,
        n_batch=n_ctx,
        n_ubatch=n_ctx,
        n_threads=threads,
        n_threads_batch=threads,
        logits_all=all_logits,
        type_k=cache,
        type_v=cache,
        verbose=False,
    )
