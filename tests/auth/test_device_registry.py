"""DeviceRegistry: device credentials as the broker checks them, its cache, and the devices table."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from sensorcloud.auth.devices_registry import DeviceRegistry, device_registry
from sensorcloud.auth.devices_service import DeviceService
from sensorcloud.broker.acl import DeviceIdentity, prefixes_overlap
from sensorcloud.core.db import Base, transaction
from sensorcloud.core.errors import Conflict
from sensorcloud.core.models import import_all_models
from sensorcloud.core.tokens import Principal
from tests.auth.conftest import app_of
from tests.auth.devices_helpers import DEVICES, create_device
from tests.conftest import bearer, login, register


async def _setup(client: httpx.AsyncClient) -> tuple[Any, str, dict[str, Any]]:
    await register(client, "alice")
    token = str((await login(client, "alice"))["auth_token"])
    return app_of(client).state.runtime, token, await create_device(client, token, topic_prefix="home/a")


async def _set_secret_hash(runtime: Any, device_id: str, value: str) -> None:
    """Change the stored secret behind the service's back (another process would)."""
    async with transaction(runtime.sessions) as session:
        await session.execute(
            sa.text("UPDATE devices SET secret_hash = :h WHERE id = :i"), {"h": value, "i": device_id}
        )


async def test_right_secret_gives_the_identity_and_anything_else_none(client: httpx.AsyncClient) -> None:
    runtime, _, device = await _setup(client)
    registry = device_registry(runtime)
    identity = await registry.authenticate(device["id"], device["secret"])
    assert identity == DeviceIdentity(device["id"], device["owner_id"], "home/a")
    assert await registry.authenticate(device["id"], device["secret"] + "x") is None
    assert await registry.authenticate(device["id"], device["secret"][:-1]) is None
    assert await registry.authenticate(device["id"], "") is None
    assert await registry.authenticate("0123456789abcdef", device["secret"]) is None
    assert await registry.authenticate(device["id"].upper(), device["secret"]) is None
    assert await registry.authenticate("", device["secret"]) is None
    # still right after the failures (a wrong secret is not cached as anything)
    assert await registry.authenticate(device["id"], device["secret"]) == identity


async def test_the_registry_is_one_per_runtime_and_listens_first(client: httpx.AsyncClient) -> None:
    runtime = app_of(client).state.runtime
    registry = device_registry(runtime)
    assert device_registry(runtime) is registry
    assert runtime.device_listeners[0] is registry
    assert sum(isinstance(x, DeviceRegistry) for x in runtime.device_listeners) == 1


@pytest.mark.parametrize("cached", [False, True])
async def test_rotated_secret_is_refused_at_once(client: httpx.AsyncClient, cached: bool) -> None:
    runtime, token, device = await _setup(client)
    registry = device_registry(runtime)
    if cached:
        assert await registry.authenticate(device["id"], device["secret"]) is not None
    response = await client.post(f"{DEVICES}/{device['id']}/secret", headers=bearer(token))
    new_secret = response.json()["secret"]
    assert await registry.authenticate(device["id"], device["secret"]) is None
    identity = await registry.authenticate(device["id"], new_secret)
    assert identity is not None
    assert identity.topic_prefix == "home/a"


@pytest.mark.parametrize("cached", [False, True])
async def test_deleted_device_is_refused_at_once(client: httpx.AsyncClient, cached: bool) -> None:
    runtime, token, device = await _setup(client)
    registry = device_registry(runtime)
    if cached:
        assert await registry.authenticate(device["id"], device["secret"]) is not None
    assert (await client.delete(f"{DEVICES}/{device['id']}", headers=bearer(token))).status_code == 204
    assert await registry.authenticate(device["id"], device["secret"]) is None


async def test_right_answers_are_cached_for_the_ttl_only(client: httpx.AsyncClient) -> None:
    runtime, _, device = await _setup(client)
    registry = DeviceRegistry(runtime.sessions, cache_ttl=0.3)
    uncached = DeviceRegistry(runtime.sessions, cache_ttl=0)
    assert await registry.authenticate(device["id"], device["secret"]) is not None
    await _set_secret_hash(runtime, device["id"], "0" * 64)
    # within the TTL the cached answer stands; without a cache the change shows at once
    assert await registry.authenticate(device["id"], device["secret"]) is not None
    assert await uncached.authenticate(device["id"], device["secret"]) is None
    await asyncio.sleep(0.4)
    assert await registry.authenticate(device["id"], device["secret"]) is None


async def test_forget_drops_only_that_device(client: httpx.AsyncClient) -> None:
    runtime, token, device = await _setup(client)
    other = await create_device(client, token, topic_prefix="home/b")
    registry = DeviceRegistry(runtime.sessions, cache_ttl=60)
    for d in (device, other):
        assert await registry.authenticate(d["id"], d["secret"]) is not None
        await _set_secret_hash(runtime, d["id"], "0" * 64)
    await registry.device_removed(device["id"])
    assert await registry.authenticate(device["id"], device["secret"]) is None
    assert await registry.authenticate(other["id"], other["secret"]) is not None


async def test_device_limit_per_user(client: httpx.AsyncClient) -> None:
    user = await register(client, "alice")
    runtime = app_of(client).state.runtime
    principal = Principal(user_id=user["id"], role="user", session_id="s", token_id="t", expires_at=0)
    service = DeviceService(runtime.sessions, [], max_per_user=2)
    await service.create(principal, "one", None)
    await service.create(principal, "two", "home/two")
    with pytest.raises(Conflict, match="at most 2 devices"):
        await service.create(principal, "three", None)
    devices, total = await service.list_devices(principal, 10, 0)
    assert total == 2
    assert [d.name for d in devices] == ["one", "two"]


async def test_concurrent_overlapping_creates_let_only_one_through(client: httpx.AsyncClient) -> None:
    user = await register(client, "alice")
    runtime = app_of(client).state.runtime
    principal = Principal(user_id=user["id"], role="user", session_id="s", token_id="t", expires_at=0)
    service = DeviceService(runtime.sessions, [])
    prefixes = ["race", "race/a", "race/a/b", "race/b", "race/b/c"]
    results = await asyncio.gather(
        *(service.create(principal, p, p) for p in prefixes), return_exceptions=True
    )
    kept = [r.device.topic_prefix for r in results if not isinstance(r, BaseException)]
    assert all(isinstance(r, Conflict) for r in results if isinstance(r, BaseException)), results
    assert kept, results
    # every refused one overlaps a kept one, and no two kept ones overlap
    assert all(any(prefixes_overlap(p, k) for k in kept) for p in prefixes if p not in kept), kept
    assert not any(prefixes_overlap(a, b) for a in kept for b in kept if a != b), kept


async def test_deleting_the_owner_deletes_the_devices(client: httpx.AsyncClient) -> None:
    runtime, _, device = await _setup(client)
    async with transaction(runtime.sessions) as session:
        await session.execute(sa.text("DELETE FROM users WHERE id = :i"), {"i": device["owner_id"]})
    assert await device_registry(runtime).authenticate(device["id"], device["secret"]) is None
    async with transaction(runtime.sessions) as session:
        assert (await session.execute(sa.text("SELECT count(*) FROM devices"))).scalar_one() == 0


def _differences(connection: sa.Connection) -> list[Any]:
    import_all_models()

    def only_devices(obj: Any, name: str | None, type_: str, *_: Any) -> bool:
        table = obj if type_ == "table" else getattr(obj, "table", None)
        return table is None or table.name == "devices"

    def reflect_only_devices(name: str | None, type_: str, _parent: Any) -> bool:
        return type_ != "table" or name == "devices"

    opts = {"compare_type": True, "include_name": reflect_only_devices, "include_object": only_devices}
    return list(compare_metadata(MigrationContext.configure(connection, opts=opts), Base.metadata))


async def test_migration_matches_the_model(client: httpx.AsyncClient) -> None:
    async with app_of(client).state.runtime.engine.connect() as conn:
        assert await conn.run_sync(_differences) == []


async def test_devices_of_a_disabled_owner_are_refused(client: httpx.AsyncClient) -> None:
    runtime, _token, device = await _setup(client)
    registry = DeviceRegistry(runtime.sessions, cache_ttl=0)
    assert await registry.authenticate(device["id"], device["secret"]) is not None
    async with transaction(runtime.sessions) as session:
        await session.execute(sa.text("UPDATE users SET active = false WHERE username = 'alice'"))
    assert await registry.authenticate(device["id"], device["secret"]) is None
