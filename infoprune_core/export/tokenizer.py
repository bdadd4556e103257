"""The vocabulary a GGUF carries so llama.cpp tokenizes as the artifact's `tokenizer.json` does.

- Byte-level BPE (GPT-2 style: SmolLM2, Llama 3, Qwen2) becomes `tokenizer.ggml.model = gpt2` with its
  merges; `tokenizer.ggml.pre` names the llama.cpp pre-tokenizer whose regex is the one in
  tokenizer.json (`src/llama-vocab.cpp` picks the regex by that name). Unknown pre-tokenizers are refused
  rather than tokenized differently.
- A word-level vocabulary (the tiny test models) becomes llama.cpp's WordPiece tokenizer
  (`tokenizer.ggml.model = bert`): each word is stored as "▁word" and matched whole, anything else is
  the unknown token, as WordLevel does.
Reads JSON only; no gguf import, so `engines_for` can use it without the export extra.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infoprune_core.export.errors import ExportRefused

# GGUF token types (gguf-py's TokenType).
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED = 1, 2, 3, 4, 5
WORD_PREFIX = "\u2581"  # llama.cpp's WPM tokenizer prefixes every word with it
# Split regexes of tokenizer.json files that llama.cpp knows by name.
_CONTRACTIONS = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|"
_TAIL = r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
SPLIT_PRETOKENIZERS = {
    _CONTRACTIONS + r"\p{N}{1,3}" + _TAIL: "llama-bpe",  # Llama 3
    _CONTRACTIONS + r"\p{N}" + _TAIL: "qwen2",
}
WORD_SPLITS = (["WhitespaceSplit"], ["Whitespace"])
SUPPORTED = "byte-level BPE with the GPT-2, SmolLM, Llama-3 or Qwen2 pre-tokenizer, or a WordLevel vocabulary"


@dataclass(frozen=True)
class Vocabulary:
    model: str  # tokenizer.ggml.model
    pre: str | None  # tokenizer.ggml.pre (byte-level BPE only)
    tokens: list[str]
    types: list[int]


def _steps(pre_tokenizer: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not pre_tokenizer:
        return []
    if pre_tokenizer.get("type") == "Sequence":
        return list(pre_tokenizer.get("pretokenizers") or [])
    return [pre_tokenizer]


def _byte_level_pre(pre_tokenizer: dict[str, Any] | None) -> str | None:
    """The llama.cpp pre-tokenizer name matching a byte-level BPE's pre-tokenizer, or None."""
    steps = _steps(pre_tokenizer)
    kinds = [step.get("type") for step in steps]
    if not steps or kinds[-1] != "ByteLevel" or steps[-1].get("add_prefix_space", False):
        return None
    regex = steps[-1].get("use_regex", True)
    if kinds == ["ByteLevel"] and regex:
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and regex and steps[0].get("individual_digits"):
        return "smollm"
    split = steps[0]
    isolated = split.get("behavior") == "Isolated" and not split.get("invert")
    if kinds == ["Split", "ByteLevel"] and not regex and isolated:
        return SPLIT_PRETOKENIZERS.get((split.get("pattern") or {}).get("Regex", ""))
    return None


def _kind(document: dict[str, Any]) -> tuple[str, str | None]:
    model = document.get("model") or {}
    normalizer = document.get("normalizer")
    if model.get("type") == "BPE":
        # NFC is what Qwen2 declares; llama.cpp does not normalise, as its own converter accepts.
        pre = _byte_level_pre(document.get("pre_tokenizer"))
        if pre is not None and (normalizer is None or normalizer.get("type") == "NFC"):
            return "gpt2", pre
    words = [step.get("type") for step in _steps(document.get("pre_tokenizer"))] in WORD_SPLITS
    if model.get("type") == "WordLevel" and normalizer is None and words:
        return "bert", None
    described = {key: document.get(key) for key in ("normalizer", "pre_tokenizer")}
    raise ExportRefused(
        f"tokenizer.json ({model.get('type')} model, {json.dumps(described)[:300]}) is not a tokenizer llama.cpp "
        f"reproduces; the GGUF export takes {SUPPORTED}"
    )


def read_vocabulary(directory: Path, vocab_size: int) -> Vocabulary:
    """The GGUF vocabulary of the tokenizer in `directory`, padded to the embedding's `vocab_size` rows."""
    path = Path(directory) / "tokenizer.json"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ExportRefused(f"the GGUF export needs {path} (a fast tokenizer); cannot read it: {error}") from error
    model, pre = _kind(document)
    entries: dict[int, tuple[str, int]] = {}
    unknown = (document.get("model") or {}).get("unk_token")
    for token, index in (document["model"].get("vocab") or {}).items():
        text = token if model == "gpt2" else WORD_PREFIX + token
        entries[int(index)] = (text, UNKNOWN if token == unknown else NORMAL)
    for added in document.get("added_tokens") or []:
        kind = UNKNOWN if added["content"] == unknown else CONTROL if added.get("special") else USER_DEFINED
        entries[int(added["id"])] = (added["content"], kind)
    if entries and max(entries) >= vocab_size:
        raise ExportRefused(
            f"the tokenizer has token id {max(entries)} but the embedding only {vocab_size} rows: llama.cpp "
            "needs one embedding row per token"
        )
    tokens = [entries.get(i, (f"[PAD{i}]", UNUSED))[0] for i in range(vocab_size)]
    types = [entries.get(i, ("", UNUSED))[1] for i in range(vocab_size)]
    return Vocabulary(model=model, pre=pre, tokens=tokens, types=types)
