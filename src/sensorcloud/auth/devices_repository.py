"""SQL of the device registry, the same for SQLite and PostgreSQL (but one lock)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from sensorcloud.auth.devices_models import Device
from sensorcloud.auth.models import User

# Any constant bigint; it only has to be the same in every process.
PREFIX_LOCK_KEY = 0x5EC0_DE71_CE50


async def lock_prefixes(session: AsyncSession) -> None:
    """Serialize device creation until the transaction ends, so the overlap check cannot race.

    PostgreSQL needs an advisory lock: two transactions at READ COMMITTED would not see each
    other's new rows. SQLite already serializes writers once the new row has been inserted.
    """
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PREFIX_LOCK_KEY})


async def device_by_id(session: AsyncSession, device_id: str) -> Device | None:
    return await session.get(Device, device_id)


async def active_device_by_id(session: AsyncSession, device_id: str) -> Device | None:
    """The device, if its owner's account is active (a disabled user's devices may not connect)."""
    result = await session.execute(
        select(Device)
        .join(User, User.id == Device.owner_id)
        .where(Device.id == device_id, User.active.is_(True))
    )
    return result.scalar_one_or_none()


async def add_device(session: AsyncSession, device: Device) -> None:
    session.add(device)
    await session.flush()


async def count_owned(session: AsyncSession, owner_id: int) -> int:
    result = await session.execute(
        select(func.count()).select_from(Device).where(Device.owner_id == owner_id)
    )
    return int(result.scalar_one())


def _ancestors(prefix: str) -> list[str]:
    """devices/a/b -> [devices, devices/a]."""
    levels = prefix.split("/")
    return ["/".join(levels[:i]) for i in range(1, len(levels))]


async def overlapping_prefix(session: AsyncSession, prefix: str, except_id: str) -> str | None:
    """A prefix of another device equal to, above or below `prefix`, or None."""
    child_start = prefix + "/"
    # substr, not LIKE: LIKE ignores case on SQLite, and topics are case-sensitive
    below = func.substr(Device.topic_prefix, 1, len(child_start)) == child_start
    result = await session.execute(
        select(Device.topic_prefix)
        .where(Device.id != except_id, or_(Device.topic_prefix.in_([prefix, *_ancestors(prefix)]), below))
        .limit(1)
    )
    return result.scalar_one_or_none()


async def list_devices(
    session: AsyncSession, owner_id: int | None, limit: int, offset: int
) -> tuple[Sequence[Device], int]:
    """One page of devices (of one owner, or all when owner_id is None) and how many there are."""
    query = select(Device)
    counting = select(func.count()).select_from(Device)
    if owner_id is not None:
        query = query.where(Device.owner_id == owner_id)
        counting = counting.where(Device.owner_id == owner_id)
    rows = await session.execute(query.order_by(Device.created_at, Device.id).limit(limit).offset(offset))
    total = await session.execute(counting)
    return rows.scalars().all(), int(total.scalar_one())


async def delete_device(session: AsyncSession, device_id: str) -> bool:
    result = await session.execute(delete(Device).where(Device.id == device_id))
    return bool(getattr(result, "rowcount", 0) == 1)


async def device_ids(session: AsyncSession) -> set[str]:
    """Every registered device id (the broker's reconciliation keeps these)."""
    return set((await session.execute(select(Device.id))).scalars())
