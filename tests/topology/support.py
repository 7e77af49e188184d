"""Helpers for the topology tests: the gateway as a client, devices, numbered MQTT publishers that
record when the broker acknowledged each message, a threaded HTTP load, and broker restarts."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx

from sensorcloud.broker.mosquitto_process import start_mosquitto
from sensorcloud.devstack.topology import Topology
from tests.support.sequence import SequencePublisher

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


class Publishing:
    """`devices` publishing the numbers 0..total-1 between them (device k: n % len(devices) == k)."""

    def __init__(self, port: int, devices: Sequence[Device], total: int, rate_per_device: float) -> None:
        self.total = total
        self.publishers = [
            SequencePublisher(port, d, range(k, total, len(devices)), rate_per_device)
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
            merged.update(p.acked_times())
        return merged

    def wait_acked(self, within: float) -> bool:
        deadline = time.monotonic() + within
        return all([p.all_acked(max(0.1, deadline - time.monotonic())) for p in self.publishers])

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


def cut_short_at_kill(outcomes: list[Outcome], kill_started: float, killed_at: float) -> list[Outcome]:
    """Answers a killed replica had begun to write: uvicorn writes a response's header and body
    apart and nginx forwards the header at once, so a kill -9 between the two leaves the client a
    response cut short (and nginx nothing to retry). Only requests in flight at the kill qualify."""
    return [
        o
        for o in outcomes
        if o.status == 0
        and "without sending complete message body" in o.body
        and o.started <= killed_at
        and o.started + o.elapsed >= kill_started
    ]


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
