"""Typed dependencies: the app context, a per-request session (the request boundary commits),
and the caller's tenant from the Bearer key."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from api.context import AppContext
from api.limits import check_rate
from api.problems import Problem
from infoprune_jobs.repository import TenantAdmin, TenantRepository
from infoprune_jobs.security import key_prefix

_bearer = HTTPBearer(auto_error=False, description="API key from `infoprune keys create`")


def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


CtxDep = Annotated[AppContext, Depends(get_ctx)]


def get_session(ctx: CtxDep) -> Iterator[Session]:
    with ctx.sessions() as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def _unauthorized(detail: str) -> Problem:
    return Problem(401, detail, type_="unauthorized", headers={"WWW-Authenticate": 'Bearer realm="infoprune"'})


def get_repo(
    request: Request,
    ctx: CtxDep,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> TenantRepository:
    """The caller's tenant (401 without a valid key), within its request rate (429 over it)."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    key = credentials.credentials
    tenant_id = TenantAdmin(session).authenticate(key) if 0 < len(key) <= 200 else None
    if tenant_id is None:
        raise _unauthorized("invalid or revoked API key")
    request.state.tenant_id = tenant_id
    request.state.key_prefix = key_prefix(key)
    check_rate(ctx.limiter, tenant_id)
    return TenantRepository(session, tenant_id)


RepoDep = Annotated[TenantRepository, Depends(get_repo)]
