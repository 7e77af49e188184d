"""MQTT framing around amqtt's connections: what amqtt 0.12 does not do for itself.

- a cap on packet size, checked on the fixed header before the body is read (amqtt reads any
  remaining length up to 256 MB into memory);
- the keep-alive timeout of MQTT-3.1.2-24 (amqtt's broker handler ignores read timeouts, so a
  half-open client would hold its client id and will forever);
- a last look at every PUBLISH a device's socket carries, because amqtt sends retained messages
  to every connecting client for every filter anyone subscribed, without asking the ACL;
- in the monolith, every incoming PUBLISH is offered to the ingest first (tap.py), which takes
  most of them so that amqtt never handles them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import NoReturn

from amqtt.adapters import ReaderAdapter, StreamWriterAdapter

from sensorcloud.core.logging import get_logger

CONNECT = 0x1
PUBLISH = 0x3
MAX_HEADER = 5  # one type byte and at most four bytes of remaining length
# (fixed header, body) of an incoming PUBLISH -> True when taken (then amqtt never sees it)
Take = Callable[[bytes, bytes], Awaitable[bool]]

log = get_logger("sensorcloud.broker")


class PacketTooLarge(Exception):
    """The client announced a packet above the broker's limit."""


class MalformedPacket(Exception):
    """The remaining length of a fixed header does not end within four bytes."""


def remaining_length(header: bytes | bytearray) -> int | None:
    """The remaining length encoded in a fixed header, or None if the header is incomplete."""
    value, multiplier = 0, 1
    for byte in header[1:MAX_HEADER]:
        value += (byte & 0x7F) * multiplier
        if not byte & 0x80:
            return value
        multiplier *= 128
    if len(header) >= MAX_HEADER:
        raise MalformedPacket("remaining length longer than four bytes")
    return None


async def read_packet(reader: asyncio.StreamReader, max_bytes: int) -> bytes:
    """One whole packet (fixed header included), refusing to read a body above `max_bytes`."""
    header = bytearray(await reader.readexactly(1))
    while (length := remaining_length(header)) is None:
        header += await reader.readexactly(1)
    if length > max_bytes:
        raise PacketTooLarge(f"{length} bytes announced, limit {max_bytes}")
    return bytes(header) + await reader.readexactly(length)


def publish_topic(packet: bytes) -> str | None:
    """The topic of a serialized PUBLISH packet, or None if it cannot be read."""
    i = 1
    while i < len(packet) and packet[i] & 0x80:
        i += 1
    i += 1
    if i + 2 > len(packet):
        return None
    size = int.from_bytes(packet[i : i + 2], "big")
    try:
        return packet[i + 2 : i + 2 + size].decode("utf-8")
    except UnicodeDecodeError:
        return None


class FramedReader(ReaderAdapter):  # type: ignore[misc]  # amqtt ships no type information
    """amqtt's view of one client socket: the CONNECT we already read, then packet by packet.

    Every fixed header goes through here before amqtt sees it, so the size cap and the
    keep-alive are checked without amqtt's help. With `take`, each PUBLISH is read whole and
    offered to it first; amqtt gets only those it declines. Header bytes and a PUBLISH being
    offered are kept on the instance, so amqtt cancelling a read (it wraps header reads in its own
    timeout) loses nothing: the next read picks up where the cancelled one stopped.
    Call stop() when the connection is over.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        transport: asyncio.WriteTransport,
        *,
        replay: bytes,
        max_packet: int,
        keep_alive: int,
        client_id: str,
        take: Take | None = None,
    ) -> None:
        self._reader = reader
        self._transport = transport
        self._pending = bytearray(replay)  # bytes already read from the socket, not yet given out
        self._header = bytearray()
        self._left = 0  # body bytes of the current packet still in the socket
        self._max_packet = max_packet
        self._client_id = client_id
        self._take = take
        self._held: tuple[bytes, int, bytes | None] | None = None  # a PUBLISH on its way to `take`
        # MQTT-3.1.2-24: one and a half times the keep-alive without any packet. One timer per
        # idle period, not a timeout per read: that would cost a timer handle for every packet.
        self._idle_limit = keep_alive * 1.5
        self._last_packet = time.monotonic()
        self._timer: asyncio.TimerHandle | None = None
        if keep_alive > 0:
            self._timer = asyncio.get_running_loop().call_later(self._idle_limit, self._check_idle)

    def stop(self) -> None:
        """The connection is over: stop watching it."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def read(self, n: int = -1) -> bytes:
        if n < 0:
            # "until EOF" would bypass the framing; amqtt always asks for an exact count
            return b""
        if len(self._pending) >= n:  # most calls: a byte of a header we already hold
            held = bytes(self._pending[:n])
            del self._pending[:n]
            return held
        out = bytearray()
        while len(out) < n:
            if self._pending:
                take = bytes(self._pending[: n - len(out)])
                del self._pending[: len(take)]
                out += take
            elif self._left == 0:
                await self._next_header()
            else:
                chunk = await self._reader.readexactly(min(n - len(out), self._left))
                self._left -= len(chunk)
                out += chunk
        return bytes(out)

    def feed_eof(self) -> None:
        self._reader.feed_eof()

    async def _next_header(self) -> None:
        """Make the next packet amqtt is to see available: its fixed header into _pending, the
        body left in the socket (_left), or the whole packet in _pending."""
        take = self._take
        while True:
            if self._held is None:
                length = await self._read_header()
                if self._header[0] >> 4 != PUBLISH or take is None:
                    self._pending += self._header
                    self._header.clear()
                    self._left = length
                    return
                self._held = (bytes(self._header), length, None)
                self._header.clear()
            header, length, body = self._held
            if body is None:
                body = await self._reader.readexactly(length)
                self._held = (header, length, body)
            taken = take is not None and await take(header, body)
            self._held = None
            if not taken:
                self._pending += header
                self._pending += body
                self._left = 0
                return

    async def _read_header(self) -> int:
        while True:
            self._header += await self._reader.readexactly(1)
            try:
                length = remaining_length(self._header)
            except MalformedPacket:
                self._close("malformed fixed header")
            if length is not None:
                break
        if length > self._max_packet:
            self._close("packet too large", announced=length, limit=self._max_packet)
        self._last_packet = time.monotonic()
        return length

    def _check_idle(self) -> None:
        self._timer = None
        if self._transport.is_closing():
            return
        idle = time.monotonic() - self._last_packet
        if idle < self._idle_limit:
            self._timer = asyncio.get_running_loop().call_later(self._idle_limit - idle, self._check_idle)
            return
        log.warning(
            "mqtt connection closed", client_id=self._client_id, reason="keep-alive expired", idle_s=idle
        )
        # amqtt's pending read then fails like a dropped connection: the will goes out, as it should
        self._transport.abort()

    def _close(self, reason: str, **details: object) -> NoReturn:
        """Drop the connection; amqtt sees a reset and runs its normal abnormal-disconnect path."""
        log.warning("mqtt connection closed", client_id=self._client_id, reason=reason, **details)
        self._transport.abort()
        raise ConnectionResetError(reason)


class ScopedWriter(StreamWriterAdapter):  # type: ignore[misc]  # amqtt ships no type information
    """A device's socket as amqtt writes to it: PUBLISH packets outside its namespace are dropped.

    amqtt writes each packet with a single write() (MQTTPacket.to_stream), so every call here
    starts at a packet boundary.
    """

    def __init__(
        self, writer: asyncio.StreamWriter, may_receive: Callable[[str], bool], client_id: str
    ) -> None:
        super().__init__(writer)
        self._may_receive = may_receive
        self._client_id = client_id
        self.dropped = 0

    def write(self, data: bytes) -> None:
        if data and data[0] >> 4 == PUBLISH:
            topic = publish_topic(data)
            if topic is None or not self._may_receive(topic):
                self.dropped += 1
                log.debug("mqtt publish withheld", client_id=self._client_id, topic=topic)
                return
        super().write(data)
