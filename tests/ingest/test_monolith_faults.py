"""Exactly once through a crash of the monolith: `sensorcloud serve` (embedded broker, SQLite) is
killed with SIGKILL halfway through a numbered QoS 1 stream and started again on the same ports.

The embedded broker hands publishes to the ingest straight from the socket and acknowledges each
only once it is committed (broker/tap.py), so nothing a device saw acknowledged can be lost with
the process; paho sends what was not acknowledged again after reconnecting, and the dedup key
keeps a message stored before the crash from being stored twice.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from tests.support.ports import free_port
from tests.support.process import start_serve
from tests.support.sequence import SequencePublisher
from tests.support.stack import create_devices

pytestmark = [pytest.mark.fault]

TOTAL = 8_000
DEVICES = 2
RATE = 1_000  # per device connection: the stream lasts about 4 s
DRAIN_S = 60.0


def stored(db: Path, topics: list[str]) -> tuple[int, int, float | None, float | None]:
    marks = ", ".join("?" for _ in topics)
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        query = (
            f"SELECT count(*), count(DISTINCT num), min(num), max(num) FROM readings WHERE topic IN ({marks})"
        )
        row = conn.execute(query, topics).fetchone()
    return int(row[0]), int(row[1]), row[2], row[3]


def wait_stored(db: Path, topics: list[str], at_least: int, within: float) -> int:
    deadline = time.monotonic() + within
    while True:
        count = stored(db, topics)[0]
        if count >= at_least or time.monotonic() > deadline:
            return count
        time.sleep(0.05)


def test_sigkill_of_the_monolith_halfway_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    db = data / "sensorcloud.db"
    devices = asyncio.run(create_devices(f"sqlite+aiosqlite:///{db}", DEVICES))
    env = {
        "SENSORCLOUD_DATA_DIR": str(data),
        "SENSORCLOUD_MQTT_PORT": str(free_port()),
        "SENSORCLOUD_INGEST_BATCH_INTERVAL_MS": "50",
    }
    server = start_serve(tmp_path, env)
    mqtt_port = int(env["SENSORCLOUD_MQTT_PORT"])
    publishers = [
        SequencePublisher(mqtt_port, d, range(k, TOTAL, DEVICES), RATE) for k, d in enumerate(devices)
    ]
    topics = [p.topic for p in publishers]
    try:
        for p in publishers:
            p.start()
        wait_stored(db, topics, TOTAL // 3, within=30)
        server.process.kill()
        server.process.wait()
        killed_at = time.monotonic()
        # every acknowledgement a device got was sent after its commit: it is in the file
        acked_at_kill = sum(p.acked for p in publishers)
        at_kill = stored(db, topics)[0]
        server = start_serve(tmp_path, env, port=server.port)  # same HTTP and MQTT ports, same file
        print(
            f"SIGKILL with {at_kill} stored and {acked_at_kill} acknowledged; "
            f"serving again after {time.monotonic() - killed_at:.1f}s"
        )
        assert at_kill < TOTAL
        assert acked_at_kill <= at_kill, "a message was acknowledged before it was stored"
        for p in publishers:
            p.wait_acked(DRAIN_S)
        rows, distinct, low, high = stored(db, topics)
        print(f"stored {rows} ({distinct} distinct), publisher connects {[p.connects for p in publishers]}")
        assert (rows, distinct) == (TOTAL, TOTAL)
        assert (low, high) == (0, TOTAL - 1)
        assert all(p.connects >= 2 for p in publishers)
    finally:
        for p in publishers:
            p.close()
        server.stop()
