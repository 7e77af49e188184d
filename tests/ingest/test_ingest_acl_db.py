"""From a device's connection to the database, with real processes (tests/support/stack.py): the
broker keeps a device inside its own namespace, and each class of bad payload becomes a dead letter
while the good messages around it are stored."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from tests.support.mosquitto import Probe, until
from tests.support.mqtt import publish_sync
from tests.support.postgres import PostgresServer
from tests.support.stack import ingest_stack

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

BAD = {  # payload -> how its dead letter's reason starts
    b"{nope": "invalid JSON",
    b"NaN": "non-finite number",
    b"null": "unsupported payload: null",
    b'{"value": 1, "value": 2}': "duplicate key",
    b'{"value": "\xff\xfe"}': "invalid UTF-8",
    json.dumps({"value": 1, "pad": "x" * 70_000}).encode(): "payload too large",
}


def reading(n: int) -> bytes:
    return json.dumps({"value": n, "seq": n, "ts": time.time()}).encode()


def test_device_stays_in_its_namespace_and_bad_payloads_are_dead_lettered(pg_server: PostgresServer) -> None:
    with ingest_stack(devices=2, pg=pg_server) as stack:
        a, b = stack.devices
        stack.warm_up(a)
        watcher = Probe(stack.broker.port, stack.broker.service_user, stack.broker.service_password)
        assert asyncio.run(watcher.connect())
        try:
            assert asyncio.run(watcher.subscribe("#"))
            outside = [f"{b.prefix}/t", "sensors/kitchen/t", f"{a.prefix}x/t"]  # the last: no '/' after
            own = f"{a.prefix}/t"
            messages: list[tuple[str, bytes | str]] = [(topic, reading(-1)) for topic in outside]
            messages.append((own, reading(0)))
            for n, payload in enumerate(BAD, start=1):  # each bad payload between two good ones
                messages += [(own, payload), (own, reading(n))]
            publish_sync(stack.broker.port, a.id, a.secret, messages, client_id=a.id)

            inside = len(messages) - len(outside)
            # one connection's messages arrive in order: once the last is here, a leak would be too
            asyncio.run(until(lambda: len(watcher.received()) >= inside, within=10))
            topics = {topic for topic, _ in watcher.received()}
            assert topics == {own}, topics
        finally:
            asyncio.run(watcher.close())

        good = len(BAD) + 1
        query = f"SELECT count(*) FROM readings WHERE topic = '{own}'"
        assert stack.wait_count(query, good, within=15) == good
        stack.wait_count("SELECT count(*) FROM dead_letters", len(BAD), within=10)
        stored = stack.sql("SELECT DISTINCT device_id || ' ' || topic FROM readings ORDER BY 1").splitlines()
        assert stored == sorted([f"{a.id} {a.prefix}/warmup", f"{a.id} {own}"])
        values = stack.sql(f"SELECT num FROM readings WHERE topic = '{own}' ORDER BY num").splitlines()
        assert [float(v) for v in values] == list(range(good))

        dead = [
            line.split("|")
            for line in stack.sql(
                "SELECT reason, device_id, topic, payload_size FROM dead_letters ORDER BY id"
            ).splitlines()
        ]
        assert len(dead) == len(BAD), dead
        for (payload, reason), (got, device_id, topic, size) in zip(BAD.items(), dead, strict=True):
            assert got.startswith(reason), (got, reason)
            assert (device_id, topic, int(size)) == (a.id, own, len(payload))
