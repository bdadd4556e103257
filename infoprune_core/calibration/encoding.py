"""How samples become model inputs: the model's own processor or tokenizer, exactly as given."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError

from infoprune_core.adapters.base import Modality
from infoprune_core.calibration.samples import DEMO_IMAGE_TOKEN, Sample
from infoprune_core.errors import CalibrationError


class Encoder:
    """Turns samples into the keyword inputs of a model, with its own processor or tokenizer.

    A prompt's `<image>` becomes the family's `placeholder` (the processor's image token unless told
    otherwise; a dual encoder's captions have none, so it is dropped there); some processors take the
    images as one list per prompt (`images_per_prompt`).
    """

    def __init__(
        self,
        processor: Any,
        modality: Modality,
        max_text_tokens: int,
        placeholder: str | None = DEMO_IMAGE_TOKEN,
        images_per_prompt: bool = False,
    ) -> None:
        self.processor = processor
        self.images_per_prompt = images_per_prompt  # the processor wants a list of images per prompt
        self.modality = modality
        self.max_text_tokens = max_text_tokens
        self.placeholder = getattr(processor, "image_token", None) if placeholder == DEMO_IMAGE_TOKEN else placeholder
        self.tokenizer = getattr(processor, "tokenizer", processor)
        if modality != "vision" and getattr(self.tokenizer, "pad_token", None) is None:
            eos = getattr(self.tokenizer, "eos_token", None)
            if eos is None:
                raise CalibrationError("the tokenizer has neither a pad nor an eos token")
            self.tokenizer.pad_token = eos
        if modality != "vision":
            self.tokenizer.padding_side = "left"  # the last position predicts the next token in every row

    def encode(self, samples: Sequence[Sample], with_answers: bool = False) -> dict[str, torch.Tensor]:
        if self.modality == "vision":
            return dict(self.processor(images=[_open(s) for s in samples], return_tensors="pt"))
        texts = [self._text(s, with_answers) for s in samples]
        if self.modality == "text":
            return dict(
                self.tokenizer(
                    texts, padding=True, truncation=True, max_length=self.max_text_tokens, return_tensors="pt"
                )
            )
        images: list[Any] = [_open(s) for s in samples]
        if self.images_per_prompt:
            images = [[image] for image in images]
        inputs = dict(self.processor(images=images, text=texts, padding=True, return_tensors="pt"))
        inputs.pop("labels", None)  # some processors add training labels; a forward pass here needs none
        return inputs

    def _text(self, sample: Sample, with_answer: bool) -> str:
        text = sample.text
        if text is None:
            if self.modality == "text":
                raise CalibrationError("a text model needs samples with 'text'")
            text = f"{DEMO_IMAGE_TOKEN} describe the image ."
        if self.modality == "vision_text" and self.placeholder != DEMO_IMAGE_TOKEN:
            text = " ".join(text.replace(DEMO_IMAGE_TOKEN, self.placeholder or "").split())
        if with_answer:
            if sample.answer is None:
                raise CalibrationError("evaluation samples need an 'answer' (or a 'label' for classifiers)")
            text = f"{text} {sample.answer}"
        return text

    def answer_lengths(self, samples: Sequence[Sample]) -> list[int]:
        """Number of tokens each sample's answer adds after its prompt."""
        lengths = []
        for sample in samples:
            prompt = self._text(sample, with_answer=False)
            full = self._text(sample, with_answer=True)
            count = len(self.tokenizer(full)["input_ids"]) - len(self.tokenizer(prompt)["input_ids"])
            lengths.append(max(count, 1))
        return lengths


def _open(sample: Sample) -> Image.Image:
    if sample.image is None:
        raise CalibrationError("a vision model needs samples with an 'image'")
    try:
        with Image.open(sample.image) as image:
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError) as error:
        raise CalibrationError(f"cannot read image {sample.image}: {error}") from error


def batched(samples: Sequence[Sample], batch_size: int) -> Iterator[list[Sample]]:
    for start in range(0, len(samples), batch_size):
        yield list(samples[start : start + batch_size])
