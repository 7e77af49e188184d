"""The embedded amqtt broker: who may connect, and what a device may publish, subscribe to and read.

Real broker on a free port, real paho clients. On MQTT 3.1.1 a denied PUBLISH still gets its
PUBACK, so "not delivered" is checked at a second client behind a marker: a connection's
packets are handled in order, so once a marker sent after the forbidden message has arrived,
the forbidden one would have arrived first.
"""

from __future__ import annotations

import secrets

import pytest

from tests.broker.embedded_support import (
    BAD_CREDENTIALS,
    CLIENT_ID_REJECTED,
    NOT_AUTHORIZED,
    SERVICE_PASSWORD,
    SERVICE_USER,
    UNSUPPORTED_PROTOCOL,
    Clients,
    Device,
    Registry,
)
from tests.support.mosquitto import V5


@pytest.fixture
def b(registry: Registry) -> Device:
    return registry.add()


# ---- connecting ---------------------------------------------------------------------------------


@pytest.mark.parametrize("with_username", [False, True])
async def test_anonymous_client_is_refused(clients: Clients, a: Device, with_username: bool) -> None:
    probe = clients.make(a.id if with_username else None, None, client_id=a.id)
    assert not await probe.connect()
    assert str(probe.connack) == NOT_AUTHORIZED


@pytest.mark.parametrize("case", ["wrong secret", "unknown device", "service, wrong password"])
async def test_wrong_credentials_are_refused(clients: Clients, a: Device, case: str) -> None:
    stranger = secrets.token_hex(8)
    username, password, client_id = {
        "wrong secret": (a.id, a.secret + "x", a.id),
        "unknown device": (stranger, a.secret, stranger),
        "service, wrong password": (SERVICE_USER, "guess", "svc-guess"),
    }[case]
    probe = clients.make(username, password, client_id=client_id)
    assert not await probe.connect()
    assert str(probe.connack) == BAD_CREDENTIALS


async def test_registry_failure_is_not_reported_as_wrong_secret(
    clients: Clients, registry: Registry, a: Device
) -> None:
    registry.broken = True
    probe = clients.device(a)
    assert not await probe.connect()
    assert str(probe.connack) == "Server unavailable"


async def test_mqtt5_client_is_told_the_protocol_is_unsupported(clients: Clients, a: Device) -> None:
    # amqtt 0.12 speaks MQTT 3.1.1 only (amqtt/mqtt/protocol/broker_handler.py, protocol level 4)
    probe = clients.device(a, protocol=V5)
    assert not await probe.connect()
    assert str(probe.connack) == UNSUPPORTED_PROTOCOL


@pytest.mark.parametrize("pattern", ["{b}", "{b}-sensor", "sensor", "{a}x", "x-{a}"])
async def test_client_id_not_derived_from_the_device_id_is_refused(
    clients: Clients, a: Device, b: Device, pattern: str
) -> None:
    probe = clients.device(a, client_id=pattern.format(a=a.id, b=b.id))
    assert not await probe.connect()
    assert str(probe.connack) == CLIENT_ID_REJECTED


@pytest.mark.parametrize("suffix", ["", "-sensor-1"])
async def test_device_may_use_its_id_or_a_suffixed_id(clients: Clients, a: Device, suffix: str) -> None:
    assert await clients.device(a, client_id=a.id + suffix).connect()


async def test_client_id_held_by_another_account_is_refused(clients: Clients, a: Device) -> None:
    service = clients.make(SERVICE_USER, SERVICE_PASSWORD, client_id=f"{a.id}-ops")
    assert await service.connect()
    probe = clients.device(a, client_id=f"{a.id}-ops")
    assert not await probe.connect()
    assert str(probe.connack) == CLIENT_ID_REJECTED


async def test_failed_login_cannot_take_over_a_live_session(clients: Clients, a: Device, b: Device) -> None:
    # amqtt alone lets this CONNECT close the victim and publish the attacker's will unchecked
    service = await clients.service("#")
    victim = await clients.connected(a, persistent=True)
    attacker = clients.make("nobody", "guess", client_id=a.id, persistent=True, will=f"{b.prefix}/cmd")
    assert not await attacker.connect()
    assert str(attacker.connack) == BAD_CREDENTIALS
    await victim.publish(f"{a.prefix}/alive")
    await service.expect(f"{a.prefix}/alive")
    assert victim.disconnect_reason is None
    assert service.received() == [(f"{a.prefix}/alive", b"x")]


async def test_will_on_another_devices_topic_is_refused(clients: Clients, a: Device, b: Device) -> None:
    probe = clients.device(a, will=f"{b.prefix}/status")
    assert not await probe.connect()
    assert str(probe.connack) == NOT_AUTHORIZED


async def test_will_in_own_namespace_is_published_on_abnormal_disconnect(clients: Clients, a: Device) -> None:
    service = await clients.service("#")
    probe = clients.device(a, will=f"{a.prefix}/status")
    assert await probe.connect()
    probe.abort()
    await service.expect(f"{a.prefix}/status")


# ---- publishing, subscribing, retained messages ---------------------------------------------------


async def test_device_publishes_in_its_namespace_and_a_service_receives_it(
    clients: Clients, a: Device
) -> None:
    service = await clients.service("#")
    device = await clients.connected(a)
    await device.publish(f"{a.prefix}/temp", b"21.5")
    await service.expect(f"{a.prefix}/temp")
    assert service.received() == [(f"{a.prefix}/temp", b"21.5")]


async def test_publish_outside_the_namespace_is_dropped(clients: Clients, a: Device, b: Device) -> None:
    service = await clients.service("#")
    device = await clients.connected(a)
    for topic in (f"{b.prefix}/temp", f"{a.prefix}x/temp", "devices", "other/temp"):
        await device.publish(topic, b"forbidden")
    await device.publish(f"{a.prefix}/marker")
    await service.expect(f"{a.prefix}/marker")
    assert service.received() == [(f"{a.prefix}/marker", b"x")]


FOREIGN_FILTERS = ["{b}/temp", "{b}/#", "#", "+/{b_id}/#", "devices/+/temp", "$share/g/devices/#", "$SYS/#"]


@pytest.mark.parametrize("pattern", FOREIGN_FILTERS)
async def test_device_cannot_subscribe_outside_its_namespace(
    clients: Clients, a: Device, b: Device, pattern: str
) -> None:
    service = await clients.service("#")
    spy = await clients.connected(a, f"{a.prefix}/#")
    assert not await spy.subscribe(pattern.format(b=b.prefix, b_id=b.id))
    other = await clients.connected(b)
    await other.publish(f"{b.prefix}/temp", b"private")
    await service.expect(f"{b.prefix}/temp")
    # sent after the private message was broadcast, so it reaches the spy after it would have
    await spy.publish(f"{a.prefix}/marker")
    await spy.expect(f"{a.prefix}/marker")
    assert spy.received() == [(f"{a.prefix}/marker", b"x")]


async def test_retained_message_of_another_device_is_not_delivered(
    clients: Clients, a: Device, b: Device
) -> None:
    # amqtt replays, to every new connection, the retained messages matching any filter anyone
    # holds (amqtt/broker.py, _handle_client_session): the service's '#' would leak them all
    await clients.service("#")
    owner = await clients.connected(a)
    await owner.publish(f"{a.prefix}/state", b"secret", retain=True)
    other = await clients.connected(b, f"{b.prefix}/#")
    assert not await other.subscribe(f"{a.prefix}/state")
    await other.publish(f"{b.prefix}/marker")
    await other.expect(f"{b.prefix}/marker")
    assert other.received() == [(f"{b.prefix}/marker", b"x")]
    late = await clients.service(f"{a.prefix}/state")  # it was retained all along
    await late.expect(f"{a.prefix}/state")


async def test_service_may_not_use_shared_subscriptions(clients: Clients) -> None:
    # amqtt 0.12 has no $share: granting it would deliver nothing, silently
    service = await clients.service()
    assert not await service.subscribe("$share/ingest/devices/#")
    assert await service.subscribe("devices/#")
