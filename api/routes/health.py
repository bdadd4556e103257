"""Liveness, readiness (database, broker, storage, and which device classes have a live worker) and
Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from api import metrics
from api.context import AppContext
from api.deps import CtxDep
from api.problems import Problem
from infoprune_client.schemas import ReadyOut
from infoprune_jobs import workers

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", response_model=ReadyOut, responses={503: {"description": "a dependency is down"}})
async def readyz(ctx: CtxDep) -> ReadyOut:
    """503 when the database, broker or storage is down. A device class that no live worker consumes
    is a warning (``degraded``), not a failure: jobs are still accepted and wait in its queue."""

    def check_db() -> None:
        with ctx.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    checks: dict[str, str] = {}
    for name, fn in (
        ("database", check_db),
        ("broker", ctx.dispatcher.check),
        ("storage", ctx.storage.check),
    ):
        try:
            await run_in_threadpool(fn)
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = f"unavailable: {type(exc).__name__}"
    if any(v != "ok" for v in checks.values()):
        raise Problem(503, "not ready", type_="not-ready", checks=checks)
    live = await run_in_threadpool(_live_workers, ctx)
    warnings = [
        f"no worker consumes queue {ctx.settings.queue_for(c)} (device class {c}): its jobs stay queued until "
        f"one starts (`infoprune worker --device-class {c}`)"
        for c, count in live.items()
        if count == 0
    ]
    return ReadyOut(status="degraded" if warnings else "ok", checks=checks, workers=live, warnings=warnings)


def _live_workers(ctx: AppContext) -> dict[str, int]:
    with ctx.sessions() as session:
        counts = workers.live_workers(session)
    return {c: counts.get(c, 0) for c in ctx.settings.device_classes}


@router.get("/metrics", include_in_schema=False)
def prometheus(ctx: CtxDep) -> Response:
    return metrics.render(ctx.sessions, ctx.settings)
