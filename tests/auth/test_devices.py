"""/api/v1/devices: create, list, read, delete, rotate; who may see what; secrets shown only once."""

from __future__ import annotations

import asyncio
import re
import shlex
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import structlog
from sqlalchemy.exc import OperationalError

from sensorcloud.auth import devices_service
from sensorcloud.auth.devices_registry import device_registry
from sensorcloud.broker.acl import DeviceIdentity
from sensorcloud.core import db
from tests.auth.conftest import app_of
from tests.auth.devices_helpers import (
    DEVICES,
    LISTED_KEYS,
    CredentialStore,
    HangingListener,
    RecordingListener,
    create_device,
)
from tests.conftest import AppFactory, bearer, login, make_admin, register

CREATED_KEYS = LISTED_KEYS | {"secret", "mqtt", "publish_example"}


async def _user(client: httpx.AsyncClient, name: str = "alice") -> tuple[int, str]:
    user = await register(client, name)
    return int(user["id"]), str((await login(client, name))["auth_token"])


async def test_create_returns_credentials_once_with_default_prefix(client: httpx.AsyncClient) -> None:
    user_id, token = await _user(client)
    response = await client.post(DEVICES, json={"name": "  kitchen  "}, headers=bearer(token))
    assert response.status_code == 201, response.text
    device = response.json()
    assert set(device) == CREATED_KEYS
    assert re.fullmatch(r"[0-9a-f]{16}", device["id"])
    assert device["name"] == "kitchen"
    assert device["owner_id"] == user_id
    assert device["topic_prefix"] == f"devices/{device['id']}"
    assert device["secret_rotated_at"] is None
    assert len(device["secret"]) >= 40
    settings = app_of(client).state.runtime.settings
    port = settings.mqtt_port  # the broker's own address when no public one is configured
    assert device["mqtt"] == {
        "host": settings.mqtt_host,
        "port": port,
        "username": device["id"],
        "client_id": device["id"],
    }
    assert shlex.split(device["publish_example"]) == [
        "mosquitto_pub",
        *(
            "-h",
            settings.mqtt_host,
            "-p",
            str(port),
            "-u",
            device["id"],
            "-P",
            device["secret"],
            "-i",
            device["id"],
        ),
        *("-q", "1", "-t", f"devices/{device['id']}/temperature", "-m", '{"value": 21.5}'),
    ]
    fetched = await client.get(f"{DEVICES}/{device['id']}", headers=bearer(token))
    assert fetched.status_code == 200
    assert fetched.json() == {k: device[k] for k in LISTED_KEYS}
    assert device["secret"] not in fetched.text


async def test_ids_and_secrets_differ_per_device(client: httpx.AsyncClient) -> None:
    _, token = await _user(client)
    first = await create_device(client, token)
    second = await create_device(client, token)
    assert first["id"] != second["id"]
    assert first["secret"] != second["secret"]


async def test_connection_details_use_the_public_broker_address(app_factory: AppFactory) -> None:
    async with app_factory(mqtt_public_host="mqtt.example.org", mqtt_public_port=8883) as client:
        _, token = await _user(client)
        device = await create_device(client, token, topic_prefix="it's/a home")
    assert device["mqtt"]["host"] == "mqtt.example.org"
    assert device["mqtt"]["port"] == 8883
    words = shlex.split(device["publish_example"])
    assert words[words.index("-h") + 1] == "mqtt.example.org"
    assert words[words.index("-p") + 1] == "8883"
    # a quote or a space in a custom prefix must not break the shell command
    assert words[words.index("-t") + 1] == "it's/a home/temperature"


async def test_custom_prefix_is_kept(client: httpx.AsyncClient) -> None:
    _, token = await _user(client)
    device = await create_device(client, token, topic_prefix="home/kitchen")
    assert device["topic_prefix"] == "home/kitchen"
    assert "-t home/kitchen/temperature" in device["publish_example"].replace("'", "")


async def test_bad_names_are_refused(client: httpx.AsyncClient) -> None:
    _, token = await _user(client)
    for body in ({}, {"name": ""}, {"name": "   "}, {"name": "x" * 101}, {"name": 5}, {"name": "a", "x": 1}):
        response = await client.post(DEVICES, json=body, headers=bearer(token))
        assert response.status_code == 422, (body, response.text)
        assert response.json()["msg"].startswith("Invalid request: ")
    assert (await create_device(client, token, name="x" * 100))["name"] == "x" * 100


@pytest.mark.parametrize("route", ["list", "create", "get", "delete", "rotate"])
async def test_every_route_needs_a_valid_token(client: httpx.AsyncClient, route: str) -> None:
    _, token = await _user(client)
    device_id = (await create_device(client, token))["id"]
    method, path, body = {
        "list": ("GET", DEVICES, None),
        "create": ("POST", DEVICES, {"name": "x"}),
        "get": ("GET", f"{DEVICES}/{device_id}", None),
        "delete": ("DELETE", f"{DEVICES}/{device_id}", None),
        "rotate": ("POST", f"{DEVICES}/{device_id}/secret", None),
    }[route]
    missing = await client.request(method, path, json=body)
    assert missing.status_code == 401
    assert missing.json() == {"msg": "Missing Authorization Header"}
    bad = await client.request(method, path, json=body, headers=bearer(token[:-4] + "AAAA"))
    assert bad.status_code == 401
    # nothing happened: the device is still there, and alone
    listed = (await client.get(DEVICES, headers=bearer(token))).json()
    assert [d["id"] for d in listed["data"]] == [device_id]


async def test_listing_shows_own_devices_in_order_and_admin_all(client: httpx.AsyncClient) -> None:
    alice_id, alice = await _user(client, "alice")
    bob_id, bob = await _user(client, "bob")
    a1 = await create_device(client, alice, "a1")
    b1 = await create_device(client, bob, "b1")
    a2 = await create_device(client, alice, "a2")
    admin = (await make_admin(client))["auth_token"]

    mine = await client.get(DEVICES, headers=bearer(alice))
    assert mine.status_code == 200
    assert mine.json()["total"] == 2
    assert [d["name"] for d in mine.json()["data"]] == ["a1", "a2"]
    assert all(set(d) == LISTED_KEYS and d["owner_id"] == alice_id for d in mine.json()["data"])
    everyone = await client.get(DEVICES, headers=bearer(admin))
    assert [d["name"] for d in everyone.json()["data"]] == ["a1", "b1", "a2"]
    assert everyone.json()["data"][1]["owner_id"] == bob_id
    for listing in (mine, everyone):
        for device in (a1, a2, b1):
            assert device["secret"] not in listing.text
        assert "secret_hash" not in listing.text
    page = await client.get(DEVICES, params={"limit": 1, "offset": 1}, headers=bearer(admin))
    assert page.json() == {"data": [everyone.json()["data"][1]], "total": 3}
    assert (await client.get(DEVICES, params={"limit": 0}, headers=bearer(admin))).status_code == 422
    nothing = await client.get(DEVICES, headers=bearer((await make_admin(client, "carol"))["auth_token"]))
    assert nothing.json()["total"] == 3  # an admin without devices still sees all


async def test_another_users_device_is_not_found(client: httpx.AsyncClient) -> None:
    _, alice = await _user(client, "alice")
    _, bob = await _user(client, "bob")
    device = await create_device(client, alice)
    path = f"{DEVICES}/{device['id']}"
    for method, suffix in (("GET", ""), ("DELETE", ""), ("POST", "/secret")):
        response = await client.request(method, path + suffix, headers=bearer(bob))
        assert response.status_code == 404, (method, response.text)
        assert response.json() == {"msg": "Device does not exist."}
    assert (await client.get(DEVICES, headers=bearer(bob))).json() == {"data": [], "total": 0}
    # untouched by bob's attempts
    assert (await client.get(path, headers=bearer(alice))).json()["secret_rotated_at"] is None


@pytest.mark.parametrize("device_id", ["0123456789abcdef", "0123456789ABCDEF", "zz", "0" * 17, "%20"])
async def test_unknown_or_malformed_ids_are_not_found(client: httpx.AsyncClient, device_id: str) -> None:
    _, token = await _user(client)
    for method, suffix in (("GET", ""), ("DELETE", ""), ("POST", "/secret")):
        response = await client.request(method, f"{DEVICES}/{device_id}{suffix}", headers=bearer(token))
        assert response.status_code == 404, (method, response.text)


async def test_delete_removes_the_device(client: httpx.AsyncClient) -> None:
    _, token = await _user(client)
    keep = await create_device(client, token, "keep")
    gone = await create_device(client, token, "gone")
    response = await client.delete(f"{DEVICES}/{gone['id']}", headers=bearer(token))
    assert response.status_code == 204
    assert response.content == b""
    assert (await client.get(f"{DEVICES}/{gone['id']}", headers=bearer(token))).status_code == 404
    assert (await client.delete(f"{DEVICES}/{gone['id']}", headers=bearer(token))).status_code == 404
    listed = (await client.get(DEVICES, headers=bearer(token))).json()
    assert [d["id"] for d in listed["data"]] == [keep["id"]]
    # its prefix is free again
    assert (await create_device(client, token, topic_prefix=gone["topic_prefix"]))["name"] == "sensor"


async def test_rotate_returns_a_new_secret(client: httpx.AsyncClient) -> None:
    _, token = await _user(client)
    device = await create_device(client, token, topic_prefix="home/hall")
    response = await client.post(f"{DEVICES}/{device['id']}/secret", headers=bearer(token))
    assert response.status_code == 200, response.text
    rotated = response.json()
    assert set(rotated) == CREATED_KEYS
    assert rotated["secret"] != device["secret"]
    assert rotated["secret_rotated_at"] is not None
    assert rotated["secret_rotated_at"] >= device["created_at"]
    assert {k: rotated[k] for k in ("id", "name", "owner_id", "topic_prefix", "created_at", "mqtt")} == {
        k: device[k] for k in ("id", "name", "owner_id", "topic_prefix", "created_at", "mqtt")
    }
    assert rotated["secret"] in rotated["publish_example"]
    fetched = await client.get(f"{DEVICES}/{device['id']}", headers=bearer(token))
    assert fetched.json()["secret_rotated_at"] == rotated["secret_rotated_at"]


async def test_admin_may_read_rotate_and_delete_any_device(client: httpx.AsyncClient) -> None:
    alice_id, alice = await _user(client)
    admin = (await make_admin(client))["auth_token"]
    device = await create_device(client, alice)
    path = f"{DEVICES}/{device['id']}"
    assert (await client.get(path, headers=bearer(admin))).json()["owner_id"] == alice_id
    rotated = await client.post(f"{path}/secret", headers=bearer(admin))
    assert rotated.status_code == 200
    assert rotated.json()["owner_id"] == alice_id  # rotating does not take the device over
    assert (await client.delete(path, headers=bearer(admin))).status_code == 204
    assert (await client.get(path, headers=bearer(alice))).status_code == 404


async def test_listeners_are_told_and_a_failing_one_does_not_fail_the_request(
    client: httpx.AsyncClient,
) -> None:
    failing, recording = RecordingListener(fail=True), RecordingListener()
    app_of(client).state.runtime.device_listeners.extend([failing, recording])
    _, token = await _user(client)
    device = await create_device(client, token, topic_prefix="home/x")
    path = f"{DEVICES}/{device['id']}"
    rotated = (await client.post(f"{path}/secret", headers=bearer(token))).json()
    assert (await client.delete(path, headers=bearer(token))).status_code == 204

    identity: Any = recording.calls[0][1]
    assert (identity.device_id, identity.topic_prefix) == (device["id"], "home/x")
    assert identity.owner_id == device["owner_id"]
    assert recording.calls == [
        ("saved", identity, device["secret"]),
        ("removed", device["id"]),  # rotate: the old credentials go first
        ("saved", identity, rotated["secret"]),
        ("removed", device["id"]),
    ]
    assert failing.calls == recording.calls


async def test_listener_failures_are_logged_and_a_hanging_one_is_cut_off(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(devices_service, "LISTENER_TIMEOUT", 0.1)
    hanging, failing = HangingListener(), RecordingListener(fail=True)
    app_of(client).state.runtime.device_listeners.extend([hanging, failing])
    _, token = await _user(client)
    with structlog.testing.capture_logs() as logs:
        device = await asyncio.wait_for(create_device(client, token), timeout=5)
    failures = [e for e in logs if e["event"] == "device listener failed"]
    assert [(e["listener"], e["change"]) for e in failures] == [
        ("HangingListener", "device_saved"),
        ("RecordingListener", "device_saved"),
    ]
    assert device["secret"] not in repr(logs)
    assert len(failing.calls) == 1


async def test_a_credential_store_that_cannot_be_reached_fails_the_change_and_nothing_changes(
    client: httpx.AsyncClient,
) -> None:
    """Mosquitto's dynsec holds the only usable copy of a secret: a device must not be created with a
    secret it does not know, nor deleted or rotated while it still accepts the old one."""
    runtime = app_of(client).state.runtime
    store, follower = CredentialStore(), RecordingListener()
    runtime.device_listeners.extend([store, follower])
    registry = device_registry(runtime)
    _, token = await _user(client)
    device = await create_device(client, token, topic_prefix="home/x")
    path = f"{DEVICES}/{device['id']}"
    store.fail, store.calls, follower.calls = True, [], []

    response = await client.post(
        DEVICES, json={"name": "new", "topic_prefix": "home/y"}, headers=bearer(token)
    )
    assert response.status_code == 503
    assert response.json()["msg"].startswith(
        "The MQTT broker could not be updated, so the device was not created"
    )
    assert [d["topic_prefix"] for d in (await client.get(DEVICES, headers=bearer(token))).json()["data"]] == [
        "home/x"
    ]
    assert [call[0] for call in store.calls] == ["saved", "removed"]  # and whatever it half-made, undone

    response = await client.post(f"{path}/secret", headers=bearer(token))
    assert response.status_code == 503
    assert "not given a new secret" in response.json()["msg"]
    assert await registry.authenticate(device["id"], device["secret"])  # the old secret still holds

    assert (await client.delete(path, headers=bearer(token))).status_code == 503
    assert (await client.get(path, headers=bearer(token))).status_code == 200
    assert follower.calls == []  # nothing happened, so nothing to tell

    store.fail = False  # the broker is back: each works, the store first
    rotated = (await client.post(f"{path}/secret", headers=bearer(token))).json()
    assert await registry.authenticate(device["id"], device["secret"]) is None
    assert await registry.authenticate(device["id"], rotated["secret"])
    assert (await client.delete(path, headers=bearer(token))).status_code == 204
    assert [call[0] for call in store.calls[-2:]] == ["saved", "removed"]  # a rotation is one save
    assert [call[0] for call in follower.calls] == ["removed", "saved", "removed"]


async def test_a_credential_store_that_hangs_is_cut_off_and_fails_the_change(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(devices_service, "LISTENER_TIMEOUT", 0.1)
    hanging = HangingListener()
    hanging.holds_credentials = True  # type: ignore[attr-defined]
    app_of(client).state.runtime.device_listeners.append(hanging)
    _, token = await _user(client)
    response = await asyncio.wait_for(
        client.post(DEVICES, json={"name": "x"}, headers=bearer(token)), timeout=5
    )
    assert response.status_code == 503
    assert (await client.get(DEVICES, headers=bearer(token))).json()["total"] == 0


class RegistryOutage:
    """The registry's database going away right after the broker (a credential store added to the
    app, `store`) first took a rotated secret: the next `failures` transactions of the device service
    fail as a lost connection does."""

    def __init__(self, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, failures: int) -> None:
        self.failures, self.left, self.armed = failures, 0, False
        real = db.transaction

        @asynccontextmanager
        async def transaction(sessions: Any) -> AsyncIterator[Any]:
            if self.left:
                self.left -= 1
                raise OperationalError(
                    "UPDATE devices ...", None, ConnectionError("server closed the connection")
                )
            async with real(sessions) as session:
                yield session

        monkeypatch.setattr("sensorcloud.auth.devices_service.transaction", transaction)
        monkeypatch.setattr(devices_service, "SAVE_RETRY_FIRST_S", 0.01)
        outage = self

        class Store(CredentialStore):
            async def device_saved(self, identity: DeviceIdentity, secret: str) -> None:
                await super().device_saved(identity, secret)
                if not outage.armed:  # from now on, until the failures are spent
                    outage.armed, outage.left = True, outage.failures

        self.store = Store()
        app_of(client).state.runtime.device_listeners.append(self.store)


async def test_rotation_outlives_a_short_registry_outage_after_the_broker(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, token = await _user(client)
    device = await create_device(client, token, topic_prefix="home/r")
    outage = RegistryOutage(client, monkeypatch, failures=devices_service.SAVE_ATTEMPTS - 1)
    response = await client.post(f"{DEVICES}/{device['id']}/secret", headers=bearer(token))
    assert response.status_code == 200, response.text
    assert outage.left == 0  # it failed that often, then saved
    secret = response.json()["secret"]
    assert outage.store.calls[-1][2] == secret  # the broker and the registry hold the same new secret
    registry = device_registry(app_of(client).state.runtime)
    assert await registry.authenticate(device["id"], secret)
    assert await registry.authenticate(device["id"], device["secret"]) is None


async def test_rotation_the_registry_cannot_save_is_a_503_that_says_to_rotate_again(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, token = await _user(client)
    device = await create_device(client, token, topic_prefix="home/s")
    outage = RegistryOutage(client, monkeypatch, failures=devices_service.SAVE_ATTEMPTS)
    with structlog.testing.capture_logs() as logs:
        response = await client.post(f"{DEVICES}/{device['id']}/secret", headers=bearer(token))
    assert response.status_code == 503
    assert response.json() == {"msg": devices_service.ROTATION_NOT_SAVED}
    assert "Rotate its secret again" in response.json()["msg"]
    assert [e["event"] for e in logs].count("saving a rotated device secret failed; retrying") == (
        devices_service.SAVE_ATTEMPTS - 1
    )
    assert outage.store.calls[-1][2] not in repr(logs)  # the new secret is in no log line
    # the database is back: rotating again gives the device a secret both sides know
    response = await client.post(f"{DEVICES}/{device['id']}/secret", headers=bearer(token))
    assert response.status_code == 200
    assert await device_registry(app_of(client).state.runtime).authenticate(
        device["id"], response.json()["secret"]
    )
    assert outage.store.calls[-1][2] == response.json()["secret"]
