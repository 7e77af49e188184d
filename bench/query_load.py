"""HTTP/1.1 keep-alive load generator for bench/query.py: N connections, closed loop, fixed duration.

    .venv/bin/python bench/query_load.py < spec.json        # prints one JSON line with the results

The spec (JSON on stdin):
    {"targets": [["127.0.0.1", 8084], ...],  # connection i goes to targets[i % len(targets)]
     "connections": 32, "warmup_s": 2, "duration_s": 10,
     "groups": [{"headers": {"Authorization": "Bearer ..."}, "paths": ["/iot/x/latest", ...]}, ...]}
Connection i sends the requests of groups[i % len(groups)] in turn (starting at a different path on
each connection), one at a time: it writes a request, reads the whole response, then writes the next.
A response with `Connection: close` (gunicorn's sync workers send it) makes it reconnect; the connect
then counts in that request's latency. Requests that complete within the measured window (after the
warm-up) count; latency is from the first byte written (or the connect) to the last byte read.

Out: {"ok", "errors", "statuses", "rate", "p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms",
"bytes_per_response", "reconnects", "client_cpu", "window_s"} (and "latencies_us", every one, when the
spec says "return_latencies": true). Raw asyncio protocol on uvloop
when available, so the client costs little CPU next to the servers it measures.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from typing import Any

CRLF2 = b"\r\n\r\n"


class Closed(Exception):
    pass


class Conn(asyncio.Protocol):
    """One HTTP/1.1 connection that reads one response (Content-Length framed) per request."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[tuple[int, bool, int]] | None = None
        self.closed = False
        self._head_end = -1
        self._need = -1
        self._status = 0
        self._keep = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not an asyncio.Transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self._head_end < 0:
            end = self.buf.find(CRLF2)
            if end < 0:
                return
            head = bytes(self.buf[:end]).lower()
            self._status = int(head[9:12])
            self._keep = b"\r\nconnection: close" not in head
            at = head.find(b"\r\ncontent-length:")
            if at < 0:
                self._fail(Closed("response without Content-Length"))
                return
            stop = head.find(b"\r\n", at + 2)
            length = int(head[at + 17 : stop if stop > 0 else len(head)])
            self._head_end = end + 4
            self._need = self._head_end + length
        if len(self.buf) >= self._need:
            size = self._need - self._head_end
            del self.buf[: self._need]
            self._head_end = self._need = -1
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result((self._status, self._keep, size))

    def _fail(self, exc: Exception) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(Closed(str(exc or "connection closed")))


class Stats:
    def __init__(self, start: float, end: float) -> None:
        self.start = start
        self.end = end
        self.latencies: list[int] = []
        self.statuses: dict[int, int] = {}
        self.errors = 0
        self.bytes = 0
        self.reconnects = 0


async def run_connection(
    index: int, host: str, port: int, requests: list[bytes], stats: Stats, stop_at: float
) -> None:
    loop = asyncio.get_running_loop()
    conn: Conn | None = None
    n = len(requests)
    i = (index * 7919) % n
    clock = time.perf_counter_ns
    start_ns, end_ns = int(stats.start * 1e9), int(stats.end * 1e9)
    while time.perf_counter() < stop_at:
        t0 = clock()
        try:
            if conn is None or conn.closed:
                if conn is not None:
                    stats.reconnects += 1
                _, conn = await loop.create_connection(Conn, host, port)
            conn.waiter = loop.create_future()
            assert conn.transport is not None
            conn.transport.write(requests[i])
            status, keep, size = await conn.waiter
        except (OSError, Closed):
            conn = None
            if start_ns <= clock() <= end_ns:
                stats.errors += 1
            await asyncio.sleep(0.01)
            continue
        t1 = clock()
        i = (i + 1) % n
        if start_ns <= t1 <= end_ns:
            stats.statuses[status] = stats.statuses.get(status, 0) + 1
            if status == 200:
                stats.latencies.append(t1 - t0)
                stats.bytes += size
        if not keep:
            assert conn.transport is not None
            conn.transport.close()
            conn = None
    if conn is not None and conn.transport is not None:
        conn.transport.close()


def percentile(sorted_ns: list[int], q: float) -> float | None:
    if not sorted_ns:
        return None
    k = min(len(sorted_ns) - 1, max(0, round(q * (len(sorted_ns) - 1))))
    return round(sorted_ns[k] / 1e6, 3)


def encode(host: str, port: int, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def main_async(spec: dict[str, Any]) -> dict[str, Any]:
    targets = [(str(h), int(p)) for h, p in spec["targets"]]
    groups = spec["groups"]
    connections = int(spec["connections"])
    warmup, duration = float(spec.get("warmup_s", 2)), float(spec["duration_s"])
    now = time.perf_counter()
    stats = Stats(now + warmup, now + warmup + duration)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    tasks = []
    for c in range(connections):
        host, port = targets[c % len(targets)]
        group = groups[c % len(groups)]
        requests = [encode(host, port, path, group.get("headers", {})) for path in group["paths"]]
        tasks.append(run_connection(c, host, port, requests, stats, stats.end))
    await asyncio.gather(*tasks)
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    lat = sorted(stats.latencies)
    ok = len(lat)
    out: dict[str, Any] = {
        "ok": ok,
        "errors": stats.errors + sum(v for k, v in stats.statuses.items() if k != 200),
        "statuses": {str(k): v for k, v in sorted(stats.statuses.items())},
        "rate": round(ok / duration, 1),
        "p50_ms": percentile(lat, 0.50),
        "p90_ms": percentile(lat, 0.90),
        "p99_ms": percentile(lat, 0.99),
        "max_ms": round(lat[-1] / 1e6, 3) if lat else None,
        "mean_ms": round(sum(lat) / ok / 1e6, 3) if ok else None,
        "bytes_per_response": round(stats.bytes / ok) if ok else None,
        "reconnects": stats.reconnects,
        # the client's own CPU over warm-up and window, as a share of one core
        "client_cpu": round(
            ((cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)) / (warmup + duration), 3
        ),
        "window_s": duration,
    }
    if spec.get("return_latencies"):
        out["latencies_us"] = [ns // 1000 for ns in stats.latencies]
    return out


def main() -> None:
    spec = json.loads(sys.stdin.read())
    try:
        import uvloop
    except ImportError:  # plain asyncio works too, with more client CPU per request
        result = asyncio.run(main_async(spec))
    else:
        result = uvloop.run(main_async(spec))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
