"""amqtt's Broker with the one change our guarantee needs.

amqtt acknowledges a QoS 1 PUBLISH as soon as the message is queued on the publisher's session
(handler.py, _handle_qos1_message_flow: queue, then PUBACK), but hands the queue to the
subscribers one message per turn of the client loop; when the client disconnects, the loop ends
and whatever is still queued is dropped (broker.py, _client_connected's loop and
_handle_disconnect). A device that publishes a burst and disconnects at once lost the tail of it.
Here the queue is delivered before the session is ended.

And in the monolith, every message amqtt broadcasts (wills included) is also handed to the ingest
(`on_broadcast`, tap.IngestTap.mirror): most publishes never reach amqtt, see tap.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from amqtt.broker import Broker


class DrainingBroker(Broker):  # type: ignore[misc]
    on_broadcast: Callable[[str, bytes], Awaitable[None]] | None = None

    async def _broadcast_message(
        self, session: Any, topic: str | None, data: bytes | bytearray | None, force_qos: int | None = None
    ) -> None:
        await super()._broadcast_message(session, topic, data, force_qos)
        if self.on_broadcast is not None and session is not None and topic and data is not None:
            await self.on_broadcast(topic, bytes(data))

    async def _handle_disconnect(self, client_session: Any, handler: Any, disconnect_waiter: Any) -> None:
        queue: asyncio.Queue[Any] = client_session.delivered_message_queue
        while not queue.empty():
            message = queue.get_nowait()
            ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            ready.set_result(message)
            await self._handle_message_delivery(client_session, handler, ready)
        await super()._handle_disconnect(client_session, handler, disconnect_waiter)
