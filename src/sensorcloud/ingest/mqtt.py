"""The ingest's MQTT subscriber: a small MQTT 3.1.1 / 5 client on the event loop, made for one job.

It subscribes at QoS 1 and acknowledges each message only when told to, after the batch holding it
is committed. General-purpose clients do not fit: paho-mqtt runs a network thread that competes for
the GIL with the writer and decodes every MQTT 5 PUBLISH into objects; gmqtt (0.8) sends the PUBACK
when a per-message handler task returns, on whatever connection is current by then, so after a
reconnect it would acknowledge a packet id of the previous connection, which the broker may have
given to another message. Here:

- the session is persistent: a fixed client id, Clean Start / Clean Session 0 on every connect, and
  with MQTT 5 a session expiry interval (Mosquitto does not keep a v5 session across its own restart
  if it was ever opened with Clean Start 1), so what arrives while we are away waits in the broker;
- with MQTT 5 and a shared group it subscribes to `$share/<group>/<topic>`, so replicas split the
  stream; Receive Maximum bounds what the broker sends before we acknowledge (backpressure);
  MQTT 3.1.1 (the monolith's embedded broker speaks only that) has no such bound, so reading from
  the socket pauses while too many messages wait to be handled;
- an acknowledgement belongs to the connection the message came on: once that connection is gone
  it is dropped, and the broker redelivers the message on the next one (then deduplicated);
- acknowledgements of a committed batch go out together, in the order the messages arrived;
- the broker gone: reconnect after 1 s, doubling to 15 s while it stays away; a connection that
  stays silent past the keepalive is given up.

Messages are handed over in arrival order: `offer` (synchronous, the usual case) or, when it
declines (the writer is full, the device directory must be read), `handler` awaited.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, cast

from sensorcloud.core.logging import get_logger
from sensorcloud.ingest.writer import Ack

log = get_logger(__name__)
Handler = Callable[[str, bytes, datetime, Ack | None], Awaitable[None]]
Offer = Callable[[str, bytes, datetime, Ack | None], bool]
SESSION_EXPIRY_S = 7 * 86400
KEEPALIVE_S = 30
CONNECT_TIMEOUT_S = 10.0
MIN_RECONNECT_S = 1.0
MAX_RECONNECT_S = 15.0
INBOX_PAUSE = 10_000  # messages waiting to be handled: stop reading the socket ...
INBOX_RESUME = 2_000  # ... until this few are left

# packet types (first byte >> 4) and fixed packets
CONNACK, PUBLISH, SUBACK, PINGRESP, DISCONNECT = 2, 3, 9, 13, 14
PINGREQ_PACKET = b"\xc0\x00"
DISCONNECT_PACKET = b"\xe0\x00"  # normal disconnection (MQTT 5: reason 0, no properties)
_PUBACK = struct.Struct("!BBH").pack  # PUBACK, remaining length 2, packet id (MQTT 5: reason 0 implied)

# MQTT 5 property identifiers -> how their values are encoded
_BYTE, _U16, _U32, _VARINT, _UTF8, _BINARY, _PAIR = range(7)
_PROPERTY_KINDS = {
    0x01: _BYTE, 0x02: _U32, 0x03: _UTF8, 0x08: _UTF8, 0x09: _BINARY, 0x0B: _VARINT,
    0x11: _U32, 0x12: _UTF8, 0x13: _U16, 0x15: _UTF8, 0x16: _BINARY, 0x17: _BYTE,
    0x18: _U32, 0x19: _BYTE, 0x1A: _UTF8, 0x1C: _UTF8, 0x1F: _UTF8, 0x21: _U16, 0x22: _U16,
    0x23: _U16, 0x24: _BYTE, 0x25: _BYTE, 0x26: _PAIR, 0x27: _U32, 0x28: _BYTE,
    0x29: _BYTE, 0x2A: _BYTE,
}  # fmt: skip
SERVER_KEEP_ALIVE, REASON_STRING = 0x13, 0x1F


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
    receive_maximum: int = 30000  # two batches being written (10,000 each under a backlog), one filling
    keepalive: int = KEEPALIVE_S


class MqttError(Exception):
    """The broker refused us, or spoke in a way we cannot follow: reconnect."""


class MqttSubscriber:
    def __init__(self, config: SubscriberConfig, handler: Handler, offer: Offer | None = None) -> None:
        self._config = config
        self._handler = handler
        self._offer = offer
        self._inbox: collections.deque[tuple[str, bytes, datetime, Ack | None]] = collections.deque()
        self._wake = asyncio.Event()
        self._connection: _Connection | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._paused = False
        self._stopping = False
        self.connected = asyncio.Event()  # set while subscribed

    @property
    def subscription(self) -> str:
        c = self._config
        return f"$share/{c.shared_group}/{c.topic}" if c.shared_group and c.mqtt5 else c.topic

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._consume(), name="mqtt-consume"),
            asyncio.create_task(self._run(), name="mqtt-connection"),
        ]

    async def pause(self) -> None:
        """Take no more messages (before the writer commits what it holds, at shutdown)."""
        self._paused = True
        if self._connection is not None:
            self._connection.pause()

    async def stop(self) -> None:
        """Send the acknowledgements due, leave the broker (the session stays), stop."""
        self._stopping = True
        connection = self._connection
        if connection is not None:
            connection.flush_acks()
            connection.write(DISCONNECT_PACKET)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if connection is not None:
            connection.close()
        self.connected.clear()

    # ---- connection lifetime --------------------------------------------------------------
    async def _run(self) -> None:
        delay = MIN_RECONNECT_S
        # Paused (shutting down) or stopped: no new connection. Also guards against a cancellation
        # that asyncio.wait_for turned into a TimeoutError (Python 3.11), which would otherwise retry.
        while not (self._paused or self._stopping):
            established = False
            try:
                established = await self._session()
            except asyncio.CancelledError:
                raise
            except (OSError, TimeoutError, MqttError) as exc:
                log.warning("mqtt connection failed; retrying", error=type(exc).__name__, detail=str(exc))
            except Exception:  # never let the subscriber die: retry
                log.exception("mqtt connection failed; retrying")
            finally:
                self.connected.clear()
            if established:
                delay = MIN_RECONNECT_S
                log.warning("mqtt disconnected; reconnecting", retry_in_s=delay)
            if self._paused or self._stopping:
                return
            await asyncio.sleep(delay)  # 1 s after losing the broker, then 2, 4, 8, 15, 15 ...
            delay = min(delay * 2, MAX_RECONNECT_S)

    async def _session(self) -> bool:
        """One connection: connect, subscribe, keep it alive until it is lost. True if it got that far."""
        c = self._config
        loop = asyncio.get_running_loop()
        _, connection = await asyncio.wait_for(
            loop.create_connection(lambda: _Connection(self, c.mqtt5), c.host, c.port), CONNECT_TIMEOUT_S
        )
        self._connection = connection
        try:
            if self._paused:
                connection.pause()
            connection.write(_connect_packet(c))
            session_present, code, properties = await asyncio.wait_for(connection.connack, CONNECT_TIMEOUT_S)
            if code != 0:
                reason = properties.get(REASON_STRING, "")
                raise MqttError(f"connect refused: code {code:#x} {reason}".strip())
            keepalive = int(properties.get(SERVER_KEEP_ALIVE, c.keepalive))
            connection.write(_subscribe_packet(self.subscription, c.mqtt5))
            granted = await asyncio.wait_for(connection.suback, CONNECT_TIMEOUT_S)
            if granted >= 0x80:
                raise MqttError(f"subscription to {self.subscription} refused: code {granted:#x}")
            log.info(
                "mqtt connected",
                host=c.host,
                port=c.port,
                subscription=self.subscription,
                session_present=session_present,
            )
            self.connected.set()
            await connection.keep_alive(keepalive)
            return True
        finally:
            self.connected.clear()
            connection.close()  # its acknowledgements are void from now on

    # ---- messages ---------------------------------------------------------------------------
    def deliver(
        self, topic: str, payload: bytes, ack: Ack | None, connection: _Connection, received_at: datetime
    ) -> None:
        """A PUBLISH arrived (called from the connection's data_received)."""
        inbox = self._inbox
        if not inbox and self._offer is not None:
            try:
                if self._offer(topic, payload, received_at, ack):
                    return
            except Exception:  # one message must never stop ingestion (it stays unacknowledged)
                log.exception("message handling failed", topic=topic)
                return
        inbox.append((topic, payload, received_at, ack))
        if len(inbox) == 1:
            self._wake.set()
        elif len(inbox) >= INBOX_PAUSE:
            connection.pause()

    async def _consume(self) -> None:
        """Messages that could not be taken at once, in order."""
        inbox = self._inbox
        while True:
            await self._wake.wait()
            self._wake.clear()
            while inbox:
                topic, payload, received_at, ack = inbox[0]  # stays in: later ones queue behind it
                try:
                    if self._offer is None or not self._offer(topic, payload, received_at, ack):
                        await self._handler(topic, payload, received_at, ack)
                except Exception:  # one message must never stop ingestion
                    log.exception("message handling failed", topic=topic)
                inbox.popleft()
                if len(inbox) < INBOX_RESUME and self._connection is not None and not self._paused:
                    self._connection.resume()


class _Connection(asyncio.Protocol):
    """One network connection to the broker. Acknowledgements are written on it, or not at all."""

    def __init__(self, subscriber: MqttSubscriber, mqtt5: bool) -> None:
        self._subscriber = subscriber
        self._mqtt5 = mqtt5
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._rest = b""  # the start of a packet not fully received
        self._inflight: set[int] = set()  # packet ids received and not acknowledged yet
        self._acks = bytearray()
        self._flush_scheduled = False
        self._reading = True
        self.open = False
        self.last_in = time.monotonic()
        self.connack: asyncio.Future[tuple[bool, int, dict[int, Any]]] = self._loop.create_future()
        self.suback: asyncio.Future[int] = self._loop.create_future()
        self.lost: asyncio.Future[None] = self._loop.create_future()

    # ---- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.open = True

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        gone = ConnectionError("connection to the broker lost")
        for waiter in (self.connack, self.suback):
            if not waiter.done():
                waiter.set_exception(gone)
                waiter.exception()  # retrieved: nobody may be waiting any more
        if not self.lost.done():
            self.lost.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.last_in = time.monotonic()
        if self._rest:
            data = self._rest + data
        size = len(data)
        pos = 0
        received_at: datetime | None = None  # one clock reading for the messages of one read
        try:
            while size - pos >= 2:
                first = data[pos + 1]
                if first < 0x80:
                    length, start = first, pos + 2
                else:
                    decoded = _varint(data, pos + 1, size)
                    if decoded is None:
                        break
                    length, start = decoded
                end = start + length
                if end > size:
                    break
                header = data[pos]
                if header >> 4 == PUBLISH:
                    if received_at is None:
                        received_at = datetime.now(UTC)
                    self._publish(header, data, start, end, received_at)
                else:
                    self._control(header >> 4, data[start:end])
                pos = end
        except (IndexError, ValueError, MqttError) as exc:
            log.error("malformed packet from the broker; reconnecting", error=type(exc).__name__)
            self.close()
            return
        self._rest = data[pos:]

    # ---- packets in -------------------------------------------------------------------------
    def _publish(self, header: int, data: bytes, start: int, end: int, received_at: datetime) -> None:
        qos = (header >> 1) & 3
        topic_end = start + 2 + (data[start] << 8 | data[start + 1])
        topic = data[start + 2 : topic_end].decode("utf-8", "replace")
        pos = topic_end
        ack: Ack | None = None
        if qos:
            if qos != 1:
                raise MqttError(f"QoS {qos} delivered on a QoS 1 subscription")
            mid = data[pos] << 8 | data[pos + 1]
            pos += 2
            if mid not in self._inflight:  # else a retransmission of one we hold: one ack is due
                self._inflight.add(mid)
                ack = partial(self.ack, mid)
        if self._mqtt5:  # properties: nothing we need (no topic aliases: we allow none)
            length = data[pos]
            if length < 0x80:
                pos += 1 + length
            else:
                decoded = _varint(data, pos, end)
                if decoded is None:
                    raise MqttError("malformed properties")
                pos = decoded[1] + decoded[0]
        if pos > end:
            raise MqttError("malformed PUBLISH")
        self._subscriber.deliver(topic, data[pos:end], ack, self, received_at)

    def _control(self, kind: int, body: bytes) -> None:
        if kind == CONNACK:
            properties = _properties(body, 2) if self._mqtt5 and len(body) > 2 else {}
            if not self.connack.done():
                self.connack.set_result((bool(body[0] & 1), body[1], properties))
        elif kind == SUBACK:
            pos = 2
            if self._mqtt5:
                length, pos = _varint(body, pos, len(body)) or (0, len(body))
                pos += length
            if not self.suback.done():
                self.suback.set_result(body[pos])
        elif kind == DISCONNECT:  # MQTT 5: the broker says why before it closes
            code = body[0] if body else 0
            reason = _properties(body, 1).get(REASON_STRING, "") if len(body) > 1 else ""
            log.warning("mqtt broker disconnects us", code=f"{code:#x}", reason=reason)
            self.close()
        elif kind != PINGRESP:
            log.debug("mqtt packet ignored", kind=kind)

    # ---- packets out ------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if self.open and self._transport is not None:
            self._transport.write(data)

    def ack(self, mid: int) -> None:
        """Acknowledge a message of this connection (soon, with the others of its batch)."""
        if not self.open:
            return  # the broker redelivers it on the next connection, maybe under another packet id
        self._inflight.discard(mid)
        self._acks += _PUBACK(0x40, 2, mid)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush_acks)

    def flush_acks(self) -> None:
        self._flush_scheduled = False
        if self._acks:
            self.write(bytes(self._acks))
            self._acks.clear()

    async def keep_alive(self, keepalive: int) -> None:
        """Ping every half keepalive; return when the connection is lost or stays silent too long."""
        interval = max(keepalive / 2, 0.5) if keepalive else 15.0
        while not self.lost.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.lost), interval)
            if self.lost.done():
                return
            if keepalive and time.monotonic() - self.last_in > 1.5 * keepalive and self._reading:
                log.warning("mqtt broker silent past the keepalive; reconnecting", keepalive_s=keepalive)
                self.close()
                return
            self.write(PINGREQ_PACKET)

    def pause(self) -> None:
        if self._reading and self._transport is not None and self.open:
            self._reading = False
            self._transport.pause_reading()

    def resume(self) -> None:
        if not self._reading and self._transport is not None and self.open:
            self._reading = True
            self.last_in = time.monotonic()
            self._transport.resume_reading()

    def close(self) -> None:
        self.open = False
        if self._transport is not None:
            self._transport.close()


# ---- encoding -------------------------------------------------------------------------------
def _varint(data: bytes, pos: int, end: int) -> tuple[int, int] | None:
    """A variable byte integer at pos: (value, position after it), or None if not all there."""
    value = shift = 0
    while pos < end:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 21:
            raise MqttError("malformed variable byte integer")
    return None


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        value, byte = value >> 7, value & 0x7F
        out.append(byte | 0x80 if value else byte)
        if not value:
            return bytes(out)


def _string(value: str | bytes) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    return len(raw).to_bytes(2, "big") + raw


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _encode_varint(len(body)) + body


def _connect_packet(c: SubscriberConfig) -> bytes:
    flags = 0  # Clean Start / Clean Session 0: resume the session, always
    payload = _string(c.client_id)
    if c.username:
        flags |= 0xC0  # user name and password
        payload += _string(c.username) + _string(c.password)
    header = _string(b"MQTT") + bytes([5 if c.mqtt5 else 4, flags]) + c.keepalive.to_bytes(2, "big")
    if c.mqtt5:
        props = b"\x11" + SESSION_EXPIRY_S.to_bytes(4, "big") + b"\x21" + c.receive_maximum.to_bytes(2, "big")
        header += _encode_varint(len(props)) + props
    return _packet(0x10, header + payload)


def _subscribe_packet(topic: str, mqtt5: bool) -> bytes:
    body = (1).to_bytes(2, "big") + (b"\x00" if mqtt5 else b"") + _string(topic) + b"\x01"  # QoS 1
    return _packet(0x82, body)


def _properties(data: bytes, pos: int) -> dict[int, Any]:
    """MQTT 5 properties starting at pos (their length first), by identifier."""
    decoded = _varint(data, pos, len(data))
    if decoded is None:
        raise MqttError("malformed properties")
    length, pos = decoded
    end = pos + length
    found: dict[int, Any] = {}
    while pos < end:
        ident = data[pos]
        kind = _PROPERTY_KINDS.get(ident)
        pos += 1
        value: Any
        if kind == _BYTE:
            value, pos = data[pos], pos + 1
        elif kind == _U16:
            value, pos = int.from_bytes(data[pos : pos + 2], "big"), pos + 2
        elif kind == _U32:
            value, pos = int.from_bytes(data[pos : pos + 4], "big"), pos + 4
        elif kind == _VARINT:
            value, pos = _varint(data, pos, end) or (0, end)
        elif kind in (_UTF8, _BINARY):
            size = int.from_bytes(data[pos : pos + 2], "big")
            raw = data[pos + 2 : pos + 2 + size]
            value, pos = (raw.decode("utf-8", "replace") if kind == _UTF8 else raw), pos + 2 + size
        elif kind == _PAIR:
            key_size = int.from_bytes(data[pos : pos + 2], "big")
            pos += 2 + key_size
            size = int.from_bytes(data[pos : pos + 2], "big")
            value, pos = None, pos + 2 + size
        else:  # a property this client does not know: keep what was read before it
            break
        found[ident] = value
    return found
