"""Helpers of the iot tests: owners with devices, readings written through the real ingest store,
and an app served by a real uvicorn on a free port (for streaming bodies and WebSockets)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from sensorcloud.core.settings import Settings
from sensorcloud.ingest.store import PostgresReadingStore, ReadingStore, Row, SqliteReadingStore
from tests.auth.devices_helpers import create_device
from tests.conftest import login, register
from tests.support.ports import free_port


@dataclass(frozen=True)
class Owner:
    """A user with one device; `topic(x)` is a topic inside the device's namespace."""

    user_id: int
    token: str
    device_id: str
    prefix: str
    secret: str  # the device's, to connect over MQTT

    def topic(self, leaf: str = "temperature") -> str:
        return f"{self.prefix}/{leaf}"


def app_of(client: httpx.AsyncClient) -> Any:
    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    return transport.app


async def new_owner(client: httpx.AsyncClient, name: str) -> Owner:
    user = await register(client, name)
    token = (await login(client, name))["auth_token"]
    device = await create_device(client, token, name=f"{name}-sensor")
    return Owner(
        user_id=user["id"],
        token=token,
        device_id=device["id"],
        prefix=device["topic_prefix"],
        secret=device["secret"],
    )


def rows(owner: Owner, topic: str, points: Sequence[tuple[datetime, Any]]) -> list[Row]:
    """Rows as ingest makes them: a number goes to `num`, anything else to `val`."""
    out = []
    for ts, value in points:
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        out.append(
            Row(
                dedup_key=uuid.uuid4().hex,
                ts=ts,
                topic=topic,
                device_id=owner.device_id,
                owner_id=owner.user_id,
                num=float(value) if numeric else None,
                val=None if numeric else value,
                received_at=ts,
            )
        )
    return out


@asynccontextmanager
async def reading_store(app: FastAPI) -> AsyncIterator[ReadingStore]:
    """The ingest write path on the app's database: the same store the writer uses."""
    runtime = app.state.runtime
    store: ReadingStore = (
        SqliteReadingStore(runtime.engine)
        if runtime.settings.uses_sqlite
        else PostgresReadingStore(runtime.settings.effective_database_url)
    )
    try:
        yield store
    finally:
        await store.close()


async def write(app: FastAPI, batch: Sequence[Row]) -> None:
    async with reading_store(app) as store:
        for i in range(0, len(batch), 10_000):
            await store.write(batch[i : i + 10_000], [])


@asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[str]:
    """Serve the app (its lifespan included) with uvicorn on a free port; yields the base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on", ws="auto")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(400):
            if server.started or task.done():
                break
            await asyncio.sleep(0.025)
        if not server.started:
            raise RuntimeError("uvicorn did not start")
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 20)


async def admin_token(app: FastAPI, client: httpx.AsyncClient, name: str = "admin") -> str:
    """An admin's access token on an app served over a real socket (see conftest.make_admin)."""
    from sensorcloud.auth.service import AuthService
    from tests.conftest import PASSWORD

    runtime = app.state.runtime
    service = AuthService(runtime.settings, runtime.sessions, runtime.issuer, runtime.state)
    await service.register(f"{name}@test.com", name, PASSWORD, role="admin")
    token: str = (await login(client, name))["auth_token"]
    return token


def iot_alone(base: Settings, tmp_path: Path, public_keys: Path, **extra: Any) -> Settings:
    """`base` as an iot replica alone has it: verifying tokens with the public key, its own data dir."""
    return base.model_copy(
        update={
            "jwt_public_keys_file": public_keys,
            "jwt_private_key_file": None,
            "data_dir": tmp_path / "iot",
            **extra,
        }
    )
