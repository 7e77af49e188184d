"""A PostgreSQL server of our own: initdb in a directory, a free port, trust auth on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sensorcloud.devstack.ports import free_port


def pg_bindir() -> Path:
    out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False)
    candidates = [Path(out.stdout.strip())] if out.returncode == 0 else []
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for c in candidates:
        if (c / "initdb").exists() and (c / "postgres").exists():
            return c
    raise RuntimeError("PostgreSQL server binaries not found: run `make test` (it installs postgresql)")


@dataclass
class PostgresServer:
    datadir: Path
    port: int
    bindir: Path
    process: subprocess.Popen[bytes] | None = None
    durable: bool = False

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url_for(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        out = subprocess.run(
            [
                str(self.bindir / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-Atc",
                sql,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout

    def start(self) -> None:
        # Throwaway test clusters skip fsync (a crash of the machine loses them anyway); a durable
        # one (make up-services, benchmarks of commit cost) keeps PostgreSQL's defaults.
        fast = [] if self.durable else ["-c", "fsync=off", "-c", "full_page_writes=off"]
        with open(self.datadir.parent / "postgres.log", "ab") as log:
            self.process = subprocess.Popen(
                [
                    str(self.bindir / "postgres"),
                    *("-D", str(self.datadir), "-p", str(self.port), "-h", "127.0.0.1"),
                    *("-k", str(self.datadir.parent), "-c", "max_connections=200"),
                    *fast,
                ],
                stdout=log,
                stderr=log,
                **_as_postgres_user(),
            )
        self.wait_ready()

    def wait_ready(self, timeout: float = 30.0) -> None:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ok = subprocess.run(
                [str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"],
                capture_output=True,
                check=False,
            )
            if ok.returncode == 0:
                return
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"postgres exited: see {self.datadir.parent / 'postgres.log'}")
            time.sleep(0.1)
        raise TimeoutError("postgres did not become ready")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (mode: smart, fast or immediate, as pg_ctl understands them)."""
        if self.process is None:
            return
        import signal

        sig = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}[mode]
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


def _as_postgres_user() -> dict[str, Any]:
    """postgres refuses to run as root: run it as the 'postgres' system user when we are root."""
    if os.geteuid() != 0:
        return {}
    return {"user": "postgres", "group": "postgres"}


def start_postgres(
    root: Path | None = None, *, durable: bool = False, port: int | None = None
) -> PostgresServer:
    """A server in `root` (created with initdb unless it already holds a cluster), else in a temp dir."""
    bindir = pg_bindir()
    root = Path(tempfile.mkdtemp(prefix="sc-pg-")) if root is None else root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    datadir = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    if not (datadir / "PG_VERSION").exists():
        subprocess.run(
            [
                str(bindir / "initdb"),
                "-D",
                str(datadir),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            **_as_postgres_user(),
        )
    server = PostgresServer(datadir=datadir, port=port or free_port(), bindir=bindir, durable=durable)
    server.start()
    return server


def remove(server: PostgresServer) -> None:
    server.stop()
    shutil.rmtree(server.datadir.parent, ignore_errors=True)
