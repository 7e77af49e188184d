"""/api/v1/readings/export: complete, streamed page by page, in constant memory."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import tracemalloc
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import event

from sensorcloud.app import create_app
from sensorcloud.core.live import iso
from sensorcloud.core.settings import Settings
from sensorcloud.core.tokens import Principal
from sensorcloud.iot import export
from sensorcloud.iot.service import IotService
from tests.conftest import bearer, login, register
from tests.iot.helpers import Owner, app_of, new_owner, rows, served, write

EXPORT = "/api/v1/readings/export"
T0 = datetime(2024, 5, 1, tzinfo=UTC)
N = 100_000


def points(n: int) -> list[tuple[datetime, Any]]:
    return [(T0 + timedelta(seconds=i), float(i) if i % 1000 else f"text,{i}") for i in range(n)]


async def test_export_of_100k_readings_over_http_is_complete(settings: Settings) -> None:
    app = create_app(settings)
    async with served(app) as address, httpx.AsyncClient(base_url=f"http://{address}", timeout=60) as http:
        await register(http, "alice")
        alice_token = (await login(http, "alice"))["auth_token"]
        device = (await http.post("/api/v1/devices", json={"name": "s"}, headers=bearer(alice_token))).json()
        alice = Owner(1, alice_token, device["id"], device["topic_prefix"], device["secret"])
        await write(app, rows(alice, alice.topic(), points(N)))

        params = {"topic": alice.topic(), "format": "csv"}
        async with http.stream("GET", EXPORT, params=params, headers=bearer(alice.token)) as response:
            assert response.status_code == 200
            assert response.headers["content-type"] == "text/csv; charset=utf-8"
            assert "content-length" not in response.headers  # streamed, not built first
            disposition = response.headers["content-disposition"]
            assert disposition == f'attachment; filename="{alice.topic().replace("/", "_")}.csv"'
            chunks = [chunk async for chunk in response.aiter_raw()]
        assert len(chunks) > 10
        parsed = list(csv.reader(io.StringIO(b"".join(chunks).decode())))
        assert parsed[0] == ["date", "value"]
        assert len(parsed) == N + 1
        assert parsed[1] == ["2024-05-01T00:00:00Z", "text,0"]
        assert parsed[2] == ["2024-05-01T00:00:01Z", "1.0"]
        assert parsed[-1] == [iso(T0 + timedelta(seconds=N - 1)), f"{float(N - 1)}"]

        params = {
            "topic": alice.topic(),
            "format": "ndjson",
            "from": "2024-05-01T00:00:10Z",
            "to": "2024-05-01T00:00:13Z",
        }
        lines = (await http.get(EXPORT, params=params, headers=bearer(alice.token))).text.splitlines()
        assert [json.loads(line) for line in lines] == [
            {"date": "2024-05-01T00:00:10Z", "value": 10.0},
            {"date": "2024-05-01T00:00:11Z", "value": 11.0},
            {"date": "2024-05-01T00:00:12Z", "value": 12.0},
        ]


class PageCounter:
    """Counts the page queries the app runs against its (real) database."""

    def __init__(self, app: Any) -> None:
        self.pages = 0
        event.listen(app.state.runtime.engine.sync_engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "FROM readings" in statement and "ORDER BY" in statement:
            self.pages += 1


async def test_a_slow_reader_holds_the_export_back(client: httpx.AsyncClient) -> None:
    """Driven at the ASGI level: while the client does not read, the server fetches no more pages."""
    alice = await new_owner(client, "alice")
    app = app_of(client)
    await write(app, rows(alice, alice.topic(), points(30_000)))  # six pages of 5,000
    counter = PageCounter(app)
    release = asyncio.Event()
    first_body = asyncio.Event()
    body: list[bytes] = []

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()  # the client never sends more (and never disconnects)
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            body.append(message["body"])
            if len(body) == 2:  # the CSV header, then the first page
                first_body.set()
                await release.wait()

    query = f"topic={alice.topic()}&format=csv".encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": EXPORT,
        "raw_path": EXPORT.encode(),
        "root_path": "",
        "query_string": query,
        "headers": [(b"host", b"test"), (b"authorization", f"Bearer {alice.token}".encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("test", 80),
    }
    task = asyncio.create_task(app(scope, receive, send))
    await asyncio.wait_for(first_body.wait(), 30)
    await asyncio.sleep(0.3)
    assert counter.pages <= 2, "the server read ahead although nobody consumed the stream"
    release.set()
    await asyncio.wait_for(task, 60)
    assert counter.pages == 7  # six full pages and the empty one that ends the stream
    assert b"".join(body).count(b"\n") == 30_001


async def _peak_while_exporting(service: IotService, principal: Principal, topic: str, n: int) -> int:
    end = T0 + timedelta(seconds=n)
    pages = await service.export(principal, topic, start=T0, end=end, page_size=500)
    tracemalloc.start()
    try:
        size = 0
        async for chunk in export.encode(pages, "ndjson"):
            size += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size > n * 40
    return peak


async def test_memory_does_not_grow_with_the_range(client: httpx.AsyncClient) -> None:
    alice = await new_owner(client, "alice")
    app = app_of(client)
    await write(app, rows(alice, alice.topic(), points(50_000)))
    service = IotService(app.state.runtime.engine)
    principal = Principal(alice.user_id, "user", "s", "j", 2**40)
    await _peak_while_exporting(service, principal, alice.topic(), 1000)  # warm caches
    small = await _peak_while_exporting(service, principal, alice.topic(), 5000)
    large = await _peak_while_exporting(service, principal, alice.topic(), 50_000)
    # ten times the readings (about 3 MB of NDJSON) in about the same memory
    print(f"export peak memory: 5k readings {small} B, 50k readings {large} B")
    assert large < small * 1.5 + 200_000, (small, large)
    assert large < 2_000_000


async def test_export_needs_access(client: httpx.AsyncClient) -> None:
    alice = await new_owner(client, "alice")
    bob = await new_owner(client, "bob")
    await write(app_of(client), rows(alice, alice.topic(), points(3)))
    params = {"topic": alice.topic()}
    assert (await client.get(EXPORT, params=params)).status_code == 401
    foreign = await client.get(EXPORT, params=params, headers=bearer(bob.token))
    assert (foreign.status_code, foreign.json()) == (404, {"msg": "Topic not found"})
    bad = await client.get(EXPORT, params={**params, "format": "xml"}, headers=bearer(alice.token))
    assert bad.status_code == 422
    ok = await client.get(EXPORT, params=params, headers=bearer(alice.token))
    assert ok.text.splitlines()[0] == "date,value"
    assert len(ok.text.splitlines()) == 4

    mixed = alice.topic("mixed")
    values: list[Any] = [{"lat": 1.5, "on": True}, False, 'a "quoted", text', 7, -0.25]
    await write(
        app_of(client), rows(alice, mixed, [(T0 + timedelta(seconds=i), v) for i, v in enumerate(values)])
    )
    ndjson = await client.get(
        EXPORT, params={"topic": mixed, "format": "ndjson"}, headers=bearer(alice.token)
    )
    assert ndjson.headers["content-type"] == "application/x-ndjson"
    assert [json.loads(line)["value"] for line in ndjson.text.splitlines()] == [
        {"lat": 1.5, "on": True},
        False,
        'a "quoted", text',
        7.0,
        -0.25,
    ]
    as_csv = await client.get(EXPORT, params={"topic": mixed}, headers=bearer(alice.token))
    exported = [r[1] for r in csv.reader(io.StringIO(as_csv.text))][1:]
    assert json.loads(exported[0]) == {"lat": 1.5, "on": True}  # as JSON text (jsonb may reorder keys)
    assert exported[1:] == [
        "false",
        'a "quoted", text',
        "7.0",
        "-0.25",
    ]
