"""The `sensorcloud` command: serve, migrate, user."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import uvicorn
from pydantic import ValidationError
from rich.console import Console

from sensorcloud import __version__
from sensorcloud.core.errors import ConfigurationError, DomainError
from sensorcloud.core.logging import configure_logging
from sensorcloud.core.settings import Settings

app = typer.Typer(
    help="sensorcloud: IoT sensor platform. Runs every service in one process (the default) "
    "or one service per process. Options also come from SENSORCLOUD_* environment variables.",
    no_args_is_help=True,
    add_completion=False,
)
user_app = typer.Typer(help="Manage users (the way to create the first admin).", no_args_is_help=True)
app.add_typer(user_app, name="user")
err = Console(stderr=True)

DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="Where SQLite and dev keys live [env SENSORCLOUD_DATA_DIR]")
]
DatabaseUrl = Annotated[
    str | None,
    typer.Option("--database-url", help="sqlite:///... or postgresql://... [env SENSORCLOUD_DATABASE_URL]"),
]


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with command-line options taking precedence."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        for e in exc.errors():
            field = ".".join(str(p) for p in e["loc"]) or "settings"
            err.print(f"[red]configuration error[/red]: SENSORCLOUD_{field.upper()}: {e['msg']}")
        raise typer.Exit(2) from None


def fail(message: str, code: int = 1) -> None:
    err.print(f"[red]error[/red]: {message}")
    raise typer.Exit(code)


@app.command()
def serve(
    target: Annotated[str, typer.Option(help="Which service to run: all (the monolith) or auth")] = "all",
    host: Annotated[str | None, typer.Option(help="Address to listen on [env SENSORCLOUD_HTTP_HOST]")] = None,
    port: Annotated[
        int | None, typer.Option(help="HTTP port [env SENSORCLOUD_HTTP_PORT, default 8083]")
    ] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Run sensorcloud: every service in one process, or the one --target names."""
    from sensorcloud.app import Target, create_app

    try:
        chosen = Target(target)
    except ValueError:
        fail(f"unknown target {target!r}; choose one of: {', '.join(t.value for t in Target)}", 2)
        return
    settings = load_settings(http_host=host, http_port=port, data_dir=data_dir, database_url=database_url)
    configure_logging(settings)
    try:
        application = create_app(settings, chosen)
    except ConfigurationError as exc:
        fail(str(exc), 2)
        return
    config = uvicorn.Config(
        application,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        server_header=False,
    )
    server = uvicorn.Server(config)
    server.run()
    if not server.started:
        sys.exit(3)  # start-up failed (port taken, database unreachable, schema missing): say so by exit code


@app.command()
def migrate(data_dir: DataDir = None, database_url: DatabaseUrl = None) -> None:
    """Create or upgrade the database schema to the newest version (Alembic)."""
    from sensorcloud.core.db import create_engine
    from sensorcloud.core.migrate import migrate as run_migrations

    settings = load_settings(data_dir=data_dir, database_url=database_url)
    configure_logging(settings)
    if settings.uses_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)

    async def run() -> None:
        engine = create_engine(settings.effective_database_url)
        try:
            await run_migrations(engine)
        finally:
            await engine.dispose()

    try:
        asyncio.run(run())
    except OSError as exc:
        fail(f"cannot reach the database: {exc}")
    err.print("[green]schema is up to date[/green]")


@user_app.command("create")
def user_create(
    email: Annotated[str, typer.Option(help="The user's email (the login name)")],
    username: Annotated[str, typer.Option(help="A unique display name (3-32 letters, digits, _ . -)")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input (required)")
    ] = False,
    admin: Annotated[bool, typer.Option("--admin", help="Give the user the admin role")] = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Create a user; the password is read from standard input so it never shows in a process list."""
    from pydantic import TypeAdapter

    from sensorcloud.auth.schemas import RegisterRequest

    if not password_stdin:
        fail("pass --password-stdin and the password on standard input", 2)
    password = sys.stdin.readline().rstrip("\r\n")
    try:
        TypeAdapter(RegisterRequest).validate_python(
            {"email": email, "username": username, "password": password}
        )
    except ValidationError as exc:
        fail(
            "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}"
                for e in exc.errors()
            ),
            2,
        )
    settings = load_settings(data_dir=data_dir, database_url=database_url)
    configure_logging(settings)
    try:
        user_id = asyncio.run(_create_user(settings, email, username, password, admin))
    except DomainError as exc:
        fail(exc.message)
        return
    except ConfigurationError as exc:
        fail(str(exc), 2)
        return
    err.print(f"[green]created user {user_id}[/green] ({'admin' if admin else 'user'}) {email.lower()}")


async def _create_user(settings: Settings, email: str, username: str, password: str, admin: bool) -> int:
    from sensorcloud.app import Target, build_runtime
    from sensorcloud.auth.service import AuthService
    from sensorcloud.core.migrate import migrate as run_migrations
    from sensorcloud.core.migrate import schema_is_current

    runtime = build_runtime(settings, Target.AUTH)
    try:
        if settings.uses_sqlite:
            await run_migrations(runtime.engine)
        elif not await schema_is_current(runtime.engine):
            raise ConfigurationError("the database schema is not current: run `sensorcloud migrate` first")
        assert runtime.issuer is not None
        service = AuthService(settings, runtime.sessions, runtime.issuer, runtime.state)
        user = await service.register(email, username, password, role="admin" if admin else "user")
        return user.id
    finally:
        await runtime.engine.dispose()


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
    app()
