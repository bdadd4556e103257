"""Tiny multimodal models of the newer families, with the processors their folders would ship.

Each family: a constructor (config classes, seeded), and the processor files a real checkpoint
folder has (a processor where transformers can build one here; the image processor and tokenizer
alone for Qwen2-VL and SmolVLM, whose processors need torchvision's video processor).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import transformers as tf
from PIL import Image, ImageDraw

from tests.core.tiny_tokens import IMAGE, WORDS, word_tokenizer

VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
TEXT = dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=6, num_key_value_heads=2)
PATCH = 8
IDEFICS_TOKENS = (
    "<image>",
    "<fake_token_around_image>",
    "<global-img>",
    "<end_of_utterance>",
    *(f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)),
)
IDEFICS_ROLES = {
    "image_token": "<image>",
    "fake_image_token": "<fake_token_around_image>",
    "global_image_token": "<global-img>",
    "end_of_utterance_token": "<end_of_utterance>",
}
QWEN_TOKENS = ("<|image_pad|>", "<|vision_start|>", "<|vision_end|>", "<|video_pad|>")
GEMMA3_TOKENS = ("<image_soft_token>", "<start_of_image>", "<end_of_image>")
GEMMA3_ROLES = {"image_token": "<image_soft_token>", "boi_token": "<start_of_image>", "eoi_token": "<end_of_image>"}


def _vocab(extra: tuple[str, ...]) -> int:
    return 4 + len(extra) + len(WORDS)


def _id(extra: tuple[str, ...], token: str) -> int:
    return 4 + extra.index(token)


def _seeded(build: Callable[[], tf.PreTrainedModel]) -> tf.PreTrainedModel:
    torch.manual_seed(0)
    return build().eval()


def tiny_clip_dual() -> tf.PreTrainedModel:
    vision = dict(VISION, image_size=IMAGE, patch_size=PATCH)
    text = dict(VISION, vocab_size=_vocab(()), max_position_embeddings=64, bos_token_id=2, eos_token_id=3)
    return _seeded(lambda: tf.CLIPModel(tf.CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)))


def tiny_siglip_dual(version: int = 1) -> tf.PreTrainedModel:
    text = dict(VISION, vocab_size=_vocab(()), max_position_embeddings=64)
    if version == 2:
        # Siglip2Processor passes its own defaults (16-pixel patches, up to 256 of them) to the image processor.
        vision = dict(VISION, num_patches=256, patch_size=16)
        return _seeded(lambda: tf.Siglip2Model(tf.Siglip2Config(text_config=text, vision_config=vision)))
    vision = dict(VISION, image_size=IMAGE, patch_size=PATCH)
    return _seeded(lambda: tf.SiglipModel(tf.SiglipConfig(text_config=text, vision_config=vision)))


def tiny_paligemma() -> tf.PreTrainedModel:
    extra = ("<image>",)
    text = dict(TEXT, head_dim=8, vocab_size=_vocab(extra), model_type="gemma")
    config = tf.PaliGemmaConfig(
        vision_config=dict(VISION, image_size=IMAGE, patch_size=PATCH),
        text_config=text,
        image_token_id=_id(extra, "<image>"),
        projection_dim=TEXT["hidden_size"],
    )
    return _seeded(lambda: tf.PaliGemmaForConditionalGeneration(config))


def tiny_gemma3() -> tf.PreTrainedModel:
    text = dict(TEXT, head_dim=8, vocab_size=_vocab(GEMMA3_TOKENS), sliding_window=4)
    text["layer_types"] = ["sliding_attention", "full_attention"]
    config = tf.Gemma3Config(
        vision_config=dict(VISION, image_size=IMAGE, patch_size=PATCH),
        text_config=text,
        mm_tokens_per_image=4,
        image_token_id=_id(GEMMA3_TOKENS, "<image_soft_token>"),
        boi_token_index=_id(GEMMA3_TOKENS, "<start_of_image>"),
        eoi_token_index=_id(GEMMA3_TOKENS, "<end_of_image>"),
    )
    return _seeded(lambda: tf.Gemma3ForConditionalGeneration(config))


def tiny_idefics3(smolvlm: bool = False) -> tf.PreTrainedModel:
    config_class, model_class = (
        (tf.SmolVLMConfig, tf.SmolVLMForConditionalGeneration)
        if smolvlm
        else (tf.Idefics3Config, tf.Idefics3ForConditionalGeneration)
    )
    config = config_class(
        vision_config=dict(VISION, image_size=IMAGE, patch_size=PATCH),
        text_config=dict(TEXT, vocab_size=_vocab(IDEFICS_TOKENS), model_type="llama"),
        scale_factor=2,
        image_token_id=_id(IDEFICS_TOKENS, "<image>"),
    )
    return _seeded(lambda: model_class(config))


def tiny_qwen2_vl(version: str = "2") -> tf.PreTrainedModel:
    text = dict(TEXT, vocab_size=_vocab(QWEN_TOKENS), max_position_embeddings=512)
    text["rope_scaling"] = {"type": "mrope", "mrope_section": [1, 1, 2]}
    ids = {
        "image_token_id": _id(QWEN_TOKENS, "<|image_pad|>"),
        "video_token_id": _id(QWEN_TOKENS, "<|video_pad|>"),
        "vision_start_token_id": _id(QWEN_TOKENS, "<|vision_start|>"),
        "vision_end_token_id": _id(QWEN_TOKENS, "<|vision_end|>"),
    }
    common = dict(depth=2, num_heads=4, patch_size=4, spatial_merge_size=2, temporal_patch_size=2)
    if version == "2.5":
        vision = dict(common, hidden_size=32, intermediate_size=64, out_hidden_size=48, window_size=16)
        vision["fullatt_block_indexes"] = [1]
        config: Any = tf.Qwen2_5_VLConfig(vision_config=vision, text_config=text, **ids)
        return _seeded(lambda: tf.Qwen2_5_VLForConditionalGeneration(config))
    vision = dict(common, embed_dim=32, hidden_size=48, mlp_ratio=2)
    config = tf.Qwen2VLConfig(vision_config=vision, text_config=text, **ids)
    return _seeded(lambda: tf.Qwen2VLForConditionalGeneration(config))


def _siglip_images() -> Any:
    return tf.SiglipImageProcessor(size={"height": IMAGE, "width": IMAGE})


def save_processor(model: tf.PreTrainedModel, directory: Path) -> None:
    """Write the processor files a checkpoint folder of the model's family would hold."""
    model_type = model.config.model_type
    if model_type == "clip":
        images = tf.CLIPImageProcessor(size={"shortest_edge": IMAGE}, crop_size=IMAGE)
        tf.CLIPProcessor(image_processor=images, tokenizer=word_tokenizer()).save_pretrained(directory)
    elif model_type == "siglip":
        tf.SiglipProcessor(image_processor=_siglip_images(), tokenizer=word_tokenizer()).save_pretrained(directory)
    elif model_type == "siglip2":
        images = tf.Siglip2ImageProcessor(patch_size=16, max_num_patches=256)
        tf.Siglip2Processor(image_processor=images, tokenizer=word_tokenizer()).save_pretrained(directory)
    elif model_type == "paligemma":
        images = tf.SiglipImageProcessor(size={"height": IMAGE, "width": IMAGE}, image_seq_length=(IMAGE // PATCH) ** 2)
        tf.PaliGemmaProcessor(image_processor=images, tokenizer=word_tokenizer(("<image>",))).save_pretrained(directory)
    elif model_type == "gemma3":
        images = tf.Gemma3ImageProcessor(size={"height": IMAGE, "width": IMAGE})
        tokenizer = word_tokenizer(GEMMA3_TOKENS, GEMMA3_ROLES)
        tf.Gemma3Processor(image_processor=images, tokenizer=tokenizer, image_seq_length=4).save_pretrained(directory)
    elif model_type in ("idefics3", "smolvlm"):
        size = {"longest_edge": IMAGE}
        tokenizer = word_tokenizer(IDEFICS_TOKENS, IDEFICS_ROLES)
        if model_type == "idefics3":
            images = tf.Idefics3ImageProcessor(size=size, max_image_size=size)
            processor = tf.Idefics3Processor(image_processor=images, tokenizer=tokenizer, image_seq_len=4)
            processor.save_pretrained(directory)
        else:
            tf.SmolVLMImageProcessor(size=size, max_image_size=size).save_pretrained(directory)
            tokenizer.save_pretrained(directory)
            (directory / "processor_config.json").write_text(
                json.dumps({"processor_class": "SmolVLMProcessor", "image_seq_len": 4})
            )
    elif model_type in ("qwen2_vl", "qwen2_5_vl"):
        images = tf.Qwen2VLImageProcessor(
            patch_size=4, merge_size=2, temporal_patch_size=2, min_pixels=IMAGE * IMAGE, max_pixels=IMAGE * IMAGE
        )
        images.save_pretrained(directory)
        word_tokenizer(QWEN_TOKENS, {"image_token": "<|image_pad|>"}).save_pretrained(directory)
    else:
        raise ValueError(f"no tiny processor for {model_type}")


def shape_image(index: int) -> Image.Image:
    image = Image.new("RGB", (IMAGE, IMAGE), (200, 200, 200))
    color = ("red", "blue", "green")[index % 3]
    ImageDraw.Draw(image).ellipse([4 + index % 8, 6, 20 + index % 8, 22], fill=color)
    return image


MULTIMODAL: dict[str, Callable[[], tf.PreTrainedModel]] = {
    "clip_dual": tiny_clip_dual,
    "siglip_dual": tiny_siglip_dual,
    "siglip2_dual": lambda: tiny_siglip_dual(2),
    "paligemma": tiny_paligemma,
    "gemma3": tiny_gemma3,
    "idefics3": tiny_idefics3,
    "smolvlm": lambda: tiny_idefics3(smolvlm=True),
    "qwen2_vl": tiny_qwen2_vl,
    "qwen2_5_vl": lambda: tiny_qwen2_vl("2.5"),
}
