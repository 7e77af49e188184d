"""Alembic environment: runs on the connection handed over by sensorcloud.core.migrate."""

from __future__ import annotations

from alembic import context

from sensorcloud.core.db import Base
from sensorcloud.core.models import import_all_models

import_all_models()
config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `sensorcloud migrate`, not the alembic command")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
