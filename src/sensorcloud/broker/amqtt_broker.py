"""amqtt's Broker with the one change our guarantee needs.

amqtt acknowledges a QoS 1 PUBLISH as soon as the message is queued on the publisher's session
(handler.py, _handle_qos1_message_flow: queue, then PUBACK), but hands the queue to the
subscribers one message per turn of the client loop; when the client disconnects, the loop ends
and whatever is still queued is dropped (broker.py, _client_connected's loop and
_handle_disconnect). A device that publishes a burst and disconnects at once lost the tail of it.
Here the queue is delivered before the session is ended.
"""

from __future__ import annotations

import asyncio
from typing import Any

from amqtt.broker import Broker


class DrainingBroker(Broker):  # type: ignore[misc]
    async def _handle_disconnect(self, client_session: Any, handler: Any, disconnect_waiter: Any) -> None:
        queue: asyncio.Queue[Any] = client_session.delivered_message_queue
        while not queue.empty():
            message = queue.get_nowait()
            ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            ready.set_result(message)
            await self._handle_message_delivery(client_session, handler, ready)
        await super()._handle_disconnect(client_session, handler, disconnect_waiter)
