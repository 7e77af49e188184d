"""From one received message to rows or a dead letter, handed to the batch writer."""

from __future__ import annotations

import math
from datetime import datetime

from sensorcloud.broker.acl import DeviceIdentity
from sensorcloud.ingest.directory import DeviceDirectory
from sensorcloud.ingest.parse import Limits, Rejection, parse
from sensorcloud.ingest.store import DeadRow, Row
from sensorcloud.ingest.writer import Ack, BatchWriter, Item

MAX_TOPIC_LENGTH = 255
DEAD_PAYLOAD_KEEP = 4096  # bytes of a refused payload kept for inspection


def to_item(
    topic: str, payload: bytes, received_at: datetime, device: DeviceIdentity | None, limits: Limits
) -> Item:
    """Parse a message into rows; anything unusable becomes a dead letter with its reason."""
    if device is None:
        return _dead(topic, payload, received_at, None, "no device owns this topic")
    if len(topic) > MAX_TOPIC_LENGTH:
        return _dead(topic, payload, received_at, device.device_id, "topic too long")
    parsed = parse(topic, payload, received_at, device.device_id, limits)
    if isinstance(parsed, Rejection):
        return _dead(topic, payload, received_at, device.device_id, parsed.reason)
    rows = []
    for reading in parsed:
        if len(reading.topic) > MAX_TOPIC_LENGTH:
            return _dead(topic, payload, received_at, device.device_id, "topic too long")
        value = reading.value
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        rows.append(
            Row(
                dedup_key=reading.dedup_key,
                ts=reading.ts,
                topic=reading.topic,
                device_id=device.device_id,
                owner_id=device.owner_id,
                num=float(value) if numeric and math.isfinite(float(value)) else None,  # type: ignore[arg-type]
                val=None if numeric else value,
                received_at=received_at,
            )
        )
    return Item(rows=rows)


def _dead(topic: str, payload: bytes, received_at: datetime, device_id: str | None, reason: str) -> Item:
    return Item(
        dead=DeadRow(
            received_at=received_at,
            topic=topic[:1024],
            device_id=device_id,
            reason=reason[:255],
            payload=payload[:DEAD_PAYLOAD_KEEP],
            payload_size=len(payload),
        )
    )


class Pipeline:
    """Resolves the publishing device, parses, and queues for the writer."""

    def __init__(self, directory: DeviceDirectory, limits: Limits, writer: BatchWriter) -> None:
        self.directory = directory
        self.limits = limits
        self.writer = writer

    async def handle(self, topic: str, payload: bytes, received_at: datetime, ack: Ack | None) -> None:
        device = await self.directory.resolve(topic)
        item = to_item(topic, payload, received_at, device, self.limits)
        item.ack = ack
        await self.writer.put(item)
