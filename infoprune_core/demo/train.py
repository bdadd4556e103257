"""Train the demo VLM from scratch on the shapes task and write the shipped assets.

    python -m infoprune_core.demo.train [--output DIR] [--data-dir DIR] [--vision-steps N] [--steps N]

Stage 1 pre-trains the vision tower with a linear attribute probe; stage 2 trains the projector and
the language model on the answer token. Writes the model, tokenizer and processor to `--output`
(default `assets/model/`) and the calibration and evaluation splits to `--data-dir` (default
`assets/`). Deterministic on one thread.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import torch
from torch.nn.functional import cross_entropy
from transformers import LlavaForConditionalGeneration, LlavaProcessor

from infoprune_core.demo import ASSETS_DIR
from infoprune_core.demo.dataset import write_jsonl
from infoprune_core.demo.model import (
    accuracy,
    answer_ids,
    answer_logits,
    build_model,
    build_processor,
    build_tokenizer,
    encode,
)
from infoprune_core.demo.shapes import (
    CALIBRATION_SEED,
    EVAL_SEED,
    OPTIONS,
    TRAIN_SEED,
    VISION_PRETRAIN_SEED,
    Scene,
    generate,
    generate_scenes,
    make_split,
)

CALIBRATION_SIZE = 256
EVAL_SIZE = 400
TORCH_SEED = 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=ASSETS_DIR / "model", help="model directory")
    parser.add_argument("--data-dir", type=Path, default=ASSETS_DIR, help="parent of calibration/ and eval/")
    parser.add_argument("--vision-steps", type=int, default=600, help="stage 1: vision tower pre-training")
    parser.add_argument("--steps", type=int, default=300, help="stage 2: answer training (projector + LM)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=30, help="linear warm-up steps before cosine decay")
    parser.add_argument("--log-every", type=int, default=50)
    return parser.parse_args(argv)


def warmup_cosine(step: int, steps: int, warmup: int) -> float:
    """Learning-rate multiplier: linear warm-up, then cosine decay to zero."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


class AttributeProbe(torch.nn.Module):
    """Linear read-outs of every question kind from the vision tower's mean patch feature."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.heads = torch.nn.ModuleDict(
            {kind: torch.nn.Linear(hidden_size, len(options)) for kind, options in OPTIONS.items()}
        )

    def loss(self, features: torch.Tensor, scenes: list[Scene]) -> torch.Tensor:
        """Summed cross-entropy over the kinds each scene settles; features: [B, hidden]."""
        total = features.new_zeros(())
        for kind, head in self.heads.items():
            answers = [scene.answers().get(kind) for scene in scenes]
            labels = [OPTIONS[kind].index(a) if a is not None else -100 for a in answers]
            total = total + cross_entropy(head(features), torch.tensor(labels), ignore_index=-100)
        return total


def pooled_vision_features(model: LlavaForConditionalGeneration, pixel_values: torch.Tensor) -> torch.Tensor:
    """The vision features the projector receives (patch tokens, no CLS), averaged: [B, hidden]."""
    outputs = model.model.vision_tower(pixel_values, output_hidden_states=True)
    return outputs.hidden_states[model.config.vision_feature_layer][:, 1:].mean(1)


def optimise(
    parameters: list[torch.nn.Parameter],
    losses: Iterator[torch.Tensor],
    steps: int,
    args: argparse.Namespace,
    stage: str,
) -> None:
    """AdamW with warm-up and cosine decay over `steps` losses, logging the running mean."""
    optimizer = torch.optim.AdamW(parameters, lr=args.lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_cosine(step, steps, args.warmup))
    running = 0.0
    for step, loss in enumerate(islice(losses, steps), start=1):
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        schedule.step()
        running += loss.item()
        if step % args.log_every == 0:
            print(f"{stage} step {step:5d}  train loss {running / args.log_every:.4f}", flush=True)
            running = 0.0


def pretrain_vision(model: LlavaForConditionalGeneration, processor: LlavaProcessor, args: argparse.Namespace) -> None:
    """Stage 1: train the vision tower to expose every attribute to a linear probe.

    The answer loss alone reaches the image only through diffuse attention and learns slowly;
    this stage plays the role of the pretrained CLIP in a real LLaVA. The probe is discarded.
    """
    probe = AttributeProbe(model.model.vision_tower.config.hidden_size)
    scenes = generate_scenes(VISION_PRETRAIN_SEED)

    def losses() -> Iterator[torch.Tensor]:
        while True:
            batch = [next(scenes) for _ in range(args.batch_size)]
            pixels = processor.image_processor([s.image for s in batch], return_tensors="pt")["pixel_values"]
            yield probe.loss(pooled_vision_features(model, pixels), batch)

    parameters = [*model.model.vision_tower.parameters(), *probe.parameters()]
    optimise(parameters, losses(), args.vision_steps, args, "vision")


def train_answers(model: LlavaForConditionalGeneration, processor: LlavaProcessor, args: argparse.Namespace) -> None:
    """Stage 2: projector and language model (vision tower frozen), cross-entropy of the answer token.

    Training the vision tower on the answer loss too erased much of its shape information.
    """
    stream = generate(TRAIN_SEED)

    def losses() -> Iterator[torch.Tensor]:
        while True:
            batch = [next(stream) for _ in range(args.batch_size)]
            yield cross_entropy(answer_logits(model, encode(processor, batch)), answer_ids(processor, batch))

    vision = model.model.vision_tower
    vision.requires_grad_(False)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimise(parameters, losses(), args.steps, args, "answer")
    vision.requires_grad_(True)


def save_model(model: LlavaForConditionalGeneration, processor: LlavaProcessor, output: Path) -> None:
    """Write config, safetensors weights, tokenizer and processor files (no pickle)."""
    model.save_pretrained(output)
    processor.save_pretrained(output)
    pickles = [p.name for p in output.iterdir() if p.suffix in {".bin", ".pt", ".pth", ".pkl"}]
    if pickles:
        raise RuntimeError(f"pickle files in {output}: {pickles}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(TORCH_SEED)
    processor = build_processor(build_tokenizer())
    model = build_model(processor.tokenizer)
    params = sum(p.numel() for p in model.parameters())
    print(f"parameters: {params:,} ({params * 4 / 1e6:.1f} MB float32)", flush=True)
    start = time.perf_counter()
    model.train()
    pretrain_vision(model, processor, args)
    train_answers(model, processor, args)
    print(f"training time: {time.perf_counter() - start:.0f} s", flush=True)
    calibration = make_split(CALIBRATION_SEED, CALIBRATION_SIZE)
    held_out = make_split(EVAL_SEED, EVAL_SIZE)
    print(f"calibration accuracy: {accuracy(model, processor, calibration):.4f}")
    print(f"held-out accuracy: {accuracy(model, processor, held_out):.4f}")
    save_model(model, processor, args.output)
    write_jsonl(calibration, args.data_dir / "calibration" / "calibration.jsonl")
    write_jsonl(held_out, args.data_dir / "eval" / "eval.jsonl")
    print(f"wrote {args.output}, {args.data_dir / 'calibration'}, {args.data_dir / 'eval'}")


if __name__ == "__main__":
    main()
