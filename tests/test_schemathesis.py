"""Schemathesis over the whole OpenAPI of the monolith, with a token and without: no 5xx, no ignored auth."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.process import cli_env, serving

SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")
PASSWORD = "correct horse battery staple"
# logout and password change would revoke the very token the run uses; both are covered in tests/auth
EXCLUDED = ["--exclude-path", "/auth/logout", "--exclude-path", "/auth/password"]


def run_schemathesis(base_url: str, cwd: Path, token: str | None) -> subprocess.CompletedProcess[str]:
    auth = ["--header", f"Authorization: Bearer {token}"] if token else []
    return subprocess.run(
        [
            SCHEMATHESIS,
            "run",
            f"{base_url}/openapi.json",
            "--checks",
            "not_a_server_error,ignored_auth",
            "--max-examples",
            "10",
            "--no-color",
            "--seed",
            "1",
            *EXCLUDED,
            *auth,
        ],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.e2e
def test_whole_api_has_no_server_errors_and_enforces_auth(tmp_path: Path) -> None:
    env = {"SENSORCLOUD_DATA_DIR": str(tmp_path / "data")}
    with serving(tmp_path, env) as server, httpx.Client(base_url=server.base_url, timeout=10) as api:
        user = {"email": "fuzz@test.com", "username": "fuzzer", "password": PASSWORD}
        assert api.post("/auth/register", json=user).status_code == 201
        token = api.post("/auth/login", json=user).json()["auth_token"]
        for credentials in (token, None):
            result = run_schemathesis(server.base_url, tmp_path, credentials)
            assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
            assert " passed" in result.stdout
            assert "failed" not in result.stdout.split("Test cases:")[-1].split("\n")[1]
