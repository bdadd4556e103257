"""The demo VLM: a word-level tokenizer, a LLaVA processor and a small CLIP + Llama LLaVA model.

Prompts end with "answer :"; the tokenizer pads on the left, so the logits at the last position of
every row predict the one-word answer. Accuracy = argmax of those logits == the answer's token id.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import (
    BatchFeature,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from infoprune_core.demo.shapes import IMAGE_SIZE, Sample, vocabulary

SPECIAL_TOKENS = ("<pad>", "<unk>", "<s>", "</s>", "<image>")
IMAGE_TOKEN = "<image>"
PATCH_SIZE = 8
NUM_IMAGE_TOKENS = (IMAGE_SIZE // PATCH_SIZE) ** 2  # the CLS token is dropped ("default" strategy)
HIDDEN_SIZE = 192
INTERMEDIATE_SIZE = 768
NUM_LAYERS = 4
NUM_HEADS = 6
NUM_KV_HEADS = 2
MAX_POSITIONS = 128  # 1 + 64 image tokens + the longest prompt fit easily


def build_tokenizer(
    image_tokens: Sequence[str] = (IMAGE_TOKEN,), image_token: str = IMAGE_TOKEN, prepend_bos: bool = True
) -> PreTrainedTokenizerFast:
    """A WordLevel tokenizer over the task's words that pads on the left and prepends `<s>` unless told not
    to; `image_tokens` are special and follow the four basic ones (other families bring their own)."""
    special = [*SPECIAL_TOKENS[:4], *image_tokens]
    vocab = {token: index for index, token in enumerate([*special, *vocabulary()])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.add_special_tokens(special)
    if prepend_bos:
        backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", vocab["<s>"])])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        padding_side="left",
        model_max_length=MAX_POSITIONS,
        extra_special_tokens={"image_token": image_token},
    )


def build_processor(tokenizer: PreTrainedTokenizerFast) -> LlavaProcessor:
    """A LlavaProcessor that expands `<image>` into one token per image patch."""
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH_SIZE,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        image_token=IMAGE_TOKEN,
    )


def build_model(tokenizer: PreTrainedTokenizerFast) -> LlavaForConditionalGeneration:
    """A randomly initialised LLaVA: CLIP vision tower (64px, patch 8) + Llama decoder with GQA."""
    vision = CLIPVisionConfig(
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        hidden_size=HIDDEN_SIZE,
        intermediate_size=INTERMEDIATE_SIZE,
        num_hidden_layers=NUM_LAYERS,
        num_attention_heads=NUM_HEADS,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN_SIZE,
        intermediate_size=INTERMEDIATE_SIZE,
        num_hidden_layers=NUM_LAYERS,
        num_attention_heads=NUM_HEADS,
        num_key_value_heads=NUM_KV_HEADS,
        max_position_embeddings=MAX_POSITIONS,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.get_vocab()[IMAGE_TOKEN],
        image_seq_length=NUM_IMAGE_TOKENS,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        tie_word_embeddings=False,
    )
    return LlavaForConditionalGeneration(config)


def encode(processor: LlavaProcessor, samples: Sequence[Sample]) -> BatchFeature:
    """`input_ids`, `attention_mask` and `pixel_values` for a batch (left-padded)."""
    return processor(
        images=[s.image for s in samples], text=[s.prompt for s in samples], return_tensors="pt", padding=True
    )


def answer_ids(processor: LlavaProcessor, samples: Sequence[Sample]) -> torch.Tensor:
    """The token id of each sample's answer, shape [B]."""
    return torch.tensor(processor.tokenizer.convert_tokens_to_ids([s.answer for s in samples]))


def answer_logits(model: LlavaForConditionalGeneration, inputs: BatchFeature) -> torch.Tensor:
    """Logits at the last position of every row, shape [B, vocab]."""
    return model(**inputs, logits_to_keep=1).logits[:, -1]


@torch.no_grad()
def accuracy(
    model: LlavaForConditionalGeneration,
    processor: LlavaProcessor,
    samples: Sequence[Sample],
    batch_size: int = 50,
) -> float:
    """Fraction of samples whose argmax answer logit is the answer token."""
    model.eval()
    correct = 0
    for start in range(0, len(samples), batch_size):
        batch = samples[start : start + batch_size]
        predicted = answer_logits(model, encode(processor, batch)).argmax(-1)
        correct += int((predicted == answer_ids(processor, batch)).sum())
    return correct / len(samples)
