"""The ingest's garbage-collector settings: messages in flight cost no collection."""

from __future__ import annotations

import gc
import json
from datetime import UTC, datetime
from functools import partial
from typing import Any

from sensorcloud.broker.acl import DeviceIdentity
from sensorcloud.ingest.mqtt import SubscriberConfig
from sensorcloud.ingest.parse import Limits
from sensorcloud.ingest.pipeline import to_item
from sensorcloud.ingest.runner import tune_gc
from sensorcloud.ingest.writer import Item
from tests.ingest.test_parse import ACCEPTED, RECEIVED, REJECTED, TOPIC


def test_a_full_receive_window_in_flight_starts_no_collection() -> None:
    # the most messages the broker sends before the ingest acknowledges any, each held as the
    # ingest holds it until its batch commits: a batch item with its rows and acknowledgement
    window = SubscriberConfig(
        host="mqtt", port=1883, username="u", password="p", client_id="c"
    ).receive_maximum
    device = DeviceIdentity(device_id="0123456789abcdef", owner_id=1, topic_prefix="sensors")
    now = datetime.now(UTC)
    payloads = [
        json.dumps(
            {
                "device": f"dev-{i % 1000:05d}",
                "ts": now.timestamp(),
                "temp": 21.5,
                "hum": 40 + i % 7,
                "seq": i,
            }
        ).encode()
        for i in range(window)
    ]
    acknowledged: set[int] = set()
    collections: list[int] = []

    def started(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            collections.append(info["generation"])

    saved = gc.get_threshold()
    held: list[Item] = []
    tune_gc()
    gc.callbacks.append(started)
    try:
        for i, payload in enumerate(payloads):
            item = to_item(f"sensors/dev-{i % 1000:05d}/env", payload, now, device, Limits())
            item.ack = partial(acknowledged.add, i)
            held.append(item)
    finally:
        gc.callbacks.remove(started)
        gc.set_threshold(*saved)
        gc.unfreeze()
    assert [len(item.rows) for item in held] == [2] * window  # all parsed: temp and hum
    assert collections == []


def test_messages_good_and_refused_leave_no_reference_cycles() -> None:
    # what the threshold above relies on: the collector is not needed to free what a message
    # leaves behind, refused ones (parsed by raising) included
    device = DeviceIdentity(device_id="dev-1", owner_id=1, topic_prefix="devices/dev-1")
    payloads = [payload for _, payload, _ in ACCEPTED] + [payload for _, payload, _ in REJECTED]
    gc.collect()
    gc.disable()
    try:
        items = [
            to_item(TOPIC, payload, RECEIVED, device, Limits()) for _ in range(20) for payload in payloads
        ]
        dead = sum(item.dead is not None for item in items)
        del items
        assert gc.collect() == 0
    finally:
        gc.enable()
    assert dead == 20 * len(REJECTED)
