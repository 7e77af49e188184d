"""Fixtures shared by every test: real databases (SQLite file, a PostgreSQL we start), apps, clients."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI

from sensorcloud.app import Target, create_app
from sensorcloud.core.migrate import migrate_url
from sensorcloud.core.settings import Settings
from tests.support.ports import free_port
from tests.support.postgres import PostgresServer, start_postgres
from tests.support.redis import RedisServer, start_redis

PASSWORD = "correct horse battery staple"
AppFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow classes last: fault tests (kill real processes), then e2e, so quick failures show first."""

    def rank(item: pytest.Item) -> int:
        return 2 if item.get_closest_marker("fault") else 1 if item.get_closest_marker("e2e") else 0

    items.sort(key=rank)  # stable: within a class the file order is kept


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests build their settings explicitly; SENSORCLOUD_* from the shell must not leak in."""
    for key in list(os.environ):
        if key.startswith("SENSORCLOUD_"):
            monkeypatch.delenv(key)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    server = start_postgres()
    yield server
    # Every test's database is in there (gigabytes by the end of a run): deleting them took 20 s of
    # each run, so an `rm` left running in the background does it while pytest finishes (started
    # by a shell that exits at once: no child of ours outlives the session, its output nowhere).
    server.stop(mode="immediate")
    subprocess.run(
        ["sh", "-c", 'rm -rf "$0" </dev/null >/dev/null 2>&1 &', str(server.datadir.parent)], check=True
    )


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = start_redis()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def signing_key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One RSA key for the whole run (generating one per test would cost seconds)."""
    path = tmp_path_factory.mktemp("keys") / "signing.pem"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)
    return path


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    asyncio.run(migrate_url(f"sqlite:///{path}"))
    return path


@pytest.fixture(scope="session")
def pg_template(pg_server: PostgresServer) -> str:
    pg_server.psql("CREATE DATABASE sc_template")
    asyncio.run(migrate_url(pg_server.url_for("sc_template")))
    return "sc_template"


def _fresh_database(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> str:
    """A migrated, empty database of the backend, private to one test."""
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        target = tmp_path / "sensorcloud.db"
        shutil.copy(template, target)
        return f"sqlite:///{target}"
    server: PostgresServer = request.getfixturevalue("pg_server")
    template_name: str = request.getfixturevalue("pg_template")
    name = f"t_{uuid.uuid4().hex[:12]}"
    server.psql(f"CREATE DATABASE {name} TEMPLATE {template_name}")
    return server.url_for(name)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every test that uses this runs twice: on SQLite and on a real PostgreSQL."""
    return _fresh_database(request, request.param, tmp_path)


@pytest.fixture
def pg_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh migrated PostgreSQL database, for tests of PostgreSQL-only behaviour."""
    return _fresh_database(request, "postgresql", tmp_path)


@pytest.fixture
def settings_factory(tmp_path: Path, database_url: str, signing_key_file: Path) -> Callable[..., Settings]:
    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "database_url": database_url,
            "jwt_private_key_file": signing_key_file,
            "mqtt_port": free_port(),  # the monolith's embedded broker; never the standard 1883
        }
        values.update(overrides)
        return Settings(**values)

    return build


@pytest.fixture
def settings(settings_factory: Callable[..., Settings]) -> Settings:
    return settings_factory()


@asynccontextmanager
async def running_app(app: FastAPI, client_host: str = "127.0.0.1") -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan run, and an HTTP client talking to it in process."""
    transport = httpx.ASGITransport(app=app, client=(client_host, 50000))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://sensorcloud.test") as client,
    ):
        yield client


@pytest.fixture
def app_factory(settings_factory: Callable[..., Settings]) -> AppFactory:
    """Build and start an app with settings overrides: `async with app_factory(x=1) as client:`."""

    def factory(target: Target = Target.ALL, client_host: str = "127.0.0.1", **overrides: Any) -> Any:
        return running_app(create_app(settings_factory(**overrides), target), client_host)

    return factory


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(create_app(settings)) as c:
        yield c


# ---- helpers used by many tests ---------------------------------------------------------------


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def register(client: httpx.AsyncClient, name: str = "user", password: str = PASSWORD) -> dict[str, Any]:
    response = await client.post(
        "/auth/register", json={"email": f"{name}@test.com", "username": name, "password": password}
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def login(client: httpx.AsyncClient, name: str = "user", password: str = PASSWORD) -> dict[str, Any]:
    response = await client.post("/auth/login", json={"email": f"{name}@test.com", "password": password})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def make_admin(client: httpx.AsyncClient, name: str = "admin") -> dict[str, Any]:
    """Register a user and promote them through the service layer (as `sensorcloud user create --admin`)."""
    from sensorcloud.auth.service import AuthService

    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    app: Any = transport.app
    runtime = app.state.runtime
    service = AuthService(runtime.settings, runtime.sessions, runtime.issuer, runtime.state)
    await service.register(f"{name}@test.com", name, PASSWORD, role="admin")
    return await login(client, name)
