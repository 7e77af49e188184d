"""Real MQTT clients for the tests (paho-mqtt): publish as a device, wait for the broker's acks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def publish_sync(
    port: int,
    username: str,
    password: str,
    messages: Sequence[tuple[str, bytes | str]],
    *,
    client_id: str | None = None,
    qos: int = 1,
    host: str = "127.0.0.1",
    timeout: float = 30.0,
) -> None:
    """Connect, publish every message, wait until each is acknowledged (QoS 1) or sent, disconnect."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or username, protocol=mqtt.MQTTv311)
    client.username_pw_set(username, password)
    client.max_inflight_messages_set(100)
    client.connect(host, port, keepalive=30)
    client.loop_start()
    try:
        deadline = time.monotonic() + timeout
        while not client.is_connected():
            if time.monotonic() > deadline:
                raise TimeoutError("MQTT connect timed out (refused?)")
            time.sleep(0.01)
        infos = [client.publish(topic, payload, qos=qos) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(timeout=max(0.1, deadline - time.monotonic()))
            if not info.is_published():
                raise TimeoutError("publish not acknowledged")
    finally:
        client.disconnect()
        client.loop_stop()


async def publish(
    port: int, username: str, password: str, messages: Sequence[tuple[str, bytes | str]], **kwargs: object
) -> None:
    await asyncio.to_thread(publish_sync, port, username, password, messages, **kwargs)  # type: ignore[arg-type]


async def eventually(
    check: Callable[[], Awaitable[bool]], within: float = 10.0, interval: float = 0.05
) -> None:
    """Wait until `check` answers True, or fail after `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {within}s")
