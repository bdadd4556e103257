"""The FastAPI application: thin HTTP layer over the job domain. Never imports torch or the worker."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response

from api import metrics, problems
from api.context import AppContext
from api.limits import BodyLimitMiddleware, make_rate_limiter
from api.routes import files, health, jobs, keys, models, ui
from infoprune_jobs.db import make_engine, make_sessionmaker
from infoprune_jobs.dispatch import CeleryDispatcher, Dispatcher, LocalDispatcher
from infoprune_jobs.settings import Settings
from infoprune_jobs.storage import ArtifactStorage, make_storage

log = logging.getLogger("infoprune.api")


def build_context(
    settings: Settings, *, dispatcher: Dispatcher | None = None, storage: ArtifactStorage | None = None
) -> AppContext:
    engine = make_engine(settings.sqlalchemy_url)
    if dispatcher is None:
        dispatcher = LocalDispatcher() if settings.embedded else CeleryDispatcher(settings)
    return AppContext(
        settings=settings,
        engine=engine,
        sessions=make_sessionmaker(engine),
        storage=storage or make_storage(settings),
        dispatcher=dispatcher,
        limiter=make_rate_limiter(settings),
    )


def create_app(ctx: AppContext) -> FastAPI:
    app = FastAPI(
        title="InfoPrune",
        version="1",
        summary="Compression-as-a-service for vision-language models",
        description="Errors are RFC 9457 problem details (application/problem+json).",
        docs_url=None,  # served by api.routes.ui with local Swagger UI assets
        redoc_url=None,
        # operationId = the route function's name (create_job, get_job_report, ...): what generated clients call
        generate_unique_id_function=lambda route: route.name,
    )
    app.state.ctx = ctx
    problems.install(app)
    for router in (jobs.router, models.router, keys.router, files.router, health.router):
        app.include_router(router)
    problems.document(app)
    ui.install(app)
    app.middleware("http")(metrics.middleware)
    app.middleware("http")(_access_log)
    app.add_middleware(
        BodyLimitMiddleware,
        default_limit=ctx.settings.max_request_bytes,
        upload_limit=ctx.settings.max_upload_bytes,
        upload_paths=("/v1/models",),
    )
    return app


async def _access_log(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    request_id = request.headers.get("x-request-id", "")[:64] or uuid.uuid4().hex
    start = time.perf_counter()
    response = await call_next(request)
    response.headers["X-Request-ID"] = request_id
    log.info(
        "request",
        extra={
            "request_id": request_id,
            "method": request.method,
            "path": request.url.path,
            "status_code": response.status_code,
            "duration_ms": round((time.perf_counter() - start) * 1000, 1),
            "tenant_id": getattr(request.state, "tenant_id", None),
            "job_id": request.scope.get("path_params", {}).get("job_id"),
        },
    )
    return response
