"""POST /v1/models: upload a model archive (tar, tar.gz, zip; safetensors weights only)."""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from api.deps import CtxDep, RepoDep
from api.problems import Problem
from infoprune_client.schemas import ModelFile, ModelOut, ProblemOut
from infoprune_jobs.archive import ArchiveRejected, extract_model_archive
from infoprune_jobs.models import UploadedModel, new_id
from infoprune_jobs.storage import put_tree

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/models", tags=["models"])
_ID = re.compile(r"^[0-9a-f]{32}$")
ERRORS: dict[int | str, dict[str, Any]] = {
    c: {"model": ProblemOut, "content": {"application/problem+json": {}}} for c in (401, 404, 413, 415, 422)
}


def model_out(model: UploadedModel) -> ModelOut:
    return ModelOut(
        id=model.id,
        name=model.name,
        size=model.size,
        files=[ModelFile.model_validate(f) for f in model.files["files"]],
        source=f"upload:{model.id}",
        created_at=model.created_at,
    )


@router.post("", status_code=201, response_model=ModelOut, responses=ERRORS)
async def upload_model(
    request: Request,
    repo: RepoDep,
    ctx: CtxDep,
    name: Annotated[str, Query(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._-]+$")] = "model",
) -> ModelOut:
    """Send the archive as the raw request body (``curl --data-binary @model.tar.gz``). The size limit
    is ``INFOPRUNE_MAX_UPLOAD_BYTES``; extracted content is capped by ``INFOPRUNE_MAX_EXTRACTED_BYTES``."""
    settings = ctx.settings
    if request.headers.get("content-type", "").startswith("multipart/"):
        raise Problem(
            415,
            "send the archive as the raw request body, e.g. curl --data-binary @model.tar.gz "
            "-H 'Content-Type: application/gzip'",
            type_="unsupported-media-type",
        )
    work = Path(tempfile.mkdtemp(prefix="infoprune-upload-"))
    try:
        archive = work / "upload"
        try:
            with archive.open("wb") as out:
                async for chunk in request.stream():  # the body-limit middleware stops oversized uploads
                    out.write(chunk)
        except ClientDisconnect as exc:  # the client left, or the body limit answered 413 already
            raise Problem(400, "upload interrupted", type_="upload-interrupted") from exc
        if archive.stat().st_size == 0:
            raise Problem(422, "empty upload: send the archive as the request body", type_="validation")
        model_id = new_id()
        prefix = f"tenants/{repo.tenant_id}/models/{model_id}"

        def extract_and_store() -> list[tuple[str, int]]:
            files = extract_model_archive(
                archive,
                work / "model",
                max_bytes=settings.max_extracted_bytes,
                max_members=settings.max_archive_members,
                max_parameters=settings.max_model_parameters,
            )
            put_tree(ctx.storage, prefix, work / "model")
            return files

        try:
            files = await run_in_threadpool(extract_and_store)
        except ArchiveRejected as exc:
            raise Problem(422, str(exc), type_="bad-archive") from exc
        except Exception as exc:  # the store refused or is down: not the client's fault
            log.exception("storing an uploaded model failed")
            raise Problem(503, "model storage is unavailable; try again later", type_="storage-unavailable") from exc
        model = await run_in_threadpool(
            repo.add_uploaded_model,
            id=model_id,
            name=name,
            storage_prefix=prefix,
            size=sum(s for _, s in files),
            files={"files": [{"name": n, "size": s} for n, s in files]},
        )
        return model_out(model)
    finally:
        shutil.rmtree(work, ignore_errors=True)


@router.get("/{model_id}", response_model=ModelOut, responses=ERRORS)
def get_model(model_id: str, repo: RepoDep) -> ModelOut:
    model = repo.get_uploaded_model(model_id) if _ID.match(model_id) else None
    if model is None:
        raise Problem(404, f"no model {model_id[:64]}", type_="not-found")
    return model_out(model)
