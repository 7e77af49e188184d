"""The real `sensorcloud serve` process over real HTTP: the seed's curl flow, and refusals to start."""

from __future__ import annotations

import socket
import stat
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.ports import free_port
from tests.support.postgres import PostgresServer
from tests.support.process import ServeProcess, run_cli, run_serve_to_exit, serving

pytestmark = pytest.mark.e2e

USER_PASSWORD = "correct horse battery staple"
ADMIN_PASSWORD = "Gl4cier-Orbit-Lantern"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def register_and_login(http: httpx.Client, email: str, username: str, password: str) -> dict[str, Any]:
    created = http.post("/auth/register", json={"email": email, "username": username, "password": password})
    assert created.status_code == 201, created.text
    assert created.json()["email"] == email
    assert "password" not in created.text
    return login(http, email, password)


def login(http: httpx.Client, email: str, password: str) -> dict[str, Any]:
    response = http.post("/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["message"] == "Successfully logged in."
    assert body["auth_token"].count(".") == 2  # a JWT
    return body


def client(server: ServeProcess) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, timeout=15.0)


def new_database(pg: PostgresServer) -> str:
    name = f"e2e_{uuid.uuid4().hex[:12]}"
    pg.psql(f"CREATE DATABASE {name}")
    return name


def test_monolith_on_sqlite_runs_the_seed_flow(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {"SENSORCLOUD_DATA_DIR": str(data)}
    with serving(tmp_path, env) as server, client(server) as http:
        health = http.get("/health")
        assert health.status_code == 200
        assert health.json()["status"] == "ok"
        assert health.json()["service"] == "all"

        user = register_and_login(http, "user@test.com", "user", USER_PASSWORD)
        missing = http.get("/users")
        assert missing.status_code == 401
        assert missing.json() == {"msg": "Missing Authorization Header"}
        assert http.get("/users", headers=bearer(user["auth_token"])).status_code == 403

        # The first admin comes from the CLI, run beside the live server on the same data dir.
        created = run_cli(
            ["user", "create", "--email", "a@x.io", "--username", "admin", "--password-stdin", "--admin"],
            cwd=tmp_path,
            env=env,
            stdin=ADMIN_PASSWORD + "\n",
        )
        assert created.returncode == 0, created.stderr
        admin = login(http, "a@x.io", ADMIN_PASSWORD)
        listed = http.get("/users", headers=bearer(admin["auth_token"]))
        assert listed.status_code == 200
        users = listed.json()["data"]["users"]
        assert [(u["email"], u["username"], u["role"], u["active"]) for u in users] == [
            ("user@test.com", "user", "user", True),
            ("a@x.io", "admin", "admin", True),
        ]

        ready = http.get("/ready")
        assert ready.status_code == 200
        assert ready.json()["status"] == "ready"
        assert ready.json()["checks"]["database"] == "ok"
        metrics = http.get("/metrics")
        assert metrics.status_code == 200
        assert 'sensorcloud_http_requests_total{method="POST",route="/auth/register",status="201"} 1.0' in (
            metrics.text
        )
        # the process itself, as every Prometheus client reports it
        for family in ("process_resident_memory_bytes", "process_cpu_seconds_total", "python_info"):
            assert f"\n{family}" in metrics.text, family
        assert 'python_gc_collections_total{generation="0"}' in metrics.text
    assert server.exited_gracefully(), "SIGTERM must run the shutdown, then end the process"

    assert (data / "sensorcloud.db").is_file()
    key = data / "keys" / "jwt-rs256.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600, "the private key must be readable by its owner only"
    assert not (tmp_path / "sensorcloud.db").exists()


@pytest.mark.postgres
def test_auth_target_on_migrated_postgresql(tmp_path: Path, pg_server: PostgresServer) -> None:
    database = new_database(pg_server)
    env = {
        "SENSORCLOUD_DATABASE_URL": pg_server.url_for(database),
        "SENSORCLOUD_DATA_DIR": str(tmp_path / "d"),
    }
    migrated = run_cli(["migrate"], cwd=tmp_path, env=env)
    assert migrated.returncode == 0, migrated.stderr
    assert "schema is up to date" in migrated.stderr

    with serving(tmp_path, env, ["--target", "auth"]) as server, client(server) as http:
        assert http.get("/health").json()["service"] == "auth"
        tokens = register_and_login(http, "pg@test.com", "pguser", USER_PASSWORD)
        me = http.get("/auth/me", headers=bearer(tokens["auth_token"]))
        assert me.status_code == 200
        assert me.json()["email"] == "pg@test.com"
        assert http.get("/ready").json()["checks"]["database"] == "ok"
    assert server.exited_gracefully()

    # The user really lives in PostgreSQL, and no SQLite file was made on the side.
    assert pg_server.psql("SELECT email FROM users", database).split() == ["pg@test.com"]
    assert not (tmp_path / "d" / "sensorcloud.db").exists()


@pytest.mark.postgres
def test_serve_on_an_unmigrated_postgresql_says_to_migrate(tmp_path: Path, pg_server: PostgresServer) -> None:
    database = new_database(pg_server)
    env = {
        "SENSORCLOUD_DATABASE_URL": pg_server.url_for(database),
        "SENSORCLOUD_DATA_DIR": str(tmp_path / "d"),
    }
    code, stderr = run_serve_to_exit(tmp_path, env, ["--target", "auth"])
    assert code != 0
    assert "run `sensorcloud migrate`" in stderr
    # It must not have migrated on its own behind the operator's back.
    assert (
        pg_server.psql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", database).strip() == "0"
    )


def test_production_without_a_signing_key_refuses_to_start(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {"SENSORCLOUD_ENV": "production", "SENSORCLOUD_DATA_DIR": str(data)}
    code, stderr = run_serve_to_exit(tmp_path, env)
    assert code == 2
    assert "SENSORCLOUD_JWT_PRIVATE_KEY_FILE" in stderr
    assert "Traceback" not in stderr
    assert not (data / "keys").exists(), "no development key may be generated in production"


def test_serve_on_a_port_in_use_exits_non_zero(tmp_path: Path) -> None:
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        code, stderr = run_serve_to_exit(
            tmp_path, {"SENSORCLOUD_DATA_DIR": str(tmp_path / "data")}, port=port
        )
    assert code != 0
    assert "address already in use" in stderr


@pytest.mark.e2e
def test_monolith_moves_its_broker_off_a_taken_mqtt_port(tmp_path: Path) -> None:
    """A system Mosquitto often holds 1883: `make up` must still start, and tell devices the real port."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        env = {"SENSORCLOUD_DATA_DIR": str(tmp_path / "data"), "SENSORCLOUD_MQTT_PORT": str(busy)}
        with serving(tmp_path, env) as server, httpx.Client(base_url=server.base_url, timeout=10) as api:
            body = {"email": "m@test.com", "username": "mover", "password": "correct horse battery staple"}
            assert api.post("/auth/register", json=body).status_code == 201
            token = api.post("/auth/login", json=body).json()["auth_token"]
            device = api.post(
                "/api/v1/devices", json={"name": "d"}, headers={"Authorization": f"Bearer {token}"}
            ).json()
            port = device["mqtt"]["port"]
            assert port != busy
            with socket.create_connection(("127.0.0.1", port), timeout=5):
                pass  # the broker the device is told about really listens there
            assert f"MQTT port {busy} is in use" in server.stderr()
