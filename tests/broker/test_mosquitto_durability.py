"""What outlives a restart: queued messages (deep queues, persistence), device credentials, DynsecSync."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from paho.mqtt.enums import MQTTProtocolVersion

from sensorcloud.broker.acl import DeviceIdentity
from sensorcloud.broker.dynsec import DynsecSync
from sensorcloud.broker.mosquitto_config import init_dynsec, render_mosquitto_conf
from tests.support.mosquitto import V5, V311, Probe, TestBroker, start_test_broker, until

PROTOCOLS = [pytest.param(V311, id="mqtt311"), pytest.param(V5, id="mqtt5")]
BACKLOG = 5000  # five times Mosquitto's default max_queued_messages


@pytest.fixture
def broker() -> Iterator[TestBroker]:
    server = start_test_broker()
    yield server
    server.remove()


async def add_device(broker: TestBroker) -> tuple[DeviceIdentity, str]:
    device_id = f"q-{secrets.token_hex(4)}"
    identity, secret = DeviceIdentity(device_id, 1, f"devices/{device_id}"), secrets.token_urlsafe(18)
    async with DynsecSync("127.0.0.1", broker.port, broker.admin_user, broker.admin_password) as sync:
        await sync.device_saved(identity, secret)
    return identity, secret


def ingest(broker: TestBroker, protocol: MQTTProtocolVersion) -> Probe:
    """An ingest replica's session: persistent, and never clean at connect.

    With MQTT 5 that includes the first connect: Mosquitto 2.0.11 keeps a clean_start=1 session
    (with an expiry) in memory but leaves it out of mosquitto.db, so a broker restart loses it.
    """
    user, password = broker.service_user, broker.service_password
    return Probe(broker.port, user, password, client_id="ingest-1", protocol=protocol, persistent=True)


async def publish_while_ingest_is_away(broker: TestBroker, protocol: MQTTProtocolVersion, count: int) -> None:
    identity, secret = await add_device(broker)
    subscriber = ingest(broker, protocol)
    try:
        assert await subscriber.connect(clean=False)
        assert await subscriber.subscribe(f"{identity.topic_prefix}/#")
    finally:
        await subscriber.close()  # a restarting ingest replica: its session stays on the broker
    device = Probe(broker.port, identity.device_id, secret, client_id=identity.device_id)
    try:
        assert await device.connect()
        await device.publish_many(f"{identity.topic_prefix}/r", count)
    finally:
        await device.close()


async def drain(broker: TestBroker, protocol: MQTTProtocolVersion, count: int) -> list[int]:
    back = ingest(broker, protocol)
    try:
        assert await back.connect(clean=False)
        await until(lambda: len(back.received()) >= count, within=15)
        return sorted(int(payload) for _, payload in back.received())
    finally:
        await back.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_offline_subscriber_gets_whole_backlog(
    broker: TestBroker, protocol: MQTTProtocolVersion
) -> None:
    await publish_while_ingest_is_away(broker, protocol, BACKLOG)
    assert await drain(broker, protocol, BACKLOG) == list(range(BACKLOG))


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_restart_keeps_devices_and_queued_messages(
    broker: TestBroker, protocol: MQTTProtocolVersion
) -> None:
    await publish_while_ingest_is_away(broker, protocol, 100)
    broker.restart()  # SIGTERM: mosquitto writes mosquitto.db; dynsec rewrote its file at each change
    assert await drain(broker, protocol, 100) == list(range(100))
    async with DynsecSync("127.0.0.1", broker.port, broker.admin_user, broker.admin_password) as sync:
        assert len(await sync.device_clients()) == 1, "device credentials lost in the restart"


async def test_dynsec_sync_outlives_a_broker_restart(broker: TestBroker) -> None:
    async with DynsecSync("127.0.0.1", broker.port, broker.admin_user, broker.admin_password) as sync:
        broker.restart()
        device_id = f"r-{secrets.token_hex(4)}"
        identity, secret = DeviceIdentity(device_id, 1, f"devices/{device_id}"), secrets.token_urlsafe(18)
        await sync.device_saved(identity, secret)  # waits for paho's reconnect, then applies
    device = Probe(broker.port, device_id, secret, client_id=device_id)
    try:
        assert await device.connect()
    finally:
        await device.close()


def test_config_refuses_anonymous_and_raises_limits(tmp_path: Path) -> None:
    conf = render_mosquitto_conf(18999, tmp_path / "data", tmp_path / "data" / "dynsec.json")
    lines = set(conf.splitlines())
    assert {"allow_anonymous false", "per_listener_settings false", "listener 18999 127.0.0.1"} <= lines
    assert {"max_queued_messages 1000000", "persistence true", "autosave_interval 60"} <= lines
    assert f"plugin_opt_config_file {tmp_path}/data/dynsec.json" in lines
    assert "persistence false" in render_mosquitto_conf(1, tmp_path, tmp_path / "d.json", persistence=False)
    with pytest.raises(ValueError, match="one line"):
        render_mosquitto_conf(1, tmp_path, tmp_path / "d.json", bind="127.0.0.1\nallow_anonymous true")


def test_dynsec_store_is_private_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "dynamic-security.json"
    init_dynsec(path, "admin", "a-password", "service", "s-password")
    assert path.stat().st_mode & 0o077 == 0
    before = path.read_bytes()
    with pytest.raises(FileExistsError):
        init_dynsec(path, "admin", "other", "service", "other")
    assert path.read_bytes() == before
    assert b"a-password" not in before
