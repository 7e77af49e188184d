"""What the auth service does, free of HTTP: register, log in, rotate and revoke sessions, manage users."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sensorcloud.auth import repository as repo
from sensorcloud.auth.models import User
from sensorcloud.auth.passwords import hash_password, needs_rehash, password_problem, verify_password
from sensorcloud.auth.throttle import LoginThrottle
from sensorcloud.core.db import transaction, utcnow
from sensorcloud.core.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized
from sensorcloud.core.logging import get_logger
from sensorcloud.core.settings import Settings
from sensorcloud.core.shared_state import SharedState
from sensorcloud.core.tokens import Principal, Role, TokenIssuer, revoke_session

log = get_logger(__name__)
BAD_CREDENTIALS = "Invalid email or password."


@dataclass(frozen=True)
class Session:
    """A login's tokens, as the login and refresh routes return them."""

    access_token: str
    refresh_token: str
    expires_in: int


def _hash_refresh(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class AuthService:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        issuer: TokenIssuer,
        state: SharedState,
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._issuer = issuer
        self._state = state
        self._throttle = LoginThrottle(settings, state)

    async def register(self, email: str, username: str, password: str, role: Role = "user") -> User:
        problem = password_problem(password, email=email, username=username)
        if problem:
            raise Invalid(problem)
        password_hash = await hash_password(password)
        try:
            async with transaction(self._sessions) as session:
                taken = await repo.email_or_username_taken(session, email, username)
                if taken:
                    raise Conflict(f"A user with this {taken} already exists.")
                user = User(
                    email=email.lower(),
                    username=username,
                    password_hash=password_hash,
                    active=True,
                    role=role,
                    created_at=utcnow(),
                )
                session.add(user)
                await session.flush()
        except IntegrityError:  # lost a race with a concurrent registration of the same name
            raise Conflict("A user with this email or username already exists.") from None
        log.info("user registered", user_id=user.id, role=role)
        return user

    async def login(self, email: str, password: str, address: str) -> Session:
        await self._throttle.reserve(email, address)
        async with transaction(self._sessions) as session:
            user = await repo.user_by_email(session, email)
            ok = await verify_password(user.password_hash if user else None, password)
            if not ok or user is None:
                await self._throttle.failed(email, address)
                log.info("login failed", address=address)
                raise Unauthorized(BAD_CREDENTIALS)
            # the right password is no guess: it must not count, even for a disabled account
            await self._throttle.succeeded(email, address)
            if not user.active:
                raise Forbidden("This account is disabled.")
            if needs_rehash(user.password_hash):
                user.password_hash = await hash_password(password)
            result = await self._start_session(session, user, uuid.uuid4().hex)
        log.info("login succeeded", user_id=user.id)
        return result

    async def _start_session(self, session: AsyncSession, user: User, family_id: str) -> Session:
        now = utcnow()
        refresh = secrets.token_urlsafe(32)
        await repo.add_refresh_token(
            session,
            token_hash=_hash_refresh(refresh),
            family_id=family_id,
            user_id=user.id,
            now=now,
            expires_at=now + timedelta(seconds=self._settings.refresh_token_ttl),
        )
        role: Role = "admin" if user.role == "admin" else "user"
        access, ttl = self._issuer.issue(user.id, role, family_id)
        return Session(access_token=access, refresh_token=refresh, expires_in=ttl)

    async def refresh(self, refresh_token: str) -> Session:
        """Rotate: the presented token is spent; presenting a spent one again revokes its whole family."""
        now = utcnow()
        async with transaction(self._sessions) as session:
            row = await repo.refresh_token_by_hash(session, _hash_refresh(refresh_token))
            if row is None:
                raise Unauthorized("Invalid refresh token.")
            if row.revoked_at is not None and row.used_at is None:
                raise Unauthorized("Refresh token has been revoked.")  # logged out: no replay
            reused = row.used_at is not None or row.revoked_at is not None
            if not reused and row.expires_at <= now:
                raise Unauthorized("Refresh token has expired.")
            if not reused:
                reused = not await repo.claim_refresh_token(session, row.id, now)
            if reused:
                await repo.revoke_family(session, row.family_id, now)
            else:
                user = await repo.user_by_id(session, row.user_id)
                if user is None or not user.active:
                    raise Unauthorized("Invalid refresh token.")
                return await self._start_session(session, user, row.family_id)
        # committed the family's revocation before answering
        await revoke_session(self._state, row.family_id, self._settings)
        log.warning("refresh token reuse: session revoked", user_id=row.user_id)
        raise Unauthorized("Refresh token was already used; the session has been revoked.")

    async def logout(self, principal: Principal, refresh_token: str | None) -> None:
        now = utcnow()
        async with transaction(self._sessions) as session:
            await repo.revoke_family(session, principal.session_id, now)
            if refresh_token:
                row = await repo.refresh_token_by_hash(session, _hash_refresh(refresh_token))
                if row is not None and row.user_id == principal.user_id:
                    await repo.revoke_family(session, row.family_id, now)
        await revoke_session(self._state, principal.session_id, self._settings)
        log.info("logout", user_id=principal.user_id)

    async def change_password(self, principal: Principal, current: str, new: str) -> None:
        async with transaction(self._sessions) as session:
            user = await self._active_user(session, principal.user_id)
            if not await verify_password(user.password_hash, current):
                raise Forbidden("Current password is wrong.")
            problem = password_problem(new, email=user.email, username=user.username)
            if problem:
                raise Invalid(problem)
            user.password_hash = await hash_password(new)
            families = await repo.revoke_user_families(session, user.id, utcnow())
        await self._revoke_all({*families, principal.session_id})
        log.info("password changed; sessions revoked", user_id=principal.user_id, sessions=len(families))

    async def _revoke_all(self, families: set[str]) -> None:
        for family in families:
            await revoke_session(self._state, family, self._settings)

    async def _active_user(self, session: AsyncSession, user_id: int) -> User:
        user = await repo.user_by_id(session, user_id)
        if user is None or not user.active:
            raise Unauthorized("This account no longer exists or is disabled.")
        return user

    async def me(self, principal: Principal) -> User:
        async with transaction(self._sessions) as session:
            return await self._active_user(session, principal.user_id)

    async def get_user(self, principal: Principal, user_id: int) -> User:
        if user_id != principal.user_id and not principal.is_admin:
            raise Forbidden("You may only read your own user.")
        async with transaction(self._sessions) as session:
            user = await repo.user_by_id(session, user_id)
        if user is None:
            raise NotFound("User does not exist.")
        return user

    async def list_users(self) -> list[User]:
        async with transaction(self._sessions) as session:
            return list(await repo.list_users(session))

    async def update_user(self, user_id: int, active: bool | None, role: Role | None) -> User:
        async with transaction(self._sessions) as session:
            user = await repo.user_by_id(session, user_id)
            if user is None:
                raise NotFound("User does not exist.")
            changed = (active is not None and active != user.active) or (
                role is not None and role != user.role
            )
            if active is not None:
                user.active = active
            if role is not None:
                user.role = role
            families = await repo.revoke_user_families(session, user.id, utcnow()) if changed else []
        # a changed role or a disabled account must not live on in tokens already issued
        await self._revoke_all(set(families))
        log.info("user updated", user_id=user_id, active=user.active, role=user.role)
        return user
