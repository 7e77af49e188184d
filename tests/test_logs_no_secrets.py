"""The real process's debug logs hold no password, token or password hash, in either log format."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.support.process import run_cli, serving

pytestmark = pytest.mark.e2e

PASSWORD = "Quartz-Meadow-41-Ferry"
NEW_PASSWORD = "Cobalt-Harbor-77-Lynx"
WRONG_PASSWORD = "Quartz-Meadow-41-Wrong"
WEAK_PASSWORD = "Zq9!x"  # refused by the policy; the 422 must not echo it either
ADMIN_PASSWORD = "Amber-Falcon-Rivet-93"
BOGUS_TOKEN = "bogus-8c1f5e2a-not-a-token"
# Token-shaped (alg "none"), so that a verifier is tempted to parse and log it.
BOGUS_JWT = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiI0MiIsInJvbGUiOiJhZG1pbiJ9.forgedsig7d1e"
BOGUS_REFRESH = "bogus-refresh-3b9d7a6c"
BOGUS_QUERY_TOKEN = "bogus-query-5e0c1d9f"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def login(http: httpx.Client, password: str, expect: int = 200) -> dict[str, str]:
    response = http.post("/auth/login", json={"email": "log@test.com", "password": password})
    assert response.status_code == expect, response.text
    body: dict[str, str] = response.json()
    return body


def exercise(http: httpx.Client) -> list[str]:
    """Every auth path that handles a secret; returns the secrets it used or received."""
    weak = http.post(
        "/auth/register", json={"email": "weak@test.com", "username": "weak", "password": WEAK_PASSWORD}
    )
    assert weak.status_code == 422
    assert WEAK_PASSWORD not in weak.text
    created = http.post(
        "/auth/register", json={"email": "log@test.com", "username": "logger", "password": PASSWORD}
    )
    assert created.status_code == 201, created.text

    first = login(http, PASSWORD)
    assert login(http, WRONG_PASSWORD, expect=401)["msg"]
    second = http.post("/auth/refresh", json={"refresh_token": first["refresh_token"]}).json()
    assert second["auth_token"] != first["auth_token"]
    # Presenting the spent token again is a reuse: it revokes the session (a warning is logged).
    assert http.post("/auth/refresh", json={"refresh_token": first["refresh_token"]}).status_code == 401
    assert http.post("/auth/refresh", json={"refresh_token": BOGUS_REFRESH}).status_code == 401
    assert http.get("/auth/me", headers=bearer(BOGUS_TOKEN)).status_code == 401
    assert http.get("/users", headers=bearer(BOGUS_JWT)).status_code == 401
    assert http.get("/health", params={"access_token": BOGUS_QUERY_TOKEN}).status_code == 200

    third = login(http, PASSWORD)
    changed = http.post(
        "/auth/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=bearer(third["auth_token"]),
    )
    assert changed.status_code == 200, changed.text
    fourth = login(http, NEW_PASSWORD)
    out = http.post(
        "/auth/logout", json={"refresh_token": fourth["refresh_token"]}, headers=bearer(fourth["auth_token"])
    )
    assert out.status_code == 200, out.text
    assert http.get("/auth/me", headers=bearer(fourth["auth_token"])).status_code == 401

    tokens = [t[key] for t in (first, second, third, fourth) for key in ("auth_token", "refresh_token")]
    signatures = [t["auth_token"].rsplit(".", 1)[1] for t in (first, second, third, fourth)]
    return [
        PASSWORD,
        NEW_PASSWORD,
        WRONG_PASSWORD,
        WEAK_PASSWORD,
        BOGUS_TOKEN,
        BOGUS_JWT,
        BOGUS_REFRESH,
        BOGUS_QUERY_TOKEN,
        *tokens,
        *signatures,
    ]


def assert_no_secrets(logs: str, secrets: list[str]) -> None:
    assert "$argon2" not in logs, "a password hash reached the logs"
    # uvicorn's `extra=` field: present only if extras skip the redact processor.
    assert "color_message" not in logs
    for secret in secrets:
        assert secret not in logs, f"a secret reached the logs: {secret[:12]}..."


def json_objects(logs: str) -> list[object]:
    parsed: list[object] = []
    for line in logs.splitlines():
        try:
            parsed.append(json.loads(line))
        except ValueError:
            continue
    return [p for p in parsed if isinstance(p, dict)]


def create_admin(tmp_path: Path, env: dict[str, str]) -> str:
    """`sensorcloud user create` with debug logging; returns what it wrote."""
    result = run_cli(
        ["user", "create", "--email", "root@test.com", "--username", "root", "--password-stdin", "--admin"],
        cwd=tmp_path,
        env=env,
        stdin=ADMIN_PASSWORD + "\n",
    )
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


def test_development_debug_logs_are_readable_lines_without_secrets(tmp_path: Path) -> None:
    env = {"SENSORCLOUD_DATA_DIR": str(tmp_path / "data"), "SENSORCLOUD_LOG_LEVEL": "debug"}
    with serving(tmp_path, env) as server, httpx.Client(base_url=server.base_url, timeout=15) as http:
        secrets = exercise(http)
    logs = server.stderr() + server.stdout()
    cli_logs = create_admin(tmp_path, env)

    # Not vacuous: the flow was logged, at debug level, in the console format.
    for event in ("user registered", "login failed", "login succeeded", "password changed", "logout"):
        assert event in logs
    assert "refresh token reuse" in logs
    assert "[debug" in logs
    assert json_objects(logs) == [], "development logs are meant for people, not JSON"
    assert "\x1b[" not in logs, "no terminal colour codes in a log file"
    assert_no_secrets(logs, secrets)
    assert_no_secrets(cli_logs, [ADMIN_PASSWORD])


def test_production_logs_are_json_lines_without_secrets(tmp_path: Path, signing_key_file: Path) -> None:
    env = {
        "SENSORCLOUD_ENV": "production",
        "SENSORCLOUD_JWT_PRIVATE_KEY_FILE": str(signing_key_file),
        "SENSORCLOUD_DATA_DIR": str(tmp_path / "data"),
        "SENSORCLOUD_LOG_LEVEL": "debug",
    }
    with serving(tmp_path, env) as server, httpx.Client(base_url=server.base_url, timeout=15) as http:
        secrets = exercise(http)
    logs = server.stderr()

    lines = [line for line in logs.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert len(records) == len(lines) > 10
    assert all(isinstance(r, dict) and {"event", "level", "timestamp"} <= r.keys() for r in records)
    events = {r["event"] for r in records}
    assert {"user registered", "login failed", "login succeeded", "logout"} <= events
    assert any(r["level"] == "debug" for r in records)
    assert_no_secrets(logs, secrets)
    assert_no_secrets(create_admin(tmp_path, env), [ADMIN_PASSWORD])
