"""The monolith's MQTT broker: amqtt in this process, with the device registry as its auth and ACL.

We own the listening socket and give amqtt only connections the gate admitted (amqtt's
"external" listener, Broker.external_connected). In front of amqtt, per connection:
- gate.py decides on the CONNECT: credentials (devices via the registry, the service account
  by constant-time comparison), client id (a device uses its id or `<id>-...`; a client id
  held by another account is refused), will topic (must be publishable by the client);
- wire.py caps packet size, enforces the keep-alive and keeps other namespaces' PUBLISH
  packets off a device's socket;
and inside amqtt, plugin.py's topic plugin applies acl.py to every publish, subscribe and delivery.
With attach_ingest (the monolith), publishes go to the ingest straight from the socket (tap.py).

Removal: device_removed() closes the device's live connections before it returns (the socket
is aborted at once; the call waits up to DROP_TIMEOUT_S for amqtt to finish the session, in
practice milliseconds). The will of a removed device is not published. A connect already
past the registry check when the device is removed is refused too.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from amqtt.adapters import BufferReader, StreamWriterAdapter
from amqtt.mqtt.connack import BAD_USERNAME_PASSWORD, IDENTIFIER_REJECTED
from amqtt.mqtt.connect import ConnectPacket
from pydantic import SecretStr

from sensorcloud.broker import plugin
from sensorcloud.broker.acl import DeviceAuthenticator, DeviceIdentity
from sensorcloud.broker.amqtt_broker import DrainingBroker
from sensorcloud.broker.gate import Gate, Refused, connack
from sensorcloud.broker.plugin import Admissions, principal_of
from sensorcloud.broker.principal import Principal
from sensorcloud.broker.tap import IngestTap, PublishSink
from sensorcloud.broker.wire import (
    CONNECT,
    FramedReader,
    MalformedPacket,
    ScopedWriter,
    read_packet,
)
from sensorcloud.core.logging import get_logger
from sensorcloud.core.settings import Settings

LISTENER = "default"
DEFAULT_CONNECT_TIMEOUT_S = 10.0  # amqtt would wait forever for the first packet
DROP_TIMEOUT_S = 5.0
# room for the topic and headers above the largest payload ingest accepts
PACKET_OVERHEAD = 4096
DEFAULT_MAX_PACKET = 65536 + PACKET_OVERHEAD
# amqtt keeps a persistent session (and queues QoS 1/2 messages for it) until this expires
DEFAULT_SESSION_EXPIRY_S = 3600

log = get_logger("sensorcloud.broker")


@dataclass(eq=False)
class _Attempt:
    """A CONNECT being checked; device_removed() marks it so it cannot finish connecting."""

    username: str
    revoked: bool = False


@dataclass(eq=False)
class _Connection:
    client_id: str
    principal: Principal
    writer: asyncio.StreamWriter
    token: str = ""
    finished: asyncio.Event = field(default_factory=asyncio.Event)


class EmbeddedBroker:
    """amqtt on host:port, authenticating against the device registry; a DeviceListener."""

    def __init__(
        self,
        host: str,
        port: int,
        authenticator: DeviceAuthenticator,
        service_username: str,
        service_password: SecretStr | str | None,
        *,
        max_packet_bytes: int = DEFAULT_MAX_PACKET,
        session_expiry_s: int = DEFAULT_SESSION_EXPIRY_S,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    ) -> None:
        if isinstance(service_password, SecretStr):
            service_password = service_password.get_secret_value()
        self._host = host
        self._port = port
        self._gate = Gate(authenticator, service_username, service_password)
        self._max_packet = max_packet_bytes
        self._session_expiry = session_expiry_s
        self._connect_timeout = connect_timeout_s
        self._admissions = Admissions()
        self._broker: Any = None
        self._server: asyncio.Server | None = None
        self._live: dict[str, _Connection] = {}
        self._attempts: set[_Attempt] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sink: PublishSink | None = None
        self.tap: IngestTap | None = None

    def attach_ingest(self, sink: PublishSink) -> None:
        """Hand every publish to `sink` (the ingest pipeline) from here on; call before start()."""
        self._sink = sink

    def pause_ingest(self) -> None:
        """Hand no more publishes to the ingest (its shutdown; see IngestTap.pause)."""
        if self.tap is not None:
            self.tap.pause()

    @classmethod
    def from_settings(cls, settings: Settings, authenticator: DeviceAuthenticator) -> EmbeddedBroker:
        return cls(
            settings.mqtt_host,
            settings.mqtt_port,
            authenticator,
            settings.mqtt_service_username,
            settings.mqtt_service_password,
            max_packet_bytes=settings.ingest_max_payload_bytes + PACKET_OVERHEAD,
        )

    @property
    def port(self) -> int:
        """The port listened on (the configured one, or the one the OS chose for port 0)."""
        if self._server is None or not self._server.sockets:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._broker = DrainingBroker(self._amqtt_config())
        if self._sink is not None:
            broker = self._broker
            self.tap = IngestTap(self._sink, lambda: broker.subscriptions, broker._matches)
            broker.on_broadcast = self.tap.mirror
        await self._broker.start()
        try:
            self._server = await asyncio.start_server(self._serve, self._host, self._port)
        except OSError:
            await self._broker.shutdown()
            raise
        log.info("mqtt broker listening", host=self._host, port=self.port)

    async def ready(self) -> None:
        """Raise unless the broker is accepting connections."""
        if self._server is None or not self._server.is_serving():
            raise RuntimeError("the embedded MQTT broker is not running")

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        live = list(self._live.values())
        for conn in live:
            self._drop(conn, publish_will=False)
        await self._wait_finished(live)
        for task in self._tasks:  # connections still sending their CONNECT
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._broker.shutdown()
        await self._server.wait_closed()
        self._server = None

    async def device_saved(self, identity: DeviceIdentity, secret: str) -> None:
        """Nothing to do: every connect asks the registry."""

    async def device_removed(self, device_id: str) -> None:
        """Close the device's connections now; see the module docstring for the timing."""
        for attempt in self._attempts:
            if attempt.username == device_id:
                attempt.revoked = True
        victims = [
            c for c in self._live.values() if c.principal.device and c.principal.device.device_id == device_id
        ]
        for conn in victims:
            self._drop(conn, publish_will=False)
        await self._wait_finished(victims)
        if victims:
            log.info("mqtt device disconnected", device_id=device_id, connections=len(victims))

    def _amqtt_config(self) -> dict[str, Any]:
        module = plugin.__name__
        return {
            # "external": amqtt binds nothing; `bind` is only required to register the listener
            "listeners": {LISTENER: {"type": "external", "bind": f"{self._host}:{self._port}"}},
            "session_expiry_interval": self._session_expiry,
            # naming the plugins replaces amqtt's defaults (anonymous login allowed, $SYS, packet logging)
            "plugins": {
                f"{module}.RegistryAuthPlugin": {"admissions": self._admissions},
                f"{module}.RegistryTopicPlugin": {},
            },
        }

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await self._handle(reader, writer)
        except Exception:
            log.exception("mqtt connection failed")
        finally:
            if task is not None:
                self._tasks.discard(task)
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(self._connect_timeout):
                raw = await read_packet(reader, self._max_packet)
            if raw[0] >> 4 != CONNECT:
                raise MalformedPacket("first packet is not CONNECT")
            connect = await ConnectPacket.from_stream(BufferReader(raw))
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError) as exc:
            log.info("mqtt connection closed before CONNECT", reason=type(exc).__name__)
            return
        except Exception as exc:  # too large, malformed, or whatever amqtt's parser raises on garbage
            log.info("mqtt connection refused: unreadable CONNECT", reason=str(exc))
            return
        attempt = _Attempt(connect.username or "")
        self._attempts.add(attempt)
        try:
            principal = await self._gate.admit(connect)
            if attempt.revoked:
                raise Refused(BAD_USERNAME_PASSWORD, "device removed while connecting")
            conn = _Connection(connect.client_id, principal, writer)
            self._check_owner(conn)
        except Refused as refused:
            log.info(
                "mqtt connect refused",
                username=connect.username,
                client_id=connect.client_id,
                reason=refused.reason,
            )
            writer.write(connack(refused.code, connect.proto_level))
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            return
        finally:
            self._attempts.discard(attempt)
        previous = self._live.get(conn.client_id)
        self._live[conn.client_id] = conn
        try:
            if previous is not None:
                # MQTT-3.1.4-2. Done here because amqtt leaves the old socket open when the new
                # connection asks for a clean session (it only drops the old session's state).
                self._drop(previous, publish_will=True)
                await self._wait_finished([previous])
            await self._run(conn, connect, reader, writer)
        finally:
            if self._live.get(conn.client_id) is conn:
                del self._live[conn.client_id]
            conn.finished.set()

    def _check_owner(self, conn: _Connection) -> None:
        """A client id (live, or a persistent session's) stays with the account that holds it."""
        previous = self._live.get(conn.client_id)
        owner = previous.principal if previous else self._offline_owner(conn.client_id)
        if owner is not None and owner.username != conn.principal.username:
            raise Refused(IDENTIFIER_REJECTED, "client id in use by another account")

    def _offline_owner(self, client_id: str) -> Principal | None:
        entry = self._broker.sessions.get(client_id)
        return principal_of(entry[0]) if entry else None

    async def _run(
        self, conn: _Connection, connect: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        conn.token = self._admissions.issue(conn.principal)
        connect.payload.password = conn.token
        amqtt_reader = FramedReader(
            reader,
            writer.transport,
            replay=connect.to_bytes(),
            max_packet=self._max_packet,
            keep_alive=connect.keep_alive,
            client_id=conn.client_id,
            take=None if self.tap is None else self.tap.for_connection(conn.principal, writer.transport),
        )
        principal = conn.principal
        amqtt_writer = (
            StreamWriterAdapter(writer)
            if principal.is_service
            else ScopedWriter(writer, principal.may_receive, conn.client_id)
        )
        log.info("mqtt client connected", username=principal.username, client_id=conn.client_id)
        try:
            await self._broker.external_connected(amqtt_reader, amqtt_writer, LISTENER)
        except ConnectionError:
            pass  # the socket went away while amqtt was writing to it
        finally:
            amqtt_reader.stop()
            self._admissions.revoke(conn.token)
            log.info("mqtt client disconnected", username=principal.username, client_id=conn.client_id)

    def _drop(self, conn: _Connection, *, publish_will: bool) -> None:
        if not publish_will:
            # before amqtt's login: the token no longer works, so amqtt never runs the session;
            # after it: the session is registered and its will can be switched off
            self._admissions.revoke(conn.token)
            entry = self._broker.sessions.get(conn.client_id)
            if entry and principal_of(entry[0]) is conn.principal:
                entry[0].will_flag = False
        conn.writer.transport.abort()

    async def _wait_finished(self, conns: list[_Connection]) -> None:
        if not conns:
            return
        waits = [asyncio.ensure_future(c.finished.wait()) for c in conns]
        _done, pending = await asyncio.wait(waits, timeout=DROP_TIMEOUT_S)
        for wait in pending:
            wait.cancel()
        if pending:
            log.warning("mqtt connections still closing", count=len(pending), timeout_s=DROP_TIMEOUT_S)
