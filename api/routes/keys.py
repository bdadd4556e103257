"""/v1/keys: a tenant rotates or revokes its own API keys (operators use ``infoprune keys``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from api.deps import CtxDep, RepoDep
from api.problems import Problem
from infoprune_jobs.repository import TenantAdmin

router = APIRouter(prefix="/v1/keys", tags=["keys"])
_PREFIX = r"^ipk_[A-Za-z0-9_-]{12}$"


class KeyRotated(BaseModel):
    key: str = Field(description="the new API key; shown once")
    prefix: str
    previous_prefix: str
    previous_valid_until: datetime = Field(description="the old key is refused from then on")


@router.post("/rotate", status_code=201, response_model=KeyRotated, responses={409: {"description": "key changed"}})
def rotate_key(
    repo: RepoDep,
    ctx: CtxDep,
    request: Request,
    response: Response,
    grace_s: Annotated[int, Query(ge=0, le=30 * 24 * 3600, description="old key stays valid this long")] = 0,
) -> KeyRotated:
    """Issue a new key for the caller's tenant; the key used for this request stays valid ``grace_s`` seconds."""
    if grace_s > ctx.settings.key_rotation_max_grace_s:
        raise Problem(
            422, f"grace_s may be at most {ctx.settings.key_rotation_max_grace_s} on this server", type_="validation"
        )
    rotated = TenantAdmin(repo.session).rotate_key(request.state.key_prefix, grace_s=grace_s, tenant_id=repo.tenant_id)
    if rotated is None:  # revoked by a concurrent request
        raise Problem(409, "this key was revoked or rotated meanwhile", type_="key-changed")
    key, old = rotated
    assert old.revoked_at is not None  # set by the rotation
    response.headers["Cache-Control"] = "no-store"
    return KeyRotated(key=key, prefix=key[:16], previous_prefix=old.prefix, previous_valid_until=old.revoked_at)


@router.post("/revoke", status_code=204, response_class=Response, responses={404: {"description": "no such key"}})
def revoke_key(
    repo: RepoDep,
    request: Request,
    prefix: Annotated[str | None, Query(pattern=_PREFIX, description="another key of this tenant")] = None,
) -> Response:
    """Revoke the key used for this request, or the tenant's key ``prefix`` (e.g. the old one of a rotation)."""
    if not TenantAdmin(repo.session).revoke_key(prefix or request.state.key_prefix, tenant_id=repo.tenant_id):
        raise Problem(404, f"no active key {prefix}", type_="not-found")
    return Response(status_code=204)
