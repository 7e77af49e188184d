"""What a running service holds: settings, database, shared state, token verifier, metrics.

Built by app.create_app and kept on app.state.runtime; services reach it only through
the dependency aliases in core.deps.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from sensorcloud.broker.acl import DeviceListener
from sensorcloud.core.keys import VerificationKey
from sensorcloud.core.live import LiveBus
from sensorcloud.core.metrics import HttpMetrics
from sensorcloud.core.settings import Settings
from sensorcloud.core.shared_state import SharedState
from sensorcloud.core.tokens import KeyRing, TokenIssuer, TokenVerifier

ReadyCheck = Callable[[], Awaitable[None]]
Hook = Callable[[], Awaitable[Any]]


@dataclass
class Runtime:
    settings: Settings
    target: str
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    state: SharedState
    ring: KeyRing
    verifier: TokenVerifier
    registry: CollectorRegistry
    http_metrics: HttpMetrics
    issuer: TokenIssuer | None = None
    published_keys: list[VerificationKey] = field(default_factory=list)
    ready_checks: dict[str, ReadyCheck] = field(default_factory=dict)
    device_listeners: list[DeviceListener] = field(default_factory=list)
    start_hooks: list[Hook] = field(default_factory=list)  # run in order at start
    stop_hooks: list[Hook] = field(default_factory=list)  # run in reverse order at stop
    started_at: float = field(default_factory=time.time)
    services: list[str] = field(default_factory=list)  # the services this process runs, for /status
    live: LiveBus = field(default_factory=LiveBus)  # committed readings, for the live feed
