"""The word-level tokenizer and sizes every tiny test model shares."""

from __future__ import annotations

from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

WORDS = (
    "the a of and to in is it that for on with as was at by this be are from or an which one all shape color "
    "red blue green circle square triangle left right what where answer describe image ."
).split()
IMAGE = 32


def word_tokenizer(extra: tuple[str, ...] = (), roles: dict[str, str] | None = None) -> PreTrainedTokenizerFast:
    """A word-level tokenizer of WORDS; `extra` tokens are special (found even without spaces around
    them) and `roles` names them for processors (default: `<image>` is the image token)."""
    vocab = {t: i for i, t in enumerate(["<pad>", "<unk>", "<s>", "</s>", *extra, *WORDS])}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in extra])
    if roles is None:
        roles = {"image_token": "<image>"} if extra else {}
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        extra_special_tokens=roles,
    )
