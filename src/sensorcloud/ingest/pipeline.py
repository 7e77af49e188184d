"""From one received message to rows or a dead letter, handed to the batch writer."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

from sensorcloud.broker.acl import DeviceIdentity
from sensorcloud.ingest.directory import STALE, DeviceDirectory
from sensorcloud.ingest.parse import Limits, Rejection, parse_message
from sensorcloud.ingest.store import DeadRow, Row
from sensorcloud.ingest.writer import Ack, BatchWriter, Item

MAX_TOPIC_LENGTH = 255
DEAD_PAYLOAD_KEEP = 4096  # bytes of a refused payload kept for inspection
# Row(...) runs a generated Python __new__; the tuple constructor makes the same object directly
_row = cast(Callable[[type[Row], tuple[Any, ...]], Row], tuple.__new__)


def to_item(
    topic: str, payload: bytes, received_at: datetime, device: DeviceIdentity | None, limits: Limits
) -> Item:
    """Parse a message into rows; anything unusable becomes a dead letter with its reason."""
    if received_at.tzinfo is not UTC:
        if received_at.tzinfo is None:
            raise ValueError("received_at must be timezone-aware")
        received_at = received_at.astimezone(UTC)
    if device is None:
        return _dead(topic, payload, received_at, None, "no device owns this topic")
    if len(topic) > MAX_TOPIC_LENGTH:
        return _dead(topic, payload, received_at, device.device_id, "topic too long")
    device_id = device.device_id
    parsed = parse_message(topic, payload, received_at, device_id, limits)
    if isinstance(parsed, Rejection):
        return _dead(topic, payload, received_at, device_id, parsed.reason)
    ts, readings = parsed
    owner_id = device.owner_id
    rows = []
    for name, value, key in readings:
        if len(name) > MAX_TOPIC_LENGTH:
            return _dead(topic, payload, received_at, device_id, "topic too long")
        if type(value) is float:
            # parse refuses non-finite numbers; should one come, it is stored without a value
            num = value if value - value == 0.0 else None
            rows.append(_row(Row, (key, ts, name, device_id, num, None, received_at, owner_id)))
        elif type(value) is int:
            rows.append(_row(Row, (key, ts, name, device_id, float(value), None, received_at, owner_id)))
        else:
            rows.append(_row(Row, (key, ts, name, device_id, None, value, received_at, owner_id)))
    return Item(rows, None, None)


def _dead(topic: str, payload: bytes, received_at: datetime, device_id: str | None, reason: str) -> Item:
    return Item(
        [],
        DeadRow(
            received_at=received_at,
            topic=topic[:1024],
            device_id=device_id,
            reason=reason[:255],
            payload=payload[:DEAD_PAYLOAD_KEEP],
            payload_size=len(payload),
        ),
        None,
    )


class Pipeline:
    """Resolves the publishing device, parses, and queues for the writer."""

    def __init__(self, directory: DeviceDirectory, limits: Limits, writer: BatchWriter) -> None:
        self.directory = directory
        self.limits = limits
        self.writer = writer

    def offer(self, topic: str, payload: bytes, received_at: datetime, ack: Ack | None) -> bool:
        """Take the message now if nothing has to be awaited (the usual case); False: call `handle`."""
        if not self.writer.has_room:
            return False
        device = self.directory.resolve_cached(topic)
        if device is STALE:
            return False
        item = to_item(topic, payload, received_at, device, self.limits)
        item.ack = ack
        self.writer.add(item)
        return True

    async def handle(self, topic: str, payload: bytes, received_at: datetime, ack: Ack | None) -> None:
        device = await self.directory.resolve(topic)
        item = to_item(topic, payload, received_at, device, self.limits)
        item.ack = ack
        await self.writer.put(item)
