"""The wire contract of the InfoPrune API: every request and response body, shared by the API (which
serves these very models in its OpenAPI document) and the client (which parses responses with them).

Torch-free: it needs pydantic and ``infoprune_core.config`` only. The job configuration a tenant may
send, ``CompressionOptions``, is derived from ``infoprune_core.CompressionConfig`` (what the worker
applies), so its fields, defaults and bounds cannot drift from the pipeline's.
"""

from __future__ import annotations

import types
import typing
from datetime import datetime
from pathlib import PurePath
from typing import TYPE_CHECKING, Annotated, Any, Literal

import annotated_types
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictStr,
    StringConstraints,
    ValidationError,
    create_model,
    model_validator,
)

from infoprune_core.config import CompressionConfig

StatusName = Literal["queued", "running", "cancelling", "succeeded", "failed", "cancelled"]
AttemptOutcome = Literal["running", "succeeded", "failed", "cancelled", "lost"]

# Fields of CompressionConfig that the service sets itself: a job never chooses its device or threads.
SERVICE_FIELDS = frozenset({"device", "threads"})
# Free-text fields that name files: the API resolves them inside its model root (and the worker again).
PATH_FIELDS = frozenset({"calibration", "eval_set"})

_STRICT = ConfigDict(extra="forbid", strict=True)
_OPEN = ConfigDict(extra="allow")
# Integers every JSON parser keeps exactly (I-JSON, RFC 7493): the wire's range for integers the core
# leaves unbounded (a seed of 10**30 would otherwise reach the pipeline)
JSON_INTEGERS = (annotated_types.Ge(-(2**53 - 1)), annotated_types.Le(2**53 - 1))


def _wire(annotation: Any) -> Any:
    """The JSON form of a core annotation: tuples become lists (what a JSON array decodes to)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return list[_wire(args[0])]  # type: ignore[misc]
    if origin in (typing.Union, types.UnionType):
        return typing.Union[tuple(_wire(a) for a in args)]  # noqa: UP007
    return annotation


def _is_free_text(annotation: Any) -> bool:
    """A string or path (not a choice among literals), anywhere in the annotation."""
    if isinstance(annotation, type) and issubclass(annotation, str | PurePath):
        return True
    return typing.get_origin(annotation) is not typing.Literal and any(
        _is_free_text(a) for a in typing.get_args(annotation)
    )


def _option(name: str) -> tuple[Any, Any]:
    core = CompressionConfig.model_fields[name]
    annotation = _wire(core.annotation)
    if name in PATH_FIELDS:
        annotation = typing.Union[Annotated[str, StringConstraints(min_length=1, max_length=1024)], None]  # noqa: UP007
    elif _is_free_text(core.annotation):
        # fail closed: a new free-text field may name a server path or resource; classify it above first
        raise RuntimeError(f"CompressionConfig.{name} is free text: add it to SERVICE_FIELDS or PATH_FIELDS")
    default = list(core.default) if isinstance(core.default, tuple) else core.default
    metadata = list(core.metadata)
    if core.annotation is int and not any(isinstance(m, annotated_types.BaseMetadata) for m in metadata):
        metadata.extend(JSON_INTEGERS)
    if metadata:
        annotation = Annotated[annotation, *metadata]
    return annotation, Field(default=default, description=core.description)


def _core_check(options: BaseModel) -> BaseModel:
    """Apply the core's own cross-field rules (one budget, a valid scope) to what the caller set."""
    try:
        CompressionConfig(**options.model_dump(exclude_unset=True))
    except ValidationError as exc:
        raise ValueError("; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())) from None
    return options


def _derive_options() -> type[BaseModel]:
    names = [n for n in CompressionConfig.model_fields if n not in SERVICE_FIELDS]
    return create_model(  # type: ignore[call-overload]
        "CompressionOptions",
        __config__=_STRICT,
        __doc__=(
            "Budget, scope and methods of a compression run: `infoprune_core.CompressionConfig` without the "
            "fields the service sets (device, threads). Give `target_flops_ratio`, or `head_keep_ratio` "
            "and/or `ffn_epsilon`. Unset fields take the pipeline's defaults shown here."
        ),
        __validators__={"core_rules": model_validator(mode="after")(_core_check)},
        **{name: _option(name) for name in names},
    )


if TYPE_CHECKING:
    CompressionOptions = BaseModel
else:
    CompressionOptions = _derive_options()


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
    device_class: StrictStr | None = Field(
        default=None, min_length=1, max_length=32, description="one of the server's device classes (see /readyz)"
    )
    webhook_url: StrictStr | None = Field(default=None, min_length=8, max_length=2048)


class Links(BaseModel):
    self: str
    events: str
    report: str
    artifacts: str
    cancel: str


class AttemptOut(BaseModel):
    number: int
    started_at: datetime
    finished_at: datetime | None
    outcome: AttemptOutcome = Field(description="lost: the worker running it died; the job was requeued")


class JobOut(BaseModel):
    id: str
    status: StatusName
    stage: str
    progress: float = Field(description="0..1 over the whole job (every attempt); it never decreases")
    source: str = Field(description="as the tenant named it (local paths relative to the model root)")
    config: dict[str, Any] = Field(description="the options the tenant set; the others take the defaults")
    device_class: str
    webhook_url: str | None
    error: str | None
    attempts: int
    created_at: datetime
    started_at: datetime | None = Field(description="start of the first attempt")
    finished_at: datetime | None
    updated_at: datetime
    attempt_history: list[AttemptOut] = Field(description="every attempt, first to last")
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


class ModelFile(BaseModel):
    name: str
    size: int


class ModelOut(BaseModel):
    id: str
    name: str
    size: int
    files: list[ModelFile]
    source: str = Field(description="use as the source of a job")
    created_at: datetime


class ReadyOut(BaseModel):
    status: Literal["ok", "degraded"] = Field(description="degraded: some device class has no live worker")
    checks: dict[str, str] = Field(description="database, broker, storage: ok or why not")
    workers: dict[str, int] = Field(description="live workers per configured device class")
    warnings: list[str]


class ProblemOut(BaseModel):
    """RFC 9457 problem details (media type application/problem+json)."""

    model_config = _OPEN

    type: str
    title: str
    status: int
    detail: str
    instance: str


# -- the compression report (written by infoprune_core.pipeline) --------------------------------------
# Stable top-level keys are typed; every level allows extra keys, which later versions may add.


class ReportModel(BaseModel):
    model_config = _OPEN

    source: str
    model_type: str
    architecture: str | None = None


class ReportCounts(BaseModel):
    """Per part (vision / projector / language) and ``total``, before and after compression."""

    model_config = _OPEN

    before: dict[str, float]
    after: dict[str, float]


class ReportFlops(ReportCounts):
    scope_ratio: float | None = Field(default=None, description="compressed scope FLOPs / original")
    target_scope_ratio: float | None = None


class ReportLatency(BaseModel):
    model_config = _OPEN

    measured: bool
    device: str | None = None
    threads: int | None = None
    speedup: float | None = None


class ReportHeads(BaseModel):
    model_config = _OPEN

    method: str
    layers: dict[str, Any]


class ReportRecovery(BaseModel):
    model_config = _OPEN

    steps: int
    first_loss: float | None = None
    last_loss: float | None = None


class JobReport(BaseModel):
    """The compression report of a succeeded job (also ``report`` in its ``infoprune.json``)."""

    model_config = _OPEN

    model: ReportModel
    input: dict[str, Any] = Field(description="the input the FLOPs were counted on")
    scope: list[str]
    config: dict[str, Any] = Field(description="the configuration the pipeline applied, defaults included")
    params: ReportCounts
    flops: ReportFlops
    latency: ReportLatency
    fidelity: dict[str, Any]
    accuracy: dict[str, Any] | None = Field(default=None, description="with an evaluation set only")
    heads: ReportHeads
    ffn: dict[str, Any]
    stages_seconds: dict[str, float]
    versions: dict[str, str | None]
    recovery: ReportRecovery | None = Field(default=None, description="when recovery steps ran")
