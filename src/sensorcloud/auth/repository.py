"""SQL of the auth service, the same for SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from sensorcloud.auth.models import RefreshToken, User


async def user_by_id(session: AsyncSession, user_id: int) -> User | None:
    return await session.get(User, user_id)


async def user_by_email(session: AsyncSession, email: str) -> User | None:
    result = await session.execute(select(User).where(User.email == email.lower()))
    return result.scalar_one_or_none()


async def email_or_username_taken(session: AsyncSession, email: str, username: str) -> str | None:
    """Which of the two is already in use ("email", "username") or None."""
    if await user_by_email(session, email) is not None:
        return "email"
    taken = await session.execute(select(User.id).where(func.lower(User.username) == username.lower()))
    return "username" if taken.first() is not None else None


async def list_users(session: AsyncSession) -> Sequence[User]:
    result = await session.execute(select(User).order_by(User.id))
    return result.scalars().all()


async def add_refresh_token(
    session: AsyncSession,
    *,
    token_hash: str,
    family_id: str,
    user_id: int,
    now: datetime,
    expires_at: datetime,
) -> None:
    session.add(
        RefreshToken(
            token_hash=token_hash, family_id=family_id, user_id=user_id, created_at=now, expires_at=expires_at
        )
    )
    await session.flush()


async def refresh_token_by_hash(session: AsyncSession, token_hash: str) -> RefreshToken | None:
    result = await session.execute(select(RefreshToken).where(RefreshToken.token_hash == token_hash))
    return result.scalar_one_or_none()


async def claim_refresh_token(session: AsyncSession, token_id: int, now: datetime) -> bool:
    """Mark a refresh token used, atomically: False if another request already used it."""
    result = await session.execute(
        update(RefreshToken)
        .where(RefreshToken.id == token_id, RefreshToken.used_at.is_(None), RefreshToken.revoked_at.is_(None))
        .values(used_at=now)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


async def revoke_family(session: AsyncSession, family_id: str, now: datetime) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def revoke_user_families(session: AsyncSession, user_id: int, now: datetime) -> list[str]:
    """Revoke every live session of a user; returns their family ids."""
    result = await session.execute(
        select(RefreshToken.family_id)
        .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        .distinct()
    )
    families = list(result.scalars().all())
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return families
