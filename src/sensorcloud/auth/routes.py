"""HTTP routes of the auth service: /auth/*, /users*, /.well-known/jwks.json."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, status

from sensorcloud.auth.schemas import (
    LoginRequest,
    LoginResponse,
    LogoutRequest,
    Message,
    PasswordChangeRequest,
    RefreshRequest,
    RegisterRequest,
    UserOut,
    UserPatch,
    UsersData,
    UsersList,
)
from sensorcloud.auth.service import AuthService, Session
from sensorcloud.core.deps import AdminPrincipal, CurrentPrincipal, RuntimeDep
from sensorcloud.core.keys import jwks_document

router = APIRouter()
UserId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The user's numeric id")]
ERR = {"content": {"application/json": {"example": {"msg": "..."}}}}
AUTH_ERRORS: dict[int | str, dict[str, Any]] = {401: {"description": "Missing or invalid token", **ERR}}
ADMIN_ERRORS: dict[int | str, dict[str, Any]] = {**AUTH_ERRORS, 403: {"description": "Admins only", **ERR}}


def get_service(runtime: RuntimeDep) -> AuthService:
    assert runtime.issuer is not None, "the auth routes run only where the signing key is"
    return AuthService(runtime.settings, runtime.sessions, runtime.issuer, runtime.state)


Service = Annotated[AuthService, Depends(get_service)]


def _client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _tokens(message: str, session: Session) -> LoginResponse:
    return LoginResponse(
        message=message,
        auth_token=session.access_token,
        refresh_token=session.refresh_token,
        expires_in=session.expires_in,
    )


@router.post(
    "/auth/register",
    status_code=status.HTTP_201_CREATED,
    response_model=UserOut,
    tags=["auth"],
    responses={409: {"description": "Email or username taken", **ERR}},
)
async def register(body: RegisterRequest, service: Service) -> UserOut:
    """Create a user account (always a normal user; role fields in the body are ignored)."""
    user = await service.register(body.email, body.username, body.password)
    return UserOut.model_validate(user)


@router.post(
    "/auth/login",
    response_model=LoginResponse,
    tags=["auth"],
    responses={
        401: {"description": "Wrong email or password", **ERR},
        429: {"description": "Throttled", **ERR},
    },
)
async def login(body: LoginRequest, request: Request, service: Service) -> LoginResponse:
    """Exchange email and password for an access token and a refresh token."""
    session = await service.login(body.email, body.password, _client_address(request))
    return _tokens("Successfully logged in.", session)


@router.post("/auth/refresh", response_model=LoginResponse, tags=["auth"], responses=AUTH_ERRORS)
async def refresh(body: RefreshRequest, service: Service) -> LoginResponse:
    """Rotate a refresh token: returns new tokens; the old refresh token is spent."""
    session = await service.refresh(body.refresh_token)
    return _tokens("Successfully refreshed.", session)


@router.post("/auth/logout", response_model=Message, tags=["auth"], responses=AUTH_ERRORS)
async def logout(principal: CurrentPrincipal, service: Service, body: LogoutRequest | None = None) -> Message:
    """End this session: its refresh token and its access tokens stop working at once."""
    await service.logout(principal, body.refresh_token if body else None)
    return Message(message="Successfully logged out.")


@router.get("/auth/me", response_model=UserOut, tags=["auth"], responses=AUTH_ERRORS)
async def me(principal: CurrentPrincipal, service: Service) -> UserOut:
    """The user the access token belongs to."""
    return UserOut.model_validate(await service.me(principal))


@router.post(
    "/auth/password",
    response_model=Message,
    tags=["auth"],
    responses={**AUTH_ERRORS, 403: {"description": "Current password wrong", **ERR}},
)
async def change_password(
    body: PasswordChangeRequest, principal: CurrentPrincipal, service: Service
) -> Message:
    """Change your own password; every session of yours (refresh and access tokens) is revoked."""
    await service.change_password(principal, body.current_password, body.new_password)
    return Message(message="Password changed. Please log in again.")


@router.get("/users", response_model=UsersList, tags=["users"], responses=ADMIN_ERRORS)
async def list_users(_admin: AdminPrincipal, service: Service) -> UsersList:
    """List every user (admins only)."""
    users = await service.list_users()
    return UsersList(data=UsersData(users=[UserOut.model_validate(u) for u in users]))


@router.get(
    "/users/{user_id}",
    response_model=UserOut,
    tags=["users"],
    responses={**ADMIN_ERRORS, 404: {"description": "No such user", **ERR}},
)
async def get_user(user_id: UserId, principal: CurrentPrincipal, service: Service) -> UserOut:
    """One user: yourself, or anyone if you are an admin."""
    return UserOut.model_validate(await service.get_user(principal, user_id))


@router.patch(
    "/users/{user_id}",
    response_model=UserOut,
    tags=["users"],
    responses={**ADMIN_ERRORS, 404: {"description": "No such user", **ERR}},
)
async def patch_user(user_id: UserId, body: UserPatch, _admin: AdminPrincipal, service: Service) -> UserOut:
    """Activate or deactivate a user, or change their role (admins only); their sessions are revoked."""
    return UserOut.model_validate(await service.update_user(user_id, body.active, body.role))


@router.get("/.well-known/jwks.json", tags=["auth"])
async def jwks(runtime: RuntimeDep) -> dict[str, Any]:
    """The public keys that verify access tokens (several during a key rotation)."""
    return jwks_document(runtime.published_keys, runtime.settings.jwt_algorithm)
