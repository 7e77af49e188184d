"""The live feed over a real WebSocket: monolith (MQTT -> embedded broker -> ingest -> bus) and an
iot replica alone on PostgreSQL (another process's store -> NOTIFY -> LISTEN -> bus)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives import serialization
from fastapi import FastAPI
from paho.mqtt.enums import CallbackAPIVersion
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from sensorcloud.app import Target, create_app
from sensorcloud.core.settings import Settings
from sensorcloud.ingest.store import PostgresReadingStore
from sensorcloud.iot import live
from tests.conftest import bearer, login, running_app
from tests.iot.helpers import Owner, admin_token, iot_alone, new_owner, rows, served
from tests.support.mqtt import eventually
from tests.support.postgres import PostgresServer

LIVE = "/api/v1/live"


async def receive(ws: ClientConnection, kind: str, within: float = 5.0) -> dict[str, Any]:
    """The next message of that type (others, e.g. readings of an earlier test step, are skipped)."""
    deadline = time.monotonic() + within
    while True:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
        if message["type"] == kind:
            return message


@asynccontextmanager
async def live_socket(address: str, token: str | None, topics: list[str]) -> AsyncIterator[ClientConnection]:
    async with connect(f"ws://{address}{LIVE}") as ws:
        if token is not None:
            await ws.send(json.dumps({"type": "auth", "token": token}))
            assert (await receive(ws, "ready"))["expires_at"] > time.time()
        if topics:
            await ws.send(json.dumps({"type": "subscribe", "topics": topics}))
            assert (await receive(ws, "subscribed"))["topics"] == sorted(topics)
        yield ws


@asynccontextmanager
async def mqtt_device(port: int, device_id: str, secret: str) -> AsyncIterator[mqtt.Client]:
    """A device that stays connected (the embedded broker may drop what a leaving client just sent)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device_id, protocol=mqtt.MQTTv311)
    client.username_pw_set(device_id, secret)
    client.connect_async("127.0.0.1", port, keepalive=30)
    client.loop_start()
    try:
        deadline = time.monotonic() + 10
        while not client.is_connected():
            assert time.monotonic() < deadline, "MQTT connect timed out"
            await asyncio.sleep(0.01)  # the broker runs on this event loop
        yield client
    finally:
        client.disconnect()
        client.loop_stop()


async def send_reading(client: mqtt.Client, topic: str, value: float) -> None:
    info = client.publish(topic, json.dumps({"value": value}), qos=1)
    await asyncio.to_thread(info.wait_for_publish, 5)
    assert info.is_published()


async def test_monolith_pushes_an_mqtt_reading_within_a_second(settings: Settings) -> None:
    app = create_app(settings)
    async with served(app) as address, httpx.AsyncClient(base_url=f"http://{address}") as client:
        if True:
            owner = await new_owner(client, "alice")
            topic = owner.topic()
            async with mqtt_device(settings.mqtt_port, owner.device_id, owner.secret) as mq:
                await send_reading(mq, topic, 1.0)  # the topic exists once its first reading is in

                async def topic_exists() -> bool:
                    listed = await client.get("/api/v1/topics", headers=bearer(owner.token))
                    return bool(listed.json()["data"])

                await eventually(topic_exists)
                async with live_socket(address, owner.token, [topic]) as ws:
                    latencies = []
                    for value in (2.0, 3.0, 4.0):
                        sent = time.monotonic()
                        await send_reading(mq, topic, value)
                        message = await receive(ws, "readings", within=5)
                        latencies.append(time.monotonic() - sent)
                        assert [(d["topic"], d["value"]) for d in message["data"]] == [(topic, value)]
                        assert datetime.fromisoformat(message["data"][0]["date"]) > datetime.now(
                            UTC
                        ) - timedelta(seconds=5)
                    print(f"monolith live latency (MQTT publish -> WebSocket): {latencies}")
                    assert max(latencies) < 1.0
                await asyncio.sleep(1.0)  # let the broker deliver everything before the device leaves


def basic(owner: Owner) -> dict[str, str]:
    import base64

    return {
        "Authorization": "Basic " + base64.b64encode(f"{owner.device_id}:{owner.secret}".encode()).decode()
    }


async def ingest(client: httpx.AsyncClient, owner: Owner, topic: str, value: Any) -> None:
    """The HTTP ingest route: the monolith's writer commits it and publishes it to the live bus."""
    response = await client.post(f"/api/v1/ingest/{topic}", content=json.dumps(value), headers=basic(owner))
    assert response.status_code == 201, response.text


@pytest.fixture
async def monolith(settings: Settings) -> AsyncIterator[tuple[str, httpx.AsyncClient, FastAPI]]:
    app = create_app(settings.model_copy(update={"ingest_batch_interval_ms": 20}))
    async with served(app) as address, httpx.AsyncClient(base_url=f"http://{address}") as client:
        yield address, client, app


async def closed_with(ws: ClientConnection, within: float = 5.0) -> tuple[int, list[str]]:
    """Wait for the server to close; the close code and the error messages sent before it."""
    errors = []
    code = None
    try:
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), within))
            if message["type"] == "error":
                errors.append(message["msg"])
    except ConnectionClosed as closed:
        code = None if closed.rcvd is None else closed.rcvd.code
    assert code is not None, "closed without a close frame"
    return code, errors


def token_expiring_in(seconds: int, signing_key_file: Path, kid: str, user_id: int) -> str:
    """A valid access token, signed with the auth service's key, that expires very soon."""
    settings = Settings(jwt_private_key_file=signing_key_file)
    private = serialization.load_pem_private_key(signing_key_file.read_bytes(), None)
    now = int(time.time())
    claims = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": str(user_id),
        "role": "user",
        "iat": now,
        "nbf": now,
        "exp": now + seconds,
        "jti": uuid.uuid4().hex,
        "typ": "access",
        "sid": uuid.uuid4().hex,
    }
    return jwt.encode(claims, private, algorithm="RS256", headers={"kid": kid})  # type: ignore[arg-type]


async def test_authentication_is_required(
    monolith: tuple[str, httpx.AsyncClient, FastAPI], monkeypatch: pytest.MonkeyPatch, signing_key_file: Path
) -> None:
    address, client, _ = monolith
    alice = await new_owner(client, "alice")
    monkeypatch.setattr(live, "AUTH_TIMEOUT", 0.3)
    async with live_socket(address, None, []) as ws:
        assert await closed_with(ws) == (4401, ["Authentication timed out"])
    async with live_socket(address, None, []) as ws:
        await ws.send(json.dumps({"type": "subscribe", "topics": [alice.topic()]}))
        code, errors = await closed_with(ws)
        assert code == 4401
        assert "Authenticate first" in errors[0]
    async with live_socket(address, None, []) as ws:
        await ws.send(json.dumps({"type": "auth", "token": alice.token[:-8] + "AAAAAAAA"}))
        assert await closed_with(ws) == (4401, ["Signature verification failed"])
    # a client that can set headers may authenticate in the handshake instead
    async with connect(f"ws://{address}{LIVE}", additional_headers=bearer(alice.token)) as ws:
        assert (await receive(ws, "ready"))["expires_at"] > time.time()
        await ws.send(json.dumps({"type": "ping"}))
        assert await receive(ws, "pong") == {"type": "pong"}
        await ws.send(json.dumps({"type": "ping"}).encode())  # a binary frame is read the same way
        assert await receive(ws, "pong") == {"type": "pong"}
    async with connect(f"ws://{address}{LIVE}", additional_headers={"Authorization": "Basic eDp5"}) as ws:
        assert (await closed_with(ws))[0] == 4401

    # a token that expires closes the connection when it does (unless the client sends a new one)
    kid = jwt.get_unverified_header(alice.token)["kid"]
    short = token_expiring_in(2, signing_key_file, kid, alice.user_id)
    started = time.monotonic()
    async with live_socket(address, short, []) as ws:
        assert await closed_with(ws, within=10) == (4401, ["Token has expired"])
    assert 0.5 < time.monotonic() - started < 5


async def test_only_subscribed_own_topics_are_pushed(
    monolith: tuple[str, httpx.AsyncClient, FastAPI],
) -> None:
    address, client, app = monolith
    alice = await new_owner(client, "alice")
    bob = await new_owner(client, "bob")
    admin = await admin_token(app, client)
    for owner in (alice, bob):
        await ingest(client, owner, owner.topic("t"), 0)
        await ingest(client, owner, owner.topic("h"), 0)

    async with (
        live_socket(address, alice.token, []) as ws,
        live_socket(address, admin, [alice.topic("t"), bob.topic("t")]) as admin_ws,
    ):
        for foreign in ([bob.topic("t")], [alice.topic("t"), alice.topic("never")]):
            await ws.send(json.dumps({"type": "subscribe", "topics": foreign}))
            error = await receive(ws, "error")
            assert error["msg"] == "Topic not found"
            assert error["topics"] == [t for t in foreign if not t.startswith(alice.prefix + "/t")]
        await ws.send(json.dumps({"type": "subscribe", "topics": [alice.topic("t")]}))
        assert (await receive(ws, "subscribed"))["topics"] == [alice.topic("t")]

        await ingest(client, bob, bob.topic("t"), 1)
        await ingest(client, alice, alice.topic("h"), 2)
        await ingest(client, alice, alice.topic("t"), 3)
        message = await receive(ws, "readings")
        assert [(d["topic"], d["value"]) for d in message["data"]] == [(alice.topic("t"), 3.0)]
        seen: list[tuple[str, float]] = []
        while len(seen) < 2:
            seen += [(d["topic"], d["value"]) for d in (await receive(admin_ws, "readings"))["data"]]
        assert seen == [(bob.topic("t"), 1.0), (alice.topic("t"), 3.0)]

        await ws.send(json.dumps({"type": "subscribe", "topics": [alice.topic("h")]}))
        assert (await receive(ws, "subscribed"))["topics"] == sorted([alice.topic("t"), alice.topic("h")])
        await ws.send(json.dumps({"type": "unsubscribe", "topics": [alice.topic("t")]}))
        assert (await receive(ws, "subscribed"))["topics"] == [alice.topic("h")]
        await ingest(client, alice, alice.topic("t"), 4)
        await ingest(client, alice, alice.topic("h"), 5)
        message = await receive(ws, "readings")
        assert [(d["topic"], d["value"]) for d in message["data"]] == [(alice.topic("h"), 5.0)]

        await ws.send("not json")
        assert (await receive(ws, "error"))["msg"] == "Unknown message type"
        await ws.send(json.dumps({"type": "subscribe", "topics": "x"}))
        assert (await receive(ws, "error"))["msg"] == "topics must be a list of topic names"


@pytest.mark.postgres
async def test_iot_replicas_alone_get_readings_through_notify(
    pg_database_url: str,
    pg_server: PostgresServer,
    tmp_path: Path,
    pg_monolith_settings: Settings,
    public_keys_file: Path,
) -> None:
    base = pg_monolith_settings
    iot_settings = iot_alone(base, tmp_path, public_keys_file)
    replicas = [create_app(iot_settings, Target.IOT) for _ in range(2)]
    store = PostgresReadingStore(pg_database_url)  # another process's writer, in effect
    async with (
        running_app(create_app(base)) as auth,
        served(replicas[0]) as first,
        served(replicas[1]) as second,
    ):
        alice = await new_owner(auth, "alice")
        topic = alice.topic()
        await store.write(rows(alice, topic, [(datetime.now(UTC), 0)]), [])
        async with (
            live_socket(first, alice.token, [topic]) as ws1,
            live_socket(second, alice.token, [topic]) as ws2,
        ):
            sent = time.monotonic()
            await store.write(rows(alice, topic, [(datetime.now(UTC), 1.5)]), [])
            for ws in (ws1, ws2):
                message = await receive(ws, "readings", within=5)
                assert [(d["topic"], d["value"]) for d in message["data"]] == [(topic, 1.5)]
            latency = time.monotonic() - sent
            print(f"NOTIFY live latency (commit -> both replicas' WebSockets): {latency:.3f}s")
            assert latency < 1.0

            # the LISTEN connections are lost: each replica reconnects and its feed resumes
            database = pg_database_url.rsplit("/", 1)[1]
            killed = await asyncio.to_thread(
                pg_server.psql,
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                f"WHERE application_name = 'sensorcloud-live' AND datname = '{database}'",
            )
            assert killed.strip() == "2"
            listeners = [app.state.live_listener for app in replicas]
            await eventually(lambda: _all_reconnected(listeners, pg_server, database))
            await store.write(rows(alice, topic, [(datetime.now(UTC), 2.5)]), [])
            for ws in (ws1, ws2):
                message = await receive(ws, "readings", within=5)
                assert [(d["topic"], d["value"]) for d in message["data"]] == [(topic, 2.5)]
    await store.close()


async def _all_reconnected(listeners: list[Any], pg_server: PostgresServer, database: str) -> bool:
    if not all(listener.connected.is_set() for listener in listeners):
        return False
    listening = await asyncio.to_thread(
        pg_server.psql,
        "SELECT count(*) FROM pg_stat_activity "
        f"WHERE application_name = 'sensorcloud-live' AND datname = '{database}'",
    )
    return listening.strip() == "2"


async def test_a_demoted_admin_keeps_only_their_own_topics(
    monolith: tuple[str, httpx.AsyncClient, FastAPI],
) -> None:
    address, client, app = monolith
    alice = await new_owner(client, "alice")
    await ingest(client, alice, alice.topic(), 0)
    first_admin = await admin_token(app, client, "admin1")
    second_admin = await admin_token(app, client, "admin2")
    async with live_socket(address, first_admin, [alice.topic()]) as ws:
        me = (await client.get("/auth/me", headers=bearer(first_admin))).json()
        demoted = await client.patch(
            f"/users/{me['id']}", json={"role": "user"}, headers=bearer(second_admin)
        )
        assert demoted.status_code == 200, demoted.text
        fresh = (await login(client, "admin1"))["auth_token"]
        await ws.send(json.dumps({"type": "auth", "token": fresh}))
        await receive(ws, "ready")
        assert (await receive(ws, "subscribed"))["topics"] == []
        await ingest(client, alice, alice.topic(), 1)
        with pytest.raises(TimeoutError):  # the reading is no longer pushed to this user
            await receive(ws, "readings", within=1.0)
