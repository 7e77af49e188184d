"""The auth service with a real Mosquitto: while the broker is away device changes fail with 503
and change nothing (no device with a secret the broker does not know, no old secret still
accepted), and work again once it is back; a device the registry does not have is removed from the
broker (auth/broker_reconcile.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from sensorcloud.app import Target, create_app
from sensorcloud.auth import broker_reconcile, devices_service
from sensorcloud.broker.acl import DeviceIdentity
from sensorcloud.broker.dynsec import DynsecSync
from sensorcloud.core.settings import Settings
from tests.auth.devices_helpers import DEVICES
from tests.conftest import bearer, login, register, running_app
from tests.support.mosquitto import Probe, TestBroker, start_test_broker


async def connects(port: int, device_id: str, secret: str) -> bool:
    probe = Probe(port, device_id, secret, client_id=device_id)
    try:
        return await probe.connect()
    finally:
        await probe.close()


def auth_settings(broker: TestBroker, database_url: str, tmp_path: Path, signing_key_file: Path) -> Settings:
    credentials = f"{quote(broker.admin_user)}:{quote(broker.admin_password, safe='')}"
    return Settings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        jwt_private_key_file=signing_key_file,
        mqtt_admin_url=f"mqtt://{credentials}@127.0.0.1:{broker.port}",
    )


@pytest.mark.postgres  # the auth service of a microservices deployment
async def test_device_changes_fail_while_mosquitto_is_away(
    pg_database_url: str, tmp_path: Path, signing_key_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(devices_service, "LISTENER_TIMEOUT", 2.0)
    broker = start_test_broker()
    try:
        app = create_app(auth_settings(broker, pg_database_url, tmp_path, signing_key_file), Target.AUTH)
        async with running_app(app) as client:
            await register(client, "alice")
            token = (await login(client, "alice"))["auth_token"]
            created = await client.post(DEVICES, json={"name": "a"}, headers=bearer(token))
            assert created.status_code == 201
            device: dict[str, Any] = created.json()
            path = f"{DEVICES}/{device['id']}"
            assert await connects(broker.port, device["id"], device["secret"])

            broker.stop()
            refused = await client.post(DEVICES, json={"name": "b"}, headers=bearer(token))
            assert refused.status_code == 503, refused.text
            assert (await client.get(DEVICES, headers=bearer(token))).json()["total"] == 1
            assert (await client.post(f"{path}/secret", headers=bearer(token))).status_code == 503
            assert (await client.delete(path, headers=bearer(token))).status_code == 503

            broker.start()  # same port, its dynsec file as it was
            assert await connects(broker.port, device["id"], device["secret"])  # nothing changed
            for _ in range(40):  # the admin connection comes back on its own
                rotated = await client.post(f"{path}/secret", headers=bearer(token))
                if rotated.status_code != 503:
                    break
                await asyncio.sleep(0.5)
            assert rotated.status_code == 200, rotated.text
            assert not await connects(broker.port, device["id"], device["secret"])
            assert await connects(broker.port, device["id"], rotated.json()["secret"])
            assert (await client.delete(path, headers=bearer(token))).status_code == 204
            assert not await connects(broker.port, device["id"], rotated.json()["secret"])
    finally:
        broker.remove()


@pytest.mark.postgres
async def test_broker_devices_the_registry_does_not_have_are_removed(
    pg_database_url: str, tmp_path: Path, signing_key_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(broker_reconcile, "RECONCILE_S", 0.2)
    broker = start_test_broker()
    settings = auth_settings(broker, pg_database_url, tmp_path, signing_key_file)
    assert settings.mqtt_admin_url is not None
    try:
        async with DynsecSync.from_url(settings.mqtt_admin_url.get_secret_value()) as admin:
            # left behind in the broker: say a deletion that raced a rotation, or a restored registry
            await admin.device_saved(DeviceIdentity("0123456789abcdef", 1, "stale/x"), "left-behind-secret")
            assert "0123456789abcdef" in await admin.device_clients()
            async with running_app(create_app(settings, Target.AUTH)) as client:
                await register(client, "alice")
                token = (await login(client, "alice"))["auth_token"]
                device = (await client.post(DEVICES, json={"name": "a"}, headers=bearer(token))).json()
                for _ in range(50):
                    if "0123456789abcdef" not in await admin.device_clients():
                        break
                    await asyncio.sleep(0.1)
                await asyncio.sleep(0.5)  # a few more rounds: the registered device must stay
                assert await admin.device_clients() == [device["id"]]
                assert await connects(broker.port, device["id"], device["secret"])
                assert not await connects(broker.port, "0123456789abcdef", "left-behind-secret")
    finally:
        broker.remove()
