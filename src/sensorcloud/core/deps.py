"""FastAPI dependency aliases shared by every service: the runtime, a session, the caller."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from sensorcloud.core.errors import Forbidden, Unauthorized
from sensorcloud.core.runtime import Runtime
from sensorcloud.core.tokens import Principal


async def get_runtime(request: Request) -> Runtime:  # async: no thread-pool hop per request
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_session(runtime: RuntimeDep) -> AsyncIterator[AsyncSession]:
    """A session in one transaction: committed when the route returns, rolled back on error."""
    async with runtime.sessions() as session, session.begin():
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


def bearer_token(header: str | None) -> str:
    """The token of an `Authorization: Bearer <JWT>` header; Unauthorized, in the original
    system's words, when it is missing or malformed."""
    if header is None:
        raise Unauthorized("Missing Authorization Header")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise Unauthorized("Bad Authorization header. Expected 'Authorization: Bearer <JWT>'")
    return token


class BearerPrincipal(HTTPBearer):
    """The caller, from `Authorization: Bearer <JWT>`. An HTTPBearer so that OpenAPI declares the
    scheme, reading the header itself so that the answers match the original system's ("Missing
    Authorization Header"); one dependency where FastAPI would solve three, each at a cost on every
    request."""

    async def __call__(self, request: Request) -> Principal:  # type: ignore[override]
        token = bearer_token(request.headers.get("authorization"))
        runtime: Runtime = request.app.state.runtime
        return await runtime.verifier.verify(token)


get_principal = BearerPrincipal(
    auto_error=False, scheme_name="HTTPBearer", description="An access token from POST /auth/login"
)
CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


async def get_admin(principal: CurrentPrincipal) -> Principal:
    if not principal.is_admin:
        raise Forbidden("Admin rights required")
    return principal


AdminPrincipal = Annotated[Principal, Depends(get_admin)]
