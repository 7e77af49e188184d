"""Mosquitto with the project's config, devices written by DynsecSync, probed by real paho clients.

On MQTT 3.1.1 a denied PUBLISH still gets its PUBACK, so "not delivered" is always checked at a
second client, behind a marker: the broker handles one connection's packets in order, so once a
marker sent after the forbidden message has arrived, the forbidden one would have arrived first.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import pytest
from paho.mqtt.enums import MQTTProtocolVersion

from sensorcloud.broker.acl import DeviceIdentity
from sensorcloud.broker.dynsec import DynsecError, DynsecSync
from tests.support.mosquitto import V5, V311, Probe, TestBroker, start_test_broker
from tests.support.ports import free_port

PROTOCOLS = [pytest.param(V311, id="mqtt311"), pytest.param(V5, id="mqtt5")]


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


class ProbeFactory(Protocol):
    def __call__(self, username: str | None = ..., password: str | None = ..., **kw: Any) -> Probe: ...


@pytest.fixture(scope="module")
def broker() -> Iterator[TestBroker]:
    server = start_test_broker()
    yield server
    server.remove()


@pytest.fixture
async def dynsec(broker: TestBroker) -> AsyncIterator[DynsecSync]:
    # as the auth service builds it from SENSORCLOUD_MQTT_ADMIN_URL
    url = f"mqtt://{quote(broker.admin_user)}:{quote(broker.admin_password, safe='')}@127.0.0.1:{broker.port}"
    async with DynsecSync.from_url(url) as sync:
        yield sync


def new_device(name: str) -> Device:
    # Per-test ids and namespaces: tests share one broker and never see each other's devices.
    device_id = f"{name}-{secrets.token_hex(4)}"
    return Device(DeviceIdentity(device_id, 1, f"devices/{device_id}"), secrets.token_urlsafe(18))


@pytest.fixture
async def devices(dynsec: DynsecSync) -> tuple[Device, Device]:
    a, b = new_device("a"), new_device("b")
    for device in (a, b):
        await dynsec.device_saved(device.identity, device.secret)
    return a, b


@pytest.fixture
async def probe(broker: TestBroker) -> AsyncIterator[ProbeFactory]:
    made: list[Probe] = []

    def make(username: str | None = None, password: str | None = None, **kw: Any) -> Probe:
        made.append(Probe(broker.port, username, password, **kw))
        return made[-1]

    yield make
    for p in made:
        await p.close()


def as_device(probe: ProbeFactory, device: Device, **kw: Any) -> Probe:
    return probe(device.id, device.secret, client_id=kw.pop("client_id", device.id), **kw)


async def service_watching(probe: ProbeFactory, broker: TestBroker, topic_filter: str = "#") -> Probe:
    service = probe(broker.service_user, broker.service_password)
    assert await service.connect()
    assert await service.subscribe(topic_filter)
    return service


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_only_known_credentials_connect(
    probe: ProbeFactory, devices: tuple[Device, Device], protocol: MQTTProtocolVersion
) -> None:
    a, _ = devices
    assert not await probe(protocol=protocol).connect(), "anonymous client accepted"
    assert not await probe(a.id, "wrong", client_id=a.id, protocol=protocol).connect()
    assert not await probe("nobody", a.secret, protocol=protocol).connect()
    assert await as_device(probe, a, protocol=protocol).connect()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_device_publishes_only_in_its_namespace(
    probe: ProbeFactory, broker: TestBroker, devices: tuple[Device, Device], protocol: MQTTProtocolVersion
) -> None:
    a, b = devices
    everything = await service_watching(probe, broker, "#")
    shared = await service_watching(probe, broker, "$share/ingest/devices/#")
    device = as_device(probe, a, protocol=protocol)
    assert await device.connect()
    for forbidden in (f"{b.prefix}/x", "elsewhere/x", "$SYS/x", f"{a.prefix}x"):
        reason = await device.publish(forbidden)  # acknowledged all the same on 3.1.1
        assert reason == ("Not authorized" if protocol == V5 else "Success")
    await device.publish(a.prefix)
    await device.publish(f"{a.prefix}/temp", b"21.5")
    for service in (everything, shared):
        await service.expect(f"{a.prefix}/temp")
        assert service.received(f"devices/{a.id}") == [(a.prefix, b"x"), (f"{a.prefix}/temp", b"21.5")]
        assert service.received(f"devices/{b.id}") == []
        assert service.received("elsewhere") == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_device_cannot_read_other_devices(
    probe: ProbeFactory, broker: TestBroker, devices: tuple[Device, Device], protocol: MQTTProtocolVersion
) -> None:
    a, b = devices
    service = await service_watching(probe, broker)
    other = as_device(probe, b)
    assert await other.connect()
    await other.publish(f"{b.prefix}/retained", b"secret", retain=True)
    await service.expect(f"{b.prefix}/retained")

    device = as_device(probe, a, protocol=protocol)
    assert await device.connect()
    for topic_filter in (
        f"{b.prefix}/x",
        f"{b.prefix}/#",
        f"{b.prefix}/retained",
        "#",
        "devices/#",
        f"+/{b.id}/#",
        "devices/+/x",
        "$share/g/devices/#",
        f"$share/g/{b.prefix}/#",
        f"$share/g/{a.prefix}/#",
        "$SYS/#",
        "$CONTROL/dynamic-security/#",
    ):
        assert not await device.subscribe(topic_filter), f"{topic_filter} granted"
    assert await device.subscribe(f"{a.prefix}/#")
    await other.publish(f"{b.prefix}/x", b"live")
    await service.expect(f"{b.prefix}/x")
    await device.publish(f"{a.prefix}/marker")
    await device.expect(f"{a.prefix}/marker")
    assert [t for t, _ in device.received()] == [f"{a.prefix}/marker"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_will_is_published_only_in_own_namespace(
    probe: ProbeFactory, broker: TestBroker, devices: tuple[Device, Device], protocol: MQTTProtocolVersion
) -> None:
    a, b = devices
    service = await service_watching(probe, broker)
    # Each connection uses the device's (pinned) client id, so each CONNECT is handled after the
    # previous connection is gone and its will published or dropped: the wills arrive in order.
    for will in (f"{a.prefix}/first", f"{b.prefix}/status", f"{a.prefix}/last"):
        # Mosquitto 2.0.11 accepts the CONNECT whatever the will topic; the ACL applies on publish.
        connection = as_device(probe, a, protocol=protocol, will=will)
        assert await connection.connect()
        connection.abort()
    await service.expect(f"{a.prefix}/last")
    assert service.received(f"devices/{a.id}") == [
        (f"{a.prefix}/first", b"will"),
        (f"{a.prefix}/last", b"will"),
    ]
    assert service.received(f"devices/{b.id}") == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_device_cannot_take_another_client_id(
    probe: ProbeFactory, broker: TestBroker, devices: tuple[Device, Device], protocol: MQTTProtocolVersion
) -> None:
    a, b = devices
    service = await service_watching(probe, broker)
    victim = as_device(probe, b)
    assert await victim.connect()
    assert not await as_device(probe, a, client_id=b.id, protocol=protocol).connect()
    assert not await as_device(probe, a, client_id="anything-else", protocol=protocol).connect()
    await victim.publish(f"{b.prefix}/still-here")
    await service.expect(f"{b.prefix}/still-here")
    assert not await victim.wait_disconnected(within=0.1)


async def test_removed_device_is_disconnected_and_refused(
    probe: ProbeFactory, dynsec: DynsecSync, devices: tuple[Device, Device]
) -> None:
    a, b = devices
    live = as_device(probe, a)
    assert await live.connect()
    await dynsec.device_removed(a.id)
    assert await live.wait_disconnected(within=2.0), "live session survived deletion"
    assert not await as_device(probe, a).connect()
    assert a.id not in await dynsec.list_clients()
    assert await as_device(probe, b).connect()
    await dynsec.device_removed(a.id)  # idempotent: the registry may retry


async def test_rotated_secret_replaces_the_old_one(
    probe: ProbeFactory, dynsec: DynsecSync, devices: tuple[Device, Device]
) -> None:
    a, _ = devices
    live = as_device(probe, a)
    assert await live.connect()
    rotated = Device(a.identity, secrets.token_urlsafe(18))
    await dynsec.device_saved(rotated.identity, rotated.secret)
    assert await live.wait_disconnected(within=2.0), "session on the old secret survived rotation"
    assert not await as_device(probe, a).connect()
    device = as_device(probe, rotated)
    assert await device.connect()
    assert await device.subscribe(f"{a.prefix}/#")


async def test_reconciliation_removes_only_stale_devices(
    broker: TestBroker, dynsec: DynsecSync, devices: tuple[Device, Device]
) -> None:
    a, b = devices
    known = set(await dynsec.device_clients())

    async def registered() -> set[str]:
        return known - {b.id}

    assert await dynsec.remove_stale_devices(registered) == [b.id]
    clients = set(await dynsec.list_clients())
    assert {a.id, broker.admin_user, broker.service_user} <= clients
    assert b.id not in clients


async def test_service_accounts_are_not_devices(
    probe: ProbeFactory, broker: TestBroker, dynsec: DynsecSync
) -> None:
    hijack = DeviceIdentity(broker.service_user, 1, "devices/hijack")
    with pytest.raises(DynsecError, match="not a device"):
        await dynsec.device_saved(hijack, "new-secret")
    with pytest.raises(DynsecError, match="not a device"):
        await dynsec.device_removed(broker.admin_user)
    assert await service_watching(probe, broker)


async def test_dynsec_reports_bad_admin_and_unreachable_broker(broker: TestBroker) -> None:
    with pytest.raises(ValueError, match="mqtt://user:password@host:port") as raised:
        DynsecSync.from_url(f"http://admin:{broker.admin_password}@127.0.0.1:1")
    assert broker.admin_password not in str(raised.value)
    with pytest.raises(DynsecError, match="refused"):
        await DynsecSync("127.0.0.1", broker.port, broker.admin_user, "wrong", timeout=5).start()
    with pytest.raises(DynsecError, match="no MQTT connection"):
        await DynsecSync("127.0.0.1", free_port(), "x", "y", timeout=0.5).start()
    # The service account has no access to the dynsec API.
    service = DynsecSync("127.0.0.1", broker.port, broker.service_user, broker.service_password, timeout=1)
    with pytest.raises(DynsecError, match="no answer"):
        async with service:
            await service.list_clients()
