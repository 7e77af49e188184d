"""`sensorcloud simulate`: devices like the original ones, publishing realistic readings over MQTT.

A Raspberry Pi reports temperature and humidity; an Intel Edison temperature and a potentiometer.
Devices are created through the REST API as the given user (or reused: their secrets are kept in
<data dir>/simulator-devices.json, since the API shows a secret only once).
"""

from __future__ import annotations

import json
import math
import os
import random
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

KINDS = ("raspberry-pi", "intel-edison")
ACK_WAIT_S = 10.0  # on the way out, how long to wait for the broker to acknowledge what was sent


@dataclass
class SimDevice:
    id: str
    secret: str
    topic_prefix: str
    kind: str
    mqtt_host: str
    mqtt_port: int


class SimulationError(Exception):
    """Something the person running the simulator must fix (bad credentials, server down...)."""


def _api_error(response: httpx.Response) -> str:
    try:
        return str(response.json().get("msg", response.text))
    except ValueError:
        return response.text[:200]


def login(api: httpx.Client, email: str, password: str) -> str:
    response = api.post("/auth/login", json={"email": email, "password": password})
    if response.status_code != 200:
        raise SimulationError(f"login failed ({response.status_code}): {_api_error(response)}")
    return str(response.json()["auth_token"])


def ensure_devices(api: httpx.Client, token: str, count: int, store: Path) -> list[SimDevice]:
    """Reuse the devices saved in `store` that still exist; create the rest."""
    headers = {"Authorization": f"Bearer {token}"}
    saved = [SimDevice(**d) for d in json.loads(store.read_text())] if store.exists() else []
    listed = api.get("/api/v1/devices", headers=headers, params={"limit": 1000})
    if listed.status_code != 200:
        raise SimulationError(f"cannot list devices ({listed.status_code}): {_api_error(listed)}")
    existing = {d["id"] for d in listed.json()["data"]}
    devices = [d for d in saved if d.id in existing][:count]
    while len(devices) < count:
        kind = KINDS[len(devices) % len(KINDS)]
        created = api.post(
            "/api/v1/devices", json={"name": f"sim-{kind}-{len(devices) + 1}"}, headers=headers
        )
        if created.status_code != 201:
            raise SimulationError(f"cannot create a device ({created.status_code}): {_api_error(created)}")
        body = created.json()
        devices.append(
            SimDevice(
                body["id"],
                body["secret"],
                body["topic_prefix"],
                kind,
                body["mqtt"]["host"],
                body["mqtt"]["port"],
            )
        )
    store.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(store, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # holds device secrets
    with os.fdopen(fd, "w") as fh:
        json.dump([asdict(d) for d in devices], fh)
    return devices


def reading(device: SimDevice, seq: int, now: float) -> dict[str, Any]:
    """A plausible reading: slow daily drift plus noise, as a real room would show."""
    phase = (now / 86400.0) * 2 * math.pi + hash(device.id) % 100
    doc: dict[str, Any] = {"ts": round(now, 3), "seq": seq}
    doc["temperature"] = round(21 + 3 * math.sin(phase) + random.gauss(0, 0.2), 2)
    if device.kind == "raspberry-pi":
        doc["humidity"] = round(45 + 10 * math.cos(phase) + random.gauss(0, 0.5), 1)
    else:
        doc["potentiometer"] = max(0, min(1023, int(512 + 400 * math.sin(phase * 7) + random.gauss(0, 5))))
    return doc


class Publisher:
    """One MQTT connection per device, as real devices would have."""

    def __init__(self, devices: list[SimDevice], host_override: str | None = None) -> None:
        self.clients: list[tuple[SimDevice, mqtt.Client]] = []
        self.sent = 0
        self.acked = 0
        self._lock = threading.Lock()  # acknowledgements arrive on each client's network thread
        for device in devices:
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device.id, protocol=mqtt.MQTTv311)
            client.username_pw_set(device.id, device.secret)
            client.on_publish = self._on_publish
            client.connect_async(host_override or device.mqtt_host, device.mqtt_port, keepalive=30)
            client.loop_start()
            self.clients.append((device, client))

    def _on_publish(self, *_args: Any) -> None:
        with self._lock:
            self.acked += 1

    def wait_connected(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not all(c.is_connected() for _, c in self.clients):
            if time.monotonic() > deadline:
                down = sum(1 for _, c in self.clients if not c.is_connected())
                raise SimulationError(
                    f"{down} device(s) could not connect to the MQTT broker (refused or down)"
                )
            time.sleep(0.05)

    def publish(self, index: int, seq: int) -> None:
        device, client = self.clients[index % len(self.clients)]
        client.publish(device.topic_prefix, json.dumps(reading(device, seq, time.time())), qos=1)
        self.sent += 1

    def wait_acked(self, timeout: float) -> int:
        """Wait up to `timeout` s until the broker has acknowledged every message sent (QoS 1: it
        has taken responsibility for them); the number still unacknowledged."""
        deadline = time.monotonic() + timeout
        while self.acked < self.sent and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.sent - self.acked

    def close(self) -> None:
        for _, client in self.clients:
            client.disconnect()
            client.loop_stop()
