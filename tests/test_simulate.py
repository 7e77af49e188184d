"""`sensorcloud simulate` against the real monolith: devices created, readings published and stored."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import pytest

from tests.support.process import run_cli, serving

PASSWORD = "correct horse battery staple"


def stored_readings(api: httpx.Client, headers: dict[str, str], expected: int) -> int:
    """The user's stored readings, once they reach `expected` (the ingest writes in batches) or 10 s."""
    deadline = time.monotonic() + 10
    while True:
        count = sum(t["count"] for t in api.get("/api/v1/topics", headers=headers).json()["data"])
        if count >= expected or time.monotonic() > deadline:
            return int(count)
        time.sleep(0.1)


@pytest.mark.e2e
def test_simulated_devices_publish_readings_that_are_stored(tmp_path: Path) -> None:
    env = {"SENSORCLOUD_DATA_DIR": str(tmp_path / "data")}
    with serving(tmp_path, env) as server, httpx.Client(base_url=server.base_url, timeout=10) as api:
        registered = api.post(
            "/auth/register", json={"email": "sim@test.com", "username": "sim", "password": PASSWORD}
        )
        assert registered.status_code == 201
        args = ["simulate", "--url", server.base_url, "--email", "sim@test.com", "--password-stdin"]
        result = run_cli(
            [*args, "--devices", "2", "--rate", "20", "--duration", "2"],
            cwd=tmp_path,
            env=env,
            stdin=PASSWORD + "\n",
        )
        assert result.returncode == 0, result.stderr
        saved = json.loads((tmp_path / "data" / "simulator-devices.json").read_text())
        assert [d["kind"] for d in saved] == ["raspberry-pi", "intel-edison"]
        assert (tmp_path / "data" / "simulator-devices.json").stat().st_mode & 0o777 == 0o600

        token = api.post("/auth/login", json={"email": "sim@test.com", "password": PASSWORD}).json()[
            "auth_token"
        ]
        headers = {"Authorization": f"Bearer {token}"}
        topics = {t["topic"]: t for t in api.get("/api/v1/topics", headers=headers).json()["data"]}
        pi, edison = saved
        assert f"{pi['topic_prefix']}/temperature" in topics
        assert f"{pi['topic_prefix']}/humidity" in topics
        assert f"{edison['topic_prefix']}/potentiometer" in topics
        assert 10 < topics[f"{pi['topic_prefix']}/temperature"]["last_value"] < 35
        # it waited for the broker's acknowledgements, so every message sent is stored: 2 readings each
        summary = r"sent (\d+) messages from 2 devices, all acknowledged by the broker"
        sent = int(re.findall(rf"^{summary}$", result.stderr, re.MULTILINE)[-1])  # a line of its own
        assert sent >= 30  # 20 msgs/s for 2 s
        assert stored_readings(api, headers, 2 * sent) == 2 * sent

        # a second run reuses the devices instead of creating new ones
        again = run_cli(
            [*args, "--devices", "2", "--rate", "20", "--duration", "0.5"],
            cwd=tmp_path,
            env=env,
            stdin=PASSWORD + "\n",
        )
        assert again.returncode == 0, again.stderr
        listed = api.get("/api/v1/devices", headers=headers).json()
        assert listed["total"] == 2


@pytest.mark.e2e
def test_wrong_password_is_a_clear_error(tmp_path: Path) -> None:
    env = {"SENSORCLOUD_DATA_DIR": str(tmp_path / "data")}
    with serving(tmp_path, env) as server:
        result = run_cli(
            [
                "simulate",
                "--url",
                server.base_url,
                "--email",
                "nobody@test.com",
                "--password-stdin",
                "--duration",
                "1",
            ],
            cwd=tmp_path,
            env=env,
            stdin="wrong password\n",
        )
    assert result.returncode == 1
    assert "login failed (401)" in result.stderr
    assert "Traceback" not in result.stderr
