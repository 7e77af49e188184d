"""/api/v1/topics and /api/v1/readings: the caller's topics, keyset pages stable under inserts."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from sensorcloud.core.live import iso
from tests.conftest import bearer, make_admin
from tests.iot.helpers import Owner, app_of, new_owner, rows, write

T0 = datetime(2024, 5, 1, tzinfo=UTC)
READINGS = "/api/v1/readings"


async def test_topics_lists_only_the_callers(client: httpx.AsyncClient) -> None:
    alice = await new_owner(client, "alice")
    bob = await new_owner(client, "bob")
    app = app_of(client)
    await write(app, rows(alice, alice.topic("t"), [(T0, 1), (T0 + timedelta(seconds=5), 2.5)]))
    await write(app, rows(alice, alice.topic("s"), [(T0, "on")]))
    await write(app, rows(bob, bob.topic("t"), [(T0, 3)]))

    body = (await client.get("/api/v1/topics", headers=bearer(alice.token))).json()
    assert body == {
        "data": [
            {
                "topic": alice.topic("s"),
                "device_id": alice.device_id,
                "last_date": "2024-05-01T00:00:00Z",
                "last_value": "on",
                "count": 1,
            },
            {
                "topic": alice.topic("t"),
                "device_id": alice.device_id,
                "last_date": "2024-05-01T00:00:05Z",
                "last_value": 2.5,
                "count": 2,
            },
        ]
    }
    assert [
        t["topic"] for t in (await client.get("/api/v1/topics", headers=bearer(bob.token))).json()["data"]
    ] == [bob.topic("t")]
    admin = await make_admin(client)
    every = (await client.get("/api/v1/topics", headers=bearer(admin["auth_token"]))).json()["data"]
    assert {t["topic"] for t in every} == {alice.topic("s"), alice.topic("t"), bob.topic("t")}
    missing = await client.get("/api/v1/topics")
    assert (missing.status_code, missing.json()) == (401, {"msg": "Missing Authorization Header"})


async def _all_pages(
    client: httpx.AsyncClient, owner: Owner, params: dict[str, Any], between: Any = None
) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    cursor = None
    for page_number in range(10_000):
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get(READINGS, params=query, headers=bearer(owner.token))
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["topic"] == params["topic"]
        assert len(body["data"]) <= int(params.get("limit", 100))
        seen += body["data"]
        cursor = body["next_cursor"]
        if cursor is None:
            return seen
        if between is not None:
            await between(page_number, seen)
    raise AssertionError("pagination never ended")


async def test_pages_cover_a_range_exactly_both_orders(client: httpx.AsyncClient) -> None:
    alice = await new_owner(client, "alice")
    topic = alice.topic()
    # many readings share a timestamp, so the key has to break the ties
    points = [(T0 + timedelta(seconds=i // 3), float(i)) for i in range(250)]
    await write(app_of(client), rows(alice, topic, points))

    asc = await _all_pages(client, alice, {"topic": topic, "limit": 7})
    assert len(asc) == 250
    assert sorted(d["value"] for d in asc) == [float(i) for i in range(250)]  # no gap, no repeat
    dates = [datetime.fromisoformat(d["date"]) for d in asc]
    assert dates == sorted(dates)
    desc = await _all_pages(client, alice, {"topic": topic, "limit": 13, "order": "desc"})
    assert desc == asc[::-1]

    start, end = T0 + timedelta(seconds=10), T0 + timedelta(seconds=20)
    window = await _all_pages(client, alice, {"topic": topic, "limit": 4, "from": iso(start), "to": iso(end)})
    assert sorted(d["value"] for d in window) == [float(i) for i in range(250) if 10 <= i // 3 < 20]

    default = (await client.get(READINGS, params={"topic": topic}, headers=bearer(alice.token))).json()
    assert len(default["data"]) == 100
    assert default["next_cursor"] is not None


async def test_pages_have_no_gaps_or_repeats_while_readings_arrive(client: httpx.AsyncClient) -> None:
    alice = await new_owner(client, "alice")
    topic = alice.topic()
    app = app_of(client)
    original = rows(alice, topic, [(T0 + timedelta(seconds=i), float(i)) for i in range(300)])
    await write(app, original)
    rng = random.Random(7)
    late: list[float] = []  # inside the range already read: must not appear (nor shift anything)
    ahead: list[float] = []  # after the current position: must appear exactly once
    counter = iter(range(1000, 100_000))

    async def insert(page_number: int, seen: list[dict[str, Any]]) -> None:
        read_up_to = datetime.fromisoformat(seen[-1]["date"])
        behind = T0 + timedelta(seconds=rng.uniform(0, (read_up_to - T0).total_seconds()), microseconds=1)
        same = read_up_to  # a reading with the very timestamp of the page's last one
        after = read_up_to + timedelta(seconds=rng.uniform(0.001, 400))
        batch = []
        for ts, bucket in ((behind, late), (same, None), (after, ahead)):
            value = float(next(counter))
            if bucket is not None:
                bucket.append(value)
            batch += rows(alice, topic, [(ts, value)])
        await write(app, batch)

    seen = await _all_pages(client, alice, {"topic": topic, "limit": 25}, between=insert)
    values = [d["value"] for d in seen]
    assert len(values) == len(set(values)), "a reading was served twice"
    assert set(range(300)) <= {int(v) for v in values}, "an original reading was skipped"
    assert set(ahead) <= set(values), "a reading inserted ahead of the cursor was skipped"
    assert not set(late) & set(values)
    dates = [datetime.fromisoformat(d["date"]) for d in seen]
    assert dates == sorted(dates)


async def test_cursor_and_parameters_are_validated(client: httpx.AsyncClient) -> None:
    alice = await new_owner(client, "alice")
    bob = await new_owner(client, "bob")
    topic = alice.topic()
    await write(app_of(client), rows(alice, topic, [(T0 + timedelta(seconds=i), i) for i in range(5)]))
    await write(app_of(client), rows(alice, alice.topic("other"), [(T0, 1)]))
    headers = bearer(alice.token)
    first = (await client.get(READINGS, params={"topic": topic, "limit": 2}, headers=headers)).json()
    cursor = first["next_cursor"]

    cases: list[tuple[dict[str, Any], int]] = [
        ({"topic": topic, "limit": 1001}, 422),
        ({"topic": topic, "limit": 0}, 422),
        ({"topic": topic, "order": "sideways"}, 422),
        ({"topic": topic, "from": "2024-99-01"}, 422),
        ({"topic": topic, "from": "2024-05-02", "to": "2024-05-01"}, 422),
        ({"topic": topic, "cursor": "not-a-cursor"}, 422),
        ({"topic": topic, "cursor": cursor, "order": "desc"}, 422),
        ({"topic": alice.topic("other"), "cursor": cursor}, 422),
        ({"topic": topic, "limit": 1000}, 200),
        ({}, 422),
    ]
    for params, status in cases:
        response = await client.get(READINGS, params=params, headers=headers)
        assert response.status_code == status, (params, response.text)
        assert status == 200 or "msg" in response.json()
    bad_from = await client.get(READINGS, params={"topic": topic, "from": "soon"}, headers=headers)
    assert bad_from.json()["errors"][0]["field"] == "from"

    assert (await client.get(READINGS, params={"topic": topic}, headers=bearer(bob.token))).status_code == 404
    assert (await client.get(READINGS, params={"topic": topic})).status_code == 401
    admin = await make_admin(client)
    as_admin = await client.get(READINGS, params={"topic": topic}, headers=bearer(admin["auth_token"]))
    assert len(as_admin.json()["data"]) == 5


async def test_unencoded_plus_in_a_zone_is_understood(client: httpx.AsyncClient) -> None:
    alice = await new_owner(client, "alice")
    topic = alice.topic()
    await write(app_of(client), rows(alice, topic, [(T0 + timedelta(hours=h), h) for h in range(5)]))
    # "+02:00" typed into a URL without encoding arrives as " 02:00"
    url = f"{READINGS}?topic={topic}&from=2024-05-01T05:00:00+02:00"
    response = await client.get(url, headers=bearer(alice.token))
    assert response.status_code == 200, response.text
    assert [d["value"] for d in response.json()["data"]] == [3.0, 4.0]
