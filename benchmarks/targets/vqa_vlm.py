"""A LLaVA-style VLM from two real towers: DINOv2-small (vision) and SmolLM2-135M-Instruct (language).

Both towers are loaded strict from the built `dinov2-small` and `smollm2-135m` targets; an `<image>`
token is added and the embeddings resized. Only the projector (new) is trained, on the easy-vqa
train split, with both towers frozen: the frozen DINOv2 features of every image are computed once,
and each training step runs the frozen language model on [projected features; prompt; answer] with
the loss on the answer tokens. Training stops when accuracy on a fixed test subset (disjoint from
the evaluation file) has not improved for `patience` evaluations, or at a wall-time cap.

The prompt is what `infoprune_core.calibration.Encoder` builds from a Sample: the sample's text, then
" " and the answer; the `<image>` token is expanded by the LlavaProcessor. Training uses the same
token sequences, so the accuracy recorded here is the one `infoprune compress --eval` reports.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from benchmarks.targets import dinov2_onnx, smollm2_gguf
from benchmarks.targets.common import BuildRecord, is_built

NAME = "vqa-vlm"
RECIPE_VERSION = 1
IMAGE_TOKEN = "<image>"
PROMPT = IMAGE_TOKEN + "\nQuestion: {question}\nAnswer:"


@dataclass(frozen=True)
class TrainSettings:
    image_size: int = 84  # 6 x 6 = 36 patches of 14 px (the easy-vqa images are 64 x 64)
    batch_size: int = 16
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 10
    eval_every: int = 30  # steps
    early_stop_questions: int = 192  # fixed test subset, disjoint from the evaluation file
    patience: int = 3  # evaluations without improvement
    max_steps: int = 2000
    max_train_seconds: float = 35 * 60
    calibration_samples: int = 256
    eval_samples: int = 1000
    seed: int = 0
    threads: int = 1

    @property
    def patches(self) -> int:
        return (self.image_size // 14) ** 2


@dataclass(frozen=True)
class Question:
    question: str
    answer: str
    image_id: int
    split: str

    def prompt(self) -> str:
        return PROMPT.format(question=self.question)


# --- data --------------------------------------------------------------------------------------


def questions(split: str) -> list[Question]:
    import easy_vqa

    texts, answers, image_ids = easy_vqa.get_train_questions() if split == "train" else easy_vqa.get_test_questions()
    return [Question(q, a, int(i), split) for q, a, i in zip(texts, answers, image_ids, strict=True)]


def image_paths(split: str) -> dict[int, Path]:
    import easy_vqa

    paths = easy_vqa.get_train_image_paths() if split == "train" else easy_vqa.get_test_image_paths()
    return {int(k): Path(v) for k, v in paths.items()}


def fixed_subsets(settings: TrainSettings) -> dict[str, list[Question]]:
    """Deterministic subsets: calibration (train), early stopping and evaluation (test, disjoint)."""
    train, test = questions("train"), questions("test")
    train_order = list(range(len(train)))
    random.Random(settings.seed).shuffle(train_order)
    test_order = list(range(len(test)))
    random.Random(settings.seed + 1).shuffle(test_order)
    evaluation = [test[i] for i in test_order[: settings.eval_samples]]
    early = [test[i] for i in test_order[settings.eval_samples : settings.eval_samples + settings.early_stop_questions]]
    calibration = [train[i] for i in train_order[: settings.calibration_samples]]
    training = [train[i] for i in train_order]  # the order of the training stream
    return {"train": training, "calibration": calibration, "early_stop": early, "eval": evaluation}


# --- model ---------------------------------------------------------------------------------------


def processor_for(tokenizer: Any, settings: TrainSettings) -> Any:
    from transformers import LlavaProcessor

    return LlavaProcessor(
        image_processor=dinov2_onnx.image_processor(settings.image_size),
        tokenizer=tokenizer,
        patch_size=14,
        vision_feature_select_strategy="default",  # the CLS token is dropped: one token per patch
        num_additional_image_tokens=1,
        image_token=IMAGE_TOKEN,
    )


def assemble(smollm2_dir: Path, dinov2_dir: Path, settings: TrainSettings) -> tuple[Any, Any]:
    """LlavaForConditionalGeneration with both towers loaded strict, an <image> token, a fresh projector."""
    from transformers import (
        AutoTokenizer,
        Dinov2Model,
        LlamaForCausalLM,
        LlavaConfig,
        LlavaForConditionalGeneration,
    )

    language = LlamaForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32)
    vision = Dinov2Model.from_pretrained(dinov2_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    tokenizer.image_token = IMAGE_TOKEN
    image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    config = LlavaConfig(  # type: ignore[call-arg]
        vision_config=vision.config.to_dict(),
        text_config=language.config.to_dict(),
        image_token_id=image_token_id,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
        multimodal_projector_bias=True,
        image_seq_length=settings.patches,
        tie_word_embeddings=bool(language.config.tie_word_embeddings),
    )
    torch.manual_seed(settings.seed)
    model = LlavaForConditionalGeneration(config).eval()
    model.model.vision_tower.load_state_dict(vision.state_dict(), strict=True)
    model.model.language_model.load_state_dict(language.model.state_dict(), strict=True)
    model.lm_head.load_state_dict(language.lm_head.state_dict(), strict=True)
    model.resize_token_embeddings(len(tokenizer))
    model.config.image_token_id = image_token_id
    return model, processor_for(tokenizer, settings)


def projector_inputs(model: Any, pixel_values: torch.Tensor) -> torch.Tensor:
    """What the LLaVA model feeds its projector for these pixels (the selected vision features)."""
    captured: list[torch.Tensor] = []
    hook = model.model.multi_modal_projector.register_forward_pre_hook(
        lambda _module, args: captured.append(args[0].detach())
    )
    try:
        with torch.no_grad():
            model.model.get_image_features(pixel_values=pixel_values)
    finally:
        hook.remove()
    return captured[0]


def image_features(
    model: Any, processor: Any, split: str, cache: Path, settings: TrainSettings, batch: int = 50
) -> dict[int, torch.Tensor]:
    """Frozen projector inputs [patches, 384] for every image of a split, cached as safetensors."""
    from PIL import Image

    path = cache / f"features-{split}-{settings.image_size}px.safetensors"
    if path.exists():
        stored = load_file(str(path))
        return dict(zip(stored["ids"].tolist(), stored["features"], strict=True))
    paths = image_paths(split)
    ids = sorted(paths)
    chunks = []
    for start in range(0, len(ids), batch):
        images = []
        for image_id in ids[start : start + batch]:
            with Image.open(paths[image_id]) as image:
                images.append(image.convert("RGB"))
        pixels = processor.image_processor(images=images, return_tensors="pt")["pixel_values"]
        chunks.append(projector_inputs(model, pixels))
    features = torch.cat(chunks)
    cache.mkdir(parents=True, exist_ok=True)
    save_file({"ids": torch.tensor(ids), "features": features.contiguous()}, str(path))
    return dict(zip(ids, features, strict=True))


# --- training ------------------------------------------------------------------------------------


class Tokenised:
    """Token ids of prompt + " " + answer with the image token expanded, as the Encoder/processor make them."""

    def __init__(self, processor: Any, settings: TrainSettings) -> None:
        self.tokenizer = processor.tokenizer
        self.expanded = IMAGE_TOKEN * settings.patches
        self.cache: dict[tuple[str, str], tuple[list[int], int]] = {}

    def __call__(self, item: Question) -> tuple[list[int], int]:
        key = (item.question, item.answer)
        if key not in self.cache:
            prompt = item.prompt()
            full = f"{prompt} {item.answer}"
            ids = self.tokenizer(full.replace(IMAGE_TOKEN, self.expanded))["input_ids"]
            answer = len(self.tokenizer(full)["input_ids"]) - len(self.tokenizer(prompt)["input_ids"])
            self.cache[key] = (list(ids), max(answer, 1))
        return self.cache[key]


def batch_tensors(
    items: list[Question], tokenised: Tokenised, pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Left-padded ids [B, T], attention mask [B, T] and answer lengths."""
    rows = [tokenised(item) for item in items]
    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for row, (tokens, _) in enumerate(rows):
        ids[row, width - len(tokens) :] = torch.tensor(tokens)
        mask[row, width - len(tokens) :] = 1
    return ids, mask, [length for _, length in rows]


def answer_logits(
    model: Any, ids: torch.Tensor, mask: torch.Tensor, features: torch.Tensor, lengths: list[int]
) -> list[torch.Tensor]:
    """Logits predicting each answer token, LlavaModel's way: image-token embeddings replaced by the projection."""
    language = model.model.language_model
    embeds = language.embed_tokens(ids)
    projected = model.model.multi_modal_projector(features).to(embeds.dtype)  # [B, patches, hidden]
    image_positions = (ids == model.config.image_token_id).unsqueeze(-1).expand_as(embeds)
    embeds = embeds.masked_scatter(image_positions, projected)
    hidden = language(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
    longest = max(lengths)
    logits = model.lm_head(hidden[:, -longest - 1 : -1])  # [B, longest, vocab]
    return [logits[row, longest - length :] for row, length in enumerate(lengths)]


def evaluate_fast(
    model: Any, items: list[Question], features: dict[int, torch.Tensor], tokenised: Tokenised, pad_id: int
) -> tuple[float, float]:
    """Exact-match accuracy of the greedy answer tokens (as evaluation.accuracy) and mean answer loss."""
    correct, loss_sum = 0, 0.0
    with torch.no_grad():
        for start in range(0, len(items), 32):
            chunk = items[start : start + 32]
            ids, mask, lengths = batch_tensors(chunk, tokenised, pad_id)
            feats = torch.stack([features[item.image_id] for item in chunk])
            for row, logits in enumerate(answer_logits(model, ids, mask, feats, lengths)):
                target = ids[row, -lengths[row] :]
                correct += int(torch.equal(logits.argmax(-1), target))
                loss_sum += float(nn.functional.cross_entropy(logits, target))
    return correct / len(items), loss_sum / len(items)


def train_projector(
    model: Any,
    processor: Any,
    subsets: dict[str, list[Question]],
    features: dict[str, dict[int, torch.Tensor]],
    settings: TrainSettings,
    log: Any = print,
) -> dict[str, Any]:
    """Train only the projector; keep the best state (by early-stop accuracy). Returns the curve."""
    torch.manual_seed(settings.seed)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    projector = model.model.multi_modal_projector
    for parameter in projector.parameters():
        parameter.requires_grad_(True)
    optimiser = torch.optim.AdamW(projector.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    tokenised = Tokenised(processor, settings)
    pad_id = int(processor.tokenizer.pad_token_id)
    stream = subsets["train"]
    curve: list[dict[str, Any]] = []
    best: dict[str, Any] = {
        "accuracy": -1.0,
        "step": 0,
        "state": {k: v.clone() for k, v in projector.state_dict().items()},
    }
    start, step, seen = time.perf_counter(), 0, 0
    running: list[float] = []
    stop_reason = "max_steps"

    def checkpoint() -> bool:
        accuracy, loss = evaluate_fast(model, subsets["early_stop"], features["test"], tokenised, pad_id)
        point = {
            "step": step,
            "samples_seen": seen,
            "train_loss": round(sum(running) / len(running), 4) if running else None,
            "early_stop_accuracy": round(accuracy, 4),
            "early_stop_loss": round(loss, 4),
            "elapsed_s": round(time.perf_counter() - start, 1),
        }
        running.clear()
        curve.append(point)
        log(json.dumps(point))
        if accuracy > best["accuracy"]:
            best.update(accuracy=accuracy, step=step, state={k: v.clone() for k, v in projector.state_dict().items()})
        return (step - int(best["step"])) >= settings.patience * settings.eval_every

    checkpoint()
    model.train()  # no dropout anywhere in these configs; kept for clarity
    while step < settings.max_steps:
        chunk = [stream[(seen + i) % len(stream)] for i in range(settings.batch_size)]
        ids, mask, lengths = batch_tensors(chunk, tokenised, pad_id)
        feats = torch.stack([features["train"][item.image_id] for item in chunk])
        logits = answer_logits(model, ids, mask, feats, lengths)
        loss = torch.stack(
            [
                nn.functional.cross_entropy(row_logits, ids[row, -lengths[row] :])
                for row, row_logits in enumerate(logits)
            ]
        ).mean()
        scale = min(1.0, (step + 1) / settings.warmup_steps)
        for group in optimiser.param_groups:
            group["lr"] = settings.learning_rate * scale
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        running.append(float(loss))
        step += 1
        seen += len(chunk)
        over_time = time.perf_counter() - start > settings.max_train_seconds
        if step % settings.eval_every == 0 or over_time:
            model.eval()
            if checkpoint():
                stop_reason = "early_stopping"
                break
            model.train()
        if over_time:
            stop_reason = "time_cap"
            break
    model.eval()
    projector.load_state_dict(best["state"])
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return {
        "curve": curve,
        "best_step": best["step"],
        "best_early_stop_accuracy": best["accuracy"],
        "steps": step,
        "samples_seen": seen,
        "stop_reason": stop_reason,
        "train_seconds": round(time.perf_counter() - start, 1),
    }


# --- sample files --------------------------------------------------------------------------------


def write_samples(folder: Path, name: str, items: list[Question], with_answers: bool) -> Path:
    """A Sample-format JSONL file, its images copied to <folder>/images/<split>/<id>.png."""
    paths = {split: image_paths(split) for split in {item.split for item in items}}
    lines = []
    for item in items:
        relative = Path("images") / item.split / f"{item.image_id}.png"
        target = folder / relative
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(paths[item.split][item.image_id], target)
        record: dict[str, Any] = {"image": relative.as_posix(), "text": item.prompt()}
        if with_answers:
            record["answer"] = item.answer
        lines.append(json.dumps(record))
    path = folder / f"{name}.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def encoder_accuracy(model_dir: Path, eval_path: Path, batch_size: int = 16) -> tuple[float, int]:
    """Accuracy through infoprune_core's own path: load_model, Encoder, evaluation.accuracy."""
    from infoprune_core.calibration import Encoder, read_samples
    from infoprune_core.evaluation import accuracy
    from infoprune_core.modeling import load_model

    loaded = load_model(model_dir)
    encoder = Encoder(loaded.processor, loaded.adapter.modality, max_text_tokens=128)
    samples = read_samples(eval_path)
    return accuracy(loaded.model, encoder, samples, batch_size), len(samples)


def forward_latency(model_dir: Path, eval_path: Path, sizes: tuple[int, ...] = (1, 32)) -> dict[str, float]:
    """Median forward time (ms, current thread count) at the given batch sizes on eval samples."""
    from infoprune_core.calibration import Encoder, read_samples
    from infoprune_core.evaluation import latency
    from infoprune_core.modeling import load_model

    loaded = load_model(model_dir)
    encoder = Encoder(loaded.processor, loaded.adapter.modality, max_text_tokens=128)
    samples = read_samples(eval_path)
    result = {}
    for size in sizes:
        batch = encoder.encode(samples[:size])
        result[f"batch_{size}_ms"] = round(latency(loaded.model, batch, repeats=3, warmup=1)["median_ms"], 1)
        result[f"batch_{size}_tokens"] = int(batch["input_ids"].shape[1])
    return result


# --- build ---------------------------------------------------------------------------------------


def build(root: Path, force: bool = False, settings: TrainSettings | None = None, log: Any = print) -> Path:
    settings = settings or TrainSettings()
    folder = root / NAME
    if not force and is_built(folder, RECIPE_VERSION):
        return folder
    smollm2_dir = smollm2_gguf.build(root) / "model"
    dinov2_dir = dinov2_onnx.build(root) / "model"
    work = folder / "work"  # resumable intermediates: features, trained projector
    model_dir = folder / "model"
    if model_dir.exists():
        shutil.rmtree(model_dir)
    work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(settings.threads)
    record = BuildRecord(NAME, RECIPE_VERSION, seeds={"torch": settings.seed, "data_order": settings.seed})
    record.sources = {
        "vision": {"target": dinov2_onnx.NAME, "path": str(dinov2_dir)},
        "language": {"target": smollm2_gguf.NAME, "path": str(smollm2_dir)},
        "data": {"package": "easy-vqa", "train_questions": 38575, "test_questions": 9673},
    }
    record.metrics["settings"] = asdict(settings)
    record.metrics["prompt"] = PROMPT + " {answer}"
    with record.timed("assemble"):
        model, processor = assemble(smollm2_dir, dinov2_dir, settings)
    subsets = fixed_subsets(settings)
    with record.timed("features"):
        features = {split: image_features(model, processor, split, work, settings) for split in ("train", "test")}
    projector_path, curve_path = work / "projector.safetensors", work / "training.json"
    if projector_path.exists() and curve_path.exists():
        model.model.multi_modal_projector.load_state_dict(load_file(str(projector_path)))
        training = json.loads(curve_path.read_text())
        record.notes.append("projector reused from an earlier run of this recipe (work/projector.safetensors)")
    else:
        with record.timed("train_projector"):
            training = train_projector(model, processor, subsets, features, settings, log)
        save_file(
            {k: v.contiguous() for k, v in model.model.multi_modal_projector.state_dict().items()}, str(projector_path)
        )
        curve_path.write_text(json.dumps(training, indent=2))
    record.metrics["training"] = training
    with record.timed("save"):
        model.save_pretrained(model_dir, safe_serialization=True)
        processor.save_pretrained(model_dir)
        write_samples(folder, "calibration", subsets["calibration"], with_answers=True)
        write_samples(folder, "eval", subsets["eval"], with_answers=True)
    with record.timed("eval_through_encoder"):
        accuracy, count = encoder_accuracy(model_dir, folder / "eval.jsonl")
    record.metrics["eval_accuracy"] = {"accuracy": accuracy, "questions": count, "file": "eval.jsonl"}
    log(f"eval accuracy through infoprune_core's Encoder: {accuracy:.4f} on {count} test questions")
    answers = sorted({item.answer for item in subsets["eval"]})
    majority = max(answers, key=lambda a: sum(item.answer == a for item in subsets["eval"]))
    record.metrics["eval_majority_baseline"] = sum(item.answer == majority for item in subsets["eval"]) / count
    with record.timed("latency"):
        record.metrics["forward_latency_1_thread" if settings.threads == 1 else "forward_latency"] = forward_latency(
            model_dir, folder / "eval.jsonl"
        )
    record.metrics["parameters"] = sum(p.numel() for p in model.parameters())
    record.metrics["image_tokens"] = settings.patches
    record.files = {
        "model": "model",
        "weights": "model/model.safetensors",
        "calibration": "calibration.jsonl",
        "eval": "eval.jsonl",
    }
    record.write(folder)
    return folder
