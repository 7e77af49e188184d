"""MQTT load generator for the benchmarks: ../shared/baseline/mqtt_load.py plus what a bench needs.

    BENCH_MQTT_PASSWORD=... python bench/load.py --port 18830 --username sc-service \
        --n 100000 --qos 1 --procs 2 --connections 2 [--rate 0] [--wait-go] [--client gmqtt]

Same messages as the baseline (topics <prefix>/dev-XXXXX/temp over --devices devices; ~100-byte JSON
payload with device, ts, temp, hum, seq, fw), same paho-mqtt client, same socket servicing (loop(0)
every 50 publishes) and in-flight window per connection. Differences, and why the bench needs them:
- credentials (--username, password from $BENCH_MQTT_PASSWORD): both brokers refuse anonymous clients;
- --connections K connections spread over the --procs processes (the baseline: one per process);
- every connection connects first; the run starts only when all are connected (and, with --wait-go,
  when a line arrives on stdin), so connection set-up is not part of the measured time;
- the summary reports the instants of the first publish and the last acknowledgement on the
  system-wide monotonic clock (time.monotonic), so another process can time "first publish ->
  all stored" against it;
- --client gmqtt: the same messages, connections and window from gmqtt on asyncio, which costs about
  half of paho's CPU per message (paho builds reason-code and property objects for every PUBACK and
  reads each packet in several system calls), for measuring what a consumer does when the
  publishers take less of a shared machine. Its window: once full, it sends again when half of it
  is acknowledged.
Prints {"event": "ready"} once connected, then one JSON summary line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import queue
import random
import sys
import time
from dataclasses import dataclass
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from typing import Any

import gmqtt  # type: ignore[import-untyped]
import paho.mqtt.client as mqtt
from gmqtt.mqtt.constants import MQTTv311  # type: ignore[import-untyped]
from gmqtt.storage import PersistentStorage  # type: ignore[import-untyped]
from paho.mqtt.enums import CallbackAPIVersion

CONNECT_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class Options:
    host: str
    port: int
    username: str | None
    password: str | None
    qos: int
    rate: float
    devices: int
    inflight: int
    prefix: str
    ack_timeout: float
    client: str = "paho"


def make_payload(seq: int, devices: int) -> tuple[str, bytes]:
    """The baseline's message: topic device and payload (identical fields and formatting)."""
    dev = f"dev-{seq % devices:05d}"
    doc = {
        "device": dev,
        "ts": round(time.time(), 3),
        "temp": round(random.uniform(18, 26), 2),
        "hum": round(random.uniform(30, 60), 2),
        "seq": seq,
        "fw": "1.4.2",
    }
    return dev, json.dumps(doc, separators=(",", ":")).encode()


def _client(opts: Options, client_id: str) -> tuple[mqtt.Client, list[int]]:
    acked = [0]

    def on_publish(_c: mqtt.Client, _u: object, _mid: int, _rc: object, _p: object) -> None:
        acked[0] += 1

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    if opts.username:
        c.username_pw_set(opts.username, opts.password)
    c.max_inflight_messages_set(opts.inflight)
    c.on_publish = on_publish
    c.connect(opts.host, opts.port, keepalive=60)
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    while not c.is_connected():
        if c.loop(0.1) != mqtt.MQTT_ERR_SUCCESS or time.monotonic() > deadline:
            raise ConnectionError(f"{client_id}: MQTT connection refused or timed out")
    return c, acked


class InflightWindow(PersistentStorage):  # type: ignore[misc]
    """gmqtt's store of a connection's unacknowledged QoS 1 publishes, used as its in-flight window.

    gmqtt sends without limit; the publisher asks `room()` before each publish. Once the window is
    full it waits until half of it is acknowledged, then sends again (one wake-up per half window,
    not one per PUBACK).
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self.inflight = 0
        self.acked = 0
        self._room = asyncio.Event()

    def push_message(self, mid: int, raw_package: bytes) -> None:
        super().push_message(mid, raw_package)
        self.inflight += 1

    def remove_message_by_mid(self, mid: int) -> None:
        super().remove_message_by_mid(mid)
        self.inflight -= 1
        self.acked += 1
        if self.inflight <= self.size // 2:
            self._room.set()

    async def room(self) -> None:
        while self.inflight >= self.size:
            self._room.clear()
            await self._room.wait()


async def _gmqtt_client(opts: Options, client_id: str) -> tuple[Any, InflightWindow]:
    window = InflightWindow(opts.inflight)
    c = gmqtt.Client(client_id, persistent_storage=window)
    if opts.username:
        c.set_auth_credentials(opts.username, opts.password)
    await asyncio.wait_for(c.connect(opts.host, opts.port, keepalive=60, version=MQTTv311), CONNECT_TIMEOUT_S)
    return c, window


async def gmqtt_publisher(
    idx: int, first_seq: int, n: int, conns: int, opts: Options, ready: Queue[Any], go: Event, out: Queue[Any]
) -> None:
    """The same messages, connections, window and timing as paho_publisher, from gmqtt on asyncio."""
    try:
        clients = [await _gmqtt_client(opts, f"bench-load-{os.getpid()}-{idx}-{j}") for j in range(conns)]
    except Exception as exc:
        ready.put(("error", f"{type(exc).__name__}: {exc}"))
        return
    ready.put(("ready", idx))
    await asyncio.get_running_loop().run_in_executor(None, go.wait)
    cpu_at_go = time.process_time()
    interval = 1.0 / opts.rate if opts.rate else 0.0
    t0 = time.monotonic()
    for i in range(n):
        c, window = clients[i % conns]
        if opts.qos and window.inflight >= window.size:
            await window.room()
        dev, body = make_payload(first_seq + i, opts.devices)
        c.publish(f"{opts.prefix}/{dev}/temp", body, qos=opts.qos)
        if i % 50 == 49:
            await asyncio.sleep(0)  # let the loop read PUBACKs
        if interval:
            delay = t0 + (i + 1) * interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
    if opts.qos > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(w.wait_empty() for _, w in clients)), opts.ack_timeout)
    t1 = time.monotonic()
    acked = sum(w.acked for _, w in clients) if opts.qos > 0 else n
    for c, _ in clients:
        await c.disconnect()  # QoS 0: the transport writes out what it holds before it closes
    if opts.qos == 0:
        t1 = time.monotonic()
    out.put((n, acked, t0, t1, time.process_time() - cpu_at_go))


def publisher(
    idx: int, first_seq: int, n: int, conns: int, opts: Options, ready: Queue[Any], go: Event, out: Queue[Any]
) -> None:
    """One publisher process: connect `conns` connections, say ready, wait for go, publish n messages."""
    if opts.client == "gmqtt":
        asyncio.run(gmqtt_publisher(idx, first_seq, n, conns, opts, ready, go, out))
    else:
        paho_publisher(idx, first_seq, n, conns, opts, ready, go, out)


def paho_publisher(
    idx: int, first_seq: int, n: int, conns: int, opts: Options, ready: Queue[Any], go: Event, out: Queue[Any]
) -> None:
    try:
        clients = [_client(opts, f"bench-load-{os.getpid()}-{idx}-{j}") for j in range(conns)]
    except Exception as exc:
        ready.put(("error", f"{type(exc).__name__}: {exc}"))
        return
    ready.put(("ready", idx))
    go.wait()
    cpu_at_go = time.process_time()
    interval = 1.0 / opts.rate if opts.rate else 0.0
    t0 = time.monotonic()
    for i in range(n):
        c = clients[i % conns][0]
        dev, body = make_payload(first_seq + i, opts.devices)
        c.publish(f"{opts.prefix}/{dev}/temp", body, qos=opts.qos)
        if i % 50 == 49:
            for cl, _ in clients:
                cl.loop(0)  # service sockets: flush writes, read PUBACKs
        if interval:
            delay = t0 + (i + 1) * interval - time.monotonic()
            if delay > 0.002:
                clients[0][0].loop(min(delay, 0.05))
            elif delay > 0:
                time.sleep(delay)
    deadline = time.monotonic() + opts.ack_timeout
    if opts.qos > 0:
        while sum(a[0] for _, a in clients) < n and time.monotonic() < deadline:
            for cl, _ in clients:
                cl.loop(0.01)
    else:
        for cl, _ in clients:
            while cl.want_write() and time.monotonic() < deadline:
                cl.loop(0.01)
    t1 = time.monotonic()
    acked = sum(a[0] for _, a in clients) if opts.qos > 0 else n
    for cl, _ in clients:
        cl.disconnect()
        cl.loop(0.05)
    out.put((n, acked, t0, t1, time.process_time() - cpu_at_go))


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--username", default=None, help="password from $BENCH_MQTT_PASSWORD")
    ap.add_argument("--n", type=int, default=10000, help="total messages (split across --procs)")
    ap.add_argument("--qos", type=int, default=1, choices=[0, 1])
    ap.add_argument("--rate", type=float, default=0, help="target msgs/s per process (0 = unthrottled)")
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--connections", type=int, default=0, help="total connections (0 = one per process)")
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--inflight", type=int, default=1000, help="unacknowledged QoS 1 messages per connection")
    ap.add_argument(
        "--client", choices=["gmqtt", "paho"], default="paho", help="MQTT client library of the publishers"
    )
    ap.add_argument("--prefix", default="sensors")
    ap.add_argument("--seq-base", type=int, default=0, help="first seq (distinct runs, distinct messages)")
    ap.add_argument("--ack-timeout", type=float, default=120.0, help="give up waiting for PUBACKs after")
    ap.add_argument("--wait-go", action="store_true", help="start publishing on a line from stdin")
    args = ap.parse_args()

    opts = Options(
        args.host,
        args.port,
        args.username,
        os.environ.get("BENCH_MQTT_PASSWORD"),
        args.qos,
        args.rate,
        args.devices,
        args.inflight,
        args.prefix,
        args.ack_timeout,
        args.client,
    )
    connections = max(args.connections or args.procs, args.procs)
    ctx = mp.get_context("fork")
    ready: Queue[Any] = ctx.Queue()
    out: Queue[Any] = ctx.Queue()
    go = ctx.Event()
    per = args.n // args.procs
    procs = []
    for i in range(args.procs):
        n = per if i < args.procs - 1 else args.n - per * (args.procs - 1)
        conns = connections // args.procs + (1 if i < connections % args.procs else 0)
        p = ctx.Process(target=publisher, args=(i, args.seq_base + i * per, n, conns, opts, ready, go, out))
        procs.append(p)
        p.start()
    try:
        for _ in procs:
            kind, detail = ready.get(timeout=CONNECT_TIMEOUT_S + 10)
            if kind == "error":
                raise SystemExit(f"publisher failed to connect: {detail}")
    except queue.Empty:
        raise SystemExit("publishers did not connect in time") from None
    finally:
        if sys.exc_info()[0] is not None:
            for p in procs:
                p.terminate()
    print(json.dumps({"event": "ready"}), flush=True)
    if args.wait_go:
        sys.stdin.readline()
    go.set()
    results = [out.get() for _ in procs]
    sent = sum(r[0] for r in results)
    acked = sum(r[1] for r in results)
    t_first = min(r[2] for r in results)
    t_last = max(r[3] for r in results)
    span = t_last - t_first
    summary = {
        "sent": sent,
        "acked": acked,
        "qos": args.qos,
        "procs": args.procs,
        "connections": connections,
        "t_first_publish": t_first,
        "t_last_ack": t_last,
        "elapsed_s": round(span, 3),
        "rate": round(sent / span, 1) if span > 0 else None,
        "cpu_s": round(sum(r[4] for r in results), 4),  # the publisher processes, from go to their end
    }
    print(json.dumps(summary), flush=True)  # at once: a bench may be waiting for the publishers' end
    for p in procs:
        p.join()


if __name__ == "__main__":
    main()
