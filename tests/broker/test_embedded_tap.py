"""The monolith's ingest tap (broker/tap.py) on a real embedded broker with real MQTT clients.

The sink stands in for the ingest pipeline (whose own tests are in tests/ingest): it records what
the broker hands over and acknowledges only when a test says the batch is committed.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

import pytest
from pydantic import SecretStr

from sensorcloud.broker.embedded import EmbeddedBroker
from sensorcloud.broker.tap import Ack, parse_publish
from sensorcloud.broker.wire import FramedReader
from tests.broker.embedded_support import (
    SERVICE_PASSWORD,
    SERVICE_USER,
    Clients,
    Device,
    Registry,
    raw_connect,
)
from tests.support.mosquitto import until
from tests.support.ports import free_port


@dataclass
class Taken:
    topic: str
    payload: bytes
    ack: Ack | None


class RecordingSink:
    """tap.PublishSink that keeps what it gets; `offer` declines while `full` (then `handle`)."""

    def __init__(self) -> None:
        self.items: list[Taken] = []
        self.full = False
        self.handled = 0

    def offer(self, topic: str, payload: bytes, received_at: datetime, ack: Ack | None) -> bool:
        assert received_at.tzinfo is not None
        if self.full:
            return False
        self.items.append(Taken(topic, payload, ack))
        return True

    async def handle(self, topic: str, payload: bytes, received_at: datetime, ack: Ack | None) -> None:
        self.handled += 1
        self.items.append(Taken(topic, payload, ack))

    def topics(self) -> list[str]:
        return [t.topic for t in self.items]

    def commit(self) -> None:
        for item in self.items:
            if item.ack is not None:
                item.ack()
                item.ack = None


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
async def broker(registry: Registry, sink: RecordingSink) -> AsyncIterator[EmbeddedBroker]:
    broker = EmbeddedBroker("127.0.0.1", free_port(), registry, SERVICE_USER, SecretStr(SERVICE_PASSWORD))
    broker.attach_ingest(sink)
    await broker.start()
    try:
        yield broker
    finally:
        await broker.stop()


def _publish_packet(topic: str, payload: bytes, qos: int, packet_id: int = 0, retain: bool = False) -> bytes:
    body = len(topic.encode()).to_bytes(2, "big") + topic.encode()
    if qos:
        body += packet_id.to_bytes(2, "big")
    body += payload
    assert len(body) < 128
    return bytes([0x30 | (qos << 1) | int(retain), len(body)]) + body


class RawDevice:
    """A device on a bare socket: sees exactly which bytes the broker sends back, and when."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    @classmethod
    async def connect(cls, port: int, device: Device) -> RawDevice:
        def connect() -> socket.socket:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(raw_connect(device.id, device.id, device.secret, keep_alive=60))
            assert sock.recv(4) == b"\x20\x02\x00\x00"  # CONNACK, accepted
            return sock

        return cls(await asyncio.to_thread(connect))

    def send(self, packet: bytes) -> None:
        self.sock.sendall(packet)

    async def receive(self, within: float) -> bytes:
        def read() -> bytes:
            self.sock.settimeout(within)
            try:
                return self.sock.recv(64)
            except TimeoutError:
                return b""

        return await asyncio.to_thread(read)

    def close(self) -> None:
        self.sock.close()


async def test_a_qos1_publish_is_taken_and_acknowledged_only_after_the_commit(
    broker: EmbeddedBroker, sink: RecordingSink, a: Device
) -> None:
    device = await RawDevice.connect(broker.port, a)
    try:
        device.send(_publish_packet(f"{a.prefix}/t", b"21.5", qos=1, packet_id=7))
        await until(lambda: sink.topics() == [f"{a.prefix}/t"])
        assert sink.items[0].payload == b"21.5"
        assert await device.receive(0.3) == b"", "PUBACK before the commit"
        sink.commit()
        assert await device.receive(5) == b"\x40\x02\x00\x07"
    finally:
        device.close()
    assert broker.tap is not None
    assert (broker.tap.taken, broker.tap.mirrored) == (1, 0)


async def test_qos0_and_a_full_writer_are_taken_too(
    broker: EmbeddedBroker, clients: Clients, sink: RecordingSink, a: Device
) -> None:
    probe = await clients.connected(a)
    await probe.publish(f"{a.prefix}/q0", b"1", qos=0)
    await until(lambda: f"{a.prefix}/q0" in sink.topics())
    assert sink.items[-1].ack is None  # nothing to acknowledge at QoS 0
    sink.full = True  # the writer has no room: the connection waits in `handle` instead
    info = probe.client.publish(f"{a.prefix}/full", b"2", qos=1)
    await until(lambda: f"{a.prefix}/full" in sink.topics())
    assert sink.handled == 1
    await asyncio.sleep(0.2)
    assert not info.is_published()
    sink.commit()
    await until(info.is_published)


async def test_a_publish_someone_subscribed_to_goes_through_amqtt_and_is_stored_once(
    broker: EmbeddedBroker, clients: Clients, sink: RecordingSink, a: Device
) -> None:
    watcher = await clients.service(f"{a.prefix}/watched/#")
    probe = await clients.connected(a)
    assert await probe.publish(f"{a.prefix}/watched/x", b"3") == "Success"  # amqtt acknowledged it
    await watcher.expect(f"{a.prefix}/watched/x")
    info = probe.client.publish(f"{a.prefix}/other", b"4", qos=1)  # nobody subscribed: taken
    await until(lambda: len(sink.items) == 2)
    sink.commit()
    await until(info.is_published)
    assert sink.topics() == [f"{a.prefix}/watched/x", f"{a.prefix}/other"]
    assert sink.items[0].ack is None  # amqtt acknowledged on receipt
    assert broker.tap is not None
    assert (broker.tap.mirrored, broker.tap.taken) == (1, 1)
    assert watcher.received(f"{a.prefix}/other") == []


async def test_retained_publishes_and_wills_are_amqtts_and_stored(
    broker: EmbeddedBroker, clients: Clients, sink: RecordingSink, a: Device
) -> None:
    probe = await clients.connected(a)
    await probe.publish(f"{a.prefix}/state", b"5", retain=True)
    await until(lambda: f"{a.prefix}/state" in sink.topics())
    late = await clients.connected(a, f"{a.prefix}/state", client_id=f"{a.id}-late")
    await late.expect(f"{a.prefix}/state")  # amqtt kept it as retained
    vanishing = clients.device(a, client_id=f"{a.id}-will", will=f"{a.prefix}/status")
    assert await vanishing.connect()
    vanishing.abort()
    await until(lambda: f"{a.prefix}/status" in sink.topics())
    assert [t.payload for t in sink.items if t.topic == f"{a.prefix}/status"] == [b"will"]


async def test_a_refused_publish_reaches_neither_the_ingest_nor_anyone(
    broker: EmbeddedBroker, clients: Clients, sink: RecordingSink, registry: Registry, a: Device
) -> None:
    b = registry.add()
    watcher = await clients.service("#")
    probe = await clients.connected(a)
    assert await probe.publish(f"{b.prefix}/spoofed", b"6") == "Success"  # 3.1.1: acked, dropped
    await probe.publish(f"{a.prefix}/mine", b"7")
    await watcher.expect(f"{a.prefix}/mine")
    await until(lambda: f"{a.prefix}/mine" in sink.topics())
    assert f"{b.prefix}/spoofed" not in sink.topics()
    assert watcher.received(b.prefix) == []


async def test_after_pause_nothing_is_taken_or_acknowledged(
    broker: EmbeddedBroker, sink: RecordingSink, a: Device
) -> None:
    broker.pause_ingest()
    device = await RawDevice.connect(broker.port, a)
    try:
        device.send(_publish_packet(f"{a.prefix}/late", b"8", qos=1, packet_id=9))
        assert await device.receive(0.5) == b""
        assert sink.items == []
    finally:
        device.close()


def test_parse_publish() -> None:
    packet = _publish_packet("a/b", b"\x00{}", qos=1, packet_id=258, retain=True)
    parsed = parse_publish(packet[:2], packet[2:])
    assert parsed is not None
    assert (parsed.topic, parsed.payload, parsed.qos, parsed.retain, parsed.packet_id) == (
        "a/b",
        b"\x00{}",
        1,
        True,
        258,
    )
    q0 = _publish_packet("t", b"", qos=0)
    assert parse_publish(q0[:2], q0[2:]) == parse_publish(b"\x30\x03", b"\x00\x01t")
    assert parse_publish(b"\x36\x05", b"\x00\x01t\x00\x01") is None  # QoS 3 does not exist
    assert parse_publish(b"\x32\x04", b"\x00\x05abc") is None  # topic longer than the packet
    assert parse_publish(b"\x30\x04", b"\x00\x02\xff\xfe") is None  # not UTF-8


async def test_a_cancelled_read_loses_no_publish() -> None:
    """amqtt wraps reads in its own timeout: a publish being handed over when that fires must be
    handed over once, and amqtt must still get the packets after it, in order."""
    reader = asyncio.StreamReader()
    gate = asyncio.Event()
    taken: list[bytes] = []

    async def take(header: bytes, body: bytes) -> bool:
        await gate.wait()
        taken.append(header + body)
        return True

    transport = _NullTransport()
    framed = FramedReader(
        reader, transport, replay=b"", max_packet=1024, keep_alive=0, client_id="c", take=take
    )
    publish = _publish_packet("t", b"1", qos=1, packet_id=1)
    ping = b"\xc0\x00"
    reader.feed_data(publish + ping)
    first = asyncio.ensure_future(framed.read(1))
    await asyncio.sleep(0.05)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    gate.set()
    assert await framed.read(2) == ping
    assert taken == [publish]


class _NullTransport(asyncio.WriteTransport):
    def is_closing(self) -> bool:
        return False

    def abort(self) -> None:
        pass
