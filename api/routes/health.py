"""Liveness, readiness (database, broker, storage) and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from api import metrics
from api.deps import CtxDep
from api.problems import Problem

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "a dependency is down"}})
async def readyz(ctx: CtxDep) -> dict[str, Any]:
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
    return {"status": "ok", "checks": checks}


@router.get("/metrics", include_in_schema=False)
def prometheus(ctx: CtxDep) -> Response:
    return metrics.render(ctx.sessions)
