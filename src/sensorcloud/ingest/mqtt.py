"""The ingest's MQTT subscriber: paho-mqtt with manual acknowledgement.

paho runs its network loop in its own thread; messages cross into the asyncio loop through a
deque, and each QoS 1 message is acknowledged only after the batch holding it is committed.
The session is persistent (fixed client id, no clean start), so messages that arrive while
we are down wait in the broker. With MQTT 5 a shared subscription lets replicas split the stream.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from sensorcloud.core.logging import get_logger
from sensorcloud.ingest.writer import Ack

log = get_logger(__name__)
Handler = Callable[[str, bytes, datetime, Ack | None], Awaitable[None]]
SESSION_EXPIRY_S = 7 * 86400


@dataclass(frozen=True)
class SubscriberConfig:
    host: str
    port: int
    username: str
    password: str
    client_id: str
    topic: str = "#"
    shared_group: str | None = None  # MQTT 5 only: "$share/<group>/<topic>"
    mqtt5: bool = True
    receive_maximum: int = 10000


class MqttSubscriber:
    def __init__(self, config: SubscriberConfig, handler: Handler) -> None:
        self._config = config
        self._handler = handler
        self._inbox: collections.deque[tuple[int, mqtt.MQTTMessage, datetime]] = collections.deque()
        self._wake = asyncio.Event()
        self._signalled = False
        self._generation = 0  # bumped on every (re)connect: acks of an older connection are dropped
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._client = self._build_client()
        self.connected = asyncio.Event()

    def _build_client(self) -> mqtt.Client:
        c = self._config
        protocol = mqtt.MQTTv5 if c.mqtt5 else mqtt.MQTTv311
        kwargs: dict[str, Any] = {} if c.mqtt5 else {"clean_session": False}
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=c.client_id,
            protocol=protocol,
            manual_ack=True,
            **kwargs,
        )
        client.username_pw_set(c.username, c.password)
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(min_delay=1, max_delay=15)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    @property
    def subscription(self) -> str:
        c = self._config
        return f"$share/{c.shared_group}/{c.topic}" if c.shared_group and c.mqtt5 else c.topic

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._consume(), name="mqtt-consume")
        c = self._config
        if c.mqtt5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = SESSION_EXPIRY_S
            props.ReceiveMaximum = c.receive_maximum
            self._client.connect_async(c.host, c.port, keepalive=30, clean_start=False, properties=props)
        else:
            self._client.connect_async(c.host, c.port, keepalive=30)
        self._client.loop_start()

    async def stop(self) -> None:
        self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    # ---- paho thread ----------------------------------------------------------------------
    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.warning("mqtt connect refused", reason=str(reason))
            return
        self._generation += 1
        client.subscribe(self.subscription, qos=1)
        log.info(
            "mqtt connected", host=self._config.host, port=self._config.port, subscription=self.subscription
        )
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.connected.set)

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        log.warning("mqtt disconnected; reconnecting", reason=str(reason))
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.connected.clear)

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        self._inbox.append((self._generation, message, datetime.now(UTC)))
        if not self._signalled and self._loop is not None:
            self._signalled = True
            self._loop.call_soon_threadsafe(self._wake.set)

    # ---- asyncio loop ---------------------------------------------------------------------
    async def _consume(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._signalled = False
            while self._inbox:
                generation, message, received_at = self._inbox.popleft()
                try:
                    await self._handler(
                        message.topic, bytes(message.payload), received_at, self._acker(generation, message)
                    )
                except Exception:  # one message must never stop ingestion
                    log.exception("message handling failed", topic=message.topic)

    def _acker(self, generation: int, message: mqtt.MQTTMessage) -> Ack | None:
        if message.qos == 0:
            return None
        mid, qos = message.mid, message.qos

        def ack() -> None:
            # after a reconnect the broker redelivers unacknowledged messages and may reuse this
            # packet id for another message: acknowledging it now could drop that one
            if generation == self._generation:
                self._client.ack(mid, qos)

        return ack
