"""The fastest subscriber we can write: gmqtt, QoS 1, optimistic acknowledgement, json.loads per message.

This is the "raw" line of the ingest benchmark: it stores nothing, so what it receives per second is the
limit any ingest on the same broker and publishers can reach.

    BENCH_MQTT_PASSWORD=... python bench/raw_sub.py --port 18830 --username sc-service --count 100000
    ... --client-id raw-drain --prepare    # create a persistent session with the subscription, leave
    ... --client-id raw-drain --resume     # come back to it and drain what was queued meanwhile

Prints {"event": "ready"} once subscribed (live) or connected (--resume), then one JSON summary line
with the instants (time.monotonic, system-wide) of CONNACK, the first and the last message.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from typing import Any

from gmqtt import Client  # type: ignore[import-untyped]
from gmqtt.mqtt.constants import MQTTv50, MQTTv311  # type: ignore[import-untyped]

SESSION_EXPIRY_S = 3600


class Counter:
    def __init__(self, count: int) -> None:
        self.count = count
        self.received = 0
        self.decode_errors = 0
        self.t_connack: float | None = None
        self.t_first: float | None = None
        self.t_last: float | None = None
        self.done = asyncio.Event()
        self.subscribed = asyncio.Event()

    def on_connect(self, _client: Any, _flags: Any, _rc: Any, _properties: Any) -> None:
        if self.t_connack is None:
            self.t_connack = time.monotonic()

    def on_subscribe(self, _client: Any, _mid: Any, _qos: Any, _properties: Any) -> None:
        self.subscribed.set()

    def on_message(self, _client: Any, _topic: str, payload: bytes, _qos: int, _properties: Any) -> int:
        now = time.monotonic()
        if self.t_first is None:
            self.t_first = now
        try:
            json.loads(payload)
        except ValueError:
            self.decode_errors += 1
        self.received += 1
        self.t_last = now
        if self.received >= self.count:
            self.done.set()
        return 0  # PUBACK reason: success


async def run(args: argparse.Namespace) -> dict[str, Any]:
    counter = Counter(args.count)
    persistent = args.prepare or args.resume
    kwargs: dict[str, Any] = {}
    if persistent and args.mqtt == 5:
        kwargs["session_expiry_interval"] = SESSION_EXPIRY_S
    client = Client(args.client_id, clean_session=not persistent, optimistic_acknowledgement=True, **kwargs)
    client.on_connect = counter.on_connect
    client.on_subscribe = counter.on_subscribe
    client.on_message = counter.on_message
    if args.username:
        client.set_auth_credentials(args.username, os.environ.get("BENCH_MQTT_PASSWORD"))
    version = MQTTv50 if args.mqtt == 5 else MQTTv311
    await client.connect(args.host, args.port, keepalive=60, version=version)
    if not args.resume:
        client.subscribe(args.topic, qos=args.qos)
        await asyncio.wait_for(counter.subscribed.wait(), 10)
    if args.prepare:
        await client.disconnect()
        return {"event": "prepared", "client_id": args.client_id}
    print(json.dumps({"event": "ready"}), flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    started = time.monotonic()
    cpu_at_ready = time.process_time()
    last_seen, last_change = 0, started
    while not counter.done.is_set() and not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(counter.done.wait(), 0.5)
        now = time.monotonic()
        if counter.received != last_seen:
            last_seen, last_change = counter.received, now
        elif now - last_change > args.idle:
            break  # nothing arrived for --idle seconds: report what we have
    await client.disconnect()
    return {
        "received": counter.received,
        "complete": counter.received >= args.count,
        "decode_errors": counter.decode_errors,
        "t_connack": counter.t_connack,
        "t_first": counter.t_first,
        "t_last": counter.t_last,
        "cpu_s": round(time.process_time() - cpu_at_ready, 4),  # this process, from "ready" on
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--username", default=None, help="password from $BENCH_MQTT_PASSWORD")
    ap.add_argument("--client-id", default="")
    ap.add_argument("--topic", default="sensors/#")
    ap.add_argument("--qos", type=int, default=1, choices=[0, 1])
    ap.add_argument("--mqtt", type=int, default=5, choices=[3, 5], help="protocol: 5 or 3 (3.1.1)")
    ap.add_argument("--count", type=int, default=0, help="stop after this many messages")
    ap.add_argument("--idle", type=float, default=30.0, help="give up after this long without a message")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--prepare", action="store_true", help="create a persistent session, then leave")
    mode.add_argument("--resume", action="store_true", help="resume the persistent session and drain it")
    args = ap.parse_args()
    if not args.client_id:
        args.client_id = f"bench-raw-{os.getpid()}"
    logging.basicConfig(level=logging.WARNING)
    print(json.dumps(asyncio.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
