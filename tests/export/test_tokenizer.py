"""llama.cpp tokenizes text as the artifact's tokenizer.json does (byte-level BPE and word-level)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from infoprune_core.calibration.samples import reference_paragraphs
from infoprune_core.export.gguf import export_gguf
from infoprune_core.export.llamacpp import open_llama
from infoprune_core.export.tokenizer import SPLIT_PRETOKENIZERS
from tests.core.tiny_models import DECODER, word_tokenizer

# Digits, contractions, runs of spaces and newlines: where the pre-tokenizer regexes differ.
TEXTS = [
    "It's 12345 o'clock,\n\n  we'll see 3.14 -- THEY'VE   gone!",
    *reference_paragraphs(80)[64:72],
]
BYTE_LEVEL = pre_tokenizers.ByteLevel(add_prefix_space=False)
SPLIT = {name: pattern for pattern, name in SPLIT_PRETOKENIZERS.items()}
PRE_TOKENIZERS = {
    "gpt-2": BYTE_LEVEL,
    "smollm": pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), BYTE_LEVEL]),
    **{
        name: pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(SPLIT[name]), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
        for name in ("llama-bpe", "qwen2")
    },
}


def _byte_level_model(directory: Path, pre: str) -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = PRE_TOKENIZERS[pre]
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=["<|endoftext|>"]
    )
    tokenizer.train_from_iterator(reference_paragraphs(64), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<|endoftext|>", eos_token="<|endoftext|>")
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(**DECODER, vocab_size=len(fast), max_position_embeddings=128)).save_pretrained(
        directory
    )
    fast.save_pretrained(directory)
    return fast


@pytest.mark.parametrize("pre", sorted(PRE_TOKENIZERS))
def test_byte_level_bpe_tokenizes_like_transformers(pre: str, tmp_path: Path) -> None:
    tokenizer = _byte_level_model(tmp_path / "model", pre)
    llm = open_llama(export_gguf(tmp_path / "model", tmp_path / "model.gguf"), n_ctx=512)
    assert llm.metadata["tokenizer.ggml.pre"] == pre
    for text in TEXTS:
        assert llm.tokenize(text.encode(), add_bos=False) == tokenizer(text, add_special_tokens=False)["input_ids"]
        assert llm.detokenize(tokenizer(text, add_special_tokens=False)["input_ids"]).decode() == text
    llm.close()


def test_word_level_vocabulary_tokenizes_like_transformers(artifacts, tmp_path: Path) -> None:
    tokenizer = word_tokenizer()
    llm = open_llama(export_gguf(artifacts["llama-free"], tmp_path / "model.gguf"), n_ctx=64)
    for text in ("the red circle is left of a square", "what shape is Red ? zebra"):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert llm.tokenize(text.encode(), add_bos=False) == ids
    assert tokenizer.unk_token_id in tokenizer("zebra", add_special_tokens=False)["input_ids"]
    assert llm.token_bos() == tokenizer.bos_token_id and llm.token_eos() == tokenizer.eos_token_id
    llm.close()
