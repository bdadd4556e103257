"""/v1/jobs: create (idempotent), list (cursor), get, cancel, events (list and SSE), report, artifacts."""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from api import service
from api.deps import CtxDep, RepoDep
from api.limits import check_job_quota
from api.metrics import JOBS_SUBMITTED
from api.problems import Problem
from infoprune_client.schemas import (
    ArtifactList,
    ArtifactOut,
    AttemptOut,
    EventOut,
    EventPage,
    JobCreate,
    JobOut,
    JobPage,
    JobReport,
    Links,
    ProblemOut,
    StatusName,
)
from infoprune_jobs.models import Job, JobEvent
from infoprune_jobs.repository import TenantRepository
from infoprune_jobs.states import TERMINAL, InvalidTransition, JobStatus

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

_ID = re.compile(r"^[0-9a-f]{32}$")
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ProblemOut, "content": {"application/problem+json": {}}} for code in (401, 404, 422)
}


def job_out(job: Job) -> JobOut:
    base = f"/v1/jobs/{job.id}"
    return JobOut(
        id=job.id,
        status=job.status,  # type: ignore[arg-type]
        stage=job.stage,
        progress=job.progress,
        source=job.source,
        config=job.config,
        device_class=job.device_class,
        webhook_url=job.webhook_url,
        error=job.error,
        attempts=job.attempts,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        updated_at=job.updated_at,
        attempt_history=[AttemptOut.model_validate(a, from_attributes=True) for a in job.attempt_history],
        links=Links(
            self=base,
            events=f"{base}/events",
            report=f"{base}/report",
            artifacts=f"{base}/artifacts",
            cancel=f"{base}/cancel",
        ),
    )


def event_out(event: JobEvent) -> EventOut:
    return EventOut(
        id=event.id,
        kind=event.kind,
        status=event.status,  # type: ignore[arg-type]
        stage=event.stage,
        progress=event.progress,
        message=event.message,
        created_at=event.created_at,
    )


def _get_job(repo: TenantRepository, job_id: str) -> Job:
    job = repo.get_job(job_id) if _ID.match(job_id) else None
    if job is None:  # another tenant's job is as unknown as a missing one
        raise Problem(404, f"no job {job_id[:64]}", type_="not-found")
    return job


@router.post("", status_code=202, response_model=JobOut, responses={**ERRORS, 503: ERRORS[401]})
def create_job(
    body: JobCreate,
    repo: RepoDep,
    ctx: CtxDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> JobOut:
    """Submit a compression job (202). A repeated ``Idempotency-Key`` returns the first job."""
    service.check_idempotency_key(idempotency_key)
    digest = service.request_hash(body)
    if idempotency_key is not None and (existing := service.replay(repo, idempotency_key, digest)):
        response.headers["Idempotent-Replayed"] = "true"
        response.headers["Location"] = f"/v1/jobs/{existing.id}"
        return job_out(existing)
    fields = service.normalise(body, repo, ctx.settings)
    check_job_quota(repo, ctx.settings)
    notice = service.waiting_notice(repo, ctx.settings, fields["device_class"])
    job, created = service.create_job(repo, fields, idempotency_key, digest, notice)
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
        return job_out(job)
    try:
        ctx.dispatcher.dispatch(job.id, job.device_class)
    except Exception as exc:
        # The job never existed for the client: remove it, so a retry (same Idempotency-Key) starts afresh.
        log.exception("could not enqueue job; submission withdrawn", extra={"job_id": job.id})
        repo.withdraw_job(job)
        repo.session.commit()
        raise Problem(503, "the job queue is unavailable; try again later", type_="queue-unavailable") from exc
    JOBS_SUBMITTED.labels(device_class=job.device_class).inc()
    log.info("job submitted", extra={"job_id": job.id, "tenant_id": repo.tenant_id})
    return job_out(job)


def _decode_cursor(cursor: str) -> str:
    try:
        value = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise Problem(400, "invalid cursor", type_="invalid-cursor") from exc
    if not _ID.match(value):
        raise Problem(400, "invalid cursor", type_="invalid-cursor")
    return value


@router.get("", response_model=JobPage, responses=ERRORS)
def list_jobs(
    repo: RepoDep,
    status: StatusName | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> JobPage:
    """This tenant's jobs, newest first."""
    before = _decode_cursor(cursor) if cursor else None
    jobs = repo.list_jobs(status=status, before=before, limit=limit + 1)
    page = list(jobs[:limit])
    next_cursor = base64.urlsafe_b64encode(page[-1].id.encode()).decode().rstrip("=") if len(jobs) > limit else None
    return JobPage(data=[job_out(j) for j in page], next_cursor=next_cursor)


@router.get("/{job_id}", response_model=JobOut, responses=ERRORS)
def get_job(job_id: str, repo: RepoDep) -> JobOut:
    return job_out(_get_job(repo, job_id))


@router.post("/{job_id}/cancel", status_code=202, response_model=JobOut, responses={**ERRORS, 409: ERRORS[404]})
def cancel_job(job_id: str, repo: RepoDep) -> JobOut:
    """Queued jobs are cancelled at once; running ones stop at their next progress tick."""
    job = repo.get_job(job_id, for_update=True) if _ID.match(job_id) else None
    if job is None:
        raise Problem(404, f"no job {job_id[:64]}", type_="not-found")
    try:
        repo.request_cancel(job)
    except InvalidTransition as exc:
        raise Problem(409, f"job is already {job.status}", type_="job-finished") from exc
    return job_out(job)


@router.get("/{job_id}/events", response_model=EventPage, responses=ERRORS)
def list_job_events(
    job_id: str,
    repo: RepoDep,
    ctx: CtxDep,
    request: Request,
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=20)] = None,
) -> Any:
    """Progress events in order. With ``Accept: text/event-stream`` a live server-sent-events stream
    that ends when the job has finished (resumes after ``Last-Event-ID``)."""
    job = _get_job(repo, job_id)
    if "text/event-stream" in request.headers.get("accept", ""):
        start = min(int(last_event_id), 2**62) if last_event_id and last_event_id.isdigit() else after
        return StreamingResponse(
            _sse(ctx, repo.tenant_id, job.id, start, request),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    events = repo.list_events(job.id, after=after, limit=limit)
    return EventPage(data=[event_out(e) for e in events], next_after=events[-1].id if events else after)


async def _sse(ctx: Any, tenant_id: str, job_id: str, after: int, request: Request) -> AsyncIterator[bytes]:
    def poll(cursor: int) -> tuple[list[EventOut], bool]:
        with ctx.sessions() as session:
            repo = TenantRepository(session, tenant_id)
            job = repo.get_job(job_id)
            done = job is None or JobStatus(job.status) in TERMINAL
            return [event_out(e) for e in repo.list_events(job_id, after=cursor, limit=500)], done

    yield b"retry: 2000\n\n"
    while not await request.is_disconnected():
        events, done = await run_in_threadpool(poll, after)
        for event in events:
            after = event.id
            yield f"id: {event.id}\nevent: {event.kind}\ndata: {event.model_dump_json()}\n\n".encode()
        if done and not events:
            yield b"event: end\ndata: {}\n\n"
            return
        if not events:
            yield b": keep-alive\n\n"
            await asyncio.sleep(ctx.settings.sse_poll_interval_s)


@router.get(
    "/{job_id}/report",
    response_model=JobReport,
    response_model_exclude_unset=True,  # the keys the pipeline wrote; an absent one (accuracy, ...) stays absent
    responses={**ERRORS, 409: ERRORS[404]},
)
def get_job_report(job_id: str, repo: RepoDep) -> JobReport:
    """The compression report (``report`` in the artifact's ``infoprune.json``) of a succeeded job."""
    job = _get_job(repo, job_id)
    if job.status != JobStatus.SUCCEEDED.value or job.report is None:
        raise Problem(409, f"job is {job.status}; the report exists once it has succeeded", type_="not-ready")
    return JobReport.model_validate(job.report)


@router.get("/{job_id}/artifacts", response_model=ArtifactList, responses={**ERRORS, 409: ERRORS[404]})
def list_job_artifacts(job_id: str, repo: RepoDep, ctx: CtxDep, request: Request) -> ArtifactList:
    """Files of the compressed model with download URLs that expire (presigned or signed)."""
    job = _get_job(repo, job_id)
    if job.status != JobStatus.SUCCEEDED.value:
        raise Problem(409, f"job is {job.status}; artifacts exist once it has succeeded", type_="not-ready")
    ttl = ctx.settings.download_url_ttl_s
    expires_at = datetime.now(UTC) + timedelta(seconds=ttl)
    base = ctx.settings.public_url or str(request.base_url)
    return ArtifactList(
        data=[
            ArtifactOut(
                name=a.name,
                size=a.size,
                sha256=a.sha256,
                expires_at=expires_at,
                url=ctx.storage.download_url(a.storage_key, ttl, base),
            )
            for a in repo.list_artifacts(job.id)
        ]
    )
