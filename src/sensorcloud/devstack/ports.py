"""Free TCP ports on the loopback interface, never the standard ones."""

from __future__ import annotations

import socket
import time

STANDARD = {1883, 3306, 4222, 5432, 5672, 6379, 8083, 8080, 80, 443}


def free_port() -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in STANDARD:
            return port


def wait_for_port(port: int, timeout: float = 20.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on the port now. Binds as asyncio's servers do (SO_REUSEADDR),
    so that the connections a crashed server leaves in TIME_WAIT do not count: only a listener does.
    Without it, a monolith restarted after a crash moved its broker to another port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True
