"""A Mosquitto with the project's config on a free port, and real paho clients to probe it."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from sensorcloud.broker.mosquitto_process import MosquittoProcess, start_mosquitto
from tests.support.ports import free_port

V311, V5 = mqtt.MQTTv311, mqtt.MQTTv5
TIMEOUT = 5.0
SESSION_EXPIRY = 3600


@dataclass
class TestBroker:
    __test__ = False  # not a test class, whatever its name

    workdir: Path
    port: int
    conf: dict[str, Any] = field(default_factory=dict)
    admin_user: str = "sc-dynsec-admin"
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    service_user: str = "sc-service"
    service_password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    process: MosquittoProcess | None = None

    def start(self) -> None:
        self.process = start_mosquitto(
            self.workdir,
            self.port,
            admin_user=self.admin_user,
            admin_password=self.admin_password,
            service_user=self.service_user,
            service_password=self.service_password,
            **self.conf,
        )

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def restart(self) -> None:
        """Stop (mosquitto saves its database) and start again on the same directory and port."""
        self.stop()
        self.start()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_test_broker(**conf: Any) -> TestBroker:
    # Under /tmp, not pytest's tmp_path: a root-started mosquitto drops to user `mosquitto`, which
    # cannot enter /tmp/pytest-of-root (mode 0700).
    broker = TestBroker(workdir=Path(tempfile.mkdtemp(prefix="sc-mosquitto-")), port=free_port(), conf=conf)
    broker.start()
    return broker


class Probe:
    """One real MQTT client (paho in its own thread) that records everything it receives."""

    def __init__(
        self,
        port: int,
        username: str | None = None,
        password: str | None = None,
        *,
        client_id: str = "",
        protocol: MQTTProtocolVersion = V5,
        persistent: bool = False,
        will: str | None = None,
    ) -> None:
        self.port, self.protocol, self.persistent = port, protocol, persistent
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"probe-{secrets.token_hex(6)}",
            protocol=protocol,
            clean_session=None if protocol == V5 else not persistent,
            reconnect_on_failure=False,
        )
        self.client.max_inflight_messages_set(1000)
        if username is not None:
            self.client.username_pw_set(username, password)
        if will is not None:
            self.client.will_set(will, b"will", qos=1)
        self.messages: list[mqtt.MQTTMessage] = []
        self.connack: ReasonCode | None = None
        self.disconnect_reason: ReasonCode | None = None
        self.suback: dict[int, list[ReasonCode]] = {}
        self.puback: dict[int, ReasonCode] = {}
        self._connected = threading.Event()
        self._disconnected = threading.Event()
        self._lock = threading.Lock()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish

    def _on_connect(self, _c: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        self.connack = rc
        self._connected.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        self.disconnect_reason = rc
        self._connected.set()  # a refused CONNECT ends here too
        self._disconnected.set()

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, mid: int, codes: list[ReasonCode], _p: Any) -> None:
        self.suback[mid] = codes

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, rc: ReasonCode, _p: Any) -> None:
        self.puback[mid] = rc

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(message)

    async def connect(self, clean: bool = True) -> bool:
        """Connect and wait for CONNACK; True if accepted. Once per Probe: paho leaks a socketpair
        when one client runs loop_start() twice."""
        assert self.connack is None, "a Probe connects once"
        properties = None
        if self.protocol == V5 and self.persistent:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = SESSION_EXPIRY
        # MQTT 3.1.1 takes cleanness from the constructor's clean_session; only v5 has clean_start.
        clean_start = clean if self.protocol == V5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY
        # connect_async: the loop thread opens the socket (a blocking connect() before loop_start()
        # leaks paho's internal socketpair).
        self.client.connect_async(
            "127.0.0.1", self.port, keepalive=30, clean_start=clean_start, properties=properties
        )
        self.client.loop_start()
        await asyncio.to_thread(self._connected.wait, TIMEOUT)
        return self.connack is not None and not self.connack.is_failure and not self._disconnected.is_set()

    async def subscribe(self, topic_filter: str, qos: int = 1) -> bool:
        """Subscribe and wait for SUBACK; True if granted."""
        _rc, mid = self.client.subscribe(topic_filter, qos)
        assert mid is not None
        await until(lambda: mid in self.suback)
        return not self.suback[mid][0].is_failure

    async def publish(self, topic: str, payload: bytes = b"x", qos: int = 1, retain: bool = False) -> str:
        """Publish and wait for the PUBACK; its reason (3.1.1: always "Success")."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        await until(lambda: info.mid in self.puback)
        return str(self.puback[info.mid])

    async def publish_many(self, topic: str, count: int) -> None:
        infos = [self.client.publish(topic, str(i).encode(), qos=1) for i in range(count)]
        await until(lambda: all(i.is_published() for i in infos), within=30)

    def received(self, topic_prefix: str = "") -> list[tuple[str, bytes]]:
        with self._lock:
            return [(m.topic, bytes(m.payload)) for m in self.messages if m.topic.startswith(topic_prefix)]

    async def expect(self, topic: str, within: float = TIMEOUT) -> None:
        await until(lambda: any(t == topic for t, _ in self.received()), within)

    async def wait_disconnected(self, within: float = TIMEOUT) -> bool:
        return await asyncio.to_thread(self._disconnected.wait, within)

    def abort(self) -> None:
        """Drop the network connection without DISCONNECT: the broker then publishes the will."""
        sock = self.client.socket()
        if isinstance(sock, socket.socket):
            sock.shutdown(socket.SHUT_RDWR)

    async def close(self) -> None:
        self.client.disconnect()
        await asyncio.to_thread(self.client.loop_stop)


async def until(condition: Callable[[], bool], within: float = TIMEOUT) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.01)
