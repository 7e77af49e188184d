"""`sensorcloud serve --target iot` as a real process beside `--target auth`, on PostgreSQL."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from sensorcloud.core.live import iso
from sensorcloud.ingest.store import PostgresReadingStore
from tests.iot.helpers import Owner, rows
from tests.support.postgres import PostgresServer
from tests.support.process import run_cli, serving

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]
PASSWORD = "correct horse battery staple"


async def test_iot_target_serves_reads_and_the_live_feed(tmp_path: Path, pg_server: PostgresServer) -> None:
    database = f"e2e_{uuid.uuid4().hex[:12]}"
    pg_server.psql(f"CREATE DATABASE {database}")
    url = pg_server.url_for(database)
    env = {"SENSORCLOUD_DATABASE_URL": url, "SENSORCLOUD_DATA_DIR": str(tmp_path / "auth")}
    assert run_cli(["migrate"], cwd=tmp_path, env=env).returncode == 0

    with serving(tmp_path, env, ["--target", "auth"]) as auth:
        iot_env = {
            "SENSORCLOUD_DATABASE_URL": url,
            "SENSORCLOUD_DATA_DIR": str(tmp_path / "iot"),
            "SENSORCLOUD_JWKS_URL": f"{auth.base_url}/.well-known/jwks.json",
        }
        with serving(tmp_path, iot_env, ["--target", "iot"]) as iot:
            async with (
                httpx.AsyncClient(base_url=auth.base_url) as a,
                httpx.AsyncClient(base_url=iot.base_url) as i,
            ):
                assert (await i.get("/health")).json()["service"] == "iot"
                assert (await i.get("/ready")).status_code == 200
                assert (await i.post("/auth/login", json={})).status_code == 404  # not this service's
                user = (
                    await a.post(
                        "/auth/register", json={"email": "e@x.io", "username": "e2e", "password": PASSWORD}
                    )
                ).json()
                token = (await a.post("/auth/login", json={"email": "e@x.io", "password": PASSWORD})).json()[
                    "auth_token"
                ]
                headers = {"Authorization": f"Bearer {token}"}
                device = (await a.post("/api/v1/devices", json={"name": "d"}, headers=headers)).json()
                owner = Owner(user["id"], token, device["id"], device["topic_prefix"], device["secret"])
                topic = owner.topic()
                store = PostgresReadingStore(url)
                try:
                    now = datetime.now(UTC).replace(microsecond=0)
                    await store.write(rows(owner, topic, [(now - timedelta(seconds=1), 20.5)]), [])
                    latest = await i.get(f"/iot/{topic}/latest", headers=headers)
                    assert latest.json() == {
                        "topic": topic,
                        "data": [{"date": iso(now - timedelta(seconds=1)), "value": 20.5}],
                    }
                    assert (await i.get(f"/iot/{topic}")).json() == {"msg": "Missing Authorization Header"}

                    host = iot.base_url.removeprefix("http://")
                    async with connect(f"ws://{host}/api/v1/live") as ws:
                        await ws.send(json.dumps({"type": "auth", "token": token}))
                        assert json.loads(await ws.recv())["type"] == "ready"
                        await ws.send(json.dumps({"type": "subscribe", "topics": [topic]}))
                        assert json.loads(await ws.recv())["type"] == "subscribed"
                        await store.write(rows(owner, topic, [(now, 21.5)]), [])
                        pushed = json.loads(await ws.recv())
                        assert pushed["data"] == [{"topic": topic, "date": iso(now), "value": 21.5}]
                finally:
                    await store.close()
        assert iot.exited_gracefully()
        assert token not in iot.stderr()
