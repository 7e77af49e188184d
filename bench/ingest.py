"""Ingest benchmark: sensorcloud's stored rate beside a do-nothing subscriber and the naive baseline.

    .venv/bin/python bench/ingest.py --repeat 3 --live-repeat 7 --naive-messages 10000   # `make bench-ingest`
    .venv/bin/python bench/ingest.py --messages 20000 --cases raw,postgres --repeat 3
    .venv/bin/python bench/ingest.py --cases raw,postgres --rate 12500   # publishers paced

Every case publishes the same messages (bench/load.py: --procs paho processes, QoS 1, the baseline's
topics and payloads) at a fresh broker, and times from the first publish until the last message is
received (raw subscribers) or stored and visible to a query on the bench's own connection (see
poll_stored); it also reports the CPU each component used per message (bench/cpu.py):
  raw         gmqtt subscriber that only JSON-decodes, on Mosquitto with the project's config
  postgres    `sensorcloud serve --target ingest` into PostgreSQL, same Mosquitto config
  naive       ../shared/baseline/naive_ingest.py (one INSERT + COMMIT per message), same config
  embedded    the monolith's embedded broker (amqtt) alone, gmqtt subscriber (MQTT 3.1.1)
  sqlite      the monolith `sensorcloud serve` (embedded broker, SQLite), publishers on its broker
  drain       M messages queued for a stopped ingest's persistent session and for a raw subscriber's:
              each drains them in turn (from CONNACK to the last message received / stored)
Prints a table and writes bench/results/ingest.json. Each case gets a fresh broker and database.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import platform
import secrets
import select
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # tests.support: throwaway PostgreSQL and Mosquitto

import httpx  # noqa: E402
import psycopg  # noqa: E402
import structlog  # noqa: E402
from bench.common import command_version, cpu_model, package_versions, read_json_line  # noqa: E402
from bench.cpu import CpuMeter  # noqa: E402
from tests.support.mosquitto import TestBroker, start_test_broker  # noqa: E402
from tests.support.mqtt import publish_sync  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.postgres import PostgresServer, pg_bindir, remove  # noqa: E402

PYTHON = sys.executable
SENSORCLOUD = str(Path(sys.executable).parent / "sensorcloud")
BENCH = ROOT / "bench"
CASES = ("raw", "postgres", "naive", "embedded", "sqlite", "drain")
LIVE_CASES = ("raw", "postgres")  # --live-repeat: their rounds may outnumber the others'
JWT_SECRET = secrets.token_urlsafe(40)
POLL_S = 0.1  # count(*) of readings: it scans the table, so not more often
FAST_POLL_S = 0.02  # the per-topic counts (a few thousand rows): sensorcloud's cases ...
# ... and once the publishers are done, or 98 % are stored: the end is seen when it happens
FINAL_POLL_S = 0.002
PROGRESS_SQL = "SELECT coalesce(sum(count), 0) FROM topics"
ROWS_PER_MESSAGE = 2  # the load's payload holds two numeric fields (temp, hum): two readings
WARMUP_TOPIC = "sensors/bench/warmup"


@dataclass
class Broker:
    """Where publishers and raw subscribers connect, as which account, in which MQTT version."""

    kind: str  # mosquitto | embedded
    port: int
    username: str
    password: str
    mqtt: int  # 5 or 3 (3.1.1) for the raw subscriber; amqtt speaks 3.1.1 only
    pid: int | None = None  # the broker's process, for its CPU time

    def env(self) -> dict[str, str]:
        return {**os.environ, "BENCH_MQTT_PASSWORD": self.password}


@dataclass
class Run:
    case: str
    round: int
    messages: int
    status: str = "failed"  # complete | incomplete | failed
    msgs_per_s: float | None = None
    elapsed_s: float | None = None
    done: int = 0  # messages received or stored when it ended
    publish_msgs_per_s: float | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Options:
    messages: int
    naive_messages: int
    qos: int
    procs: int
    connections: int
    inflight: int
    client: str
    rate: float
    stall_timeout: float
    workdir: Path
    baseline_dir: Path
    service_env: dict[str, str] = field(default_factory=dict)  # extra SENSORCLOUD_* for ingest/monolith
    keep: bool = False  # --keep: the databases stay too


# ---- processes ------------------------------------------------------------------------------------


class Procs:
    """Every process this run started, so that each is stopped (by its own pid) on the way out."""

    def __init__(self) -> None:
        self._all: list[subprocess.Popen[Any]] = []

    def start(
        self, args: list[str], env: dict[str, str], log: Path, pipes: bool = False
    ) -> subprocess.Popen[str]:
        err = log.open("ab")
        try:
            proc = subprocess.Popen(
                args,
                env=env,
                cwd=ROOT,
                stdin=subprocess.PIPE if pipes else subprocess.DEVNULL,
                stdout=subprocess.PIPE if pipes else err,
                stderr=err,
                text=True,
            )
        finally:
            err.close()
        self._all.append(proc)
        return proc

    @staticmethod
    def stop(proc: subprocess.Popen[Any], timeout: float = 20.0) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop_all(self) -> None:
        for proc in reversed(self._all):
            self.stop(proc, 5.0)


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENSORCLOUD_")}
    env.update(extra)
    return env


# ---- publishers and raw subscribers ---------------------------------------------------------------


class Load:
    """bench/load.py, connected and waiting for go."""

    def __init__(self, procs: Procs, broker: Broker, opts: Options, n: int, seq_base: int, log: Path) -> None:
        args = [
            PYTHON,
            str(BENCH / "load.py"),
            "--port",
            str(broker.port),
            "--username",
            broker.username,
            "--n",
            str(n),
            "--qos",
            str(opts.qos),
            "--procs",
            str(opts.procs),
            "--connections",
            str(opts.connections),
            "--inflight",
            str(opts.inflight),
            "--client",
            opts.client,
            "--rate",
            str(opts.rate),
            "--seq-base",
            str(seq_base),
            "--wait-go",
        ]
        self.proc = procs.start(args, broker.env(), log, pipes=True)
        read_json_line(self.proc, "the publishers")  # {"event": "ready"}: all connected
        self.t_go = 0.0

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.t_go = time.monotonic()
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def result(self) -> dict[str, Any]:
        return read_json_line(self.proc, "the publishers")

    def finished(self) -> bool:
        """The publishers have every acknowledgement: their summary waits to be read (they print it
        before they exit, which takes tens of milliseconds more), or they are gone."""
        assert self.proc.stdout is not None
        return bool(select.select([self.proc.stdout], [], [], 0)[0]) or self.proc.poll() is not None


def raw_subscriber(
    procs: Procs, broker: Broker, count: int, log: Path, client_id: str, mode: str = ""
) -> subprocess.Popen[str]:
    args = [
        PYTHON,
        str(BENCH / "raw_sub.py"),
        "--port",
        str(broker.port),
        "--username",
        broker.username,
        "--client-id",
        client_id,
        "--qos",
        "1",
        "--mqtt",
        str(broker.mqtt),
        "--count",
        str(count),
    ]
    if mode:
        args.append(f"--{mode}")
    return procs.start(args, broker.env(), log, pipes=True)


def mosquitto() -> tuple[TestBroker, Broker]:
    server = start_test_broker()
    pid = server.process.process.pid if server.process else None
    return server, Broker("mosquitto", server.port, server.service_user, server.service_password, 5, pid)


# ---- databases ------------------------------------------------------------------------------------


async def prepare_database(url: str) -> str:
    """Migrate, and register one user owning one device whose prefix `sensors` covers every load topic."""
    from sensorcloud.auth.devices_service import DeviceService
    from sensorcloud.auth.service import AuthService
    from sensorcloud.core.db import create_engine, session_factory
    from sensorcloud.core.migrate import migrate
    from sensorcloud.core.settings import Settings
    from sensorcloud.core.shared_state import MemoryState
    from sensorcloud.core.tokens import Principal

    engine = create_engine(url)
    try:
        await migrate(engine)
        sessions = session_factory(engine)
        settings = Settings(database_url=url, jwt_algorithm="HS256", jwt_secret=JWT_SECRET)
        auth = AuthService(settings, sessions, None, MemoryState())  # type: ignore[arg-type]
        user = await auth.register("bench@example.com", "bench", "correct horse battery staple")
        devices = DeviceService(sessions, [])
        creds = await devices.create(Principal(user.id, "user", "bench", "bench", 0), "load", "sensors")
        return creds.device.id
    finally:
        await engine.dispose()


class PgCounter:
    """count(*) of readings on one connection; `backend_pid` is its server process (not the case's CPU)."""

    def __init__(self, url: str) -> None:
        self._conn = psycopg.connect(url, autocommit=True)
        self._conn.execute("SET max_parallel_workers_per_gather = 0")  # one backend: keep the polling cheap
        row = self._conn.execute("SELECT pg_backend_pid()").fetchone()
        self.backend_pid = int(row[0]) if row else 0

    def __call__(self) -> int:
        try:
            row = self._conn.execute("SELECT count(*) FROM readings").fetchone()
        except psycopg.errors.UndefinedTable:
            return -1
        return int(row[0]) if row else 0

    def progress(self) -> int:
        """Rows stored, by the per-topic counts the ingest keeps in the same transactions: cheap."""
        row = self._conn.execute(PROGRESS_SQL).fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        self._conn.close()


class SqliteCounter:
    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(str(path), isolation_level=None, timeout=10)

    def __call__(self) -> int:
        row = self._conn.execute("SELECT count(*) FROM readings").fetchone()
        return int(row[0]) if row else 0

    def progress(self) -> int:
        row = self._conn.execute(PROGRESS_SQL).fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        self._conn.close()


class BenchPostgres(PostgresServer):
    """The tests' throwaway PostgreSQL, but durable like a real one unless told otherwise.

    The test server runs with fsync=off; a benchmark that commits per message (the naive baseline) or
    per batch (ingest) must pay for the WAL flush as a production server does.
    """

    fsync: bool = True

    def start(self) -> None:
        settings = ["max_connections=200"]
        if not self.fsync:
            settings += ["fsync=off", "full_page_writes=off"]
        args = [str(self.bindir / "postgres"), "-D", str(self.datadir), "-p", str(self.port)]
        args += ["-h", "127.0.0.1", "-k", str(self.datadir.parent)]
        for setting in settings:
            args += ["-c", setting]
        with open(self.datadir.parent / "postgres.log", "ab") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=log, **as_postgres_user())
        self.wait_ready()


def as_postgres_user() -> dict[str, Any]:
    """postgres refuses to run as root: then run it as the 'postgres' system user."""
    return {"user": "postgres", "group": "postgres"} if os.geteuid() == 0 else {}


def start_bench_postgres(fsync: bool) -> BenchPostgres:
    bindir = pg_bindir()
    root = Path(tempfile.mkdtemp(prefix="sc-bench-pg-"))
    datadir = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    initdb = [str(bindir / "initdb"), "-D", str(datadir), "-U", "postgres", "--auth=trust", "-E", "UTF8"]
    subprocess.run([*initdb, "--no-locale"], check=True, capture_output=True, **as_postgres_user())
    server = BenchPostgres(datadir=datadir, port=free_port(), bindir=bindir)
    server.fsync = fsync
    server.start()
    return server


# ---- waiting --------------------------------------------------------------------------------------


def wait_ready(base_url: str, proc: subprocess.Popen[Any], log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=base_url, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args!r} exited ({proc.returncode}); see {log}")
            with contextlib.suppress(httpx.TransportError):
                if client.get("/ready").status_code == 200:
                    return
            time.sleep(0.1)
    raise TimeoutError(f"not ready after {timeout}s; see {log}")


def warm_up(broker: Broker, count: Callable[[], int], timeout: float = 30.0) -> int:
    """Publish a one-reading message until the subscriber stores it; the row count after it settles."""
    deadline = time.monotonic() + timeout
    attempt = 0
    while time.monotonic() < deadline:
        attempt += 1
        body = json.dumps({"value": 1, "ts": round(time.time(), 3), "seq": attempt})
        publish_sync(
            broker.port,
            broker.username,
            broker.password,
            [(WARMUP_TOPIC, body)],
            client_id=f"bench-warmup-{attempt}",
        )
        until = time.monotonic() + 2.0
        while time.monotonic() < until:
            if count() >= 1:
                time.sleep(0.5)
                return count()
            time.sleep(POLL_S)
    raise TimeoutError("the subscriber never stored the warm-up message")


@dataclass
class Polled:
    t_done: float | None  # monotonic instant of the snapshot that first held every message
    done: int  # messages stored at the end


def poll_stored(
    count: Callable[[], int],
    baseline: int,
    rows_per_message: int,
    messages: int,
    stall_timeout: float,
    alive: Callable[[], bool],
    progress: Callable[[], int] | None = None,
    published: Callable[[], bool] = lambda: False,
) -> Polled:
    """Poll until every message is stored, progress stalls, or the consumer dies.

    Without `progress`, count(*) of readings every POLL_S. With it (sensorcloud's `topics` counts,
    written in the same transaction as the rows they count), that every FAST_POLL_S, and every
    FINAL_POLL_S once `published` (every message acknowledged to the publishers) or 98 % are
    stored; count(*) once it says all are there, to confirm: the instant is that of the first
    snapshot holding all. A batch commits thousands of messages at once, so 98 % is often seen
    only at the end; the publishers' end comes before it. Polling often only then keeps the
    poller's CPU (a query on a busy PostgreSQL) out of the run it measures.
    """
    poll, interval = (progress, FAST_POLL_S) if progress is not None else (count, POLL_S)
    last, last_change = -1, time.monotonic()
    while True:
        t = time.monotonic()  # the snapshot is taken when the query starts: rows counted were stored by t
        stored = (poll() - baseline) // rows_per_message
        if stored >= messages and poll is not count:
            stored = (count() - baseline) // rows_per_message
        if stored >= messages:
            return Polled(t, stored)
        if stored != last:
            last, last_change = stored, t
        elif t - last_change > stall_timeout or not alive():
            return Polled(None, max(stored, 0))
        if poll is not count and (stored >= 0.98 * messages or published()):
            interval = FINAL_POLL_S
        wake = t + interval
        while interval > FINAL_POLL_S and not published() and time.monotonic() < wake:
            time.sleep(FINAL_POLL_S)  # the publishers' end is looked for more often than the database
        time.sleep(max(0.0, wake - time.monotonic()))


def finish(run: Run, t_start: float | None, t_end: float | None, load: dict[str, Any] | None) -> Run:
    if load is not None:
        run.publish_msgs_per_s = load.get("rate")
        if load.get("acked", run.messages) < run.messages:
            run.note += f" publishers got {load['acked']} of {run.messages} acks;"
    if t_start is not None and t_end is not None and run.done >= run.messages:
        run.status = "complete"
        run.elapsed_s = round(t_end - t_start, 3)
        run.msgs_per_s = round(run.messages / (t_end - t_start), 1)
    else:
        run.status = "incomplete"
        run.note += (
            f" only {run.done} of {run.messages} messages arrived (no progress, or the consumer exited);"
        )
    run.note = run.note.strip()
    return run


def load_result(load: Load, timeout: float = 180.0) -> dict[str, Any] | None:
    try:
        load.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        Procs.stop(load.proc)
        return None
    try:
        return load.result()
    except (RuntimeError, json.JSONDecodeError):
        return None


# ---- the cases ------------------------------------------------------------------------------------


class Bench:
    def __init__(self, opts: Options, pg: PostgresServer | None) -> None:
        self.opts = opts
        self.pg = pg
        self.procs = Procs()
        self.seq = 0  # every load gets its own seq range: no message repeats another
        self._databases: list[str] = []

    def _dir(self, name: str) -> Path:
        path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.opts.workdir))
        path.chmod(0o755)
        return path

    def _load(self, broker: Broker, n: int, log: Path) -> Load:
        load = Load(self.procs, broker, self.opts, n, self.seq, log)
        self.seq += n
        return load

    def _meter(
        self, broker: Broker | None, consumer: int | None, counter: PgCounter | None = None
    ) -> CpuMeter:
        """CPU of the broker, the consumer and (when it is used) PostgreSQL, but the bench's own poller."""
        groups = {
            "broker": [broker.pid] if broker and broker.pid else [],
            "consumer": [consumer] if consumer else [],
        }
        if counter is not None and self.pg is not None and self.pg.process is not None:
            groups["postgres"] = [self.pg.process.pid]
        meter = CpuMeter(groups, exclude=[counter.backend_pid] if counter else [], memory=MEMORY_PARTS)
        meter.start()
        return meter

    def _database(self, name: str) -> str:
        assert self.pg is not None
        db = f"{name}_{secrets.token_hex(4)}"
        self.pg.psql(f"CREATE DATABASE {db}")
        self._databases.append(db)
        return self.pg.url_for(db)

    def drop_databases(self) -> None:
        """Drop the databases of the case just run (unless --keep). Kept, a case's tables were
        vacuumed and analysed by autovacuum during a later case, on the same cores and counted in
        its PostgreSQL CPU: back to back, a postgres case paid 10.6-11.8 us per message for
        PostgreSQL against 7.2-7.6 when other cases came between."""
        if self.pg is None or self.opts.keep:
            return
        while self._databases:
            db = self._databases.pop()
            try:
                self.pg.psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
            except subprocess.CalledProcessError as exc:  # the next cases can still run
                print(f"  could not drop database {db}: {exc.stderr}", file=sys.stderr, flush=True)

    def raw_live(self, rnd: int, broker: Broker, case: str = "raw") -> Run:
        m = self.opts.messages
        run = Run(case, rnd, m)
        logs = self._dir(case)
        sub = raw_subscriber(self.procs, broker, m, logs / "raw_sub.log", f"bench-raw-{secrets.token_hex(4)}")
        read_json_line(sub, "the raw subscriber")  # subscribed
        load = self._load(broker, m, logs / "load.log")
        meter = self._meter(broker, None)
        load.go()
        received = read_json_line(sub, "the raw subscriber")
        meter.stop()
        published = load_result(load)
        run.done = received["received"]
        record_cpu(run, meter, m, published, received.get("cpu_s"))
        t_first = published["t_first_publish"] if published else load.t_go
        return finish(run, t_first, received["t_last"], published)

    def raw(self, rnd: int) -> Run:
        server, broker = mosquitto()
        try:
            return self.raw_live(rnd, broker)
        finally:
            server.remove()

    def embedded(self, rnd: int) -> Run:
        port = free_port()
        broker = Broker("embedded", port, "bench-service", secrets.token_urlsafe(24), 3)
        logs = self._dir("embedded")
        proc = self.procs.start(
            [PYTHON, str(BENCH / "embedded_broker.py"), "--port", str(port), "--username", broker.username],
            broker.env(),
            logs / "broker.log",
            pipes=True,
        )
        broker.pid = proc.pid
        try:
            read_json_line(proc, "the embedded broker")
            return self.raw_live(rnd, broker, "embedded")
        finally:
            Procs.stop(proc)

    def _ingest(
        self, url: str, broker: Broker, client_id: str, log: Path
    ) -> tuple[subprocess.Popen[str], str]:
        """`sensorcloud serve --target ingest`, once /ready answers, and its base URL."""
        env = self._ingest_env(url, broker, client_id, log)
        proc = self.procs.start([SENSORCLOUD, "serve", "--target", "ingest"], env, log)
        base_url = f"http://127.0.0.1:{env['SENSORCLOUD_HTTP_PORT']}"
        wait_ready(base_url, proc, log)
        return proc, base_url

    def postgres(self, rnd: int) -> Run:
        m = self.opts.messages
        run = Run("postgres", rnd, m)
        logs = self._dir("postgres")
        url = self._database("live")
        asyncio.run(prepare_database(url))
        server, broker = mosquitto()
        count = PgCounter(url)
        close = count.close
        try:
            ingest, base_url = self._ingest(
                url, broker, f"bench-ingest-{secrets.token_hex(4)}", logs / "ingest.log"
            )
            batches_before = batches_written(base_url)
            baseline = warm_up(broker, count)
            load = self._load(broker, m, logs / "load.log")
            meter = self._meter(broker, ingest.pid, count)
            load.go()
            polled = poll_stored(
                count,
                baseline,
                ROWS_PER_MESSAGE,
                m,
                self.opts.stall_timeout,
                lambda: ingest.poll() is None,
                count.progress,
                load.finished,
            )
            meter.stop()
            published = load_result(load)
            run.done = polled.done
            record_cpu(run, meter, m, published)
            batches = batches_written(base_url) - batches_before
            run.extra["transactions"] = batches
            run.extra["messages_per_transaction"] = round(m / batches) if batches > 0 else None
            if polled.t_done is None:
                run.extra["dead_letters"] = dead_letters_pg(url)
            Procs.stop(ingest)
            return finish(
                run, published["t_first_publish"] if published else load.t_go, polled.t_done, published
            )
        finally:
            close()
            server.remove()

    def naive(self, rnd: int) -> Run:
        m = self.opts.naive_messages
        run = Run("naive", rnd, m)
        logs = self._dir("naive")
        url = self._database("naive")
        server, broker = mosquitto()
        count = PgCounter(url)
        close = count.close
        env = {**broker.env(), "BENCH_MQTT_USERNAME": broker.username}
        script = self.opts.baseline_dir / "naive_ingest.py"
        args = [
            PYTHON,
            str(BENCH / "run_baseline.py"),
            str(script),
            "--dsn",
            url,
            "--port",
            str(broker.port),
            "--qos",
            "1",
        ]
        try:
            naive = self.procs.start(args, env, logs / "naive.log", pipes=True)
            deadline = time.monotonic() + 30
            while count() < 0:  # the baseline creates its table, then connects
                if time.monotonic() > deadline or naive.poll() is not None:
                    raise RuntimeError(f"the naive baseline did not start; see {logs / 'naive.log'}")
                time.sleep(POLL_S)
            baseline = warm_up(broker, count)
            load = self._load(broker, m, logs / "load.log")
            meter = self._meter(broker, naive.pid, count)
            load.go()
            polled = poll_stored(count, baseline, 1, m, self.opts.stall_timeout, lambda: naive.poll() is None)
            meter.stop()
            published = load_result(load)
            run.done = polled.done
            record_cpu(run, meter, m, published)
            Procs.stop(naive)
            with contextlib.suppress(RuntimeError, json.JSONDecodeError):
                run.extra["baseline_summary"] = read_json_line(naive, "the naive baseline")
            return finish(
                run, published["t_first_publish"] if published else load.t_go, polled.t_done, published
            )
        finally:
            close()
            server.remove()

    def sqlite(self, rnd: int) -> Run:
        m = self.opts.messages
        run = Run("sqlite", rnd, m)
        data = self._dir("sqlite")
        db = data / "sensorcloud.db"
        asyncio.run(prepare_database(f"sqlite:///{db}"))
        broker = Broker("embedded", free_port(), "bench-service", secrets.token_urlsafe(24), 3)
        http_port = free_port()
        env = clean_env(
            {
                "SENSORCLOUD_DATA_DIR": str(data),
                "SENSORCLOUD_HTTP_PORT": str(http_port),
                "SENSORCLOUD_MQTT_HOST": "127.0.0.1",
                "SENSORCLOUD_MQTT_PORT": str(broker.port),
                "SENSORCLOUD_MQTT_SERVICE_USERNAME": broker.username,
                "SENSORCLOUD_MQTT_SERVICE_PASSWORD": broker.password,
                "SENSORCLOUD_JWT_ALGORITHM": "HS256",
                "SENSORCLOUD_JWT_SECRET": JWT_SECRET,
                "SENSORCLOUD_LOG_FORMAT": "json",
                **self.opts.service_env,
            }
        )
        log = data / "serve.log"
        count = SqliteCounter(db)
        close = count.close
        try:
            mono = self.procs.start([SENSORCLOUD, "serve"], env, log)
            wait_ready(f"http://127.0.0.1:{http_port}", mono, log)
            baseline = warm_up(broker, count)
            load = self._load(broker, m, data / "load.log")
            meter = self._meter(None, mono.pid)  # the broker is in the monolith
            load.go()
            polled = poll_stored(
                count,
                baseline,
                ROWS_PER_MESSAGE,
                m,
                self.opts.stall_timeout,
                lambda: mono.poll() is None,
                count.progress,
                load.finished,
            )
            meter.stop()
            published = load_result(load, timeout=30)
            run.done = polled.done
            record_cpu(run, meter, m, published)
            Procs.stop(mono)
            return finish(
                run, published["t_first_publish"] if published else load.t_go, polled.t_done, published
            )
        finally:
            close()

    def drain(self, rnd: int) -> list[Run]:
        """Queue M messages for a stopped ingest and a raw subscriber; then each drains them in turn."""
        m = self.opts.messages
        raw_run, pg_run = Run("raw_drain", rnd, m), Run("postgres_drain", rnd, m)
        logs = self._dir("drain")
        url = self._database("drain")
        asyncio.run(prepare_database(url))
        server, broker = mosquitto()
        count = PgCounter(url)
        close = count.close
        client_id = f"bench-ingest-drain-{secrets.token_hex(4)}"
        raw_id = f"bench-raw-drain-{secrets.token_hex(4)}"
        try:
            # both persistent sessions exist, with their subscriptions, before anything is published
            ingest, _ = self._ingest(url, broker, client_id, logs / "ingest-1.log")
            baseline = warm_up(broker, count)
            Procs.stop(ingest)
            prep = raw_subscriber(self.procs, broker, m, logs / "raw_sub.log", raw_id, "prepare")
            read_json_line(prep, "the raw subscriber (prepare)")
            load = self._load(broker, m, logs / "load.log")
            load.go()
            published = load_result(load)
            if published is None or published["acked"] < m:
                raise RuntimeError("the backlog was not fully published")
            raw_run.extra["backlog_publish_msgs_per_s"] = published["rate"]
            pg_run.extra["backlog_publish_msgs_per_s"] = published["rate"]

            sub = raw_subscriber(self.procs, broker, m, logs / "raw_sub.log", raw_id, "resume")
            read_json_line(sub, "the raw subscriber (resume)")
            received = read_json_line(sub, "the raw subscriber (resume)")
            raw_run.done = received["received"]
            finish(raw_run, received["t_connack"], received["t_last"], None)

            t_spawn = time.monotonic()
            log2 = logs / "ingest-2.log"
            ingest = self.procs.start(
                [SENSORCLOUD, "serve", "--target", "ingest"],
                self._ingest_env(url, broker, client_id, log2),
                log2,
            )
            polled = poll_stored(
                count,
                baseline,
                ROWS_PER_MESSAGE,
                m,
                self.opts.stall_timeout + 30,
                lambda: ingest.poll() is None,
                count.progress,
            )
            pg_run.done = polled.done
            t_connected = connected_at(log2)
            if t_connected is not None:
                pg_run.extra["start_to_connect_s"] = round(t_connected - t_spawn, 3)
            else:
                pg_run.note = "no 'mqtt connected' in the log: timed from the process start;"
            finish(pg_run, t_connected or t_spawn, polled.t_done, None)
            Procs.stop(ingest)
            return [raw_run, pg_run]
        finally:
            close()
            server.remove()

    def _ingest_env(self, url: str, broker: Broker, client_id: str, log: Path) -> dict[str, str]:
        user, password = quote(broker.username, safe=""), quote(broker.password, safe="")
        mqtt_url = f"mqtt://{user}:{password}@127.0.0.1:{broker.port}"
        return clean_env(
            {
                "SENSORCLOUD_DATABASE_URL": url,
                "SENSORCLOUD_MQTT_URL": mqtt_url,
                "SENSORCLOUD_HTTP_PORT": str(free_port()),
                "SENSORCLOUD_DATA_DIR": str(log.parent),
                "SENSORCLOUD_INGEST_CLIENT_ID": client_id,
                "SENSORCLOUD_JWT_ALGORITHM": "HS256",
                "SENSORCLOUD_JWT_SECRET": JWT_SECRET,
                "SENSORCLOUD_LOG_FORMAT": "json",
                **self.opts.service_env,
            }
        )


def record_cpu(
    run: Run,
    meter: CpuMeter,
    messages: int,
    published: dict[str, Any] | None,
    consumer_s: float | None = None,
) -> None:
    """Microseconds of CPU per message by component (publishers and a raw subscriber report their
    own), and the peak resident memory of the broker and the consumer where the bench sees them."""
    meter.add("publishers", (published or {}).get("cpu_s"))
    meter.add("consumer", consumer_s)
    run.extra["cpu_us_per_msg"] = meter.per_message_us(messages)
    if meter.peak_mb:
        run.extra["peak_rss_mb"] = dict(meter.peak_mb)


def batches_written(base_url: str) -> int:
    """How many batches (transactions) the ingest has written, from its /metrics."""
    with contextlib.suppress(httpx.HTTPError):
        text = httpx.get(f"{base_url}/metrics", timeout=5).text
        for line in text.splitlines():
            if line.startswith("sensorcloud_ingest_batch_seconds_count"):
                return int(float(line.split()[-1]))
    return -1


def dead_letters_pg(url: str) -> int | None:
    with contextlib.suppress(psycopg.Error), psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM dead_letters").fetchone()
        return int(row[0]) if row else 0
    return None


def connected_at(log: Path) -> float | None:
    """The monotonic instant of the ingest's "mqtt connected" log line (its JSON timestamp is UTC)."""
    offset = time.time() - time.monotonic()
    for line in log.read_text(errors="replace").splitlines():
        if '"mqtt connected"' not in line:
            continue
        with contextlib.suppress(ValueError, KeyError):
            stamp = dt.datetime.fromisoformat(json.loads(line)["timestamp"])
            return stamp.timestamp() - offset
    return None


# ---- summary ---------------------------------------------------------------------------------------

KEYS = {
    "raw": "raw_msgs_per_s",
    "postgres": "postgres_msgs_per_s",
    "naive": "naive_msgs_per_s",
    "embedded": "embedded_broker_msgs_per_s",
    "sqlite": "sqlite_msgs_per_s",
    "raw_drain": "raw_drain_msgs_per_s",
    "postgres_drain": "postgres_drain_msgs_per_s",
}
LABELS = {
    "raw": "raw subscriber (gmqtt), Mosquitto",
    "postgres": "sensorcloud ingest -> PostgreSQL",
    "naive": "naive baseline (INSERT+COMMIT/msg)",
    "embedded": "raw subscriber, embedded broker alone",
    "sqlite": "monolith -> SQLite (embedded broker)",
    "raw_drain": "raw subscriber draining a backlog",
    "postgres_drain": "ingest -> PostgreSQL draining it",
}
# (numerator, denominator, target): the goals of the issue
TARGETS = {
    "postgres_vs_raw": ("postgres", "raw", 0.9),
    "postgres_vs_naive": ("postgres", "naive", 10.0),
    "postgres_drain_vs_raw_drain": ("postgres_drain", "raw_drain", 0.5),
    "sqlite_vs_embedded_broker": ("sqlite", "embedded", 0.8),
}
# what each row's "x raw" column compares with
REFERENCE = {"postgres": "raw", "naive": "raw", "sqlite": "embedded", "postgres_drain": "raw_drain"}
REF_NAME = {"embedded": "embedded broker alone", "raw_drain": "raw drain"}


CPU_PARTS = ("publishers", "broker", "consumer", "postgres", "total")
MEMORY_PARTS = ("broker", "consumer")  # PostgreSQL's processes share their buffers: no one figure


def median_parts(runs: list[Run], case: str, key: str, parts: tuple[str, ...]) -> dict[str, float]:
    """Median over the complete rounds of a case of each part of a per-run report (`run.extra[key]`:
    CPU microseconds per message, peak memory), over the rounds that measured the part."""
    reports = [r.extra[key] for r in runs if r.case == case and r.status == "complete" and key in r.extra]
    return {
        part: round(statistics.median(values), 1)
        for part in parts
        if (values := [report[part] for report in reports if part in report])
    }


def median_rate(runs: list[Run], case: str) -> float | None:
    rates = [r.msgs_per_s for r in runs if r.case == case and r.status == "complete" and r.msgs_per_s]
    return round(statistics.median(rates), 1) if rates else None


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def _met(measured: float | None, goal: float) -> bool | None:
    return None if measured is None else measured >= goal


def paired_ratio(runs: list[Run], a: str, b: str) -> float | None:
    """Median over the rounds of case a's rate / case b's rate in the same round.

    The cases of a round run one right after the other, so this compares them under the same
    load; the machine is shared, and its speed drifts from one round to the next (rates of one
    case varying 1.5x over a run), which a ratio of the two medians would mix in."""
    by_round: dict[int, dict[str, float]] = {}
    for r in runs:
        if r.status == "complete" and r.msgs_per_s:
            by_round.setdefault(r.round, {})[r.case] = r.msgs_per_s
    ratios = [x[a] / x[b] for x in by_round.values() if a in x and b in x]
    return round(statistics.median(ratios), 3) if ratios else None


def machine_facts(pg: PostgresServer | None) -> dict[str, Any]:
    packages = package_versions(
        ("paho-mqtt", "gmqtt", "amqtt", "psycopg", "asyncpg", "aiosqlite", "sensorcloud")
    )
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "mosquitto": command_version(["mosquitto", "-h"]),
        "postgres": command_version([str(pg.bindir / "postgres"), "--version"]) if pg else None,
        "postgres_fsync": pg.psql("SHOW fsync").strip() if pg else None,
        "sqlite": sqlite3.sqlite_version,
        "packages": packages,
    }


def summarize(runs: list[Run], opts: Options, facts: dict[str, Any], started: dt.datetime) -> dict[str, Any]:
    rates = {case: median_rate(runs, case) for case in KEYS}
    ratios = {name: paired_ratio(runs, a, b) for name, (a, b, _) in TARGETS.items()}
    result: dict[str, Any] = {
        "benchmark": "ingest",
        "timestamp": started.isoformat(timespec="seconds"),
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "messages": opts.messages,
        "naive_messages": opts.naive_messages,
        "qos": opts.qos,
        "publishers": opts.procs,
        "connections": opts.connections,
        "inflight_per_connection": opts.inflight,
        "publisher_client": opts.client,
        "publish_rate_limit_per_process": opts.rate or None,
        "service_env": opts.service_env,
        "postgres_fsync": facts.get("postgres_fsync"),
        "repeat": len({r.round for r in runs if r.case not in LIVE_CASES} or {r.round for r in runs}),
        "live_repeat": len({r.round for r in runs if r.case in LIVE_CASES}),
        **{KEYS[case]: rates[case] for case in KEYS},
        "ratios": ratios,
        # what the publishers allow any consumer: a do-nothing subscriber against the baseline
        "raw_vs_naive": paired_ratio(runs, "raw", "naive"),
        "cpu_us_per_msg": {
            case: cpu for case in KEYS if (cpu := median_parts(runs, case, "cpu_us_per_msg", CPU_PARTS))
        },
        "peak_rss_mb": {
            case: mem for case in KEYS if (mem := median_parts(runs, case, "peak_rss_mb", MEMORY_PARTS))
        },
        "ratios_of_medians": {name: ratio(rates[a], rates[b]) for name, (a, b, _) in TARGETS.items()},
        "targets": {
            name: {"goal": goal, "met": _met(ratios[name], goal)} for name, (_, _, goal) in TARGETS.items()
        },
        "incomplete": sorted({r.case for r in runs if r.status != "complete"}),
        "machine": {**facts, "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]},
        "method": (
            "msgs/s = messages / (last message received or stored - first publish), on the monotonic clock; "
            "stored = sensorcloud's per-topic counts (sum(topics.count)) polled every 20 ms, every 2 ms "
            "once the publishers are done or 98 % are stored, confirmed by count(*) of readings (2 readings "
            "per message); the naive baseline's count(*) every 100 ms; drains are timed "
            "from the subscriber's CONNACK; rates are medians over --repeat rounds (cases interleaved; "
            "raw and postgres over --live-repeat rounds when that is more); "
            "ratios are the median over rounds of the two cases' ratio within the round (ratios_of_medians: "
            "the ratio of the two medians); cpu_us_per_msg: CPU time (user + system, /proc) from the first "
            "publish to the end of the case, by component, per message (publishers and raw subscribers "
            "report their own; the bench's count(*) poller is left out); peak_rss_mb: the broker's and "
            "the consumer's most resident memory (VmHWM of the largest process of each, started per case; "
            "the raw subscriber and the publishers are not measured)"
        ),
        "runs": [asdict(r) for r in runs],
    }
    return result


def table(result: dict[str, Any], runs: list[Run]) -> str:
    rates = {case: result[key] for case, key in KEYS.items()}
    head = f"{'case':<40} {'msgs':>7} {'msgs/s':>9} {'x raw':>6} {'x naive':>8} {'pub msgs/s':>10}  status"
    lines = [head, "-" * len(head)]
    for case, label in LABELS.items():
        mine = [r for r in runs if r.case == case]
        if not mine:
            continue
        ref = REFERENCE.get(case, case)
        vs_raw = paired_ratio(runs, case, ref)  # as the targets: within each round, then the median
        vs_naive = paired_ratio(runs, case, "naive") if case in ("raw", "postgres", "naive") else None
        pubs = [r.publish_msgs_per_s or r.extra.get("backlog_publish_msgs_per_s") for r in mine]
        pub = statistics.median([p for p in pubs if p]) if any(pubs) else None
        status = ", ".join(sorted({r.status for r in mine}))
        lines.append(
            f"{label:<40} {mine[0].messages:>7} {_num(rates[case]):>9} {_num(vs_raw, 2):>6} "
            f"{_num(vs_naive, 1):>8} {_num(pub):>10}  {status}"
            + (f" (x raw: vs {REF_NAME[ref]})" if ref not in (case, "raw") else "")
        )
    lines.append("")
    for name, target in result["targets"].items():
        met = {True: "met", False: "NOT met", None: "not measured"}[target["met"]]
        lines.append(f"target {name} >= {target['goal']}: {_num(result['ratios'][name], 2)} -> {met}")
    ceiling, goal = result.get("raw_vs_naive"), TARGETS["postgres_vs_naive"][2]
    if ceiling is not None and ceiling < goal:
        lines.append(
            f"  (the raw subscriber itself reached {ceiling:.1f} x naive: the publishers, not the consumer, "
            f"set that limit here; --client gmqtt sends faster)"
        )
    if result["cpu_us_per_msg"]:
        lines += ["", f"{'CPU us per message (medians)':<40} " + " ".join(f"{p:>10}" for p in CPU_PARTS)]
        for case, cpu in result["cpu_us_per_msg"].items():
            lines.append(f"{LABELS[case]:<40} " + " ".join(f"{_num(cpu.get(p), 1):>10}" for p in CPU_PARTS))
    if result.get("peak_rss_mb"):
        lines += ["", f"{'peak memory MB (medians)':<40} " + " ".join(f"{p:>10}" for p in MEMORY_PARTS)]
        for case, mem in result["peak_rss_mb"].items():
            lines.append(
                f"{LABELS[case]:<40} " + " ".join(f"{_num(mem.get(p), 1):>10}" for p in MEMORY_PARTS)
            )
    return "\n".join(lines)


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


# ---- main ------------------------------------------------------------------------------------------


def run_case(bench: Bench, case: str, rnd: int) -> list[Run]:
    print(f"[round {rnd + 1}] {case} ...", file=sys.stderr, flush=True)
    try:
        if case == "drain":
            return bench.drain(rnd)
        run: Run = getattr(bench, case)(rnd)
        return [run]
    except Exception as exc:
        names = ["raw_drain", "postgres_drain"] if case == "drain" else [case]
        print(f"  {case} failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return [Run(n, rnd, bench.opts.messages, note=f"{type(exc).__name__}: {exc}"[:500]) for n in names]
    finally:
        bench.drop_databases()


@contextlib.contextmanager
def postgres_if(needed: bool, fsync: bool) -> Iterator[PostgresServer | None]:
    if not needed:
        yield None
        return
    pg = start_bench_postgres(fsync)
    try:
        yield pg
    finally:
        remove(pg)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--messages", type=int, default=50_000, help="messages per case (default 50,000)")
    ap.add_argument("--naive-messages", type=int, default=20_000, help="for the naive baseline (slow)")
    ap.add_argument("--qos", type=int, default=1, choices=[0, 1])
    ap.add_argument("--procs", type=int, default=2, help="publisher processes (at least 2)")
    ap.add_argument("--connections", type=int, default=0, help="publisher connections (0 = one per process)")
    ap.add_argument("--inflight", type=int, default=1000, help="QoS 1 in-flight window per connection")
    ap.add_argument("--client", choices=["gmqtt", "paho"], default="paho", help="the publishers' MQTT client")
    ap.add_argument("--rate", type=float, default=0, help="msgs/s per publisher process (0 = unthrottled)")
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {','.join(CASES)}")
    ap.add_argument("--repeat", type=int, default=1, help="rounds; the table shows medians")
    ap.add_argument(
        "--live-repeat",
        type=int,
        default=0,
        help="rounds of the two live cases (raw, postgres), if more than --repeat: a few seconds each, "
        "their ratio moves most with the machine's speed, and more rounds steady its median",
    )
    ap.add_argument(
        "--stall-timeout", type=float, default=20.0, help="a case with no progress this long ends"
    )
    ap.add_argument("--baseline-dir", type=Path, default=ROOT.parent / "shared" / "baseline")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ingest.json")
    ap.add_argument(
        "--pg-no-fsync", action="store_true", help="PostgreSQL with fsync=off (as the tests run it)"
    )
    ap.add_argument("--keep", action="store_true", help="keep the working directory (logs, databases)")
    ap.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="SENSORCLOUD_X=V",
        help="extra setting for the ingest and the monolith, e.g. SENSORCLOUD_INGEST_BATCH_SIZE=5000",
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = set(cases) - set(CASES)
    if unknown:
        ap.error(f"unknown case(s): {', '.join(sorted(unknown))}")
    if args.procs < 2:
        ap.error("--procs must be at least 2")
    if "naive" in cases and not (args.baseline_dir / "naive_ingest.py").exists():
        ap.error(f"{args.baseline_dir / 'naive_ingest.py'} not found (see --baseline-dir)")
    workdir = Path(tempfile.mkdtemp(prefix="sc-bench-ingest-"))
    workdir.chmod(0o755)  # a root-started PostgreSQL or Mosquitto drops to its own user
    opts = Options(
        args.messages,
        args.naive_messages,
        args.qos,
        args.procs,
        args.connections or args.procs,
        args.inflight,
        args.client,
        args.rate,
        args.stall_timeout,
        workdir,
        args.baseline_dir,
        dict(kv.split("=", 1) for kv in args.service_env),
        args.keep,
    )
    started = dt.datetime.now(dt.UTC)
    runs: list[Run] = []
    failed = False
    with postgres_if(bool({"postgres", "naive", "drain"} & set(cases)), not args.pg_no_fsync) as pg:
        facts = machine_facts(pg)
        bench = Bench(opts, pg)
        try:
            live = [c for c in cases if c in LIVE_CASES]
            for rnd in range(max(args.repeat, args.live_repeat if live else 0)):
                # every other round backwards: a case and its reference swap places, so a machine
                # that speeds up or slows down during the run does not favour one side of a ratio
                rounds_cases = cases if rnd < args.repeat else live
                for case in rounds_cases if rnd % 2 == 0 else rounds_cases[::-1]:
                    runs += run_case(bench, case, rnd)
        finally:
            bench.procs.stop_all()
    failed = any(r.status != "complete" for r in runs)
    result = summarize(runs, opts, facts, started)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result, runs))
    for r in runs:
        if r.note:
            print(f"note: {r.case} (round {r.round + 1}): {r.note}")
    print(f"results: {args.out}")
    if args.keep or failed:
        print(f"logs: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
