"""The dynamic-security plugin's topic API ($CONTROL/dynamic-security/v1) from asyncio, over paho-mqtt.

Commands go out as one JSON batch per call, tagged with correlation data; the plugin answers every
batch with one message on the response topic (QoS 0), which every admin connection receives:
several auth replicas each pick out their own answers by that tag.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Collection, Mapping, Sequence
from types import TracebackType
from typing import Any, Self
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from sensorcloud.core.logging import get_logger

COMMAND_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = "$CONTROL/dynamic-security/v1/response"

log = get_logger(__name__)


class DynsecError(RuntimeError):
    """The broker refused a command, did not answer in time, or could not be reached."""


class ConnectionLost(DynsecError):
    """The connection dropped with a command in flight: it may or may not have been applied."""


def raise_errors(responses: Sequence[Mapping[str, Any]], tolerated: Collection[str] = ()) -> None:
    """Raise DynsecError for the first response carrying an error not in `tolerated`."""
    for response in responses:
        error = response.get("error")
        if error and error not in tolerated:
            raise DynsecError(f"dynsec {response.get('command')}: {error}")


class DynsecClient:
    """The dynsec admin's MQTT connection: send command batches, await their responses.

    paho-mqtt runs its network loop in its own thread; results come back to the event loop as
    futures keyed by correlation data. Start with `await start()` (or `async with`); one start
    per object (paho leaks a socketpair when one client runs loop_start() twice).
    """

    def __init__(
        self,
        mqtt_host: str,
        port: int,
        admin_user: str,
        admin_password: str,
        *,
        timeout: float = 5.0,
        client_id: str | None = None,
    ) -> None:
        self.host, self.port, self.timeout = mqtt_host, port, timeout
        # Several auth replicas may run: each needs its own MQTT client id.
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"sensorcloud-dynsec-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        self._client.username_pw_set(admin_user, admin_password)
        self._client.reconnect_delay_set(min_delay=1, max_delay=10)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started: asyncio.Future[None] | None = None
        self._ready = asyncio.Event()
        self._pending: dict[str, asyncio.Future[list[dict[str, Any]]]] = {}
        self._closing = False

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """From `mqtt://user:password@host:port` (SENSORCLOUD_MQTT_ADMIN_URL), both percent-encoded."""
        parts = urlsplit(url)
        if parts.scheme != "mqtt" or not parts.hostname or not parts.username or not parts.password:
            # never echo the URL: it holds the admin password
            raise ValueError("the dynsec admin URL must look like mqtt://user:password@host:port")
        user, password = unquote(parts.username), unquote(parts.password)
        return cls(parts.hostname, parts.port or 1883, user, password, **options)

    # ---- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect as the dynsec admin and listen for responses; raises DynsecError if that fails."""
        if self._loop is not None:
            raise DynsecError("start() runs once per object: make a new one")
        self._loop = asyncio.get_running_loop()
        self._started = self._loop.create_future()
        self._client.connect_async(self.host, self.port, keepalive=30)
        self._client.loop_start()
        try:
            async with asyncio.timeout(self.timeout):
                await self._started
        except TimeoutError:
            await self.close()
            raise DynsecError(
                f"no MQTT connection to {self.host}:{self.port} within {self.timeout}s"
            ) from None
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        self._closing = True
        self._client.disconnect()
        # loop_stop joins paho's thread; do not block the event loop while it winds down.
        await asyncio.to_thread(self._client.loop_stop)
        self._fail_pending(DynsecError("closed"))

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # ---- paho callbacks (paho's thread): hand everything to the event loop ------------------

    def _post(self, callback: Any, *args: Any) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(callback, *args)

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        if rc.is_failure:
            self._post(self._failed, DynsecError(f"broker refused the dynsec admin login: {rc}"))
        else:
            # A clean session forgets subscriptions: subscribe again after every (re)connect.
            client.subscribe(RESPONSE_TOPIC, qos=1)

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, codes: list[ReasonCode], _p: Any) -> None:
        if any(code.is_failure for code in codes):
            self._post(self._failed, DynsecError(f"the dynsec admin may not subscribe to {RESPONSE_TOPIC}"))
        else:
            self._post(self._became_ready)

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        self._post(self._lost, str(rc))

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        self._post(self._deliver, message.payload)

    # ---- the same events, on the event loop -------------------------------------------------

    def _failed(self, error: DynsecError) -> None:
        if self._started is not None and not self._started.done():
            self._started.set_exception(error)
        else:
            log.error("dynsec.reconnect_failed", error=str(error))

    def _became_ready(self) -> None:
        self._ready.set()
        if self._started is not None and not self._started.done():
            self._started.set_result(None)

    def _lost(self, reason: str) -> None:
        self._ready.clear()
        if not self._closing:
            log.warning("dynsec.connection_lost", reason=reason)
        # A command whose answer is lost may or may not have been applied: let the caller decide.
        self._fail_pending(
            ConnectionLost(f"connection to the broker lost ({reason}) with a command in flight")
        )

    def _fail_pending(self, error: DynsecError) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)

    def _deliver(self, payload: bytes) -> None:
        try:
            responses = json.loads(payload)["responses"]
            key = responses[0].get("correlationData")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            log.warning("dynsec.bad_response", size=len(payload))
            return
        future = self._pending.get(key)  # other replicas' answers arrive here too: ignore them
        if future is not None and not future.done():
            future.set_result(responses)

    # ---- commands ---------------------------------------------------------------------------

    async def execute(self, commands: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Send one batch of dynsec commands; the plugin's responses, in order (errors not raised)."""
        if self._loop is None or self._closing:
            raise DynsecError("not running: call start() first")
        key = uuid.uuid4().hex
        body = json.dumps({"commands": [{**c, "correlationData": key} for c in commands]})
        names = ", ".join(str(c.get("command")) for c in commands)
        future: asyncio.Future[list[dict[str, Any]]] = self._loop.create_future()
        self._pending[key] = future
        try:
            async with asyncio.timeout(self.timeout):
                while True:
                    await self._ready.wait()
                    info = self._client.publish(COMMAND_TOPIC, body, qos=1)
                    if info.rc != mqtt.MQTT_ERR_NO_CONN:
                        break
                    # paho saw the connection drop before its callback reached this loop; any
                    # reconnect happens after this moment, so its "ready" arrives after this clear.
                    self._ready.clear()
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    raise DynsecError(f"could not send {names}: {mqtt.error_string(info.rc)}")
                responses = await future
        except TimeoutError:
            raise DynsecError(
                f"no answer from the broker's dynsec plugin within {self.timeout}s ({names})"
            ) from None
        finally:
            self._pending.pop(key, None)
        if len(responses) != len(commands):
            raise DynsecError(f"dynsec answered {len(responses)} of {len(commands)} commands ({names})")
        return responses
