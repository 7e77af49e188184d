"""Fixtures of the embedded-broker tests: a registry of devices, the broker on a free port, its clients.

The Mosquitto tests define their own `broker` fixture in their modules, which takes precedence there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from sensorcloud.broker.embedded import EmbeddedBroker
from tests.broker.embedded_support import Clients, Device, Registry, running_broker


@pytest.fixture
def registry() -> Registry:
    return Registry()


@pytest.fixture
async def broker(registry: Registry) -> AsyncIterator[EmbeddedBroker]:
    async with running_broker(registry) as running:
        yield running


@pytest.fixture
async def clients(broker: EmbeddedBroker) -> AsyncIterator[Clients]:
    made = Clients(broker.port)
    yield made
    await made.close()


@pytest.fixture
def a(registry: Registry) -> Device:
    return registry.add()
