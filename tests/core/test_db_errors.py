"""A database error's message, which logs carry, leaves out the statement's parameters (secret and
password hashes, token hashes, emails) on SQLite and PostgreSQL alike."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from sensorcloud.core.db import create_engine

SECRET = "$argon2id$v=19$not-for-logs"


async def test_a_failed_statement_does_not_show_its_parameters(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            with pytest.raises(DBAPIError) as caught:
                await conn.execute(text("INSERT INTO no_such_table (secret_hash) VALUES (:h)"), {"h": SECRET})
        message = str(caught.value)
        assert "no_such_table" in message  # the statement is there, to say what failed
        assert SECRET not in message
        assert "hidden due to hide_parameters" in message
    finally:
        await engine.dispose()
