"""A device publishing a known numbered sequence at QoS 1, for tests that count what got stored."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode


class Credentials(Protocol):
    """A device as the tests hold it (tests.support.stack.DeviceCreds, tests.topology.support.Device)."""

    @property
    def id(self) -> str: ...

    @property
    def secret(self) -> str: ...

    @property
    def prefix(self) -> str: ...


class SequencePublisher:
    """One device connection publishing `{"value": n, "seq": n, "ts": now}` for each n, QoS 1, at
    `rate` messages a second (None: as fast as paho goes), recording when the broker acknowledged each.

    paho keeps every un-acknowledged QoS 1 message and sends it again (DUP) after reconnecting, and
    `publish()` while disconnected queues the message: a broker restart loses none of them.
    """

    def __init__(
        self, port: int, device: Credentials, numbers: Sequence[int], rate: float | None = None
    ) -> None:
        self.device, self.numbers, self.rate = device, numbers, rate
        self.topic = f"{device.prefix}/n"
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device.id, protocol=mqtt.MQTTv311)
        self.client.username_pw_set(device.id, device.secret)
        self.client.max_inflight_messages_set(100)
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        self.client.on_publish = self._on_publish
        self.client.on_connect = self._on_connect
        self._lock = threading.Lock()
        self._acked_at: dict[int, float] = {}  # mid -> when its PUBACK came (mids stay below 65536)
        self.mids: list[int] = []
        self.connects = 0
        self.error: BaseException | None = None
        self._connected = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"publisher-{device.id}", daemon=True)
        self.client.connect_async("127.0.0.1", port, keepalive=10)

    def _on_connect(self, _c: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        if not rc.is_failure:
            self.connects += 1
            self._connected.set()

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, _rc: ReasonCode, _p: Any) -> None:
        now = time.monotonic()
        with self._lock:
            self._acked_at.setdefault(mid, now)

    def start(self) -> None:
        self.client.loop_start()
        if not self._connected.wait(15):
            raise TimeoutError(f"device {self.device.id} could not connect")
        self._thread.start()

    def _run(self) -> None:
        try:
            started = time.monotonic()
            for k, n in enumerate(self.numbers):
                if self._stop.is_set():
                    return
                payload = json.dumps({"value": n, "seq": n, "ts": time.time()})
                info = self.client.publish(self.topic, payload, qos=1)
                if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                    raise RuntimeError(f"publish refused: {mqtt.error_string(info.rc)}")
                self.mids.append(info.mid)
                if self.rate is not None:
                    ahead = (k + 1) / self.rate - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
        except BaseException as exc:  # reported by wait_acked
            self.error = exc

    @property
    def sent(self) -> int:
        return len(self.mids)

    def acked_times(self) -> dict[int, float]:
        """{number: when the broker acknowledged it} for every acknowledged message so far."""
        with self._lock:
            acked = dict(self._acked_at)
        return {self.numbers[k]: acked[mid] for k, mid in enumerate(list(self.mids)) if mid in acked}

    @property
    def acked(self) -> int:
        return len(self.acked_times())

    def all_acked(self, within: float) -> bool:
        """Every number published and acknowledged by the broker within `within` seconds."""
        deadline = time.monotonic() + within
        self._thread.join(within)
        while self.acked < len(self.numbers) and time.monotonic() < deadline:
            if self.error is not None:
                raise self.error
            time.sleep(0.05)
        if self.error is not None:
            raise self.error
        return self.acked == len(self.numbers)

    def wait_acked(self, within: float) -> None:
        """all_acked, or fail."""
        assert self.all_acked(within), f"{self.acked}/{len(self.numbers)} acknowledged"

    def close(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(30)
        self.client.disconnect()
        self.client.loop_stop()
