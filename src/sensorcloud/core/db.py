"""Database engine and sessions: one code path for SQLite (default) and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import DateTime, Dialect, MetaData, TypeDecorator, event, text
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def async_url(url: str) -> str:
    """Turn a user-facing URL (sqlite:///x, postgresql://...) into the async driver's URL."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    if parsed.drivername in ("sqlite", "sqlite+pysqlite"):
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif parsed.drivername in ("postgresql", "postgresql+psycopg2", "postgresql+psycopg"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


def asyncpg_dsn(url: str) -> str:
    """A SQLAlchemy-style URL (postgresql+asyncpg://...) as a plain libpq DSN, for asyncpg used
    directly (the ingest's COPY, the iot replicas' LISTEN)."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1)).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def create_engine(url: str) -> AsyncEngine:
    """An engine for the URL; SQLite gets WAL and a busy timeout, PostgreSQL a pre-pinged pool.

    A database error's message leaves out the statement's parameters (password and secret hashes,
    token hashes, emails): such messages end up in logs."""
    full = async_url(url)
    if full.startswith("sqlite"):
        engine = create_async_engine(full, connect_args={"timeout": 10}, hide_parameters=True)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    # sized for one replica serving a few dozen requests at once without closing and reopening
    return create_async_engine(full, pool_size=20, max_overflow=20, pool_pre_ping=True, hide_parameters=True)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def transaction(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session whose work is committed on success and rolled back on any error."""
    async with sessions() as session, session.begin():
        yield session


async def ping(engine: AsyncEngine) -> None:
    """Raise if the database cannot answer a trivial query."""
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both backends (SQLite has no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def sqlite_datetime(value: datetime) -> str:
    """An aware time as a UTCDateTime column stores it in SQLite ('YYYY-MM-DD HH:MM:SS.ffffff', UTC,
    as text), by that type's own bind processor, for statements that bypass SQLAlchemy's per-row
    processing: the API's range queries bind their bounds through the type and SQLite compares the
    text, so the two must be the same characters."""
    return _SQLITE_TIME(value)


_SQLITE = sqlite_dialect()
_SQLITE_TIME = cast(Callable[[datetime], str], UTCDateTime().dialect_impl(_SQLITE).bind_processor(_SQLITE))


def utcnow() -> datetime:
    return datetime.now(UTC)
