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
from rich.markup import escape

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
gateway_app = typer.Typer(help="The nginx gateway of microservices mode.", no_args_is_help=True)
app.add_typer(gateway_app, name="gateway")
# soft_wrap: never break a message at 80 columns (stderr is a log file or a pipe, not a terminal).
err = Console(stderr=True, soft_wrap=True)

# `\\[` keeps rich (typer's help renderer) from taking "[env ...]" for a style tag and dropping it.
DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Where SQLite and dev keys live \\[env SENSORCLOUD_DATA_DIR]"),
]
DatabaseUrl = Annotated[
    str | None,
    typer.Option("--database-url", help="sqlite:///... or postgresql://... \\[env SENSORCLOUD_DATABASE_URL]"),
]


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with command-line options taking precedence."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        for e in exc.errors():
            field = ".".join(str(p) for p in e["loc"])
            where = f"SENSORCLOUD_{field.upper()}: " if field else ""  # a cross-field check names its fields
            message = escape(e["msg"].removeprefix("Value error, "))
            err.print(f"[red]configuration error[/red]: {where}{message}")
        raise typer.Exit(2) from None


def fail(message: str, code: int = 1) -> None:
    err.print(f"[red]error[/red]: {escape(message)}")  # a message may hold [brackets]
    raise typer.Exit(code)


@app.command()
def serve(
    target: Annotated[
        str, typer.Option(help="Which service to run: all (the monolith), auth, iot or ingest")
    ] = "all",
    host: Annotated[
        str | None, typer.Option(help="Address to listen on \\[env SENSORCLOUD_HTTP_HOST]")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="HTTP port \\[env SENSORCLOUD_HTTP_PORT, default 8083]")
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
    if chosen == Target.ALL:
        settings = _free_mqtt_port(settings)
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


def _free_mqtt_port(settings: Settings) -> Settings:
    """The monolith's broker on another port when the configured one is taken (a system Mosquitto
    often holds 1883): say so loudly, and hand devices the port really used."""
    from sensorcloud.devstack.ports import free_port, port_is_free

    host = "127.0.0.1" if settings.mqtt_host in ("0.0.0.0", "::", "") else settings.mqtt_host  # noqa: S104
    if port_is_free(settings.mqtt_port, host):
        return settings
    chosen = free_port()
    err.print(
        f"[yellow]warning[/yellow]: MQTT port {settings.mqtt_port} is in use; the embedded broker listens on "
        f"{chosen} instead (set SENSORCLOUD_MQTT_PORT to choose)"
    )
    return settings.model_copy(update={"mqtt_port": chosen})


@app.command()
def migrate(data_dir: DataDir = None, database_url: DatabaseUrl = None) -> None:
    """Create or upgrade the database schema to the newest version (Alembic)."""
    from sensorcloud.core.migrate import migrate_url

    settings = load_settings(data_dir=data_dir, database_url=database_url)
    configure_logging(settings)
    if settings.uses_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)

    try:
        asyncio.run(migrate_url(settings.effective_database_url))
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


@app.command(
    help="Publish realistic readings from simulated devices (Raspberry Pi, Intel Edison) over MQTT.\n\n"
    "On the way out (--duration reached or Ctrl-C) it waits up to 10 s for the broker to acknowledge "
    "every message sent, and fails if some were not."
)
def simulate(
    devices: Annotated[int, typer.Option(min=1, max=1000, help="How many devices to simulate")] = 4,
    rate: Annotated[float, typer.Option(min=0.01, help="Messages per second, all devices together")] = 2.0,
    duration: Annotated[
        float | None, typer.Option(min=0.1, help="Stop after this many seconds (default: until Ctrl-C)")
    ] = None,
    url: Annotated[str, typer.Option(help="The sensorcloud API (the monolith or the gateway)")] = (
        "http://localhost:8083"
    ),
    email: Annotated[
        str, typer.Option(envvar="SENSORCLOUD_SIM_EMAIL", help="The user who owns the devices")
    ] = "",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the user's password from stdin")
    ] = False,
    mqtt_host: Annotated[str | None, typer.Option(help="Override the broker host the API reports")] = None,
    data_dir: DataDir = None,
) -> None:
    """Publish realistic readings from simulated devices (Raspberry Pi, Intel Edison) over MQTT."""
    import time

    import httpx
    from rich.live import Live
    from rich.text import Text

    from sensorcloud.simulate import ACK_WAIT_S, Publisher, SimulationError, ensure_devices, login

    if not email or not password_stdin:
        fail("give --email (or SENSORCLOUD_SIM_EMAIL) and --password-stdin with the password on stdin", 2)
    password = sys.stdin.readline().rstrip("\r\n")
    settings = load_settings(data_dir=data_dir)
    publisher = None
    try:
        with httpx.Client(base_url=url, timeout=10) as api:
            token = login(api, email, password)
            sims = ensure_devices(api, token, devices, settings.data_dir / "simulator-devices.json")
        publisher = Publisher(sims, mqtt_host)
        publisher.wait_connected()
        started = time.monotonic()
        # off a terminal rich draws only the last frame, with no newline: the summary says it all
        with Live(Text(""), console=err, refresh_per_second=4, transient=not err.is_terminal) as live:
            try:
                while duration is None or time.monotonic() - started < duration:
                    publisher.publish(publisher.sent, publisher.sent // len(sims))
                    sent = publisher.sent
                    speed = sent / max(time.monotonic() - started, 1e-9)
                    progress = f"sent {sent}  acked {publisher.acked}  {speed:.1f} msg/s"
                    live.update(Text(f"{len(sims)} devices  {progress}"))
                    delay = started + sent / rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
            except KeyboardInterrupt:
                pass
            live.update(Text(f"{len(sims)} devices  sent {publisher.sent}  waiting for acknowledgements"))
            unacked = publisher.wait_acked(ACK_WAIT_S)
            live.update(Text(f"{len(sims)} devices  sent {publisher.sent}  acked {publisher.acked}"))
        if unacked:
            fail(f"{unacked} of {publisher.sent} messages not acknowledged by the broker in {ACK_WAIT_S:g} s")
        err.print(f"sent {publisher.sent} messages from {len(sims)} devices, all acknowledged by the broker")
    except httpx.HTTPError as exc:
        fail(f"cannot reach {url}: {exc}")
    except SimulationError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        pass
    finally:
        if publisher is not None:
            publisher.close()


@gateway_app.command("config")
def gateway_config(
    auth: Annotated[list[str], typer.Option(help="An auth replica, host:port (repeat for several)")],
    iot: Annotated[list[str], typer.Option(help="An iot replica, host:port (repeat for several)")],
    ingest: Annotated[list[str], typer.Option(help="An ingest replica, host:port (repeat for several)")],
    listen: Annotated[int, typer.Option(help="The port nginx listens on")] = 8083,
    listen_host: Annotated[str, typer.Option(help="The address nginx listens on")] = "127.0.0.1",
    web_root: Annotated[Path | None, typer.Option(help="The dashboard's built files (web/dist)")] = None,
    runtime_dir: Annotated[
        Path | None, typer.Option(help="Where nginx keeps its pid and temp files (for a non-root nginx)")
    ] = None,
    output: Annotated[Path | None, typer.Option(help="Write here instead of standard output")] = None,
) -> None:
    """Render nginx.conf routing to the given replicas, as the original system's gateway did."""
    from sensorcloud.gateway.nginx import GatewayConfig, render

    config = GatewayConfig(
        listen=listen,
        listen_host=listen_host,
        auth=auth,
        iot=iot,
        ingest=ingest,
        web_root=web_root.resolve() if web_root else None,
        runtime_dir=runtime_dir.resolve() if runtime_dir else None,
    )
    text = render(config)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)
        err.print(f"wrote {output}")


@app.command("up-services")
def up_services(
    data_dir: DataDir = None,
    port: Annotated[
        int | None, typer.Option(help="The gateway's port [env SENSORCLOUD_HTTP_PORT, default 8083]")
    ] = None,
    iot_replicas: Annotated[int, typer.Option(min=1, max=16, help="iot replicas")] = 2,
    ingest_replicas: Annotated[int, typer.Option(min=1, max=16, help="ingest replicas")] = 2,
) -> None:
    """Run the microservices topology here: PostgreSQL, Mosquitto, Redis, auth, iot, ingest and nginx.

    Stays in the foreground and restarts a crashed service; Ctrl-C or SIGTERM stops everything.
    """
    import signal

    from sensorcloud.core.web import find_web_dir
    from sensorcloud.devstack.topology import Topology, TopologyConfig, wait_until_stopped

    settings = load_settings(data_dir=data_dir, http_port=port)
    configure_logging(settings)
    web = find_web_dir(settings.web_dir)
    topology = Topology(
        TopologyConfig(
            data_dir=settings.data_dir,
            http_port=settings.http_port,
            mqtt_port=settings.mqtt_port,
            iot_replicas=iot_replicas,
            ingest_replicas=ingest_replicas,
            web_root=web.resolve() if web else None,
        )
    )
    stop_requested: list[bool] = []
    signal.signal(signal.SIGTERM, lambda *_: stop_requested.append(True))
    try:
        topology.start()
        err.print(topology.describe())
        err.print("[green]sensorcloud services are up[/green]; Ctrl-C stops them")
        wait_until_stopped(topology, stop_requested)
    except KeyboardInterrupt:
        pass
    except (OSError, RuntimeError, TimeoutError) as exc:
        topology.stop()
        fail(f"the topology did not start: {exc}")
    finally:
        err.print("stopping...")
        topology.stop()
