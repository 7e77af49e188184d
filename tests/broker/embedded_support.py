"""The embedded broker on a free port, a dict-backed device registry, and real paho clients for it."""

from __future__ import annotations

import asyncio
import hmac
import secrets
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from sensorcloud.broker.acl import DeviceIdentity
from sensorcloud.broker.embedded import EmbeddedBroker
from tests.support.mosquitto import V311, Probe
from tests.support.ports import free_port

SERVICE_USER = "sensorcloud-service"
SERVICE_PASSWORD = secrets.token_urlsafe(24)
# paho reports MQTT 3.1.1 CONNACK codes under their MQTT 5 names
NOT_AUTHORIZED = "Not authorized"
BAD_CREDENTIALS = "Bad user name or password"
CLIENT_ID_REJECTED = "Client identifier not valid"
UNSUPPORTED_PROTOCOL = "Unsupported protocol version"


@dataclass(frozen=True)
class Device:
    identity: DeviceIdentity
    secret: str

    @property
    def id(self) -> str:
        return self.identity.device_id

    @property
    def prefix(self) -> str:
        return self.identity.topic_prefix


class Registry:
    """broker.acl.DeviceAuthenticator over a dict.

    `hold` pauses authenticate() to stage races; `broken` makes it fail like a database that is down.
    """

    def __init__(self) -> None:
        self.devices: dict[str, Device] = {}
        self.broken = False
        self.hold: asyncio.Event | None = None
        self.waiting = asyncio.Event()

    def add(self) -> Device:
        device_id = secrets.token_hex(8)  # the registry's id format: 16 hex digits
        device = Device(DeviceIdentity(device_id, 1, f"devices/{device_id}"), secrets.token_urlsafe(18))
        self.devices[device_id] = device
        return device

    def remove(self, device_id: str) -> None:
        del self.devices[device_id]

    async def authenticate(self, username: str, password: str) -> DeviceIdentity | None:
        if self.hold is not None:
            self.waiting.set()
            await self.hold.wait()
        if self.broken:
            raise ConnectionError("registry database unreachable")
        device = self.devices.get(username)
        if device is None or not hmac.compare_digest(device.secret, password):
            return None
        return device.identity


@asynccontextmanager
async def running_broker(registry: Registry, **options: Any) -> AsyncIterator[EmbeddedBroker]:
    broker = EmbeddedBroker(
        "127.0.0.1", free_port(), registry, SERVICE_USER, SecretStr(SERVICE_PASSWORD), **options
    )
    await broker.start()
    try:
        yield broker
    finally:
        await broker.stop()


class Clients:
    """paho clients (MQTT 3.1.1 unless asked) against one broker, all closed at the end."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._made: list[Probe] = []

    def make(self, username: str | None, password: str | None, **kw: Any) -> Probe:
        kw.setdefault("protocol", V311)
        self._made.append(Probe(self.port, username, password, **kw))
        return self._made[-1]

    def device(self, device: Device, client_id: str | None = None, **kw: Any) -> Probe:
        return self.make(device.id, device.secret, client_id=client_id or device.id, **kw)

    async def service(self, *filters: str) -> Probe:
        """A connected service client, subscribed to `filters`."""
        probe = self.make(SERVICE_USER, SERVICE_PASSWORD, client_id=f"svc-{secrets.token_hex(4)}")
        assert await probe.connect()
        for topic_filter in filters:
            assert await probe.subscribe(topic_filter)
        return probe

    async def connected(self, device: Device, *filters: str, **kw: Any) -> Probe:
        probe = self.device(device, **kw)
        assert await probe.connect(), probe.connack
        for topic_filter in filters:
            assert await probe.subscribe(topic_filter)
        return probe

    async def close(self) -> None:
        for probe in self._made:
            await probe.close()
            # paho closes loop_start()'s socketpair only in Client.__del__; the Probe's callbacks
            # make a reference cycle, and the gc may finalize the sockets first (ResourceWarning)
            probe.client.reinitialise()


def raw_connect(client_id: str, username: str, password: str, keep_alive: int) -> bytes:
    """A bare MQTT 3.1.1 CONNECT, for what paho will not do (go silent, send oversized packets)."""

    def text(value: str) -> bytes:
        data = value.encode()
        return len(data).to_bytes(2, "big") + data

    body = text("MQTT") + bytes([4, 0xC2]) + keep_alive.to_bytes(2, "big")
    body += text(client_id) + text(username) + text(password)
    assert len(body) < 128
    return bytes([0x10, len(body)]) + body


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the broker sends until it closes the connection (blocking; run in a thread)."""
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data
