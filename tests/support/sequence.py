"""A device publishing a known numbered sequence at QoS 1, for tests that count what got stored."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from tests.support.stack import DeviceCreds


class SequencePublisher:
    """One device connection publishing `{"value": n, "seq": n, "ts": now}` for each n, QoS 1.

    paho keeps every un-acknowledged QoS 1 message and sends it again (DUP) after reconnecting, and
    `publish()` while disconnected queues the message: a broker restart loses none of them.
    """

    def __init__(
        self, port: int, device: DeviceCreds, numbers: Sequence[int], rate: float | None = None
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
        self._acked: set[int] = set()
        self.mids: list[int] = []
        self.connects = 0
        self.error: BaseException | None = None
        self._connected = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"publisher-{device.id}", daemon=True)
        self.client.connect_async("127.0.0.1", port, keepalive=10)

    def _on_connect(self, _c: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        if not rc.is_failure:
            self.connects += 1
            self._connected.set()

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, _rc: ReasonCode, _p: Any) -> None:
        with self._lock:
            self._acked.add(mid)

    def start(self) -> None:
        self.client.loop_start()
        if not self._connected.wait(10):
            raise TimeoutError(f"device {self.device.id} could not connect")
        self._thread.start()

    def _run(self) -> None:
        try:
            started = time.monotonic()
            for k, n in enumerate(self.numbers):
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

    @property
    def acked(self) -> int:
        with self._lock:
            return sum(1 for mid in self.mids if mid in self._acked)

    def wait_acked(self, within: float) -> None:
        """Every message published and acknowledged by the broker (PUBACK), or fail."""
        self._thread.join(within)
        deadline = time.monotonic() + within
        while self.acked < len(self.numbers) and time.monotonic() < deadline:
            if self.error is not None:
                raise self.error
            time.sleep(0.05)
        if self.error is not None:
            raise self.error
        assert self.acked == len(self.numbers), f"{self.acked}/{len(self.numbers)} acknowledged"

    def close(self) -> None:
        if self._thread.ident is not None:
            self._thread.join(30)
        self.client.disconnect()
        self.client.loop_stop()
