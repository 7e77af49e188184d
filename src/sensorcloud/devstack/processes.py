"""Child processes with their output in a log file: sensorcloud services and nginx."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from sensorcloud.core.logging import get_logger
from sensorcloud.devstack.ports import wait_for_port

log = get_logger(__name__)


def sensorcloud_executable() -> str:
    """The `sensorcloud` beside this interpreter (the virtualenv's), else the one on PATH."""
    beside = Path(sys.executable).with_name("sensorcloud")
    return str(beside) if beside.exists() else shutil.which("sensorcloud") or "sensorcloud"


@dataclass
class Child:
    """A process we started; `restart()` runs the same command again (as an orchestrator would)."""

    name: str
    argv: list[str]
    log_file: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int | None = None
    health_path: str | None = None
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    terminating: bool = False  # SIGTERM sent to the current process

    def start(self, wait: float = 30.0) -> None:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.terminating = False
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        if wait:
            self.wait_ready(wait)

    def wait_ready(self, timeout: float) -> None:
        if self.port is None:
            return
        if self.health_path is None:
            wait_for_port(self.port, timeout)
            return
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.port}{self.health_path}"
        while time.monotonic() < deadline:
            if not self.alive:
                raise RuntimeError(f"{self.name} exited with {self.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(url, timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} not healthy after {timeout}s:\n{self.log_tail()}")

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill(self) -> None:
        """kill -9, as a crash would."""
        if self.alive:
            assert self.process is not None
            self.process.kill()
            self.process.wait()

    def terminate(self) -> None:
        """Ask it to stop (SIGTERM) without waiting; `stop` then waits. Only once: uvicorn takes a
        second SIGTERM as "exit now", skipping its graceful shutdown."""
        if self.process is not None and self.process.poll() is None and not self.terminating:
            self.process.send_signal(signal.SIGTERM)
            self.terminating = True

    def stop(self, timeout: float = 15.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("process did not stop on SIGTERM; killed", name=self.name, after_s=timeout)
                self.process.kill()
                self.process.wait()

    def restart(self, wait: float = 30.0) -> None:
        self.stop()
        self.restarts += 1
        self.start(wait)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def service(target: str, port: int, env: Mapping[str, str], logs: Path, replica: int = 1) -> Child:
    """`sensorcloud serve --target <target>` on `port`, ready when /health answers."""
    name = f"{target}-{replica}"
    return Child(
        name=name,
        argv=[sensorcloud_executable(), "serve", "--target", target],
        log_file=logs / f"{name}.log",
        env={**env, "SENSORCLOUD_HTTP_PORT": str(port)},
        port=port,
        health_path="/health",
    )


def nginx(conf: Path, port: int, logs: Path) -> Child:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        raise FileNotFoundError("nginx not found: install the nginx package (make test does, as root)")
    return Child(
        name="nginx",
        argv=[binary, "-c", str(conf), "-e", "stderr"],
        log_file=logs / "nginx.log",
        port=port,
        health_path="/health",
    )
