"""Helpers for the topology tests: the gateway as a client, devices, numbered MQTT publishers that
record when the broker acknowledged each message, a threaded HTTP load, and broker restarts."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from sensorcloud.broker.mosquitto_process import start_mosquitto
from sensorcloud.devstack.topology import Topology

PASSWORD = "correct horse battery staple"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass(frozen=True)
class Device:
    id: str
    secret: str
    prefix: str


class Gateway:
    """The topology's nginx, as a client sees it."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"

    def client(self, timeout: float = 15.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout)

    def register(self, name: str) -> None:
        with self.client() as c:
            r = c.post(
                "/auth/register", json={"email": f"{name}@test.com", "username": name, "password": PASSWORD}
            )
        assert r.status_code == 201, r.text

    def login(self, name: str) -> str:
        with self.client() as c:
            r = c.post("/auth/login", json={"email": f"{name}@test.com", "password": PASSWORD})
        assert r.status_code == 200, r.text
        token: str = r.json()["auth_token"]
        return token

    def create_device(self, token: str, name: str) -> Device:
        with self.client() as c:
            r = c.post("/api/v1/devices", json={"name": name}, headers=bearer(token))
        assert r.status_code == 201, r.text
        body = r.json()
        return Device(body["id"], body["secret"], body["topic_prefix"])

    def status(self) -> dict[str, Any]:
        with self.client(timeout=10.0) as c:
            body: dict[str, Any] = c.get("/status").json()
        return body


def instances_up(status: dict[str, Any]) -> dict[str, list[str]]:
    """{service: [state of each instance]} from a /status answer."""
    return {s["name"]: [i["status"] for i in s["instances"]] for s in status["services"]}


def everything_up(gateway: Gateway, expected: dict[str, int]) -> bool:
    try:
        states = instances_up(gateway.status())
    except (httpx.HTTPError, ValueError, KeyError):
        return False
    return all(states.get(name) == ["up"] * count for name, count in expected.items())


# ---- the database ------------------------------------------------------------------------------


def numbers_stored(topology: Topology, topics: Iterable[str]) -> list[float]:
    """`num` of every reading stored on these topics (one entry per row: duplicates show)."""
    assert topology.pg is not None
    listed = ", ".join(f"'{t}'" for t in topics)
    out = topology.pg.psql(f"SELECT num FROM readings WHERE topic IN ({listed})", "iot")
    return [float(line) for line in out.split()]


def count_stored(topology: Topology, topics: Iterable[str]) -> int:
    assert topology.pg is not None
    listed = ", ".join(f"'{t}'" for t in topics)
    return int(topology.pg.psql(f"SELECT count(*) FROM readings WHERE topic IN ({listed})", "iot"))


def wait_count(
    topology: Topology, topics: Sequence[str], expected: int, within: float, quiet: float | None = None
) -> int:
    """Poll until `expected` rows are stored, or (with `quiet`) the count stops moving for that long."""
    deadline = time.monotonic() + within
    seen, changed = count_stored(topology, topics), time.monotonic()
    while seen < expected and time.monotonic() < deadline:
        if quiet is not None and time.monotonic() - changed > quiet:
            break
        time.sleep(0.2)
        now = count_stored(topology, topics)
        if now != seen:
            seen, changed = now, time.monotonic()
    return seen


# ---- MQTT --------------------------------------------------------------------------------------


class NumberedPublisher:
    """One device connection publishing `{"value": n, "seq": n, "ts": now}` for each n at QoS 1, at
    `rate` messages a second, and recording when the broker acknowledged each one (PUBACK).

    paho keeps every unacknowledged QoS 1 message and sends it again after a reconnect, and queues
    what is published while disconnected: a broker restart makes it retry, not drop.
    """

    def __init__(self, port: int, device: Device, numbers: Sequence[int], rate: float) -> None:
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
                ahead = (k + 1) / self.rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
        except BaseException as exc:  # reported by wait_acked
            self.error = exc

    @property
    def sent(self) -> int:
        return len(self.mids)

    def acked(self) -> dict[int, float]:
        """{number: when the broker acknowledged it} for every acknowledged message so far."""
        with self._lock:
            acked = dict(self._acked_at)
        mids = list(self.mids)
        return {self.numbers[k]: acked[mid] for k, mid in enumerate(mids) if mid in acked}

    def wait_acked(self, within: float) -> bool:
        """Every number published and acknowledged by the broker within `within` seconds."""
        deadline = time.monotonic() + within
        self._thread.join(within)
        while len(self.acked()) < len(self.numbers) and time.monotonic() < deadline:
            if self.error is not None:
                raise self.error
            time.sleep(0.05)
        if self.error is not None:
            raise self.error
        return len(self.acked()) == len(self.numbers)

    def close(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(30)
        self.client.disconnect()
        self.client.loop_stop()


class Publishing:
    """`devices` publishing the numbers 0..total-1 between them (device k: n % len(devices) == k)."""

    def __init__(self, port: int, devices: Sequence[Device], total: int, rate_per_device: float) -> None:
        self.total = total
        self.publishers = [
            NumberedPublisher(port, d, range(k, total, len(devices)), rate_per_device)
            for k, d in enumerate(devices)
        ]

    @property
    def topics(self) -> list[str]:
        return [p.topic for p in self.publishers]

    @property
    def sent(self) -> int:
        return sum(p.sent for p in self.publishers)

    def acked(self) -> dict[int, float]:
        merged: dict[int, float] = {}
        for p in self.publishers:
            merged.update(p.acked())
        return merged

    def wait_acked(self, within: float) -> bool:
        deadline = time.monotonic() + within
        return all([p.wait_acked(max(0.1, deadline - time.monotonic())) for p in self.publishers])

    @property
    def connects(self) -> list[int]:
        return [p.connects for p in self.publishers]

    def __enter__(self) -> Publishing:
        try:
            for p in self.publishers:
                p.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        for p in self.publishers:
            p.close()


def restart_broker(topology: Topology) -> None:
    """Start Mosquitto again, as `make up-services` did: same port, same working directory (so the
    same mosquitto.db and dynamic-security store). The previous process must have exited."""
    old = topology.broker
    assert old is not None
    assert old.process.poll() is not None, "the broker is still running"
    topology.broker = start_mosquitto(
        old.workdir,
        old.port,
        bind="0.0.0.0",
        admin_user="sensorcloud-admin",
        admin_password=topology.secrets["admin_password"],
        service_user="sensorcloud-service",
        service_password=topology.secrets["service_password"],
    )


def kill_broker(topology: Topology) -> None:
    """kill -9: no final save of mosquitto.db."""
    assert topology.broker is not None
    topology.broker.process.kill()
    topology.broker.process.wait()


def replica_ready(topology: Topology, name: str) -> bool:
    port = topology.children[name].port
    try:
        return httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


# ---- HTTP load ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    n: int  # the request's number, unique across the load's workers
    status: int  # 0: no HTTP answer at all
    body: str
    started: float
    elapsed: float


Request = Callable[[httpx.Client, int], httpx.Response]


@dataclass
class HttpLoad:
    """`workers` threads, each with its own connection pool, sending `request(client, n)` in a loop
    (n counts up across all workers) until the block ends; every outcome is kept."""

    base_url: str
    workers: int
    request: Request
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _counter: itertools.count[int] = field(default_factory=itertools.count)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _next(self) -> int:
        with self._lock:
            return next(self._counter)

    def _work(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=30.0) as client:
            while not self._stop.is_set():
                n = self._next()
                started = time.monotonic()
                try:
                    r = self.request(client, n)
                    outcome = Outcome(n, r.status_code, r.text, started, time.monotonic() - started)
                except httpx.HTTPError as exc:
                    outcome = Outcome(n, 0, repr(exc), started, time.monotonic() - started)
                with self._lock:
                    self.outcomes.append(outcome)

    def __enter__(self) -> HttpLoad:
        for i in range(self.workers):
            t = threading.Thread(target=self._work, name=f"load-{i}", daemon=True)
            self._threads.append(t)
            t.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)

    def by_status(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for o in self.outcomes:
            counts[o.status] = counts.get(o.status, 0) + 1
        return dict(sorted(counts.items()))
