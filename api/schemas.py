"""Request and response bodies. Inputs are strict: unknown fields, wrong types and out-of-range
values are refused with 422. ``CompressionOptions`` mirrors ``infoprune_core.CompressionConfig``
(without the fields the service controls: device, threads) and is checked against it in tests."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

Part = Literal["vision", "language"]
HeadMethod = Literal["infoprune", "infoprune_free", "random", "l1", "taylor", "entropy", "none"]
FFNMethod = Literal["auto", "whitened_svd", "svd", "uniform", "width", "none"]
StatusName = Literal["queued", "running", "cancelling", "succeeded", "failed", "cancelled"]

_STRICT = ConfigDict(extra="forbid", strict=True)
_ALL_PARTS: tuple[Part, ...] = ("vision", "language")


class CompressionOptions(BaseModel):
    """Budget, scope and methods. Give ``target_flops_ratio`` or ``head_keep_ratio``/``ffn_epsilon``."""

    model_config = _STRICT

    target_flops_ratio: float | None = Field(default=None, gt=0.0, le=1.0)
    head_keep_ratio: float | None = Field(default=None, gt=0.0, le=1.0)
    ffn_epsilon: float | None = Field(default=None, ge=0.0, lt=1.0)
    scope: list[Part] = Field(default_factory=lambda: list(_ALL_PARTS), min_length=1, max_length=2)
    heads: HeadMethod = "infoprune"
    ffn: FFNMethod = "auto"
    calibration: StrictStr | None = Field(default=None, min_length=1, max_length=1024)
    eval_set: StrictStr | None = Field(default=None, min_length=1, max_length=1024)
    calibration_samples: StrictInt = Field(default=64, ge=1, le=100_000)
    held_out_samples: StrictInt = Field(default=16, ge=1, le=10_000)
    batch_size: StrictInt = Field(default=8, ge=1, le=1024)
    max_text_tokens: StrictInt = Field(default=64, ge=4, le=8192)
    gate_steps: StrictInt = Field(default=150, ge=0, le=100_000)
    recovery_steps: StrictInt = Field(default=100, ge=0, le=100_000)
    recovery_learning_rate: float = Field(default=1e-4, gt=0.0, le=1.0)
    validate_scores: StrictBool = False
    plan_search: StrictBool = True
    latency_batch: StrictInt = Field(default=32, ge=1, le=1024)
    latency_repeats: StrictInt = Field(default=5, ge=1, le=1000)
    measure_latency: StrictBool = True
    seed: StrictInt = Field(default=0, ge=0, le=2**31 - 1)

    @field_validator("scope")
    @classmethod
    def _unique_scope(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("scope lists a part twice")
        return value

    @model_validator(mode="after")
    def _one_budget(self) -> CompressionOptions:
        explicit = self.head_keep_ratio is not None or self.ffn_epsilon is not None
        if self.target_flops_ratio is not None and explicit:
            raise ValueError("give either target_flops_ratio or head_keep_ratio/ffn_epsilon, not both")
        if self.target_flops_ratio is None and not explicit:
            raise ValueError("a budget is required: target_flops_ratio, or head_keep_ratio and/or ffn_epsilon")
        return self


class JobCreate(BaseModel):
    model_config = _STRICT

    source: StrictStr = Field(
        min_length=1,
        max_length=1024,
        description=(
            "a path inside the server's model root, s3://bucket/prefix, a hub id owner/name, or upload:<model id>"
        ),
    )
    config: CompressionOptions
    device_class: StrictStr | None = Field(default=None, min_length=1, max_length=32)
    webhook_url: StrictStr | None = Field(default=None, min_length=8, max_length=2048)


class Links(BaseModel):
    self: str
    events: str
    report: str
    artifacts: str
    cancel: str


class JobOut(BaseModel):
    id: str
    status: StatusName
    stage: str
    progress: float
    source: str
    config: dict[str, Any]
    device_class: str
    webhook_url: str | None
    error: str | None
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    links: Links


class JobPage(BaseModel):
    data: list[JobOut]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last page")


class EventOut(BaseModel):
    id: int
    kind: str
    status: StatusName
    stage: str
    progress: float
    message: str
    created_at: datetime


class EventPage(BaseModel):
    data: list[EventOut]
    next_after: int = Field(description="pass as ?after= to get the events that follow")


class ArtifactOut(BaseModel):
    name: str
    size: int
    sha256: str
    url: str
    expires_at: datetime


class ArtifactList(BaseModel):
    data: list[ArtifactOut]


class ModelOut(BaseModel):
    id: str
    name: str
    size: int
    files: list[dict[str, Any]]
    source: str = Field(description="use as the source of a job")
    created_at: datetime


class ProblemOut(BaseModel):
    """RFC 9457 problem details (media type application/problem+json)."""

    type: str
    title: str
    status: int
    detail: str
    instance: str
