"""The monolith end to end: devices publish to the embedded broker (or POST) and readings are stored."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import httpx
from sqlalchemy import text

from tests.auth.devices_helpers import create_device
from tests.conftest import AppFactory, bearer, login, make_admin, register
from tests.support.mqtt import eventually, publish


def app_of(client: httpx.AsyncClient) -> Any:
    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    return transport.app


async def count(client: httpx.AsyncClient, sql: str) -> int:
    async with app_of(client).state.runtime.engine.connect() as conn:
        return int((await conn.execute(text(sql))).scalar_one())


async def test_published_readings_are_stored_and_bad_payloads_dead_lettered(app_factory: AppFactory) -> None:
    async with app_factory(ingest_batch_interval_ms=50) as client:
        await register(client)
        token = (await login(client))["auth_token"]
        device = await create_device(client, token)
        prefix, port = device["topic_prefix"], device["mqtt"]["port"]
        now = time.time()  # with ts and seq a redelivery is recognised on both backends (docs/ingestion.md)
        good: list[tuple[str, bytes | str]] = [
            (f"{prefix}/temperature", json.dumps({"value": 20 + i, "seq": i, "ts": now - 20 + i}))
            for i in range(20)
        ]
        bad: list[tuple[str, bytes | str]] = [
            (f"{prefix}/temperature", b"{nope"),
            (f"{prefix}/temperature", b"NaN"),
        ]
        multi: list[tuple[str, bytes | str]] = [
            (f"{prefix}/env", json.dumps({"temp": 21.5, "hum": 40, "fw": "1.0"}))
        ]
        await publish(port, device["id"], device["secret"], good[:10] + bad + good[10:] + multi)

        async def all_stored() -> bool:
            return await count(client, "SELECT count(*) FROM readings") == 22

        await eventually(all_stored)
        assert await count(client, "SELECT count(*) FROM dead_letters") == 2
        summary = await count(client, f"SELECT count FROM topics WHERE topic = '{prefix}/temperature'")
        assert summary == 20
        assert await count(client, f"SELECT count(*) FROM topics WHERE topic LIKE '{prefix}/env/%'") == 2

        # a redelivered message (same seq) adds nothing
        await publish(port, device["id"], device["secret"], good[:5])
        await publish(
            port, device["id"], device["secret"], [(f"{prefix}/temperature", '{"value": 99, "seq": 99}')]
        )
        await eventually(lambda: _equals(client, "SELECT count(*) FROM readings", 23))
        assert await count(client, f"SELECT count FROM topics WHERE topic = '{prefix}/temperature'") == 21

        admin = await make_admin(client)
        listed = await client.get("/api/v1/dead-letters", headers=bearer(admin["auth_token"]))
        assert listed.status_code == 200
        body = listed.json()
        assert body["total"] == 2
        assert {d["reason"] for d in body["data"]} >= {"invalid JSON"} or len(body["data"]) == 2
        assert all(d["topic"] == f"{prefix}/temperature" for d in body["data"])
        assert (await client.get("/api/v1/dead-letters", headers=bearer(token))).status_code == 403
        assert (await client.get("/api/v1/dead-letters")).status_code == 401


async def _equals(client: httpx.AsyncClient, sql: str, expected: int) -> bool:
    return await count(client, sql) == expected


def basic(user: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()}


async def test_http_ingest(app_factory: AppFactory) -> None:
    async with app_factory(ingest_batch_interval_ms=20) as client:
        await register(client)
        token = (await login(client))["auth_token"]
        device = await create_device(client, token)
        other = await create_device(client, token, name="other")
        prefix = device["topic_prefix"]
        creds = basic(device["id"], device["secret"])
        ok = await client.post(f"/api/v1/ingest/{prefix}/t", content=b"21.5", headers=creds)
        assert ok.status_code == 201, ok.text
        assert ok.json() == {"topic": f"{prefix}/t", "readings": 1}
        assert await count(client, "SELECT count(*) FROM readings") == 1

        bad = await client.post(f"/api/v1/ingest/{prefix}/t", content=b"{x", headers=creds)
        assert bad.status_code == 422
        assert "invalid JSON" in bad.json()["msg"]
        assert await count(client, "SELECT count(*) FROM dead_letters") == 1

        outside = await client.post(f"/api/v1/ingest/{other['topic_prefix']}/t", content=b"1", headers=creds)
        assert outside.status_code == 403
        wrong = await client.post(
            f"/api/v1/ingest/{prefix}/t", content=b"1", headers=basic(device["id"], "nope")
        )
        assert wrong.status_code == 401
        missing = await client.post(f"/api/v1/ingest/{prefix}/t", content=b"1")
        assert missing.status_code == 401
        big = await client.post(f"/api/v1/ingest/{prefix}/t", content=b"1" * 70000, headers=creds)
        assert big.status_code == 413
        assert await count(client, "SELECT count(*) FROM readings") == 1
