"""GET /iot/{topic}/latest through the latest-value cache, on SQLite and PostgreSQL: the same answer
and the same refusals as from the database, and a new reading visible right after it is stored."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from sensorcloud.app import Target, create_app
from sensorcloud.core.live import iso
from sensorcloud.core.settings import Settings
from sensorcloud.ingest.store import PostgresReadingStore
from tests.conftest import AppFactory, bearer, make_admin, running_app
from tests.iot.helpers import Owner, app_of, iot_alone, new_owner, rows, write
from tests.iot.test_live import basic
from tests.support.mqtt import eventually
from tests.support.postgres import PostgresServer

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
ANSWERED = 'sensorcloud_http_requests_total{method="GET",route="/iot/{topic:path}/latest",status="200"}'


async def metric(client: httpx.AsyncClient, name: str, default: float | None = None) -> float:
    for line in (await client.get("/metrics")).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    assert default is not None, f"{name} not exported"
    return default


async def latest(client: httpx.AsyncClient, owner: Owner, topic: str) -> httpx.Response:
    return await client.get(f"/iot/{topic}/latest", headers=bearer(owner.token))


async def test_a_hit_answers_what_the_database_did_to_its_owner_only(client: httpx.AsyncClient) -> None:
    alice, bob = await new_owner(client, "alice"), await new_owner(client, "bob")
    topic = alice.topic()
    await write(app_of(client), rows(alice, topic, [(T0 + timedelta(microseconds=250_000), 21.0)]))

    first = await latest(client, alice, topic)  # a miss: read from `topics`
    hits = await metric(client, "sensorcloud_latest_cache_hits_total")
    served = await metric(client, ANSWERED)
    second = await latest(client, alice, topic)  # a hit
    assert await metric(client, "sensorcloud_latest_cache_hits_total") == hits + 1
    assert await metric(client, ANSWERED) == served + 1  # counted as every request
    assert first.status_code == second.status_code == 200
    assert first.content == second.content
    assert first.headers["content-type"] == second.headers["content-type"] == "application/json"
    assert second.json() == {"topic": topic, "data": [{"date": "2024-05-01T12:00:00.250000Z", "value": 21.0}]}
    assert (await client.get(f"/iot/{topic}", headers=bearer(alice.token))).content == second.content

    # the cache holds alice's topic now: bob still gets the database's 404, the admin the reading
    for path in (f"/iot/{topic}/latest", f"/iot/{topic}", f"/iot/{bob.topic('nothing-yet')}/latest"):
        refused = await client.get(path, headers=bearer(bob.token))
        assert refused.status_code == 404, path
        assert refused.json() == {"msg": "Topic not found"}
    admin = await make_admin(client)
    seen = await client.get(f"/iot/{topic}/latest", headers=bearer(admin["auth_token"]))
    assert seen.content == second.content
    assert (await client.get(f"/iot/{topic}/latest")).json() == {"msg": "Missing Authorization Header"}


async def test_an_ingested_reading_is_the_latest_at_once(app_factory: AppFactory) -> None:
    """The monolith: the writer publishes each committed batch to the bus the cache follows."""
    # entries live long here: what the test sees comes from the feed, not from a read after expiry
    async with app_factory(ingest_batch_interval_ms=20, latest_cache_max_age=300) as client:
        alice = await new_owner(client, "alice")
        topic = alice.topic()
        for value in (20.5, 21.5, {"on": True}, 23.5, "done"):
            payload = json.dumps({"value": value})
            stored = await client.post(f"/api/v1/ingest/{topic}", content=payload, headers=basic(alice))
            assert stored.status_code == 201, stored.text
            answer = (await latest(client, alice, topic)).json()
            assert answer["data"][0]["value"] == value
            assert datetime.fromisoformat(answer["data"][0]["date"]) > datetime.now(UTC) - timedelta(
                seconds=5
            )
        assert await metric(client, "sensorcloud_latest_cache_hits_total") >= 2  # updated, not re-read

        # an older reading stored later does not become the latest
        older = iso(datetime.now(UTC) - timedelta(hours=1))
        body = json.dumps({"value": 1, "ts": older})
        assert (
            await client.post(f"/api/v1/ingest/{topic}", content=body, headers=basic(alice))
        ).status_code == 201
        assert (await latest(client, alice, topic)).json()["data"][0]["value"] == "done"


async def test_an_iot_service_alone_on_sqlite_keeps_no_cache(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, jwt_algorithm="HS256", jwt_secret="s" * 40)
    async with running_app(create_app(settings, Target.IOT)) as client:  # no feed to follow
        assert await metric(client, "sensorcloud_latest_cache_enabled") == 0


@pytest.mark.postgres
async def test_an_iot_replica_follows_notify_and_forgets_on_reconnect(
    pg_database_url: str,
    pg_server: PostgresServer,
    tmp_path: Path,
    pg_monolith_settings: Settings,
    public_keys_file: Path,
) -> None:
    base = pg_monolith_settings
    # entries live long here: what the test sees comes from NOTIFY, not from a read after expiry
    iot_app = create_app(iot_alone(base, tmp_path, public_keys_file, latest_cache_max_age=300), Target.IOT)
    store = PostgresReadingStore(pg_database_url)  # another process's writer, in effect
    async with running_app(create_app(base)) as auth, running_app(iot_app) as iot:
        alice = await new_owner(auth, "alice")
        topic = alice.topic()
        now = datetime.now(UTC).replace(microsecond=0)
        await store.write(rows(alice, topic, [(now - timedelta(seconds=10), 20.0)]), [])

        async def shows(value: Any) -> bool:
            return bool((await latest(iot, alice, topic)).json()["data"][0]["value"] == value)

        async def read_and_kept(value: Any) -> bool:
            assert await shows(value)
            return await metric(iot, "sensorcloud_latest_cache_entries") == 1

        # a read is kept unless a notification overtook it (this write's own may, on a busy
        # machine) or the LISTEN connection is not up yet: then the next read is
        await eventually(lambda: read_and_kept(20.0), within=5)

        sent = time.monotonic()
        await store.write(rows(alice, topic, [(now, 21.0)]), [])
        await eventually(lambda: shows(21.0), within=5, interval=0.005)
        print(f"NOTIFY -> latest: {time.monotonic() - sent:.3f}s")
        assert await metric(iot, "sensorcloud_latest_cache_entries") == 1  # updated in place

        # an older reading is notified too (the newest of its batch) but does not replace it
        received = await metric(iot, "sensorcloud_live_points_received_total")
        await store.write(rows(alice, topic, [(now - timedelta(seconds=5), 5.0)]), [])

        async def notified() -> bool:
            return await metric(iot, "sensorcloud_live_points_received_total") > received

        await eventually(notified, within=5)
        assert await shows(21.0)

        # a reading too big for a notification is announced without its value: the entry goes, and
        # the next request reads it (entries live 300 s here: a stale 21.0 would stay that long)
        big = {"blob": "x" * 9000}
        await store.write(rows(alice, topic, [(now + timedelta(milliseconds=500), big)]), [])
        await eventually(lambda: shows(big), within=5, interval=0.005)

        # the LISTEN connection is lost: what it would have carried is missed, so the cache forgets
        database = pg_database_url.rsplit("/", 1)[1]
        killed = await asyncio.to_thread(
            pg_server.psql,
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            f"WHERE application_name = 'sensorcloud-live' AND datname = '{database}'",
        )
        assert killed.strip() == "1"

        async def forgotten() -> bool:
            return await metric(iot, "sensorcloud_latest_cache_entries") == 0

        await eventually(forgotten, within=5)
        await store.write(rows(alice, topic, [(now + timedelta(seconds=1), 22.0)]), [])
        assert await shows(22.0)  # from the database, listening or not
        await eventually(lambda: iot_listening(iot_app), within=15)
        await eventually(lambda: read_and_kept(22.0), within=5)  # kept again once listening
        await store.write(rows(alice, topic, [(now + timedelta(seconds=2), 23.0)]), [])
        await eventually(lambda: shows(23.0), within=5, interval=0.005)
    await store.close()


async def iot_listening(app: Any) -> bool:
    return bool(app.state.live_listener.connected.is_set())


async def test_the_fast_path_answers_as_the_route_and_refuses_nothing_itself(
    client: httpx.AsyncClient,
) -> None:
    """A hit is answered before FastAPI routes the request (iot/latest_fast.py): the same status,
    headers and bytes; every other case reaches the route and its answers."""
    alice = await new_owner(client, "alice")
    topic = alice.topic()
    await write(app_of(client), rows(alice, topic, [(T0, 21.5)]))
    miss = await latest(client, alice, topic)  # through FastAPI's route
    hits = await metric(client, "sensorcloud_latest_cache_hits_total")
    hit = await latest(client, alice, topic)  # before it
    assert await metric(client, "sensorcloud_latest_cache_hits_total") == hits + 1
    assert (hit.status_code, hit.headers.raw, hit.content) == (
        miss.status_code,
        miss.headers.raw,
        miss.content,
    )

    bad = {"msg": "Bad Authorization header. Expected 'Authorization: Bearer <JWT>'"}
    for headers, answer in (
        ({}, {"msg": "Missing Authorization Header"}),
        ({"Authorization": f"Basic {alice.token}"}, bad),
        ({"Authorization": "Bearer"}, bad),
        ({"Authorization": "Bearer not-a-token"}, {"msg": "Invalid token"}),
    ):
        refused = await client.get(f"/iot/{topic}/latest", headers=headers)
        assert (refused.status_code, refused.json()) == (401, answer)
        assert refused.headers["www-authenticate"] == "Bearer"
    head = await client.head(f"/iot/{topic}/latest", headers=bearer(alice.token))
    assert head.status_code == 405  # FastAPI's answer: only a GET is answered before it

    # a token revoked after its topic was cached is refused as before
    assert (await client.post("/auth/logout", headers=bearer(alice.token))).status_code == 200
    revoked = await latest(client, alice, topic)
    assert (revoked.status_code, revoked.json()) == (401, {"msg": "Token has been revoked"})


async def test_the_fast_path_matches_only_what_the_route_does(client: httpx.AsyncClient) -> None:
    """A topic may hold a newline, which the latest route's pattern does not match across (the period
    route's does, and reads the path as the newest reading too): the fast path leaves it alone."""
    alice = await new_owner(client, "alice")
    odd = f"{alice.prefix}/a\nb"
    await write(app_of(client), rows(alice, odd, [(T0, 1.0)]))
    period = ANSWERED.replace("/latest", "/{start_date}/{end_date}")
    for _ in range(2):  # a miss, then cached
        served, hits = await metric(client, ANSWERED, 0), await metric(client, period, 0)
        response = await client.get(f"/iot/{alice.prefix}/a%0Ab/latest", headers=bearer(alice.token))
        assert response.json() == {"topic": odd, "data": [{"date": iso(T0), "value": 1.0}]}
        assert (await metric(client, ANSWERED, 0), await metric(client, period)) == (served, hits + 1)
    assert app_of(client).state.iot.has_cached(odd)
