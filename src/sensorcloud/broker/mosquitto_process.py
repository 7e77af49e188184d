"""Run a Mosquitto with the project's configuration as a child process (tests, `make up-services`).

Layout of the working directory:
    mosquitto.conf               rendered on every start
    data/dynamic-security.json   created once, then owned by the broker: the device credentials
    data/mosquitto.db            sessions, queued and retained messages (persistence)
    mosquitto.log                the broker's log, when `log_file` is not given
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from sensorcloud.broker.mosquitto_config import init_dynsec, render_mosquitto_conf

DEFAULT_USER = "mosquitto"  # the user Mosquitto itself drops to when started as root


@dataclass
class MosquittoProcess:
    port: int
    workdir: Path
    process: subprocess.Popen[bytes]
    log_file: Path

    @property
    def dynsec_file(self) -> Path:
        return self.workdir / "data" / "dynamic-security.json"

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM (mosquitto then saves its database), SIGKILL if it does not exit in time."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def __enter__(self) -> MosquittoProcess:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _can_traverse(path: Path, user: pwd.struct_passwd) -> bool:
    groups = {user.pw_gid, *(g for g in os.getgrouplist(user.pw_name, user.pw_gid))}
    for directory in (path, *path.parents):
        st = directory.stat()
        if st.st_uid == user.pw_uid:
            bit = 0o100
        elif st.st_gid in groups:
            bit = 0o010
        else:
            bit = 0o001
        if not st.st_mode & bit:
            return False
    return True


def _hand_over(workdir: Path, run_as: str) -> str:
    """As root: give the broker's user the files it writes after dropping privileges."""
    try:
        user = pwd.getpwnam(run_as)
    except KeyError as e:
        raise RuntimeError(f"user {run_as!r} does not exist; pass run_as='<an existing user>'") from e
    if user.pw_uid == 0:
        return run_as
    if not _can_traverse(workdir.parent, user):
        raise PermissionError(
            f"user {run_as!r} cannot reach {workdir}: put the broker directory where it can "
            "(e.g. under /tmp or /var/lib) or pass run_as='root'"
        )
    for path in (workdir, *workdir.rglob("*")):
        os.chown(path, user.pw_uid, user.pw_gid)
    return run_as


def _wait_ready(process: subprocess.Popen[bytes], port: int, host: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mosquitto exited with status {process.returncode} while starting")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"mosquitto is not listening on {host}:{port} after {timeout}s")


def start_mosquitto(
    workdir: Path,
    port: int,
    *,
    admin_user: str,
    admin_password: str,
    service_user: str,
    service_password: str,
    bind: str = "127.0.0.1",
    binary: str | None = None,
    run_as: str = DEFAULT_USER,
    ready_timeout: float = 10.0,
    **conf: Any,
) -> MosquittoProcess:
    """Start mosquitto on `port` with the project's config; the dynsec store is created on first start.

    `conf` goes to `render_mosquitto_conf` (persistence, max_queued_messages, ...). `run_as` is the
    user a root-started broker drops to; it is ignored when not running as root.
    """
    executable = binary or shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(executable).exists():
        raise FileNotFoundError("mosquitto not found: install the mosquitto package")
    workdir = workdir.resolve()
    data_dir = workdir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    # The store holds password hashes: nobody but the broker reads it.
    workdir.chmod(0o700)
    data_dir.chmod(0o700)
    dynsec_file = data_dir / "dynamic-security.json"
    if not dynsec_file.exists():
        init_dynsec(dynsec_file, admin_user, admin_password, service_user, service_password)
    user = run_as if os.geteuid() == 0 else None
    conf_file = workdir / "mosquitto.conf"
    conf_file.write_text(render_mosquitto_conf(port, data_dir, dynsec_file, bind=bind, user=user, **conf))
    conf_file.chmod(0o600)
    log_file = workdir / "mosquitto.log"
    log_file.touch()
    if user:
        _hand_over(workdir, user)
    with log_file.open("ab") as log:
        # The child keeps its own copy of the descriptor; ours closes when this block ends.
        process = subprocess.Popen(  # noqa: S603 (our own binary and config path, no shell)
            [executable, "-c", str(conf_file)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    broker = MosquittoProcess(port=port, workdir=workdir, process=process, log_file=log_file)
    try:
        _wait_ready(process, port, "127.0.0.1" if bind in ("0.0.0.0", "") else bind, ready_timeout)  # noqa: S104
    except Exception as e:
        broker.stop()
        raise RuntimeError(f"{e}\n{broker.log_tail()}") from e
    except BaseException:
        broker.stop()
        raise
    return broker
