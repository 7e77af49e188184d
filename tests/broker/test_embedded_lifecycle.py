"""The embedded broker over time: removal, take-over, limits, keep-alive, shutdown, throughput."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from pydantic import SecretStr

from sensorcloud.broker.acl import DeviceListener
from sensorcloud.broker.embedded import PACKET_OVERHEAD, EmbeddedBroker
from sensorcloud.core.settings import Settings
from tests.broker.embedded_support import (
    BAD_CREDENTIALS,
    Clients,
    Device,
    Registry,
    raw_connect,
    read_until_closed,
    running_broker,
)
from tests.support.mosquitto import until
from tests.support.ports import free_port

CONNACK_ACCEPTED = b"\x20\x02\x00\x00"


async def test_removed_device_is_disconnected_at_once_and_cannot_reconnect(
    broker: EmbeddedBroker, registry: Registry, clients: Clients, a: Device
) -> None:
    service = await clients.service("#")
    live = await clients.connected(a, will=f"{a.prefix}/status")
    registry.remove(a.id)
    started = time.monotonic()
    await broker.device_removed(a.id)
    assert await live.wait_disconnected(1.0)
    elapsed = time.monotonic() - started
    print(f"\ndevice_removed -> client saw the disconnect: {elapsed * 1000:.1f} ms")
    assert elapsed < 1.0
    again = clients.device(a)
    assert not await again.connect()
    assert str(again.connack) == BAD_CREDENTIALS
    # no will for a removed device: amqtt had queued it (if at all) before device_removed returned
    await service.publish("ops/marker")
    await service.expect("ops/marker")
    assert service.received() == [("ops/marker", b"x")]


async def test_device_removed_while_its_connect_is_checked_is_refused(
    broker: EmbeddedBroker, registry: Registry, clients: Clients, a: Device
) -> None:
    registry.hold = asyncio.Event()
    probe = clients.device(a)
    connecting = asyncio.create_task(probe.connect())
    await asyncio.wait_for(registry.waiting.wait(), 5)
    # the registry answers with the old identity (its lookup started before the removal)
    await broker.device_removed(a.id)
    registry.hold.set()
    assert not await connecting
    assert str(probe.connack) == BAD_CREDENTIALS


async def test_second_connection_of_a_device_takes_over(clients: Clients, a: Device) -> None:
    service = await clients.service("#")
    first = await clients.connected(a, will=f"{a.prefix}/status")
    second = await clients.connected(a)
    assert await first.wait_disconnected(1.0)
    await second.publish(f"{a.prefix}/after")
    await service.expect(f"{a.prefix}/after")
    # taken over is an abnormal end for the first connection (MQTT-3.1.4-2): its will goes out
    assert (f"{a.prefix}/status", b"will") in service.received()


async def test_oversized_packet_closes_the_connection(registry: Registry, a: Device) -> None:
    async with running_broker(registry, max_packet_bytes=1024) as broker:
        clients = Clients(broker.port)
        try:
            service = await clients.service("#")
            device = await clients.connected(a)
            await device.publish(f"{a.prefix}/small", b"x" * 900)
            device.client.publish(f"{a.prefix}/big", b"x" * 2000, qos=1)
            assert await device.wait_disconnected(2.0)
            assert service.received() == [(f"{a.prefix}/small", b"x" * 900)]
        finally:
            await clients.close()


async def test_silent_client_is_closed_after_one_and_a_half_keep_alives(
    broker: EmbeddedBroker, a: Device
) -> None:
    with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as sock:
        sock.sendall(raw_connect(a.id, a.id, a.secret, keep_alive=1))
        started = time.monotonic()
        received = await asyncio.to_thread(read_until_closed, sock)
        elapsed = time.monotonic() - started
    assert received == CONNACK_ACCEPTED
    assert 1.4 <= elapsed < 3.0, elapsed


async def test_first_packet_other_than_connect_is_not_served(broker: EmbeddedBroker) -> None:
    with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as sock:
        sock.sendall(b"\x82\x06\x00\x01\x00\x01a\x00")  # SUBSCRIBE to "a" before any CONNECT
        assert await asyncio.to_thread(read_until_closed, sock) == b""


async def test_connection_that_sends_nothing_is_closed(registry: Registry) -> None:
    async with running_broker(registry, connect_timeout_s=0.3) as broker:
        with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as sock:
            started = time.monotonic()
            assert await asyncio.to_thread(read_until_closed, sock) == b""
            assert time.monotonic() - started < 2.0


async def test_stop_disconnects_clients_and_closes_the_port(registry: Registry, a: Device) -> None:
    async with running_broker(registry) as broker:
        clients = Clients(broker.port)
        device = await clients.connected(a)
        port = broker.port
    try:
        assert await device.wait_disconnected(1.0)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    finally:
        await clients.close()


async def test_from_settings_takes_port_service_account_and_payload_limit(
    registry: Registry, a: Device
) -> None:
    settings = Settings(
        mqtt_host="127.0.0.1",
        mqtt_port=free_port(),
        mqtt_service_username="ingest",
        mqtt_service_password=SecretStr("ingest-password"),
        ingest_max_payload_bytes=1000,
    )
    broker = EmbeddedBroker.from_settings(settings, registry)
    listener: DeviceListener = broker  # what the runtime keeps it as
    await broker.start()
    clients = Clients(settings.mqtt_port)
    try:
        service = clients.make("ingest", "ingest-password", client_id="ingest-1")
        assert await service.connect()
        assert await service.subscribe("#")
        device = await clients.connected(a)
        await listener.device_saved(a.identity, a.secret)  # nothing to do: the device stays
        await device.publish(f"{a.prefix}/max", b"x" * 1000)
        await service.expect(f"{a.prefix}/max")
        device.client.publish(f"{a.prefix}/over", b"x" * (1000 + PACKET_OVERHEAD), qos=1)
        assert await device.wait_disconnected(2.0)
    finally:
        await clients.close()
        await broker.stop()


async def test_qos1_throughput_one_publisher_one_subscriber(clients: Clients, a: Device) -> None:
    """A measurement, printed: 5,000 QoS 1 messages, paho device -> broker -> paho service."""
    count = 5000
    service = await clients.service(f"{a.prefix}/#")
    device = await clients.connected(a)
    started = time.monotonic()
    # the broker shares this event loop: wait in a thread, not by polling 5,000 publish handles
    sent = [device.client.publish(f"{a.prefix}/t", str(i).encode(), qos=1) for i in range(count)]
    await asyncio.to_thread(sent[-1].wait_for_publish, 60)
    acked = time.monotonic() - started
    await until(lambda: len(service.messages) >= count, within=60)
    elapsed = time.monotonic() - started
    print(
        f"\nQoS 1, {count} messages: all PUBACKed after {acked:.2f} s, all delivered after "
        f"{elapsed:.2f} s = {count / elapsed:.0f} msg/s end to end"
    )
    assert all(info.is_published() for info in sent)
    assert sorted(int(p) for _, p in service.received()) == list(range(count))
