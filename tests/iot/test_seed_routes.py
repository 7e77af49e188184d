"""The original routes, exactly: /iot/{topic}, /iot/{topic}/latest, /iot/{topic}/{start}/{end}."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from sensorcloud.core.live import iso
from tests.conftest import bearer, make_admin
from tests.iot.helpers import app_of, new_owner, rows, write

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


async def test_latest_has_the_seed_shape(client: httpx.AsyncClient) -> None:
    alice = await new_owner(client, "alice")
    topic = alice.topic()
    newest = T0 + timedelta(seconds=9, microseconds=250_000)
    batch = rows(alice, topic, [(T0 + timedelta(seconds=i), 20.0 + i) for i in range(9)])
    await write(app_of(client), [*batch, *rows(alice, topic, [(newest, 21.5)])])
    # an older reading written later does not become "latest"
    await write(app_of(client), rows(alice, topic, [(T0 - timedelta(days=1), -5)]))

    expected = {"topic": topic, "data": [{"date": "2024-05-01T12:00:09.250000Z", "value": 21.5}]}
    for path in (f"/iot/{topic}/latest", f"/iot/{topic}"):
        response = await client.get(path, headers=bearer(alice.token))
        assert response.status_code == 200, response.text
        assert response.json() == expected


async def test_non_numeric_values_come_back_as_sent(client: httpx.AsyncClient) -> None:
    alice = await new_owner(client, "alice")
    await write(app_of(client), rows(alice, alice.topic("state"), [(T0, "on")]))
    await write(app_of(client), rows(alice, alice.topic("gps"), [(T0, {"lat": 1.5, "lon": 2})]))
    await write(app_of(client), rows(alice, alice.topic("door"), [(T0, True)]))
    for leaf, value in (("state", "on"), ("gps", {"lat": 1.5, "lon": 2}), ("door", True)):
        body = (await client.get(f"/iot/{alice.topic(leaf)}", headers=bearer(alice.token))).json()
        assert body["data"] == [{"date": "2024-05-01T12:00:00Z", "value": value}]


async def test_range_has_the_seed_shape_both_ends_inclusive(client: httpx.AsyncClient) -> None:
    alice = await new_owner(client, "alice")
    topic = alice.topic()
    points = [(T0 + timedelta(hours=h), float(h)) for h in range(-30, 40)]
    await write(app_of(client), rows(alice, topic, points))

    start, end = T0, T0 + timedelta(hours=5)
    response = await client.get(
        f"/iot/{topic}/{start.isoformat()}/{end.isoformat()}", headers=bearer(alice.token)
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "topic": topic,
        "data": [{"date": iso(ts), "value": v} for ts, v in points if start <= ts <= end],
    }
    # bare dates: the end date covers its whole day; no zone means UTC
    day = await client.get(f"/iot/{topic}/2024-05-01/2024-05-01", headers=bearer(alice.token))
    assert [d["date"] for d in day.json()["data"]] == [iso(ts) for ts, _ in points if ts.date() == T0.date()]
    assert len(day.json()["data"]) == 24
    # a zone other than UTC is converted
    zoned = await client.get(
        f"/iot/{topic}/2024-05-01T14:00:00+02:00/2024-05-01T12:00:00", headers=bearer(alice.token)
    )
    assert [d["value"] for d in zoned.json()["data"]] == [0.0]
    empty = await client.get(f"/iot/{topic}/2020-01-01/2020-01-02", headers=bearer(alice.token))
    assert empty.status_code == 200
    assert empty.json() == {"topic": topic, "data": []}


@pytest.mark.parametrize(
    "dates",
    ["2024-13-01/2024-05-02", "2024-05-01/2024-02-30", "2024-05-01/yesterday", "2024-05-02/2024-05-01"],
)
async def test_bad_dates_answer_422(client: httpx.AsyncClient, dates: str) -> None:
    alice = await new_owner(client, "alice")
    await write(app_of(client), rows(alice, alice.topic(), [(T0, 1)]))
    response = await client.get(f"/iot/{alice.topic()}/{dates}", headers=bearer(alice.token))
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["msg"].startswith("Invalid request")
    assert body["errors"][0]["field"] in ("start_date", "end_date")


async def test_tokens_are_required(client: httpx.AsyncClient) -> None:
    alice = await new_owner(client, "alice")
    await write(app_of(client), rows(alice, alice.topic(), [(T0, 1)]))
    for path in (f"/iot/{alice.topic()}", f"/iot/{alice.topic()}/latest", f"/iot/{alice.topic()}/2024/2025"):
        missing = await client.get(path)
        assert missing.status_code == 401
        assert missing.json() == {"msg": "Missing Authorization Header"}
        bad = await client.get(path, headers=bearer(alice.token[:-4] + "AAAA"))
        assert bad.status_code == 401
        assert "msg" in bad.json()


async def test_another_users_topic_is_not_found_and_admin_sees_all(client: httpx.AsyncClient) -> None:
    alice = await new_owner(client, "alice")
    bob = await new_owner(client, "bob")
    await write(app_of(client), rows(alice, alice.topic(), [(T0, 1)]))
    foreign = await client.get(f"/iot/{alice.topic()}", headers=bearer(bob.token))
    unknown = await client.get(f"/iot/{bob.topic('nothing-yet')}", headers=bearer(bob.token))
    assert foreign.status_code == unknown.status_code == 404
    assert foreign.json() == unknown.json() == {"msg": "Topic not found"}  # nothing tells them apart
    ranged = await client.get(f"/iot/{alice.topic()}/2024-01-01/2025-01-01", headers=bearer(bob.token))
    assert ranged.status_code == 404

    admin = await make_admin(client)
    seen = await client.get(f"/iot/{alice.topic()}/latest", headers=bearer(admin["auth_token"]))
    assert seen.status_code == 200
    assert seen.json()["data"][0]["value"] == 1.0


async def test_ambiguous_topics_are_still_reachable(client: httpx.AsyncClient) -> None:
    alice = await new_owner(client, "alice")
    dated = alice.topic("2024-01-01/2024-12-31")  # last two levels look like dates
    named_latest = alice.topic("latest")
    await write(app_of(client), rows(alice, dated, [(T0, 7)]))
    await write(app_of(client), rows(alice, named_latest, [(T0, 8)]))
    for path, value in ((dated, 7.0), (named_latest, 8.0), (f"{named_latest}/latest", 8.0)):
        response = await client.get(f"/iot/{path}", headers=bearer(alice.token))
        assert response.status_code == 200, (path, response.text)
        assert response.json()["data"][0]["value"] == value


async def test_range_is_capped_and_says_so(client: httpx.AsyncClient) -> None:
    alice = await new_owner(client, "alice")
    points = [(T0 + timedelta(seconds=i), float(i)) for i in range(10_005)]
    await write(app_of(client), rows(alice, alice.topic(), points))
    response = await client.get(f"/iot/{alice.topic()}/2024-05-01/2024-05-02", headers=bearer(alice.token))
    data = response.json()["data"]
    assert len(data) == 10_000
    assert data[0]["value"] == 0.0  # oldest first
    assert data[-1]["value"] == 9999.0
    assert response.headers["x-truncated"] == "true"
