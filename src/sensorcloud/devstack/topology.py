"""The whole microservices topology on this machine: PostgreSQL (auth and readings databases),
Mosquitto configured by the project, Redis, auth, iot and ingest replicas, and nginx in front.

Internal ports are picked free; only the gateway (SENSORCLOUD_HTTP_PORT, 8083) and MQTT (1883 if
free) face users. State lives under <data dir>/services/.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from sensorcloud.broker.mosquitto_process import MosquittoProcess, start_mosquitto
from sensorcloud.core.logging import get_logger
from sensorcloud.core.migrate import migrate_url
from sensorcloud.devstack.ports import free_port, port_is_free
from sensorcloud.devstack.postgres import PostgresServer, start_postgres
from sensorcloud.devstack.processes import Child, nginx, service
from sensorcloud.devstack.redis import RedisServer, start_redis
from sensorcloud.gateway.nginx import GatewayConfig, render

log = get_logger(__name__)
SERVICE_START_TIMEOUT_S = 30.0
DATABASES = ("auth", "iot")


@dataclass
class TopologyConfig:
    data_dir: Path
    http_port: int = 8083
    mqtt_port: int = 1883
    auth_replicas: int = 1
    iot_replicas: int = 2
    ingest_replicas: int = 2
    web_root: Path | None = None
    durable: bool = True  # PostgreSQL with fsync (tests may turn it off for speed)
    extra_env: dict[str, str] = field(default_factory=dict)


def _secrets(path: Path) -> dict[str, str]:
    """Broker account passwords, made once and kept (mode 0600) so restarts find the same accounts."""
    if path.exists():
        stored: dict[str, str] = json.loads(path.read_text())
        return stored
    values = {"admin_password": secrets.token_urlsafe(24), "service_password": secrets.token_urlsafe(24)}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(values, fh)
    return values


class Topology:
    def __init__(self, config: TopologyConfig) -> None:
        self.config = config
        self.root = (config.data_dir / "services").resolve()
        self.logs = self.root / "logs"
        self.pg: PostgresServer | None = None
        self.redis: RedisServer | None = None
        self.broker: MosquittoProcess | None = None
        self.mqtt_port = 0
        self.children: dict[str, Child] = {}
        self.secrets: dict[str, str] = {}

    # ---- start ---------------------------------------------------------------------------
    def start(self) -> None:
        """Bring everything up in dependency order; on any failure stop what started, then raise."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.secrets = _secrets(self.root / "secrets.json")
        log.info("starting PostgreSQL")
        self.pg = start_postgres(self.root / "postgres", durable=self.config.durable)
        for name in DATABASES:
            if not self.pg.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'").strip():  # noqa: S608 - fixed names
                self.pg.psql(f"CREATE DATABASE {name}")
            asyncio.run(migrate_url(self.pg.url_for(name)))
        log.info("starting Redis")
        self.redis = start_redis()
        self.mqtt_port = self.config.mqtt_port if port_is_free(self.config.mqtt_port) else free_port()
        if self.mqtt_port != self.config.mqtt_port:
            log.warning("MQTT port taken; using another", wanted=self.config.mqtt_port, port=self.mqtt_port)
        log.info("starting Mosquitto", port=self.mqtt_port)
        self.broker = start_mosquitto(
            self.root / "mosquitto",
            self.mqtt_port,
            bind="0.0.0.0",  # noqa: S104 - devices connect from the LAN
            admin_user="sensorcloud-admin",
            admin_password=self.secrets["admin_password"],
            service_user="sensorcloud-service",
            service_password=self.secrets["service_password"],
        )
        self._start_services()
        self._start_gateway()

    def _peers(self, ports: dict[str, list[int]]) -> str:
        return ",".join(f"{name}=http://127.0.0.1:{p}" for name, plist in ports.items() for p in plist)

    def _start_services(self) -> None:
        assert self.pg is not None
        assert self.redis is not None
        c = self.config
        ports = {
            "auth": [free_port() for _ in range(c.auth_replicas)],
            "iot": [free_port() for _ in range(c.iot_replicas)],
            "ingest": [free_port() for _ in range(c.ingest_replicas)],
        }
        jwks = f"http://127.0.0.1:{ports['auth'][0]}/.well-known/jwks.json"
        mqtt = f"127.0.0.1:{self.mqtt_port}"
        common = {
            "SENSORCLOUD_REDIS_URL": self.redis.url,
            "SENSORCLOUD_STATUS_PEERS": self._peers(ports),
            "SENSORCLOUD_HTTP_HOST": "127.0.0.1",
            **c.extra_env,
        }
        env = {
            "auth": {
                **common,
                "SENSORCLOUD_DATABASE_URL": self.pg.url_for("auth"),
                "SENSORCLOUD_DATA_DIR": str(self.root / "auth"),
                "SENSORCLOUD_MQTT_ADMIN_URL": f"mqtt://sensorcloud-admin:{self.secrets['admin_password']}@{mqtt}",
                "SENSORCLOUD_MQTT_PUBLIC_HOST": "127.0.0.1",
                "SENSORCLOUD_MQTT_PUBLIC_PORT": str(self.mqtt_port),
            },
            "iot": {
                **common,
                "SENSORCLOUD_DATABASE_URL": self.pg.url_for("iot"),
                "SENSORCLOUD_JWKS_URL": jwks,
            },
            "ingest": {
                **common,
                "SENSORCLOUD_DATABASE_URL": self.pg.url_for("iot"),
                "SENSORCLOUD_AUTH_DATABASE_URL": self.pg.url_for("auth"),
                "SENSORCLOUD_JWKS_URL": jwks,
                "SENSORCLOUD_MQTT_URL": f"mqtt://sensorcloud-service:{self.secrets['service_password']}@{mqtt}",
            },
        }
        # auth first: the others fetch its JWKS as they start; they then start side by side
        for group in (("auth",), ("iot", "ingest")):
            started = []
            for target in group:
                for i, port in enumerate(ports[target], start=1):
                    extra = (
                        {"SENSORCLOUD_INGEST_CLIENT_ID": f"sensorcloud-ingest-{i}"}
                        if target == "ingest"
                        else {}
                    )
                    child = service(target, port, {**env[target], **extra}, self.logs, replica=i)
                    log.info("starting service", name=child.name, port=port)
                    child.start(wait=0)
                    self.children[child.name] = child
                    started.append(child)
            for child in started:
                child.wait_ready(SERVICE_START_TIMEOUT_S)

    def _start_gateway(self) -> None:
        run = self.root / "nginx"
        for sub in ("", "client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (run / sub).mkdir(parents=True, exist_ok=True)
            if os.geteuid() == 0:  # workers run as nobody and write their temp files here
                shutil.chown(run / sub, "nobody")
        by_target: dict[str, list[str]] = {"auth": [], "iot": [], "ingest": []}
        for child in self.children.values():
            by_target[child.name.rsplit("-", 1)[0]].append(f"127.0.0.1:{child.port}")
        conf = run / "nginx.conf"
        conf.write_text(
            render(
                GatewayConfig(
                    listen=self.config.http_port,
                    auth=by_target["auth"],
                    iot=by_target["iot"],
                    ingest=by_target["ingest"],
                    web_root=self.config.web_root,
                    runtime_dir=run,
                )
            )
        )
        gateway = nginx(conf, self.config.http_port, self.logs)
        log.info("starting nginx", port=self.config.http_port)
        gateway.start()
        self.children["nginx"] = gateway

    # ---- run and stop ----------------------------------------------------------------------
    def supervise_once(self) -> list[str]:
        """Restart what has died (crash & restart, as an orchestrator would); returns their names."""
        restarted = []
        for child in self.children.values():
            if not child.alive:
                log.warning("process died; restarting", name=child.name, code=child.returncode)
                child.restart()
                restarted.append(child.name)
        return restarted

    def stop(self) -> None:
        """Gateway first, then the services (side by side), then what they depend on."""
        if "nginx" in self.children:
            self.children["nginx"].stop()
        services = [child for name, child in self.children.items() if name != "nginx"]
        for child in services:
            child.terminate()
        for child in services:
            child.stop()
        if self.broker is not None:
            self.broker.stop()
            self.broker = None
        if self.redis is not None:
            self.redis.stop()
            self.redis = None
        if self.pg is not None:
            self.pg.stop()
            self.pg = None

    def describe(self) -> str:
        lines = [f"gateway  http://127.0.0.1:{self.config.http_port}", f"mqtt     127.0.0.1:{self.mqtt_port}"]
        lines += [
            f"{name:<9}http://127.0.0.1:{c.port}" for name, c in self.children.items() if name != "nginx"
        ]
        if self.pg is not None:
            lines.append(f"postgres {self.pg.url_for('auth')} , {self.pg.url_for('iot')}")
        lines.append(f"logs     {self.logs}")
        return "\n".join(lines)


def wait_until_stopped(topology: Topology, stop_requested: list[bool], interval: float = 1.0) -> None:
    while not stop_requested:
        time.sleep(interval)
        if not stop_requested:
            topology.supervise_once()
