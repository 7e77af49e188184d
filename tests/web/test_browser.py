"""The dashboard in headless Chromium against the real monolith.

The server runs as a real process (`sensorcloud serve`, serving web/dist); web/e2e/run.mjs drives
Debian's Chromium through playwright-core and publishes readings over MQTT with a device's
credentials. Screenshots of every page go to test-output/screenshots/.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.ports import free_port
from tests.support.process import cli_env, run_cli, serving

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
WEB = REPO / "web"
SCREENSHOTS = REPO / "test-output" / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "Gl4cier-Orbit-Lantern"


def missing_prerequisite() -> str | None:
    """What `make web` (or `make test`) would have set up, if it is not there."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not (WEB / "node_modules" / "playwright-core").is_dir():
        return "web/node_modules is missing: run `make web`"
    if not (WEB / "dist" / "index.html").is_file():
        return "web/dist is not built: run `make web`"
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} is missing: run `make web-browser` (Debian's chromium)"
    return None


def test_dashboard_flows_in_chromium(tmp_path: Path) -> None:
    """register -> device -> MQTT readings charted, live point < 2 s -> status -> logout; admin vs user."""
    reason = missing_prerequisite()
    if reason:
        pytest.skip(reason)
    mqtt_port = free_port()
    env = {
        "SENSORCLOUD_DATA_DIR": str(tmp_path / "data"),
        "SENSORCLOUD_WEB_DIR": str(WEB / "dist"),
        "SENSORCLOUD_MQTT_PORT": str(mqtt_port),
    }
    with serving(tmp_path, env) as server:
        created = run_cli(
            ["user", "create", "--email", ADMIN_EMAIL, "--username", "admin", "--password-stdin", "--admin"],
            cwd=tmp_path,
            env=env,
            stdin=ADMIN_PASSWORD + "\n",
        )
        assert created.returncode == 0, created.stderr
        result = subprocess.run(
            ["node", str(WEB / "e2e" / "run.mjs"), server.base_url, str(mqtt_port), str(SCREENSHOTS)],
            cwd=WEB,
            env=cli_env(
                {"E2E_ADMIN_EMAIL": ADMIN_EMAIL, "E2E_ADMIN_PASSWORD": ADMIN_PASSWORD, "CHROMIUM": CHROMIUM}
            ),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    report = result.stdout + result.stderr
    failures = [line for line in result.stdout.splitlines() if line.startswith("not ok")]
    assert not failures, report
    assert result.returncode == 0, report
    assert result.stdout.rstrip().splitlines()[-1].endswith(" passed, 0 failed"), report
    for page in ("login", "register", "devices", "dashboard", "dashboard-phone", "service-status", "users"):
        assert (SCREENSHOTS / f"{page}.png").is_file(), f"no screenshot of {page}"
