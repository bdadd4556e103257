"""A procedural visual question-answering task: coloured shapes on a noisy background.

Every sample is a 64x64 RGB image with one or two shapes and a question whose one-word answer
needs the image. Generation is deterministic given a seed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

IMAGE_SIZE = 64
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40),
    "green": (40, 170, 60),
    "blue": (45, 80, 215),
    "yellow": (225, 205, 35),
    "purple": (135, 55, 175),
    "orange": (240, 135, 25),
}
SHAPES = ("circle", "square", "triangle")
SIDES = ("left", "right")
COUNTS = ("one", "two")
# The answer words of each question kind.
OPTIONS: dict[str, tuple[str, ...]] = {"color": tuple(COLORS), "shape": SHAPES, "side": SIDES, "count": COUNTS}
QUESTIONS: dict[str, str] = {
    "color": "what color is the shape ?",
    "shape": "what shape is it ?",
    "side": "where is the shape ?",
    "count": "how many shapes ?",
}
PROMPT_TEMPLATE = "<image> {question} answer :"
ANSWERS: tuple[str, ...] = tuple(word for options in OPTIONS.values() for word in options)

# Seeds of the splits; the evaluation seed is never used for training.
TRAIN_SEED = 0
CALIBRATION_SEED = 1
EVAL_SEED = 2
VISION_PRETRAIN_SEED = 3


@dataclass(frozen=True)
class Shape:
    kind: str
    color: str
    cx: int
    cy: int
    radius: int


@dataclass(frozen=True)
class Scene:
    image: Image.Image
    shapes: tuple[Shape, ...]

    def answers(self) -> dict[str, str]:
        """The answer of every question kind the scene settles (only the count for two shapes)."""
        count = {"count": COUNTS[len(self.shapes) - 1]}
        if len(self.shapes) > 1:
            return count
        shape = self.shapes[0]
        return {"color": shape.color, "shape": shape.kind, "side": SIDES[shape.cx >= IMAGE_SIZE // 2], **count}


@dataclass(frozen=True)
class Sample:
    image: Image.Image
    question: str
    answer: str

    @property
    def prompt(self) -> str:
        """The model's text input; the answer is the single next token."""
        return PROMPT_TEMPLATE.format(question=self.question)


def vocabulary() -> list[str]:
    """All words of the task (prompts and answers), sorted."""
    words = set(PROMPT_TEMPLATE.format(question="").split()) | set(ANSWERS)
    for question in QUESTIONS.values():
        words.update(question.split())
    words.discard("<image>")
    return sorted(words)


def _random_shape(rng: np.random.Generator, side: str | None) -> Shape:
    radius = int(rng.integers(8, 15))
    low, high = radius + 1, IMAGE_SIZE - radius - 2
    if side == "left":
        high = IMAGE_SIZE // 2 - 6
    elif side == "right":
        low = IMAGE_SIZE // 2 + 6
    return Shape(
        kind=SHAPES[rng.integers(len(SHAPES))],
        color=list(COLORS)[rng.integers(len(COLORS))],
        cx=int(rng.integers(low, high + 1)),
        cy=int(rng.integers(radius + 1, IMAGE_SIZE - radius - 1)),
        radius=radius,
    )


def _two_shapes(rng: np.random.Generator) -> list[Shape]:
    """Two shapes whose bounding boxes are at least 2 pixels apart (redrawn until they are)."""
    while True:
        first, second = _random_shape(rng, None), _random_shape(rng, None)
        reach = first.radius + second.radius + 2
        if abs(first.cx - second.cx) > reach or abs(first.cy - second.cy) > reach:
            return [first, second]


def _background(rng: np.random.Generator) -> np.ndarray:
    """A light grey background with sparse speckle noise (sparse so that PNGs stay small)."""
    grey = rng.integers(205, 246)
    pixels = np.full((IMAGE_SIZE, IMAGE_SIZE, 3), grey, dtype=np.int16)
    speckles = rng.random((IMAGE_SIZE, IMAGE_SIZE)) < 0.04
    pixels[speckles] += rng.integers(-40, 11, size=(int(speckles.sum()), 1)).astype(np.int16)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def _draw(image: Image.Image, shape: Shape, rng: np.random.Generator) -> None:
    """Paint a shape in its colour, jittered a little per channel."""
    jitter = rng.integers(-15, 16, size=3)
    fill = tuple(int(np.clip(c + j, 0, 255)) for c, j in zip(COLORS[shape.color], jitter, strict=True))
    x, y, r = shape.cx, shape.cy, shape.radius
    draw = ImageDraw.Draw(image)
    if shape.kind == "circle":
        draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)
    elif shape.kind == "square":
        s = round(r * 0.85)
        draw.rectangle((x - s, y - s, x + s, y + s), fill=fill)
    else:
        draw.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], fill=fill)


def random_scene(rng: np.random.Generator, count: int) -> Scene:
    """One or two shapes; a single shape sits clearly left or right of the centre."""
    shapes = _two_shapes(rng) if count == 2 else [_random_shape(rng, SIDES[rng.integers(2)])]
    image = Image.fromarray(_background(rng))
    for shape in shapes:
        _draw(image, shape, rng)
    return Scene(image=image, shapes=tuple(shapes))


def random_sample(rng: np.random.Generator) -> Sample:
    """Draw one (image, question, answer); two-shape images are asked only for the count."""
    kind = list(QUESTIONS)[rng.integers(len(QUESTIONS))]
    count = 1 + int(kind == "count" and rng.integers(2))
    scene = random_scene(rng, count)
    return Sample(image=scene.image, question=QUESTIONS[kind], answer=scene.answers()[kind])


def generate(seed: int) -> Iterator[Sample]:
    """An endless, deterministic stream of samples for a seed."""
    rng = np.random.default_rng(seed)
    while True:
        yield random_sample(rng)


def generate_scenes(seed: int) -> Iterator[Scene]:
    """An endless, deterministic stream of scenes (a quarter with two shapes) for a seed."""
    rng = np.random.default_rng(seed)
    while True:
        yield random_scene(rng, 2 if rng.random() < 0.25 else 1)


def make_split(seed: int, size: int) -> list[Sample]:
    """The first `size` samples of the stream for `seed`."""
    stream = generate(seed)
    return [next(stream) for _ in range(size)]
