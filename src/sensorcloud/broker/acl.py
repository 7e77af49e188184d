"""Who may do what on the broker: the one rule set both brokers (amqtt, Mosquitto) enforce.

A device is known by its id (its MQTT username) and owns one topic namespace, `<prefix>/#`.
Service accounts (ingest, iot) are configured separately and may read everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

WILDCARDS = ("+", "#")


@dataclass(frozen=True)
class DeviceIdentity:
    """An authenticated device."""

    device_id: str
    owner_id: int
    topic_prefix: str


class DeviceAuthenticator(Protocol):
    """The device registry as the broker sees it."""

    async def authenticate(self, username: str, password: str) -> DeviceIdentity | None:
        """The device whose id is `username` if `password` is its current secret, else None."""


def valid_prefix(prefix: str) -> str | None:
    """Why a topic prefix is not acceptable, or None."""
    if not prefix or len(prefix) > 200:
        return "topic prefix must be 1 to 200 characters"
    if prefix.startswith("$"):
        return "topic prefix must not start with '$'"
    if prefix.startswith("/") or prefix.endswith("/") or "//" in prefix:
        return "topic prefix must not start or end with '/' or contain empty levels"
    if any(c in prefix for c in ("+", "#", "\x00")):
        return "topic prefix must not contain '+', '#' or NUL"
    return None


def prefixes_overlap(a: str, b: str) -> bool:
    """True if one namespace contains the other: devices/x overlaps devices/x/y, not devices/xy."""
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def in_namespace(prefix: str, topic: str) -> bool:
    return topic == prefix or topic.startswith(prefix + "/")


def may_publish(identity: DeviceIdentity, topic: str) -> bool:
    """A device publishes only to concrete topics inside its own namespace."""
    if not topic or any(w in topic for w in WILDCARDS) or "\x00" in topic:
        return False
    return in_namespace(identity.topic_prefix, topic)


def may_subscribe(identity: DeviceIdentity, topic_filter: str) -> bool:
    """A device subscribes only inside its own namespace: never $share, $SYS or a wildcard above it."""
    if not topic_filter or topic_filter.startswith("$") or "\x00" in topic_filter:
        return False
    prefix_levels = identity.topic_prefix.split("/")
    levels = topic_filter.split("/")
    if len(levels) < len(prefix_levels):
        return False
    # every level of the prefix must be matched literally (no + or # standing in for it)
    if levels[: len(prefix_levels)] != prefix_levels:
        return False
    rest = levels[len(prefix_levels) :]
    return all(level == "+" or "+" not in level for level in rest) and all(
        "#" not in level or (level == "#" and i == len(rest) - 1) for i, level in enumerate(rest)
    )


class DeviceListener(Protocol):
    """Told by the device registry when credentials change, so a broker can follow at once."""

    async def device_saved(self, identity: DeviceIdentity, secret: str) -> None:
        """A device was created or its secret rotated (the plaintext secret is only known now)."""

    async def device_removed(self, device_id: str) -> None:
        """A device was deleted or its secret rotated: drop its live connections."""
