"""Read-side benchmark: the iot service over HTTP, 32 concurrent clients, beside /health and the baseline.

    .venv/bin/python bench/query.py                          # what `make bench-query` runs (10M rows)
    .venv/bin/python bench/query.py --rows 2000000 --repeat 1 --cases health,latest,baseline
    .venv/bin/python bench/query.py --pg-dir /tmp/qpg     # keep the loaded cluster; reuse it next time

Loads 1,000 topics (`sensors/dev-XXXXX/temp`, one reading per topic every --interval seconds, the newest
at the load time) into a durable PostgreSQL (fsync on), generated inside PostgreSQL with
generate_series: --rows readings into database `sc_full`, the newest --small-rows of the same readings
into `sc_small`, and the same --rows readings into the naive baseline's own table readings(topic, ts,
payload jsonb) in database `naive`. Then, against --replicas `sensorcloud serve --target iot`
processes per database (the connections are spread over them) and the baseline under gunicorn
with 2 workers, it runs each case for --duration seconds (after --warmup) with --connections
keep-alive clients (bench/query_load.py, one process), --repeat rounds with the cases interleaved:
  health         GET /health: the same stack's trivial endpoint, the ceiling
  latest         GET /iot/{topic}/latest (the seed's route; answered from the `topics` table)
  range          GET /api/v1/readings?topic=&from=&to=&limit=100: 100 readings at a random place in
                 the last year
  aggregate      GET /api/v1/readings/aggregate?topic=&from=<a year ago>&to=<load time> (interval
                 auto: 1d, 365 buckets)
  seed_range     GET /iot/{topic}/{start}/{end}: the seed's period route, the same 100 readings
  baseline       GET /latest/{device} on ../shared/baseline/naive_api.py (gunicorn -w 2)
  range_small, aggregate_small: range and aggregate on `sc_small` (the cost must not grow with the table)
Prints a table and writes bench/results/query.json.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import json
import os
import platform
import random
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import jwt  # noqa: E402
import psycopg  # noqa: E402
from bench.common import cpu_model, package_versions  # noqa: E402

from sensorcloud.core.keys import HS256_KID  # noqa: E402
from sensorcloud.core.migrate import migrate_url  # noqa: E402
from sensorcloud.devstack.ports import free_port  # noqa: E402
from sensorcloud.devstack.postgres import PostgresServer, remove, start_postgres  # noqa: E402
from sensorcloud.ingest.partitions import create_sql, month_start, next_month  # noqa: E402

BIN = Path(sys.executable).parent
BENCH = ROOT / "bench"
YEAR = dt.timedelta(days=365)
USERS = 10  # topic t belongs to user 1 + t % USERS; each client connection acts as one user
RANGE_ROWS = 100
PATHS_PER_GROUP = 400
CHUNK_ROWS = 250_000
JWT_SECRET = secrets.token_urlsafe(40)
BASELINE_SECRET = secrets.token_urlsafe(40)
CASES = ("health", "latest", "range_small", "range", "aggregate_small", "aggregate", "seed_range", "baseline")
SMALL_CASES = {"range_small", "aggregate_small"}
LABELS = {
    "health": "/health (ceiling)",
    "latest": "latest  /iot/{topic}/latest",
    "range": "range   /api/v1/readings, 100 rows",
    "aggregate": "aggregate, a year (auto: 1d)",
    "seed_range": "seed range /iot/{topic}/{start}/{end}",
    "baseline": "baseline naive_api /latest (gunicorn -w 2)",
    "range_small": "range, small table",
    "aggregate_small": "aggregate, small table",
}


# ---- the data -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dataset:
    """1,000 topics, one reading each every `interval` s, newest at `end`; reading k of topic t is at
    end - k * interval - phase(t), phase(t) = t * interval // topics (the topics are not in step)."""

    topics: int
    per_topic: int
    interval: int
    end: dt.datetime

    @property
    def rows(self) -> int:
        return self.topics * self.per_topic

    def key(self) -> dict[str, Any]:
        return {**self.__dict__, "end": self.end.isoformat()}

    def ts(self, t: int, k: int) -> dt.datetime:
        return self.end - dt.timedelta(seconds=k * self.interval + t * self.interval // self.topics)

    @property
    def oldest(self) -> dt.datetime:
        return self.ts(self.topics - 1, self.per_topic - 1)


def topic_name(t: int) -> str:
    return f"sensors/{device_name(t)}/temp"


def device_name(t: int) -> str:
    return f"dev-{t:05d}"


# Every row of a chunk of k (reading numbers), all topics, in time order as an ingest would write them.
_GEN = (
    "SELECT t, k, 'dev-' || lpad(t::text, 5, '0') AS dev, 20 + 10 * sin((k + t) / 50.0) AS num, "
    "%(end)s::timestamptz - (k * %(interval)s + t * %(interval)s / %(topics)s) * interval '1 second' AS ts "
    "FROM generate_series(0, %(topics)s - 1) t, generate_series(%(k0)s::int, %(k1)s::int) k"
)
SC_INSERT = (
    "INSERT INTO readings (dedup_key, ts, topic, device_id, num, val, received_at) "  # noqa: S608
    "SELECT md5(dev || ':' || k), ts, 'sensors/' || dev || '/temp', dev, num, NULL, ts "
    f"FROM ({_GEN}) g ORDER BY ts"
)
SC_TOPICS = (
    "INSERT INTO topics (topic, device_id, owner_id, last_ts, last_num, last_val, count) "  # noqa: S608
    "SELECT 'sensors/' || dev || '/temp', dev, 1 + t %% %(users)s, ts, num, NULL, %(per_topic)s "
    f"FROM ({_GEN}) g"
)
NAIVE_DDL = (  # as naive_ingest.py
    "CREATE TABLE IF NOT EXISTS readings (topic text NOT NULL, ts timestamptz NOT NULL, "
    "payload jsonb NOT NULL)"
)
NAIVE_INDEX = (
    "CREATE INDEX IF NOT EXISTS readings_topic_ts ON readings (topic, ts DESC)"  # as naive_ingest.py
)
NAIVE_INSERT = (
    "INSERT INTO readings (topic, ts, payload) "  # noqa: S608
    "SELECT 'sensors/' || dev || '/temp', ts, jsonb_build_object('value', num) "
    f"FROM ({_GEN}) g ORDER BY ts"
)
META = "bench_query_meta"


def loaded_key(conn: psycopg.Connection[Any]) -> dict[str, Any] | None:
    row = conn.execute(f"SELECT to_regclass('{META}')").fetchone()
    if row is None or row[0] is None:
        return None
    got = conn.execute(f"SELECT spec FROM {META}").fetchone()  # noqa: S608
    return None if got is None else dict(got[0])


def load(url: str, kind: str, data: Dataset, say: Callable[[str], None]) -> float:
    """Fill database `url` (migrated for kind 'sensorcloud'; empty for 'naive'); seconds taken (0: kept)."""
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        if loaded_key(conn) == {"kind": kind, **data.key()}:
            say(f"{kind} {data.rows:,} rows: already loaded")
            return 0.0
        if kind == "naive":
            conn.execute("DROP TABLE IF EXISTS readings")
            conn.execute(NAIVE_DDL)
        else:
            conn.execute("TRUNCATE readings, topics")
            month = month_start(data.oldest)
            while month <= data.end + dt.timedelta(days=62):
                conn.execute(create_sql(month))  # type: ignore[arg-type]
                month = next_month(month)
        chunk_k = max(1, CHUNK_ROWS // data.topics)
        params: dict[str, Any] = {"end": data.end, "interval": data.interval, "topics": data.topics}
        insert = NAIVE_INSERT if kind == "naive" else SC_INSERT
        for k1 in range(data.per_topic - 1, -1, -chunk_k):  # oldest first
            k0 = max(0, k1 - chunk_k + 1)
            conn.execute(insert, {**params, "k0": k0, "k1": k1})  # type: ignore[arg-type]
            done = (data.per_topic - k0) * data.topics
            say(f"{kind} {done:,} / {data.rows:,} rows ({time.perf_counter() - started:.0f} s)")
        if kind == "naive":
            conn.execute(NAIVE_INDEX)
        else:
            conn.execute(SC_TOPICS, {**params, "k0": 0, "k1": 0, "users": USERS, "per_topic": data.per_topic})
        conn.execute("VACUUM ANALYZE")
        conn.execute(f"CREATE TABLE IF NOT EXISTS {META} (spec jsonb NOT NULL)")
        conn.execute(f"DELETE FROM {META}")  # noqa: S608
        conn.execute(f"INSERT INTO {META} VALUES (%s)", (json.dumps({"kind": kind, **data.key()}),))  # noqa: S608
    return round(time.perf_counter() - started, 1)


def ensure_database(pg: PostgresServer, name: str) -> str:
    if not pg.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'").strip():  # noqa: S608
        pg.psql(f"CREATE DATABASE {name}")
    return pg.url_for(name)


def previous_end(url: str, kind: str, data: Dataset) -> dt.datetime | None:
    """The load time of a kept database with the same shape (--pg-dir), so that it is reused."""
    with contextlib.suppress(psycopg.Error), psycopg.connect(url, autocommit=True) as conn:
        key = loaded_key(conn)
        if key and {k: key.get(k) for k in ("kind", "topics", "per_topic", "interval")} == {
            "kind": kind,
            "topics": data.topics,
            "per_topic": data.per_topic,
            "interval": data.interval,
        }:
            return dt.datetime.fromisoformat(key["end"])
    return None


# ---- processes ------------------------------------------------------------------------------------


class Procs:
    """Every process this run started, each stopped by its own pid on the way out."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.all: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with (self.logs / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(args, env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        self.all.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.all):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.all:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENSORCLOUD_")}
    return {**env, **extra}


def wait_http(
    url: str, proc: subprocess.Popen[bytes], log: Path, headers: dict[str, str] | None = None
) -> None:
    deadline = time.monotonic() + 60
    with httpx.Client(timeout=5) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args!r} exited ({proc.returncode}); see {log}")
            with contextlib.suppress(httpx.TransportError):
                if client.get(url, headers=headers).status_code == 200:
                    return
            time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after 60 s; see {log}")


def start_iot(procs: Procs, name: str, url: str, replicas: int, extra: dict[str, str]) -> list[Service]:
    out = []
    for i in range(replicas):
        port = free_port()
        env = clean_env(
            {
                "SENSORCLOUD_DATABASE_URL": url,
                "SENSORCLOUD_HTTP_HOST": "127.0.0.1",
                "SENSORCLOUD_HTTP_PORT": str(port),
                "SENSORCLOUD_JWT_ALGORITHM": "HS256",
                "SENSORCLOUD_JWT_SECRET": JWT_SECRET,
                "SENSORCLOUD_DATA_DIR": str(procs.logs / f"data-{name}-{i}"),
                **extra,
            }
        )
        proc = procs.start(f"iot-{name}-{i}", [str(BIN / "sensorcloud"), "serve", "--target", "iot"], env)
        out.append(Service(f"iot-{name}-{i}", port, proc))
    for s in out:
        wait_http(f"http://127.0.0.1:{s.port}/ready", s.proc, procs.logs / f"{s.name}.log")
    return out


def start_baseline(procs: Procs, baseline_dir: Path, url: str, token: str) -> Service:
    port = free_port()
    env = clean_env({"DATABASE_URL": url, "JWT_SECRET": BASELINE_SECRET})
    args = [str(BIN / "gunicorn"), "-w", "2", "-b", f"127.0.0.1:{port}", "--chdir", str(baseline_dir)]
    proc = procs.start("baseline", [*args, "naive_api:app"], env)
    headers = {"Authorization": f"Bearer {token}"}
    wait_http(f"http://127.0.0.1:{port}/latest/{device_name(0)}", proc, procs.logs / "baseline.log", headers)
    return Service("baseline", port, proc)


@dataclass
class Service:
    name: str
    port: int
    proc: subprocess.Popen[bytes]


# ---- CPU accounting from /proc ----------------------------------------------------------------------

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields from 3 (state) on


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process, its reaped children (cutime) and its live children."""
    own = _stat(pid)
    if own is None:
        return 0.0
    total = sum(int(x) for x in own[11:15])  # utime stime cutime cstime
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            st = _stat(int(entry.name))
            if st is not None and int(st[1]) == pid:
                total += int(st[11]) + int(st[12])
    return total / TICK


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of every CPU since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


# ---- requests -------------------------------------------------------------------------------------


def iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def user_token(user: int) -> str:
    now = int(time.time())
    claims = {
        "iss": "sensorcloud",
        "aud": "sensorcloud-api",
        "sub": str(user),
        "role": "user",
        "iat": now,
        "nbf": now,
        "exp": now + 6 * 3600,
        "jti": uuid.uuid4().hex,
        "typ": "access",
        "sid": uuid.uuid4().hex,
    }
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256", headers={"kid": HS256_KID, "typ": "JWT"})


def baseline_token() -> str:
    now = int(time.time())
    return jwt.encode({"sub": "1", "iat": now, "exp": now + 6 * 3600}, BASELINE_SECRET, algorithm="HS256")


def case_paths(case: str, data: Dataset, user: int, small_per_topic: int, rng: random.Random) -> list[str]:
    """Paths for one user's connections: only that user's topics, random places in the last year."""
    mine = [t for t in range(data.topics) if 1 + t % USERS == user]
    newest_k = min(small_per_topic or data.per_topic, data.per_topic) - RANGE_ROWS  # in both tables
    out = []
    for _ in range(PATHS_PER_GROUP if case not in ("health",) else 1):
        t = rng.choice(mine)
        topic = topic_name(t)
        k0 = rng.randrange(0, max(1, newest_k))
        first, last = data.ts(t, k0 + RANGE_ROWS - 1), data.ts(t, k0)  # 100 readings, both inclusive
        if case == "health":
            out.append("/health")
        elif case == "latest":
            out.append(f"/iot/{topic}/latest")
        elif case in ("range", "range_small"):
            q = {"topic": topic, "from": iso(first), "to": iso(last + dt.timedelta(seconds=1))}
            out.append("/api/v1/readings?" + urlencode({**q, "limit": RANGE_ROWS}, quote_via=quote))
        elif case in ("aggregate", "aggregate_small"):
            q = {"topic": topic, "from": iso(data.end - YEAR), "to": iso(data.end)}
            out.append("/api/v1/readings/aggregate?" + urlencode(q, quote_via=quote))
        elif case == "seed_range":
            out.append(f"/iot/{topic}/{iso(first)}/{iso(last)}")
        elif case == "baseline":
            out.append(f"/latest/{device_name(t)}")
    return out


def check(case: str, port: int, path: str, headers: dict[str, str]) -> str:
    """One request, its answer checked: what a case measures must be what it says."""
    r = httpx.get(f"http://127.0.0.1:{port}{path}", headers=headers, timeout=60)
    if r.status_code != 200:
        raise RuntimeError(f"{case}: {path} answered {r.status_code}: {r.text[:300]}")
    body = r.json()
    if case == "latest":
        assert len(body["data"]) == 1, body
        return "1 reading"
    if case in ("range", "range_small", "seed_range"):
        assert len(body["data"]) == RANGE_ROWS, (case, len(body["data"]))
        return f"{len(body['data'])} readings"
    if case in ("aggregate", "aggregate_small"):
        counts = sum(b["count"] for b in body["data"])
        return f"{len(body['data'])} buckets of {body['interval']}, {counts} readings"
    if case == "baseline":
        assert "payload" in body, body
        return "1 reading"
    return "ok"


# ---- running --------------------------------------------------------------------------------------


@dataclass
class Opts:
    connections: int
    duration: float
    warmup: float
    workdir: Path


@dataclass
class Target:
    """Where a case's requests go and which processes serve them (for the CPU figures)."""

    ports: list[int]
    pids: list[int]
    groups: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""


def run_case(case: str, target: Target, opts: Opts, pg_pid: int) -> dict[str, Any]:
    spec = {
        "targets": [["127.0.0.1", p] for p in target.ports],
        "connections": opts.connections,
        "warmup_s": opts.warmup,
        "duration_s": opts.duration,
        "groups": target.groups,
        "return_latencies": True,
    }
    server0 = sum(tree_cpu(p) for p in target.pids)
    pg0 = tree_cpu(pg_pid)
    busy0, total0 = machine_busy()
    load_before = os.getloadavg()[0]
    out = subprocess.run(
        [sys.executable, str(BENCH / "query_load.py")],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        check=False,
        timeout=opts.warmup + opts.duration + 120,
    )
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed: {out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    span = opts.warmup + opts.duration
    busy1, total1 = machine_busy()
    cores = os.cpu_count() or 1
    # CPU seconds over warm-up + window; the warm-up runs the same load, so per request it is the same
    result["span_s"] = span
    result["server_cpu_s"] = round(sum(tree_cpu(p) for p in target.pids) - server0, 3)
    result["postgres_cpu_s"] = round(tree_cpu(pg_pid) - pg0, 3)
    result["machine_busy_cores"] = round((busy1 - busy0) / max(1, total1 - total0) * cores, 2)
    result["loadavg_1m"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    return result


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def pct(sorted_us: list[int], q: float) -> float | None:
    if not sorted_us:
        return None
    return round(sorted_us[min(len(sorted_us) - 1, round(q * (len(sorted_us) - 1)))] / 1000, 3)


def summarize(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Every round of a case pooled: rate = answers / time, percentiles over all latencies."""
    out = {}
    for case, rs in runs.items():
        lat = sorted(x for r in rs for x in r["latencies_us"])
        ok = sum(r["ok"] for r in rs)
        window = sum(r["window_s"] for r in rs)
        span = sum(r["span_s"] for r in rs)
        # requests served over warm-up + window, estimated at the measured rate (for CPU per request)
        served = ok / window * span if window else 0
        out[case] = {
            "rate": round(ok / window, 1) if window else None,
            "p50_ms": pct(lat, 0.50),
            "p90_ms": pct(lat, 0.90),
            "p99_ms": pct(lat, 0.99),
            "max_ms": pct(lat, 1.0),
            "mean_ms": round(sum(lat) / len(lat) / 1000, 3) if lat else None,
            "requests": ok,
            "errors": sum(r["errors"] for r in rs),
            "rates_by_round": [r["rate"] for r in rs],
            "p50_ms_by_round": [r["p50_ms"] for r in rs],
            "server_cpu_ms_per_request": round(sum(r["server_cpu_s"] for r in rs) / served * 1000, 3)
            if served
            else None,
            "postgres_cpu_ms_per_request": round(sum(r["postgres_cpu_s"] for r in rs) / served * 1000, 3)
            if served
            else None,
            "server_cores": round(sum(r["server_cpu_s"] for r in rs) / span, 2) if span else None,
            "postgres_cores": round(sum(r["postgres_cpu_s"] for r in rs) / span, 2) if span else None,
            "client_cores": round(statistics.mean(r["client_cpu"] for r in rs), 2),
            "machine_busy_cores": round(statistics.mean(r["machine_busy_cores"] for r in rs), 2),
            "loadavg_1m": [r["loadavg_1m"] for r in rs],
            "bytes_per_response": rs[-1].get("bytes_per_response"),
        }
    return out


TARGETS = {
    # name: (description, measured value from the summary, goal, "min" or "max")
    "latest_vs_health_rate": ("latest req/s >= 0.40 x /health req/s", 0.40, "min"),
    "latest_vs_baseline_rate": ("latest req/s >= 15 x baseline req/s", 15.0, "min"),
    "aggregate_p99_vs_latest_p99": ("aggregate (a year) p99 < 10 x latest p99", 10.0, "max"),
    "range_full_vs_small_p50": ("range p50 full / small <= 1.3", 1.3, "max"),
    "aggregate_full_vs_small_p50": ("aggregate p50 full / small <= 1.3", 1.3, "max"),
}


def ratios(s: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    def get(case: str, key: str) -> float | None:
        value = s.get(case, {}).get(key)
        return float(value) if value is not None else None

    return {
        "latest_vs_health_rate": ratio(get("latest", "rate"), get("health", "rate")),
        "latest_vs_baseline_rate": ratio(get("latest", "rate"), get("baseline", "rate")),
        "aggregate_p99_vs_latest_p99": ratio(get("aggregate", "p99_ms"), get("latest", "p99_ms")),
        "range_full_vs_small_p50": ratio(get("range", "p50_ms"), get("range_small", "p50_ms")),
        "aggregate_full_vs_small_p50": ratio(get("aggregate", "p50_ms"), get("aggregate_small", "p50_ms")),
        "range_full_vs_small_p99": ratio(get("range", "p99_ms"), get("range_small", "p99_ms")),
        "aggregate_full_vs_small_p99": ratio(get("aggregate", "p99_ms"), get("aggregate_small", "p99_ms")),
        "seed_range_vs_range_rate": ratio(get("seed_range", "rate"), get("range", "rate")),
    }


def targets(r: dict[str, float | None]) -> dict[str, dict[str, Any]]:
    out = {}
    for name, (what, goal, kind) in TARGETS.items():
        value = r.get(name)
        met = None if value is None else (value >= goal if kind == "min" else value <= goal)
        out[name] = {"target": what, "goal": goal, "measured": value, "met": met}
    return out


def _n(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def table(result: dict[str, Any]) -> str:
    s = result["cases"]
    head = (
        f"{'case':<42} {'rows':>5} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'x health':>8} {'x base':>6} "
        f"{'cpu ms':>6} {'pg ms':>5} {'busy':>4} {'err':>3}"
    )
    lines = [head, "-" * len(head)]
    for case in CASES:
        if case not in s:
            continue
        c = s[case]
        rows = "-" if case == "health" else result["rows_small" if case in SMALL_CASES else "rows"]
        rows = rows if rows == "-" else f"{rows / 1e6:g}M"
        lines.append(
            f"{LABELS[case]:<42} {rows:>5} {_n(c['rate']):>7} "
            f"{_n(c['p50_ms'], 2):>8} {_n(c['p99_ms'], 2):>8} "
            f"{_n(ratio(c['rate'], s.get('health', {}).get('rate')), 2):>8} "
            f"{_n(ratio(c['rate'], s.get('baseline', {}).get('rate')), 1):>6} "
            f"{_n(c['server_cpu_ms_per_request'], 2):>6} {_n(c['postgres_cpu_ms_per_request'], 2):>5} "
            f"{_n(c['machine_busy_cores'], 1):>4} {c['errors']:>3}"
        )
    start, end = result["machine"]["loadavg_at_start"][0], result["machine"]["loadavg_at_end"][0]
    lines += [
        "cpu ms, pg ms: CPU time per request of the serving processes (iot replicas or gunicorn) and of",
        f"PostgreSQL; busy: cores busy on the whole machine ({os.cpu_count()}). Load average (1 min): "
        f"{start} at the start, {end} at the end.",
        "",
    ]
    for t in result["targets"].values():
        met = {True: "met", False: "NOT met", None: "not measured"}[t["met"]]
        lines.append(f"target: {t['target']:<44} measured {_n(t['measured'], 2):>7} -> {met}")
    return "\n".join(lines)


def machine_facts(pg: PostgresServer) -> dict[str, Any]:
    service = ("fastapi", "starlette", "uvicorn", "uvloop", "httptools", "sqlalchemy", "asyncpg", "PyJWT")
    packages = package_versions([*service, "flask", "gunicorn", "psycopg"])
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "postgres": pg.psql("SELECT version()").strip().split(" on ")[0],
        "postgres_fsync": pg.psql("SHOW fsync").strip(),
        "packages": packages,
    }


@contextlib.contextmanager
def postgres(pg_dir: Path | None) -> Iterator[PostgresServer]:
    server = start_postgres(pg_dir, durable=True)
    try:
        yield server
    finally:
        if pg_dir is None:
            remove(server)
        else:
            server.stop()


def say(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000, help="readings in the full table (10M)")
    ap.add_argument(
        "--small-rows", type=int, default=1_000_000, help="readings in the small table (0: no comparison)"
    )
    ap.add_argument("--topics", type=int, default=1000)
    ap.add_argument(
        "--interval",
        type=int,
        default=31_536,
        help="seconds between two readings of a topic (default 8.76 h: 1,000 readings per topic per year, "
        "so the 1M table holds the whole year that the aggregate reads)",
    )
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--duration", type=float, default=5.0, help="measured seconds per case and round")
    ap.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each")
    ap.add_argument("--repeat", type=int, default=3, help="rounds, the cases interleaved in each; pooled")
    ap.add_argument(
        "--replicas", type=int, default=2, help="iot processes per database (baseline: 2 workers)"
    )
    ap.add_argument("--cases", default=",".join(CASES), help=f"subset of {','.join(CASES)}")
    ap.add_argument("--baseline-dir", type=Path, default=ROOT.parent / "shared" / "baseline")
    ap.add_argument("--out", type=Path, default=BENCH / "results" / "query.json")
    ap.add_argument(
        "--pg-dir",
        type=Path,
        help="keep the PostgreSQL cluster here and reuse its data when the shape matches",
    )
    ap.add_argument("--keep", action="store_true", help="keep the working directory (service logs)")
    ap.add_argument(
        "--service-env", action="append", default=[], metavar="SENSORCLOUD_X=V", help="extra iot setting"
    )
    args = ap.parse_args()
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = set(cases) - set(CASES)
    if unknown:
        ap.error(f"unknown case(s): {', '.join(sorted(unknown))}")
    if not args.small_rows:
        cases = [c for c in cases if c not in SMALL_CASES]
    if args.rows // args.topics < RANGE_ROWS or 0 < args.small_rows // args.topics < RANGE_ROWS:
        ap.error(f"--rows and --small-rows need at least {RANGE_ROWS} readings per topic (the range case)")
    if "baseline" in cases and not (args.baseline_dir / "naive_api.py").exists():
        ap.error(f"{args.baseline_dir / 'naive_api.py'} not found (see --baseline-dir)")
    if args.small_rows and args.small_rows // args.topics * args.interval < YEAR.total_seconds():
        print(
            "note: the small table covers less than the year the aggregate reads: the aggregate then reads "
            "more readings in the full table than in the small one",
            file=sys.stderr,
        )
    workdir = Path(tempfile.mkdtemp(prefix="sc-bench-query-"))
    started = dt.datetime.now(dt.UTC)
    loadavg_start = [round(x, 2) for x in os.getloadavg()]
    procs = Procs(workdir)
    opts = Opts(args.connections, args.duration, args.warmup, workdir)
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in CASES if c in cases}
    checks: dict[str, str] = {}
    load_s: dict[str, float] = {}
    with postgres(args.pg_dir) as pg:
        pg.psql("ALTER SYSTEM SET max_wal_size = '4GB'")  # fewer checkpoints while loading
        pg.psql("SELECT pg_reload_conf()")
        facts = machine_facts(pg)
        urls = {"full": ensure_database(pg, "sc_full")}
        if args.small_rows:
            urls["small"] = ensure_database(pg, "sc_small")
        if "baseline" in cases:
            urls["naive"] = ensure_database(pg, "naive")
        per_topic = args.rows // args.topics
        end = previous_end(
            urls["full"], "sensorcloud", Dataset(args.topics, per_topic, args.interval, started)
        )
        end = end or started.replace(minute=0, second=0, microsecond=0)
        full = Dataset(args.topics, per_topic, args.interval, end)
        small = Dataset(args.topics, args.small_rows // args.topics, args.interval, end)
        jobs = {"full": ("sensorcloud", full)}
        if "small" in urls:
            jobs["small"] = ("sensorcloud", small)
        if "naive" in urls:
            jobs["naive"] = ("naive", full)

        for name, (kind, _) in jobs.items():
            if kind == "sensorcloud":
                asyncio.run(migrate_url(urls[name]))
        print(f"loading {', '.join(f'{n} ({d.rows:,} rows)' for n, (_, d) in jobs.items())}", file=sys.stderr)
        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(jobs)) as pool:
            futures = {n: pool.submit(load, urls[n], kind, d, say) for n, (kind, d) in jobs.items()}
            load_s = {n: f.result() for n, f in futures.items()}
        load_s["wall"] = round(time.perf_counter() - t0, 1)
        pg.psql("CHECKPOINT")
        sizes = {
            n: pg.psql(
                "SELECT pg_size_pretty(pg_database_size(current_database()))", u.rsplit("/", 1)[1]
            ).strip()
            for n, u in urls.items()
        }
        print(f"loaded in {load_s['wall']} s; sizes {sizes}", file=sys.stderr)

        try:
            extra = dict(kv.split("=", 1) for kv in args.service_env)
            services = {"full": start_iot(procs, "full", urls["full"], args.replicas, extra)}
            if "small" in urls:
                services["small"] = start_iot(procs, "small", urls["small"], args.replicas, extra)
            tokens = {u: user_token(u) for u in range(1, USERS + 1)}
            rng = random.Random(42)
            plan: dict[str, Target] = {}
            for case in runs:
                if case == "baseline":
                    base_token = baseline_token()
                    svc = start_baseline(procs, args.baseline_dir, urls["naive"], base_token)
                    pids = [svc.proc.pid]
                    target = Target([svc.port], pids)
                    headers = {"Authorization": f"Bearer {base_token}"}
                    target.groups = [
                        {"headers": headers, "paths": case_paths(case, full, u, small.per_topic, rng)}
                        for u in range(1, USERS + 1)
                    ]
                else:
                    iot = services["small" if case in SMALL_CASES else "full"]
                    target = Target([s.port for s in iot], [s.proc.pid for s in iot])
                    target.groups = [
                        {
                            "headers": {"Authorization": f"Bearer {tokens[u]}"},
                            "paths": case_paths(case, full, u, small.per_topic, rng),
                        }
                        for u in range(1, USERS + 1)
                    ]
                first = target.groups[0]
                checks[case] = check(case, target.ports[0], first["paths"][0], first["headers"])
                plan[case] = target
            pg_pid = pg.process.pid if pg.process else 0
            for rnd in range(args.repeat):
                for case in runs:
                    print(f"[round {rnd + 1}] {case} ...", file=sys.stderr, flush=True)
                    result = run_case(case, plan[case], opts, pg_pid)
                    runs[case].append(result)
                    rate, p50, p99 = result["rate"], result["p50_ms"], result["p99_ms"]
                    say(f"{rate:,.0f} req/s, p50 {p50} ms, p99 {p99} ms, errors {result['errors']}")
        finally:
            procs.stop_all()

    summary = summarize(runs)
    r = ratios(summary)
    result = {
        "benchmark": "query",
        "timestamp": started.isoformat(timespec="seconds"),
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "rows": full.rows,
        "rows_small": small.rows if args.small_rows else None,
        "topics": args.topics,
        "interval_s": args.interval,
        "readings_per_topic_per_year": round(YEAR.total_seconds() / args.interval),
        "data_end": full.end.isoformat(),
        "connections": args.connections,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "repeat": args.repeat,
        "iot_replicas_per_database": args.replicas,
        "service_env": dict(kv.split("=", 1) for kv in args.service_env),
        "load_s": load_s,
        "database_sizes": sizes,
        "checks": checks,
        "cases": summary,
        "ceiling": summary.get("health"),
        "baseline": summary.get("baseline"),
        "ratios": r,
        "targets": targets(r),
        "machine": {
            **facts,
            "loadavg_at_start": loadavg_start,
            "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "method": (
            "closed loop: each of `connections` keep-alive connections (bench/query_load.py) sends a "
            "request, reads the whole answer, sends the next; req/s = 200 answers completed in the windows "
            "/ their length; latency from the first byte written (or the reconnect, for gunicorn's "
            "Connection: close) to the last byte read; every round of a case pooled (rounds interleave "
            "the cases); CPU per request from /proc over warm-up + window"
        ),
        "runs": {
            c: [{k: v for k, v in r.items() if k != "latencies_us"} for r in rs] for c, rs in runs.items()
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"results: {args.out}")
    if args.keep:
        print(f"logs: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
