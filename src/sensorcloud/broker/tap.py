"""The monolith's ingest takes publishes straight off the embedded broker's sockets.

Through amqtt, a reading cost two trips through its per-message tasks and queues (in from the
device, out to a loopback ingest client): amqtt passed about 4,600 QoS 1 messages/s here, and the
monolith stored 1,900. So the gate in front of amqtt (wire.FramedReader) hands each PUBLISH to
`IngestTap.take` first. A publish is taken here, and amqtt never sees it, when:
- it is QoS 0 or 1 and not retained (retained messages and QoS 2's four-packet flow stay amqtt's);
- the connection's principal may publish to the topic (the same rule amqtt's topic plugin applies;
  a refused publish goes to amqtt, which drops it silently as before);
- no client subscribes to a filter that matches the topic (then amqtt delivers it, see below).
Its QoS 1 PUBACK is written only after the batch that holds it is committed: a crash before that
loses nothing, the device sends it again (amqtt acknowledged on receipt, so a crash lost what it
held). The PUBACK goes to the connection the publish came on, and is dropped if that connection
is gone (the device then resends on its next connection; the dedup key catches a repeat).

Everything amqtt does deliver (the publishes above that are not taken, and the wills it
publishes for devices that vanish) reaches the ingest through `mirror`, as the loopback
subscriber received them before: acknowledged by amqtt on receipt.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sensorcloud.broker.principal import Principal
from sensorcloud.core.logging import get_logger

log = get_logger("sensorcloud.broker")
Ack = Callable[[], None]
TopicMatch = Callable[[str, str], bool]
PUBACK = 0x40


class PublishSink(Protocol):
    """Where taken messages go: the ingest pipeline (ingest/pipeline.py)."""

    def offer(self, topic: str, payload: bytes, received_at: datetime, ack: Ack | None) -> bool: ...

    async def handle(self, topic: str, payload: bytes, received_at: datetime, ack: Ack | None) -> None: ...


@dataclass(frozen=True, slots=True)
class Publish:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    packet_id: int


def parse_publish(header: bytes, body: bytes) -> Publish | None:
    """An MQTT 3.1.1 PUBLISH from its fixed header and body; None if amqtt had better judge it."""
    flags = header[0] & 0x0F
    qos = (flags >> 1) & 0x03
    if qos == 3 or len(body) < 2:
        return None
    size = (body[0] << 8) | body[1]
    start = 2 + size
    if qos:
        if len(body) < start + 2:
            return None
        packet_id = (body[start] << 8) | body[start + 1]
        payload_at = start + 2
    else:
        if len(body) < start:
            return None
        packet_id = 0
        payload_at = start
    try:
        topic = body[2:start].decode("utf-8")
    except UnicodeDecodeError:
        return None
    return Publish(topic, body[payload_at:], qos, bool(flags & 0x01), packet_id)


class IngestTap:
    """Shared by every connection of the embedded broker; see the module docstring."""

    def __init__(
        self, sink: PublishSink, subscriptions: Callable[[], Mapping[str, Any]], matches: TopicMatch
    ) -> None:
        self._sink = sink
        self._subscriptions = subscriptions  # amqtt's live subscription table: filter -> sessions
        self._matches = matches
        self._open = asyncio.Event()
        self._open.set()
        self.taken = 0
        self.mirrored = 0

    def pause(self) -> None:
        """Take no more (shutdown): a connection with a publish to hand over waits here until it is
        closed, so that publish is never acknowledged and the device sends it again."""
        self._open.clear()

    def _subscribed(self, topic: str) -> bool:
        subscriptions = self._subscriptions()
        return bool(subscriptions) and any(self._matches(topic, f) for f in subscriptions)

    def for_connection(
        self, principal: Principal, transport: asyncio.WriteTransport
    ) -> Callable[[bytes, bytes], Awaitable[bool]]:
        """The per-connection hook for FramedReader: True when the packet was taken."""

        async def take(header: bytes, body: bytes) -> bool:
            publish = parse_publish(header, body)
            if (
                publish is None
                or publish.retain
                or publish.qos == 2
                or not principal.may_publish(publish.topic)
                or self._subscribed(publish.topic)
            ):
                return False
            if not self._open.is_set():
                await self._open.wait()  # never set again: the connection is aborted at shutdown
            ack = _puback(transport, publish.packet_id) if publish.qos else None
            received_at = datetime.now(UTC)
            if not self._sink.offer(publish.topic, publish.payload, received_at, ack):
                await self._sink.handle(publish.topic, publish.payload, received_at, ack)
            self.taken += 1
            return True

        return take

    async def mirror(self, topic: str, payload: bytes) -> None:
        """A message amqtt delivers (not taken above, or a will): stored as the subscriber did."""
        if not self._open.is_set():
            return  # shutting down: amqtt acknowledged it on receipt, as it always did
        received_at = datetime.now(UTC)
        if not self._sink.offer(topic, payload, received_at, None):
            await self._sink.handle(topic, payload, received_at, None)
        self.mirrored += 1


def _puback(transport: asyncio.WriteTransport, packet_id: int) -> Ack:
    packet = bytes((PUBACK, 2, packet_id >> 8, packet_id & 0xFF))

    def ack() -> None:
        if not transport.is_closing():
            transport.write(packet)

    return ack
