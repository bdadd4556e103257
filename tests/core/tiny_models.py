"""Tiny models of every supported family, built from transformers config classes (no download)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import (
    BertConfig,
    BertModel,
    CLIPImageProcessor,
    CLIPVisionConfig,
    CLIPVisionModel,
    Dinov2Config,
    Dinov2Model,
    Gemma2Config,
    Gemma2ForCausalLM,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    LlamaConfig,
    LlamaForCausalLM,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    Phi3Config,
    Phi3ForCausalLM,
    PreTrainedModel,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
    SiglipVisionConfig,
    SiglipVisionModel,
)

from tests.core import tiny_vlms
from tests.core.tiny_tokens import IMAGE, WORDS, word_tokenizer

# Shared by every tiny model; decoders use 6 query / 2 KV heads (GQA), encoders 4 heads.
LAYOUT = dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2)
DECODER = dict(LAYOUT, num_attention_heads=6, num_key_value_heads=2)
VISION = dict(LAYOUT, num_attention_heads=4, image_size=IMAGE, patch_size=8)


def tiny_llama(qwen: bool = False) -> PreTrainedModel:
    kwargs = dict(DECODER, vocab_size=64, max_position_embeddings=128)
    torch.manual_seed(0)
    if qwen:
        return Qwen2ForCausalLM(Qwen2Config(**kwargs)).eval()
    return LlamaForCausalLM(LlamaConfig(**kwargs)).eval()


def tiny_decoder(model_type: str) -> PreTrainedModel:
    """Tiny decoders of the other LLaMA-like families (sliding windows of 4 tokens, so that a
    12-token input sees them)."""
    config_class, model_class = {
        "qwen3": (Qwen3Config, Qwen3ForCausalLM),
        "gemma2": (Gemma2Config, Gemma2ForCausalLM),
        "gemma3_text": (Gemma3TextConfig, Gemma3ForCausalLM),
        "phi3": (Phi3Config, Phi3ForCausalLM),
    }[model_type]
    kwargs: dict = dict(DECODER, vocab_size=64, max_position_embeddings=128, head_dim=8)
    if model_type in ("gemma2", "gemma3_text"):
        kwargs.update(sliding_window=4, layer_types=["sliding_attention", "full_attention"])
    if model_type == "phi3":
        kwargs.update(pad_token_id=0, bos_token_id=2, eos_token_id=3)
    torch.manual_seed(0)
    return model_class(config_class(**kwargs)).eval()


def tiny_bert() -> PreTrainedModel:
    torch.manual_seed(0)
    config = BertConfig(**LAYOUT, num_attention_heads=4, vocab_size=64, max_position_embeddings=128)
    return BertModel(config).eval()


def tiny_clip(siglip: bool = False) -> PreTrainedModel:
    torch.manual_seed(0)
    if siglip:
        return SiglipVisionModel(SiglipVisionConfig(**VISION)).eval()
    return CLIPVisionModel(CLIPVisionConfig(**VISION)).eval()


def dinov2_config() -> Dinov2Config:
    # mlp_ratio sets the FFN width (no intermediate_size); layer scales start away from 1 to be seen.
    layout = {k: v for k, v in VISION.items() if k != "intermediate_size"}
    return Dinov2Config(**layout, mlp_ratio=2, layerscale_value=0.5)


def tiny_dinov2() -> PreTrainedModel:
    torch.manual_seed(0)
    return Dinov2Model(dinov2_config()).eval()


def tiny_llava(dinov2: bool = False) -> PreTrainedModel:
    torch.manual_seed(0)
    vision = dinov2_config() if dinov2 else CLIPVisionConfig(**VISION)
    text = LlamaConfig(**DECODER, vocab_size=len(WORDS) + 5, max_position_embeddings=256)
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=4,
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
    )
    return LlavaForConditionalGeneration(config).eval()


FAMILIES: dict[str, Callable[[], PreTrainedModel]] = {
    "llama": tiny_llama,
    "qwen2": lambda: tiny_llama(qwen=True),
    "bert": tiny_bert,
    "clip": tiny_clip,
    "siglip": lambda: tiny_clip(siglip=True),
    "llava": tiny_llava,
    "dinov2": tiny_dinov2,
    "llava_dinov2": lambda: tiny_llava(dinov2=True),
    "qwen3": lambda: tiny_decoder("qwen3"),
    "gemma2": lambda: tiny_decoder("gemma2"),
    "gemma3_text": lambda: tiny_decoder("gemma3_text"),
    "phi3": lambda: tiny_decoder("phi3"),
}
VISION_TYPES = ("clip_vision_model", "siglip_vision_model", "dinov2")

FAMILIES.update(tiny_vlms.MULTIMODAL)
# Families that calibrate on images (the others use the shipped text set).
IMAGE_FAMILIES = ("clip", "siglip", "llava", "dinov2", "llava_dinov2", *tiny_vlms.MULTIMODAL)


def save_with_processor(model: PreTrainedModel, directory: Path) -> Path:
    """Save a tiny model with the tokenizer / processor its modality needs."""
    model.save_pretrained(directory)
    model_type = model.config.model_type
    image_processor = CLIPImageProcessor(size={"shortest_edge": IMAGE}, crop_size=IMAGE)
    if model_type == "llava":
        tokenizer = word_tokenizer(("<image>",))
        processor = LlavaProcessor(
            image_processor=image_processor,
            tokenizer=tokenizer,
            patch_size=8,
            vision_feature_select_strategy="full",
            num_additional_image_tokens=1,
        )
        processor.save_pretrained(directory)
    elif model_type in VISION_TYPES:
        image_processor.save_pretrained(directory)
    elif model_type in MULTIMODAL_TYPES:
        tiny_vlms.save_processor(model, directory)
    else:
        word_tokenizer().save_pretrained(directory)
    return directory


def sample_inputs(model: PreTrainedModel, batch: int = 2, length: int = 12) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    model_type = model.config.model_type
    if model_type in MULTIMODAL_TYPES:
        return _processed_inputs(model, batch)
    if model_type in VISION_TYPES:
        return {"pixel_values": torch.randn(batch, 3, IMAGE, IMAGE, generator=generator)}
    if model_type == "llava":
        image_tokens = (IMAGE // 8) ** 2 + 1
        ids = torch.randint(5, model.config.text_config.vocab_size, (batch, length), generator=generator)
        ids = torch.cat([torch.full((batch, image_tokens), 4), ids], dim=1)
        return {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "pixel_values": torch.randn(batch, 3, IMAGE, IMAGE, generator=generator),
        }
    ids = torch.randint(4, model.config.vocab_size, (batch, length), generator=generator)
    mask = torch.ones_like(ids)
    mask[0, :3] = 0  # some left padding
    return {"input_ids": ids, "attention_mask": mask}


MULTIMODAL_TYPES = ("clip", "siglip", "siglip2", "paligemma", "gemma3", "idefics3", "smolvlm", "qwen2_vl", "qwen2_5_vl")


def _processed_inputs(model: PreTrainedModel, batch: int) -> dict[str, torch.Tensor]:
    """Inputs the family's own processor makes from drawn shapes and prompts (varying lengths)."""
    from infoprune_core.calibration import Encoder, Sample
    from infoprune_core.modeling import adapter_for_config

    adapter = adapter_for_config(model.config.to_dict())
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        tiny_vlms.save_processor(model, folder)
        model.config.save_pretrained(folder)
        processor = adapter.load_processor(folder)
        samples = []
        for index in range(batch):
            tiny_vlms.shape_image(index).save(folder / f"{index}.png")
            prompt = "<image> what color is the shape" + " ?" * (index + 1)
            samples.append(Sample(text=prompt, image=folder / f"{index}.png"))
        placeholder = adapter.image_placeholder(processor)
        encoder = Encoder(processor, adapter.modality, 32, placeholder, adapter.images_per_prompt)
        return encoder.encode(samples)


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path
