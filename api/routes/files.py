"""Signed downloads of locally stored artifacts (embedded mode); S3 serves presigned URLs itself."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse

from api.deps import CtxDep
from api.problems import Problem
from infoprune_jobs.storage import LocalStorage

router = APIRouter(tags=["artifacts"])


@router.get(
    "/v1/files/{key:path}",
    response_class=FileResponse,
    responses={403: {"description": "bad or expired signature"}, 404: {"description": "no such file"}},
)
def download_file(
    key: str,
    ctx: CtxDep,
    expires: Annotated[int, Query(ge=0, le=2**40)],
    signature: Annotated[str, Query(min_length=10, max_length=100)],
) -> FileResponse:
    """Download one artifact; the URL comes from ``GET /v1/jobs/{id}/artifacts`` and expires."""
    storage = ctx.storage
    if not isinstance(storage, LocalStorage):
        raise Problem(404, "downloads are served by the object store", type_="not-found")
    try:
        valid = storage.verify(key, expires, signature)
        path = storage.path_of(key) if valid else None
    except ValueError:
        valid, path = False, None
    if not valid or path is None:
        raise Problem(403, "invalid or expired download link", type_="bad-signature")
    if not path.is_file():
        raise Problem(404, "artifact not found", type_="not-found")
    return FileResponse(path, filename=path.name, media_type="application/octet-stream")
