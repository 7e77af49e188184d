"""What the benchmark scripts share: reading a child's JSON line, and the facts about the machine."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any


def read_json_line(proc: subprocess.Popen[str], what: str) -> dict[str, Any]:
    """The next line of `proc`'s stdout that is a JSON object (log lines before it are skipped)."""
    assert proc.stdout is not None
    while True:
        line = proc.stdout.readline()
        if not line:
            proc.wait(timeout=10)
            raise RuntimeError(f"{what} exited ({proc.returncode}) without its JSON line; see its log")
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                result: dict[str, Any] = json.loads(line)
                return result


def command_version(args: list[str]) -> str | None:
    """The first line a program prints about its version (`nginx -v`, `mosquitto -h`), if it runs."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(args, capture_output=True, text=True, timeout=10, check=False)
        lines = (out.stdout or out.stderr).strip().splitlines()
        return lines[0] if lines else None
    return None


def cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return None


def package_versions(names: Iterable[str]) -> dict[str, str]:
    """The installed version of each of `names` that is installed."""
    found = {}
    for name in names:
        with contextlib.suppress(PackageNotFoundError):
            found[name] = version(name)
    return found
