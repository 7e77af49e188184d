"""A real ingest stack for fault tests: PostgreSQL, Mosquitto, a user with devices, and replicas
of `sensorcloud serve --target ingest` as child processes that a test may SIGKILL and start again.

Every process logs to a file in the stack's temp directory; `ingest_stack()` prints the tails of
those logs when the test body fails, and removes everything on the way out.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AsyncExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx

from sensorcloud.auth.devices_service import DeviceService
from sensorcloud.auth.service import AuthService
from sensorcloud.broker.dynsec import DynsecSync
from sensorcloud.core.db import create_engine, session_factory
from sensorcloud.core.migrate import migrate
from sensorcloud.core.settings import Settings
from sensorcloud.core.shared_state import MemoryState
from sensorcloud.core.tokens import Principal, TokenIssuer
from tests.support.mosquitto import TestBroker, start_test_broker
from tests.support.mqtt import publish_sync
from tests.support.ports import free_port
from tests.support.postgres import PostgresServer, remove, start_postgres
from tests.support.process import SENSORCLOUD, cli_env

JWT_SECRET = "fault-test-secret-" + "x" * 22  # HS256 needs 32+ characters; only verification is set up


@dataclass(frozen=True)
class DeviceCreds:
    id: str
    secret: str
    prefix: str


class IngestReplica:
    """One `sensorcloud serve --target ingest` with a fixed MQTT client id (its persistent session)."""

    def __init__(self, client_id: str, env: dict[str, str], logdir: Path) -> None:
        self.client_id = client_id
        self.port = free_port()
        self.env = {**env, "SENSORCLOUD_HTTP_PORT": str(self.port), "SENSORCLOUD_INGEST_CLIENT_ID": client_id}
        self.log_path = logdir / f"ingest-{client_id}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        """Start and wait until /ready answers 200 (database reachable, connected to the broker)."""
        with open(self.log_path, "ab") as log:
            log.write(f"---- start {time.strftime('%H:%M:%S')} ----\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [SENSORCLOUD, "serve", "--target", "ingest"],
                cwd=self.log_path.parent,
                env=cli_env(self.env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while self.ready() != 200:
            if self.process.poll() is not None:
                raise RuntimeError(f"ingest {self.client_id} exited with {self.process.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"ingest {self.client_id} not ready after {timeout}s")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, no DISCONNECT."""
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        self._end(signal.SIGTERM)

    def _end(self, sig: signal.Signals) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def ready(self) -> int:
        """The status code of GET /ready, or 0 when nothing answers."""
        try:
            return httpx.get(f"{self.base_url}/ready", timeout=5.0).status_code
        except httpx.TransportError:
            return 0

    def wait_ready(self, within: float = 30.0) -> bool:
        deadline = time.monotonic() + within
        while self.ready() != 200:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def metric(self, name: str) -> float:
        """The sum of one Prometheus metric's samples as this process counts them (since its start)."""
        text = httpx.get(f"{self.base_url}/metrics", timeout=5.0).text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name) and line[len(name) : len(name) + 1] in (" ", "{")
        )


class IngestStack:
    def __init__(
        self, workdir: Path, pg: PostgresServer, database: str, broker: TestBroker, env: dict[str, str]
    ) -> None:
        self.workdir = workdir
        self.extra_env = env
        self.pg = pg
        self.database = database
        self.broker = broker
        self.devices: list[DeviceCreds] = []
        self.replicas: dict[str, IngestReplica] = {}

    @property
    def database_url(self) -> str:
        return self.pg.url_for(self.database)

    def env(self) -> dict[str, str]:
        b = self.broker
        return {
            "SENSORCLOUD_DATABASE_URL": self.database_url,
            "SENSORCLOUD_MQTT_URL": f"mqtt://{b.service_user}:{b.service_password}@127.0.0.1:{b.port}",
            "SENSORCLOUD_DATA_DIR": str(self.workdir / "data"),
            "SENSORCLOUD_JWT_ALGORITHM": "HS256",
            "SENSORCLOUD_JWT_SECRET": JWT_SECRET,
            **self.extra_env,
        }

    def start_replica(self, client_id: str, **env: str) -> IngestReplica:
        replica = IngestReplica(client_id, {**self.env(), **env}, self.workdir)
        self.replicas[client_id] = replica
        replica.start()
        return replica

    def sql(self, query: str) -> str:
        return self.pg.psql(query, self.database).strip()

    def count(self, query: str) -> int:
        return int(self.sql(query) or 0)

    def wait_count(self, query: str, expected: int, within: float) -> int:
        """Poll `query` (a count) until it reaches `expected`; return the last count seen."""
        deadline = time.monotonic() + within
        seen = self.count(query)
        while seen < expected and time.monotonic() < deadline:
            time.sleep(0.2)
            seen = self.count(query)
        return seen

    def warm_up(self, device: DeviceCreds, within: float = 20.0) -> None:
        """Publish one reading and wait for its row: the replicas' subscriptions are in place."""
        topic = f"{device.prefix}/warmup"
        publish_sync(self.broker.port, device.id, device.secret, [(topic, "1")], client_id=device.id)
        query = f"SELECT count(*) FROM readings WHERE topic = '{topic}'"
        assert self.wait_count(query, 1, within) >= 1, "the warm-up reading was not stored"

    def logs(self, lines: int = 60) -> str:
        parts = []
        for path in [*sorted(self.workdir.glob("*.log")), self.broker.workdir / "mosquitto.log"]:
            with suppress(OSError):
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"==== {path.name} ====\n" + "\n".join(tail))
        with suppress(OSError):
            tail = (self.pg.datadir.parent / "postgres.log").read_text(errors="replace").splitlines()
            parts.append("==== postgres.log ====\n" + "\n".join(tail[-lines:]))
        return "\n".join(parts)

    def close(self) -> None:
        for replica in self.replicas.values():
            replica.stop()


async def create_devices(url: str, count: int, broker: TestBroker | None = None) -> list[DeviceCreds]:
    """Migrate, register one user and create `count` devices of theirs (pushed to `broker`'s dynsec)."""
    engine = create_engine(url)
    try:
        await migrate(engine)
        sessions = session_factory(engine)
        settings = Settings(database_url=url, jwt_algorithm="HS256", jwt_secret=JWT_SECRET)
        auth = AuthService(settings, sessions, TokenIssuer(settings, None, "stack"), MemoryState())
        user = await auth.register("fault@test.com", "fault", "correct horse battery staple")
        principal = Principal(user.id, "user", "session", "token", 0)
        async with AsyncExitStack() as exits:
            listeners = []
            if broker is not None:
                sync = DynsecSync("127.0.0.1", broker.port, broker.admin_user, broker.admin_password)
                listeners.append(await exits.enter_async_context(sync))
            service = DeviceService(sessions, listeners)
            made = [await service.create(principal, f"dev-{i}", None) for i in range(count)]
    finally:
        await engine.dispose()
    return [DeviceCreds(c.device.id, c.secret, c.device.topic_prefix) for c in made]


@contextmanager
def ingest_stack(
    devices: int = 1,
    replicas: Sequence[str] = ("ingest-1",),
    pg: PostgresServer | None = None,
    env: Mapping[str, str] | None = None,
) -> Iterator[IngestStack]:
    """PostgreSQL (our own unless `pg` is given: a test that stops it must own it), Mosquitto, a
    migrated database, one user with `devices` devices, and the ingest `replicas` (client ids) with
    `env` on top of the stack's, ready."""
    workdir = Path(tempfile.mkdtemp(prefix="sc-stack-"))
    (workdir / "data").mkdir()
    own_pg = pg is None
    server = start_postgres() if pg is None else pg
    broker: TestBroker | None = None
    stack: IngestStack | None = None
    try:
        broker = start_test_broker()
        database = f"stack_{uuid.uuid4().hex[:10]}"
        server.psql(f"CREATE DATABASE {database}")
        stack = IngestStack(workdir, server, database, broker, dict(env or {}))
        stack.devices = asyncio.run(create_devices(stack.database_url, devices, broker))
        for client_id in replicas:
            stack.start_replica(client_id)
        yield stack
    except BaseException:
        if stack is not None:
            print(stack.logs())  # pytest shows it with the failure
        raise
    finally:
        if stack is not None:
            stack.close()
        if broker is not None:
            broker.remove()
        if own_pg:
            remove(server)
        shutil.rmtree(workdir, ignore_errors=True)
