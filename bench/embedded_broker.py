"""The monolith's embedded broker (sensorcloud.broker.embedded, amqtt) alone, for the benchmark.

    BENCH_MQTT_PASSWORD=... python bench/embedded_broker.py --port 18830 --username sc-service

The same class and configuration `sensorcloud serve` runs, with no device registered and only the
service account able to log in; nothing subscribes but whoever the benchmark connects. Prints
{"event": "ready", "port": N} once listening; stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys

import structlog

from sensorcloud.broker.acl import DeviceIdentity
from sensorcloud.broker.embedded import EmbeddedBroker


class NoDevices:
    """A device registry with nobody in it: only the service account connects."""

    async def authenticate(self, username: str, password: str) -> DeviceIdentity | None:
        return None


async def serve(host: str, port: int, username: str, password: str) -> None:
    broker = EmbeddedBroker(host, port, NoDevices(), username, password)
    await broker.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(json.dumps({"event": "ready", "port": broker.port}), flush=True)
    await stop.wait()
    await broker.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--username", required=True, help="password from $BENCH_MQTT_PASSWORD")
    args = ap.parse_args()
    # stdout carries only the ready line; the broker's own log (warnings and up) goes to stderr
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
    )
    password = os.environ.get("BENCH_MQTT_PASSWORD")
    if not password:
        raise SystemExit("set BENCH_MQTT_PASSWORD")
    asyncio.run(serve(args.host, args.port, args.username, password))


if __name__ == "__main__":
    main()
