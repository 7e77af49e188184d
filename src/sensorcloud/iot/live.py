"""The live feed: a WebSocket at /api/v1/live that pushes new readings of the topics a client asks for.

Protocol (JSON text frames; docs/iot.md has examples):
  client -> {"type": "auth", "token": "<access token>"}      first, unless the handshake carried
                                                             `Authorization: Bearer`; again later
                                                             with a fresh token to stay connected
  client -> {"type": "subscribe", "topics": ["devices/<id>/t", ...]}
  client -> {"type": "unsubscribe", "topics": [...]}
  client -> {"type": "ping"}
  server -> {"type": "ready", "expires_at": <unix time the token expires>}
  server -> {"type": "subscribed", "topics": [every topic now watched]}
  server -> {"type": "readings", "data": [{"topic", "date", "value"}, ...]}
  server -> {"type": "error", "msg": "..."}                 the connection stays open
  server closes with 4401 when the token is missing, invalid, revoked or expired.

A browser cannot set headers on a WebSocket, so the token travels in the first message rather
than in the URL, where access logs would keep it. A topic that does not exist or is another
user's is refused with the same "Topic not found" as the REST routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from sensorcloud.core.errors import Unauthorized
from sensorcloud.core.live import LiveBus, LivePoint
from sensorcloud.core.runtime import Runtime
from sensorcloud.core.tokens import Principal
from sensorcloud.iot.service import TOPIC_NOT_FOUND, IotService

router = APIRouter()
AUTH_TIMEOUT = 10.0
MAX_MESSAGE = 64 * 1024
MAX_TOPICS = 200
MAX_BATCH = 1000
CLOSE_UNAUTHORIZED = 4401
CLOSE_TOO_BIG = 1009


class Closing(Exception):
    """End the session with this close code and reason (after telling the client why)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class LiveSession:
    """One client's connection: its principal, its topics and the bus queue feeding it."""

    def __init__(self, ws: WebSocket, runtime: Runtime) -> None:
        self.ws = ws
        self.runtime = runtime
        self.bus: LiveBus = runtime.live
        self.service = IotService(runtime.engine)
        self.principal: Principal | None = None
        self.topics: frozenset[str] = frozenset()
        self._watch: AbstractAsyncContextManager[asyncio.Queue[LivePoint]] | None = None
        self.queue: asyncio.Queue[LivePoint] = asyncio.Queue()

    async def run(self) -> None:
        await self.ws.accept()
        try:
            await self._authenticate_first()
            await self._loop()
        except Closing as close:
            with contextlib.suppress(Exception):
                await self.ws.send_json({"type": "error", "msg": close.reason})
                await self.ws.close(close.code, close.reason[:120])  # a close frame's reason: 123 bytes
        except WebSocketDisconnect:
            pass
        finally:
            await self._unwatch()

    async def _authenticate_first(self) -> None:
        header = self.ws.headers.get("authorization")
        if header is not None:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Closing(CLOSE_UNAUTHORIZED, "Bad Authorization header. Expected 'Bearer <JWT>'")
            await self._verify(token.strip())
            return
        try:
            message = await asyncio.wait_for(self._receive(), AUTH_TIMEOUT)
        except TimeoutError:
            raise Closing(CLOSE_UNAUTHORIZED, "Authentication timed out") from None
        if message.get("type") != "auth":
            raise Closing(CLOSE_UNAUTHORIZED, 'Authenticate first: {"type": "auth", "token": "<JWT>"}')
        await self._verify(message.get("token"))

    async def _verify(self, token: Any) -> None:
        if not isinstance(token, str) or not token:
            raise Closing(CLOSE_UNAUTHORIZED, "Missing token")
        try:
            principal = await self.runtime.verifier.verify(token)
        except Unauthorized as exc:
            raise Closing(CLOSE_UNAUTHORIZED, exc.message) from None
        previous = self.principal
        if previous is not None and principal.user_id != previous.user_id:
            raise Closing(CLOSE_UNAUTHORIZED, "Token belongs to another user")
        self.principal = principal
        await self.ws.send_json({"type": "ready", "expires_at": principal.expires_at})
        if previous is not None and previous.role != principal.role and self.topics:
            # e.g. an admin who is one no more keeps only the topics they may still read
            visible = await self.service.visible_topics(principal, self.topics)
            if visible != self.topics:
                await self._rewatch(visible)

    async def _receive(self) -> dict[str, Any]:
        frame = await self.ws.receive()
        if frame["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(frame.get("code", 1000))
        text = frame.get("text")
        if text is None:  # a binary frame: read as UTF-8 JSON too
            text = bytes(frame.get("bytes") or b"").decode("utf-8", errors="replace")
        if len(text) > MAX_MESSAGE:
            raise Closing(CLOSE_TOO_BIG, "Message too large")
        try:
            message = json.loads(text)
        except ValueError:
            return {"type": None}
        return message if isinstance(message, dict) else {"type": None}

    async def _loop(self) -> None:
        receiving = asyncio.ensure_future(self._receive())
        getting, source = asyncio.ensure_future(self.queue.get()), self.queue
        try:
            while True:
                assert self.principal is not None
                left = self.principal.expires_at - time.time()
                if left <= 0:
                    raise Closing(CLOSE_UNAUTHORIZED, "Token has expired")
                done, _ = await asyncio.wait(
                    {receiving, getting}, timeout=left, return_when=asyncio.FIRST_COMPLETED
                )
                if receiving in done:
                    await self._handle(receiving.result())
                    receiving = asyncio.ensure_future(self._receive())
                # checked after the message too: a subscription change may have replaced the queue
                if getting.done():
                    await self._push(getting.result())
                    getting, source = asyncio.ensure_future(self.queue.get()), self.queue
                elif source is not self.queue:
                    getting.cancel()  # a cancelled Queue.get leaves its item in the (old) queue
                    getting, source = asyncio.ensure_future(self.queue.get()), self.queue
        finally:
            receiving.cancel()
            getting.cancel()

    async def _push(self, first: LivePoint) -> None:
        batch = [first]
        while len(batch) < MAX_BATCH and not self.queue.empty():
            batch.append(self.queue.get_nowait())
        data = [{"topic": p.topic, "date": p.date, "value": p.value} for p in batch if p.topic in self.topics]
        if data:
            await self.ws.send_json({"type": "readings", "data": data})

    async def _handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "auth":
            await self._verify(message.get("token"))
        elif kind in ("subscribe", "unsubscribe"):
            await self._subscription(kind, message.get("topics"))
        elif kind == "ping":
            await self.ws.send_json({"type": "pong"})
        else:
            await self.ws.send_json({"type": "error", "msg": "Unknown message type"})

    async def _subscription(self, kind: str, topics: Any) -> None:
        if not (isinstance(topics, list) and all(isinstance(t, str) and 0 < len(t) <= 255 for t in topics)):
            await self.ws.send_json({"type": "error", "msg": "topics must be a list of topic names"})
            return
        wanted = set(topics)
        if kind == "unsubscribe":
            await self._rewatch(self.topics - wanted)
            return
        assert self.principal is not None
        if len(self.topics | wanted) > MAX_TOPICS:
            await self.ws.send_json({"type": "error", "msg": f"At most {MAX_TOPICS} topics per connection"})
            return
        visible = await self.service.visible_topics(self.principal, wanted)
        missing = sorted(wanted - visible)
        if missing:
            await self.ws.send_json({"type": "error", "msg": TOPIC_NOT_FOUND, "topics": missing})
            return
        await self._rewatch(self.topics | wanted)

    async def _rewatch(self, topics: frozenset[str] | set[str]) -> None:
        """Watch a new set of topics without losing or repeating a point.

        The new watch is registered and the old one removed with no await that could let the bus
        publish in between (LiveBus.watch enters and leaves without suspending), so a point is
        in exactly one of the queues; what the old one still holds moves to the new one.
        """
        new_topics = frozenset(topics)
        watch = self.bus.watch(new_topics)
        queue = await watch.__aenter__()
        old_queue = self.queue
        await self._unwatch()
        self._watch, self.queue, self.topics = watch, queue, new_topics
        while not old_queue.empty():  # the new queue is still empty: keep the order
            point = old_queue.get_nowait()
            if point.topic in new_topics:
                queue.put_nowait(point)
        await self.ws.send_json({"type": "subscribed", "topics": sorted(new_topics)})

    async def _unwatch(self) -> None:
        if self._watch is not None:
            watch, self._watch = self._watch, None
            await watch.__aexit__(None, None, None)


@router.websocket("/api/v1/live")
async def live(websocket: WebSocket) -> None:
    """Live readings of the caller's topics (protocol in the module docstring and docs/iot.md)."""
    await LiveSession(websocket, websocket.app.state.runtime).run()
