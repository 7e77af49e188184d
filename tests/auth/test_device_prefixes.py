"""Topic prefixes of devices: what is valid, and that no two devices' namespaces overlap."""

from __future__ import annotations

import httpx
import pytest

from tests.auth.conftest import assert_validation_error
from tests.auth.devices_helpers import DEVICES, create_device
from tests.conftest import bearer, login, register


async def _token(client: httpx.AsyncClient, name: str = "alice") -> str:
    await register(client, name)
    return str((await login(client, name))["auth_token"])


async def _create(client: httpx.AsyncClient, token: str, prefix: str) -> httpx.Response:
    return await client.post(DEVICES, json={"name": "x", "topic_prefix": prefix}, headers=bearer(token))


async def test_invalid_prefixes_are_refused(client: httpx.AsyncClient) -> None:
    token = await _token(client)
    for prefix in (
        "+",
        "#",
        "a/+/b",
        "a/#",
        "$SYS/x",
        "$share/g/t",
        "/lead",
        "trail/",
        "a//b",
        "",
        "x" * 201,
    ):
        assert_validation_error(await _create(client, token, prefix), "topic_prefix")
    # the root of every default namespace would block all new devices
    assert_validation_error(await _create(client, token, "devices"), "topic_prefix")
    assert (await client.get(DEVICES, headers=bearer(token))).json()["total"] == 0
    assert (await create_device(client, token, topic_prefix="x" * 200))["topic_prefix"] == "x" * 200


@pytest.mark.parametrize(
    ("existing", "new"),
    [
        ("home/a", "home/a"),  # equal
        ("home/a", "home"),  # parent
        ("home/a", "home/a/b"),  # child
        ("home/a/b/c", "home"),  # grandparent
    ],
)
async def test_overlapping_prefixes_conflict_across_users(
    client: httpx.AsyncClient, existing: str, new: str
) -> None:
    await create_device(client, await _token(client, "alice"), topic_prefix=existing)
    bob = await _token(client, "bob")
    response = await _create(client, bob, new)
    assert response.status_code == 409, response.text
    assert "overlaps" in response.json()["msg"]
    assert (await client.get(DEVICES, headers=bearer(bob))).json()["total"] == 0


async def test_neighbouring_prefixes_do_not_overlap(client: httpx.AsyncClient) -> None:
    token = await _token(client)
    await create_device(client, token, topic_prefix="devices/x")
    for prefix in ("devices/xy", "devices/x_", "devices/%", "Devices/x", "devices/X/y", "home/devices/x"):
        assert (await _create(client, token, prefix)).status_code == 201, prefix
    # "_" and "%" are taken literally, not as LIKE patterns
    assert (await _create(client, token, "devices/%/a")).status_code == 409
    assert (await _create(client, token, "devices/xz/a")).status_code == 201


async def test_a_custom_prefix_may_not_enter_a_default_namespace(client: httpx.AsyncClient) -> None:
    token = await _token(client)
    device = await create_device(client, token)
    assert (await _create(client, token, f"{device['topic_prefix']}/sub")).status_code == 409
    assert (await _create(client, token, device["topic_prefix"])).status_code == 409
