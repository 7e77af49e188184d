"""Apply the Alembic migrations on an engine (SQLite or PostgreSQL)."""

from __future__ import annotations

from importlib.resources import files

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(files("sensorcloud") / "migrations"))
    return cfg


def _upgrade(connection: Connection, cfg: Config) -> None:
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "head")


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest revision (idempotent)."""
    cfg = alembic_config()
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade, cfg)


async def migrate_url(url: str) -> None:
    """Migrate the database at `url` with an engine of its own (CLI, devstack, tests)."""
    from sensorcloud.core.db import create_engine

    engine = create_engine(url)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def schema_is_current(engine: AsyncEngine) -> bool:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    async with engine.connect() as conn:
        current = await conn.run_sync(_current)
    return current == head
