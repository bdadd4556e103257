"""Job submission rules: source and path checks, idempotency, the request hash. Never commits."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy.exc import IntegrityError

from api.problems import Problem
from infoprune_client.schemas import PATH_FIELDS, JobCreate
from infoprune_jobs import workers
from infoprune_jobs.models import Job
from infoprune_jobs.repository import TenantRepository
from infoprune_jobs.settings import Settings
from infoprune_jobs.sources import (
    ModelConfigRejected,
    SourceRejected,
    check_model_config,
    local_path,
    parse_source,
    resolve_local,
)
from infoprune_jobs.webhooks import WebhookRejected, check_webhook_url


def _invalid(field: list[str], msg: str) -> Problem:
    return Problem(422, msg, type_="validation", errors=[{"loc": field, "msg": msg, "type": "value_error"}])


def request_hash(body: JobCreate) -> str:
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def allowed_source_buckets(settings: Settings) -> list[str]:
    """The configured source buckets, never the bucket that holds every tenant's artifacts."""
    own = settings.s3_bucket if settings.storage_backend == "s3" else None
    return [b for b in settings.source_s3_buckets if b != own]


def normalise(body: JobCreate, repo: TenantRepository, settings: Settings) -> dict[str, Any]:
    """Check what the schema cannot (paths, buckets, uploads, device class, webhook) -> Job fields."""
    root = settings.models_dir
    try:
        source = parse_source(
            body.source,
            model_root=root,
            s3_buckets=allowed_source_buckets(settings),
            allow_hub=settings.allow_hub_sources,
        )
    except SourceRejected as exc:
        raise _invalid(["body", "source"], str(exc)) from exc
    if source.kind == "upload" and repo.get_uploaded_model(source.value) is None:
        raise _invalid(["body", "source"], f"no uploaded model {source.value}")
    if source.kind == "local" and (config_file := local_path(source.value, root) / "config.json").is_file():
        try:  # uploads were checked when they arrived; hub and S3 sources are checked by the worker's loader
            check_model_config(config_file, settings.max_model_parameters)
        except ModelConfigRejected as exc:
            raise _invalid(["body", "source"], str(exc)) from exc
    # only what the caller set: the pipeline owns the defaults
    config = body.config.model_dump(mode="json", exclude_unset=True)
    for field in PATH_FIELDS:  # kept relative to the model root, like local sources
        if config.get(field) is not None:
            try:
                config[field] = resolve_local(config[field], root)
            except SourceRejected as exc:
                raise _invalid(["body", "config", field], str(exc)) from exc
    device_class = body.device_class or settings.default_device_class
    if device_class not in settings.device_classes:
        raise _invalid(
            ["body", "device_class"],
            f"device class {device_class[:32]!r} is not configured on this server: use one of "
            f"{settings.device_classes}",
        )
    if body.webhook_url is not None:
        try:
            # names are looked up now too (best effort); delivery checks again and connects to the vetted address
            check_webhook_url(
                body.webhook_url, allow_private=settings.webhook_allow_private, resolve=True, strict=False
            )
        except WebhookRejected as exc:
            raise _invalid(["body", "webhook_url"], str(exc)) from exc
    stored_source = f"upload:{source.value}" if source.kind == "upload" else source.value
    return {
        "source": stored_source,
        "source_kind": source.kind,
        "config": config,
        "device_class": device_class,
        "webhook_url": body.webhook_url,
    }


def check_idempotency_key(key: str | None) -> None:
    if key is not None and not (1 <= len(key) <= 255 and key.isascii() and key.isprintable()):
        raise Problem(400, "Idempotency-Key must be 1-255 printable ASCII characters", type_="idempotency-key")


def replay(repo: TenantRepository, key: str, digest: str) -> Job | None:
    """The job an earlier request with this key created; refuse a key reused for another body."""
    existing = repo.job_by_idempotency_key(key)
    if existing is not None and existing.request_hash != digest:
        raise Problem(
            422, "this Idempotency-Key was used with a different request body", type_="idempotency-key-reused"
        )
    return existing


def waiting_notice(repo: TenantRepository, settings: Settings, device_class: str) -> str | None:
    """What a new job's first event says when no live worker consumes its device class's queue."""
    if workers.live_workers(repo.session).get(device_class):
        return None
    return (
        f"no worker consumes queue {settings.queue_for(device_class)} (device class {device_class}) now: "
        f"the job waits until one starts (`infoprune worker --device-class {device_class}`)"
    )


def create_job(
    repo: TenantRepository, fields: dict[str, Any], key: str | None, digest: str, notice: str | None
) -> tuple[Job, bool]:
    """Insert and commit the job (created=True); when a concurrent request won the key, its job.

    The commit is the request boundary, taken here because the worker must see the row before it is
    dispatched.
    """
    try:
        message = "job created" + (f"; {notice}" if notice else "")
        job = repo.add_job(**fields, idempotency_key=key, request_hash=digest if key else None, message=message)
        repo.session.commit()
        return job, True
    except IntegrityError:
        repo.session.rollback()
        existing = replay(repo, key, digest) if key is not None else None
        if existing is None:
            raise
        return existing, False
