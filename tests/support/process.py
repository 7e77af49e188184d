"""Run the installed `sensorcloud` command as a real process: one-shot CLI calls and `serve`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.ports import free_port

# The console script installed next to the interpreter running the tests (the project's venv).
SENSORCLOUD = str(Path(sys.executable).parent / "sensorcloud")


def cli_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test's environment without any SENSORCLOUD_* from the shell, plus `env`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("SENSORCLOUD_")}
    # Wide, colourless output: help text and errors are not wrapped or styled mid-phrase.
    base.update({"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"})
    base.update(env or {})
    return base


def run_cli(
    args: Sequence[str],
    cwd: Path,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    timeout: float = 60.0,
) -> subprocess.CompletedProcess[str]:
    """`sensorcloud *args`, waited for; stdout and stderr captured as text."""
    return subprocess.run(
        [SENSORCLOUD, *args],
        cwd=cwd,
        env=cli_env(env),
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class ServeFailed(RuntimeError):
    """`sensorcloud serve` exited (or never answered /health) instead of serving."""

    def __init__(self, message: str, returncode: int | None, stderr: str) -> None:
        super().__init__(f"{message} (exit code {returncode})\n--- stderr ---\n{stderr}")
        self.returncode = returncode
        self.stderr = stderr


@dataclass
class ServeProcess:
    """A running `sensorcloud serve`; its stdout and stderr go to files, never to pipes."""

    process: subprocess.Popen[bytes]
    port: int
    stdout_path: Path
    stderr_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stop(self, timeout: float = 20.0) -> str:
        """SIGTERM, wait for a clean exit, and return everything it wrote to stderr."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise
        return self.stderr()

    def exited_gracefully(self) -> bool:
        """Stopped after finishing its shutdown; uvicorn re-raises the SIGTERM it caught, hence -15."""
        return self.process.returncode in (0, -signal.SIGTERM) and "Application shutdown complete" in (
            self.stderr()
        )


def _spawn(args: Sequence[str], cwd: Path, env: Mapping[str, str], port: int) -> ServeProcess:
    logs = cwd / f"serve-{port}"
    logs.mkdir(parents=True, exist_ok=True)
    stdout_path, stderr_path = logs / "stdout.log", logs / "stderr.log"
    # The child keeps its own copies of the descriptors; ours are closed right away.
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        process = subprocess.Popen(
            [SENSORCLOUD, "serve", *args],
            cwd=cwd,
            env=cli_env(
                {"SENSORCLOUD_HTTP_PORT": str(port), "SENSORCLOUD_MQTT_PORT": str(free_port()), **env}
            ),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
    return ServeProcess(process=process, port=port, stdout_path=stdout_path, stderr_path=stderr_path)


def _wait_healthy(server: ServeProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=server.base_url, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise ServeFailed("sensorcloud serve exited", server.process.returncode, server.stderr())
            try:
                if client.get("/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    server.process.kill()
    server.process.wait()
    raise ServeFailed(f"/health did not answer within {timeout}s", server.process.returncode, server.stderr())


def start_serve(
    cwd: Path,
    env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
    port: int | None = None,
    timeout: float = 45.0,
) -> ServeProcess:
    """Start `sensorcloud serve *args` in `cwd` and return once GET /health answers 200."""
    server = _spawn(args, cwd, env or {}, port or free_port())
    _wait_healthy(server, timeout)
    return server


@contextmanager
def serving(
    cwd: Path, env: Mapping[str, str] | None = None, args: Sequence[str] = ()
) -> Iterator[ServeProcess]:
    """`with serving(tmp_path, env) as server:` stops the process (SIGTERM) on the way out."""
    server = start_serve(cwd, env, args)
    try:
        yield server
    finally:
        server.stop()


def run_serve_to_exit(
    cwd: Path,
    env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
    port: int | None = None,
    timeout: float = 45.0,
) -> tuple[int, str]:
    """Run a `sensorcloud serve` that is expected to fail; return its exit code and stderr."""
    server = _spawn(args, cwd, env or {}, port or free_port())
    try:
        code = server.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
        raise ServeFailed("sensorcloud serve kept running", None, server.stderr()) from None
    return code, server.stderr()
