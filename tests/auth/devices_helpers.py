"""Helpers of the device tests: create devices over HTTP, record what listeners are told."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from sensorcloud.broker.acl import DeviceIdentity
from tests.conftest import bearer

DEVICES = "/api/v1/devices"
LISTED_KEYS = {"id", "name", "owner_id", "topic_prefix", "created_at", "secret_rotated_at"}


async def create_device(
    client: httpx.AsyncClient, token: str, name: str = "sensor", topic_prefix: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name}
    if topic_prefix is not None:
        body["topic_prefix"] = topic_prefix
    response = await client.post(DEVICES, json=body, headers=bearer(token))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


class RecordingListener:
    """A DeviceListener (our own protocol) that remembers its calls, or fails on each if told to."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.fail = fail

    async def device_saved(self, identity: DeviceIdentity, secret: str) -> None:
        self.calls.append(("saved", identity, secret))
        if self.fail:
            raise RuntimeError("broker unreachable")

    async def device_removed(self, device_id: str) -> None:
        self.calls.append(("removed", device_id))
        if self.fail:
            raise RuntimeError("broker unreachable")


class CredentialStore(RecordingListener):
    """A listener holding device credentials, as Mosquitto's dynsec does: its failures fail the request."""

    holds_credentials = True


class HangingListener:
    """A DeviceListener whose broker never answers."""

    async def device_saved(self, identity: DeviceIdentity, secret: str) -> None:
        await asyncio.sleep(3600)

    async def device_removed(self, device_id: str) -> None:
        await asyncio.sleep(3600)
