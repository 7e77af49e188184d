"""deploy/docker-compose.yml, deploy/.env.example and deploy/Dockerfile, checked without Docker.

No container engine runs here, so the files are parsed and held to the code: every service of the
original system is there, every SENSORCLOUD_* variable is a real setting with a value the settings
accept, no password is written down, the healthchecks and the broker's init step actually work, and
the ports agree with deploy/nginx/nginx.conf.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from sensorcloud import __version__
from sensorcloud.app import Target
from sensorcloud.core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
ENV_EXAMPLE = DEPLOY / ".env.example"
DOCKERFILE = DEPLOY / "Dockerfile"
NGINX_CONF = DEPLOY / "nginx" / "nginx.conf"

SETTINGS = {f"SENSORCLOUD_{name.upper()}" for name in Settings.model_fields}
# The original's services (client -> web, mqtt -> ingest) plus Redis and the one-shot migrations.
EXPECTED = ["gateway", "web", "auth", "auth-db", "iot", "iot-db", "ingest", "mqtt-broker", "redis", "migrate"]
APP_SERVICES = ["auth", "iot", "ingest"]
HEALTHCHECKED = ["gateway", "auth", "iot", "ingest", "auth-db", "iot-db", "mqtt-broker", "redis"]
INTERPOLATION = re.compile(r"(?<!\$)\$\{(?P<name>[A-Za-z0-9_]+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|REDISCLI_AUTH")
URL_PASSWORD = re.compile(r"^[a-z][a-z0-9+.-]*://[^:/@]*:(?P<password>.+)@[^@]+$")
ONE_REQUIRED_REFERENCE = re.compile(r"^\$\{[A-Z0-9_]+:\?[^}]+\}$")

Service = dict[str, Any]


def load_compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(document, dict)
    return document


def services() -> dict[str, Service]:
    found = load_compose()["services"]
    assert isinstance(found, dict)
    return found


def interpolate(value: str) -> str:
    """What compose makes of a value: defaults applied, required variables as a stand-in value."""

    def one(match: re.Match[str]) -> str:
        if match["op"] in ("-", ":-"):
            return match["arg"]
        return f"x{match['name'].lower()}"  # URL-safe, as .env.example asks

    return INTERPOLATION.sub(one, value).replace("$$", "$")


def environment(service: Service) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def networks_of(service: Service) -> dict[str, dict[str, Any]]:
    nets = service.get("networks", {})
    if isinstance(nets, list):
        return {name: {} for name in nets}
    return {name: (conf or {}) for name, conf in nets.items()}


def instances(name: str) -> dict[str, Service]:
    """The services that answer to `name`: the service itself or those with it as a network alias."""
    return {
        key: svc
        for key, svc in services().items()
        if key == name or any(name in conf.get("aliases", []) for conf in networks_of(svc).values())
    }


def command(service: Service) -> list[str]:
    cmd = service.get("command", [])
    return cmd.split() if isinstance(cmd, str) else [str(c) for c in cmd]


def app_instances() -> dict[str, Service]:
    return {key: svc for name in APP_SERVICES for key, svc in instances(name).items()}


def healthcheck_command(service: Service) -> list[str]:
    test = service["healthcheck"]["test"]
    return [test] if isinstance(test, str) else [str(t) for t in test]


# ---- the services -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", EXPECTED)
def test_every_service_of_the_original_is_there(name: str) -> None:
    assert instances(name), f"no service (or network alias) {name} in {COMPOSE}"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_services_run_their_own_target(name: str) -> None:
    for key, svc in instances(name).items():
        assert command(svc) == ["serve", "--target", name], key
        assert name in {t.value for t in Target}


def test_every_sensorcloud_variable_is_a_setting() -> None:
    unknown = {
        (key, var)
        for key, svc in services().items()
        for var in environment(svc)
        if var.startswith("SENSORCLOUD_") and var not in SETTINGS
    }
    assert unknown == set(), "not in sensorcloud.core.settings.Settings"


@pytest.mark.parametrize("key", [*sorted(app_instances()), "migrate"])
def test_the_settings_accept_each_services_environment(key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {k: interpolate(v) for k, v in environment(services()[key]).items()}
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    settings = Settings()
    assert settings.is_production, "the deployment file must not run development settings"
    assert settings.database_url is not None
    assert settings.database_url.startswith("postgresql://")
    assert not settings.uses_sqlite
    if key != "migrate":
        assert settings.http_host == "0.0.0.0"
        assert settings.redis_url is not None, "replicas share throttling and revocations through Redis"


def test_verifying_services_fetch_the_jwks_from_auth() -> None:
    auth_port = environment(services()["auth"])["SENSORCLOUD_HTTP_PORT"]
    for key, svc in app_instances().items():
        if key == "auth":
            continue
        assert environment(svc)["SENSORCLOUD_JWKS_URL"] == f"http://auth:{auth_port}/.well-known/jwks.json"


def test_auth_signs_with_a_mounted_private_key() -> None:
    auth = services()["auth"]
    path = environment(auth)["SENSORCLOUD_JWT_PRIVATE_KEY_FILE"]
    targets = {f"/run/secrets/{s['target']}" for s in auth["secrets"]}
    assert path in targets
    declared = load_compose()["secrets"]
    for secret in auth["secrets"]:
        assert ONE_REQUIRED_REFERENCE.match(declared[secret["source"]]["file"])


def test_ingest_replicas_have_distinct_fixed_client_ids() -> None:
    """A replica's MQTT session is its client id: it must differ between replicas and survive a recreate."""
    ingest = instances("ingest")
    replicas = sum(svc.get("deploy", {}).get("replicas", 1) for svc in ingest.values())
    assert replicas >= 2
    client_ids = [environment(svc).get("SENSORCLOUD_INGEST_CLIENT_ID") for svc in ingest.values()]
    assert None not in client_ids, "the default (the hostname, a container id) changes on every recreate"
    assert len(set(client_ids)) == len(client_ids)
    for svc in ingest.values():
        assert svc.get("deploy", {}).get("replicas", 1) == 1, "replicas of one service would share an id"


def test_iot_runs_replicas() -> None:
    assert services()["iot"]["deploy"]["replicas"] >= 2


def test_app_services_are_locked_down() -> None:
    for key, svc in app_instances().items():
        assert svc["read_only"] is True, key
        assert "ALL" in svc["cap_drop"], key
        assert "no-new-privileges:true" in svc["security_opt"], key


# ---- secrets ----------------------------------------------------------------------------------------


def test_no_password_is_written_down() -> None:
    """Every secret comes from deploy/.env through ${VAR:?...}, which stops compose when it is unset."""
    for key, svc in services().items():
        for var, value in environment(svc).items():
            if SECRET_NAME.search(var):
                assert ONE_REQUIRED_REFERENCE.match(value), f"{key}: {var}"
            url = URL_PASSWORD.match(value)
            if url:
                assert ONE_REQUIRED_REFERENCE.match(url["password"]), f"{key}: {var}"
        cmd = command(svc)
        for flag, value in itertools.pairwise(cmd):
            if flag.startswith("-") and "pass" in flag.lower():
                assert ONE_REQUIRED_REFERENCE.match(value), f"{key}: {flag}"


def test_secret_variables_have_no_fallback_anywhere() -> None:
    text = COMPOSE.read_text()
    required = {m["name"] for m in INTERPOLATION.finditer(text) if m["op"] == ":?"}
    assert required, "no ${VAR:?...} at all"
    for match in INTERPOLATION.finditer(text):
        if match["name"] in required:
            assert match["op"] == ":?", f"{match[0]}: a secret with a default or no check"


def test_env_example_lists_every_required_variable_with_no_value() -> None:
    text = COMPOSE.read_text()
    required = {m["name"] for m in INTERPOLATION.finditer(text) if m["op"] == ":?"}
    listed: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            listed[name.strip()] = value.strip()
    assert set(listed) == required
    assert all(value == "" for value in listed.values()), "an example must not ship a value"
    optional = {m["name"] for m in INTERPOLATION.finditer(text) if m["op"] in ("-", ":-")}
    for name in optional:
        assert f"# {name}=" in ENV_EXAMPLE.read_text(), f"{name} (optional) is not described"


# ---- healthchecks and start order ---------------------------------------------------------------------


@pytest.mark.parametrize("name", HEALTHCHECKED)
def test_healthchecks(name: str) -> None:
    for key, svc in instances(name).items():
        check = svc.get("healthcheck")
        assert check, key
        assert not check.get("disable"), key
        assert healthcheck_command(svc)[0] in ("CMD", "CMD-SHELL"), key


@pytest.mark.parametrize("key", sorted(app_instances()))
def test_app_healthchecks_ask_ready_on_the_service_port(key: str) -> None:
    svc = services()[key]
    cmd = healthcheck_command(svc)
    assert cmd[:3] == ["CMD", "python", "-c"]
    assert "/ready" in cmd[3]
    assert "SENSORCLOUD_HTTP_PORT" in cmd[3]
    assert "SENSORCLOUD_HTTP_PORT" in environment(svc)


class _Ready(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/ready" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def ready_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ready)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_the_app_healthcheck_follows_ready(
    ready_server: ThreadingHTTPServer, status: int, healthy: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_Ready, "status", status)
    snippet = healthcheck_command(services()["auth"])[3]
    env = {**os.environ, "SENSORCLOUD_HTTP_PORT": str(ready_server.server_address[1])}
    result = subprocess.run([sys.executable, "-c", snippet], env=env, capture_output=True, timeout=30)
    assert (result.returncode == 0) is healthy, result.stderr


def test_dependencies_exist_and_wait_for_health() -> None:
    all_services = services()
    conditions = {"service_started", "service_healthy", "service_completed_successfully"}
    for key, svc in all_services.items():
        for dep, how in svc.get("depends_on", {}).items():
            assert dep in all_services, f"{key} depends on unknown {dep}"
            assert how["condition"] in conditions
            if how["condition"] == "service_healthy":
                assert "healthcheck" in all_services[dep], f"{key} waits for {dep}, which has no healthcheck"


def test_services_start_after_migrations_and_gateway_after_services() -> None:
    for key, svc in app_instances().items():
        assert svc["depends_on"]["migrate"]["condition"] == "service_completed_successfully", key
    gateway = services()["gateway"]["depends_on"]
    for key in app_instances():
        assert gateway[key]["condition"] == "service_healthy"


def test_migrate_runs_on_both_databases() -> None:
    migrate = services()["migrate"]
    script = " ".join([*migrate["entrypoint"], *command(migrate)])
    assert script.count("sensorcloud migrate") == 2
    env = environment(migrate)
    hosts = {re.sub(r".*@([^:/]+).*", r"\1", env[v]) for v in env if v.endswith("DATABASE_URL")}
    assert hosts == {"auth-db", "iot-db"}
    assert migrate.get("restart") == "no"


# ---- networks, ports, nginx ---------------------------------------------------------------------------


def test_networks_like_the_original() -> None:
    document = load_compose()
    assert set(document["networks"]) == {"frontend", "backend"}
    assert document["networks"]["backend"].get("internal") is True
    all_services = services()
    assert set(networks_of(all_services["gateway"])) == {"frontend", "backend"}
    for key in ("auth-db", "iot-db", "redis", *app_instances()):
        assert set(networks_of(all_services[key])) == {"backend"}, key
    for key, svc in all_services.items():
        assert not ("network_mode" in svc and "networks" in svc), key
        assert set(networks_of(svc)) <= set(document["networks"]), key


def test_named_volumes_are_declared() -> None:
    document = load_compose()
    for key, svc in services().items():
        for volume in svc.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in document["volumes"], f"{key}: {source}"


def published(service: Service) -> dict[int, int]:
    """host port -> container port."""
    result = {}
    for entry in service.get("ports", []):
        host, container = interpolate(str(entry)).rsplit(":", 1)
        result[int(host.rsplit(":", 1)[-1])] = int(container.split("/")[0])
    return result


def test_gateway_publishes_8083_and_nothing_else_http_is_public() -> None:
    assert 8083 in published(services()["gateway"])
    for key, svc in services().items():
        if key not in ("gateway", "mqtt-broker"):
            assert not svc.get("ports"), f"{key} must stay behind the gateway"
    assert published(services()["mqtt-broker"]) == {1883: 1883}


def test_app_services_listen_on_the_same_port() -> None:
    ports = {environment(svc)["SENSORCLOUD_HTTP_PORT"] for svc in app_instances().values()}
    assert ports == {"8083"}


def nginx_conf() -> str:
    if not NGINX_CONF.exists():
        pytest.skip(f"{NGINX_CONF} is not written yet: nothing to compare the compose ports with")
    return NGINX_CONF.read_text()


def test_nginx_upstreams_are_compose_services_on_their_port() -> None:
    text = nginx_conf()
    servers = re.findall(r"^\s*server\s+([A-Za-z0-9_.-]+):(\d+)", text, flags=re.MULTILINE)
    assert servers
    gateway_networks = set(networks_of(services()["gateway"]))
    for host, port in servers:
        targets = instances(host)
        assert targets, f"nginx proxies to {host}, which no compose service answers to"
        for key, svc in targets.items():
            assert environment(svc)["SENSORCLOUD_HTTP_PORT"] == port, f"{key} does not listen on {port}"
            assert set(networks_of(svc)) & gateway_networks, f"{key} is not on a network of the gateway"


def test_nginx_listens_on_the_gateways_container_port() -> None:
    text = nginx_conf()
    listen = {int(p) for p in re.findall(r"^\s*listen\s+(?:[\d.]+:)?(\d+)", text, flags=re.MULTILINE)}
    assert set(published(services()["gateway"]).values()) <= listen


def test_nginx_config_and_dashboard_are_mounted_where_nginx_reads_them() -> None:
    text = nginx_conf()
    gateway = services()["gateway"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in gateway["volumes"]}
    assert mounts["/etc/nginx/nginx.conf"] == "./nginx/nginx.conf"
    root = re.search(r"^\s*root\s+([^;]+);", text, flags=re.MULTILINE)
    assert root is not None
    web_volume = mounts[root[1]]
    assert any(v.startswith(f"{web_volume}:") for v in services()["web"]["volumes"])
    if re.search(r"^\s*daemon\s+off;", text, flags=re.MULTILINE):
        assert "daemon off;" not in " ".join(command(gateway)), "nginx refuses a duplicate `daemon`"
        assert command(gateway), "the nginx image's default command adds -g 'daemon off;'"


# ---- the broker's init step ---------------------------------------------------------------------------


def broker_init_script() -> str:
    init = services()["mqtt-init"]
    assert init["entrypoint"] == ["python", "-c"]
    (script,) = init["command"]
    assert isinstance(script, str)
    return script


def run_broker_init(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    script = broker_init_script().replace('"/mosquitto/', f'"{tmp_path}/mosquitto/')
    return subprocess.run(
        [sys.executable, "-c", script], env={**os.environ, **env}, capture_output=True, text=True, timeout=60
    )


def test_broker_init_renders_the_config_and_keeps_the_dynsec_store(tmp_path: Path) -> None:
    init = services()["mqtt-init"]
    env = {k: interpolate(v) for k, v in environment(init).items()}
    (tmp_path / "mosquitto" / "config").mkdir(parents=True)
    (tmp_path / "mosquitto" / "data").mkdir()
    first = run_broker_init(tmp_path, env)
    assert first.returncode == 0, first.stderr
    conf = (tmp_path / "mosquitto" / "config" / "mosquitto.conf").read_text()
    assert "allow_anonymous false" in conf
    assert "listener 1883 0.0.0.0" in conf
    assert "plugin /usr/lib/mosquitto_dynamic_security.so" in conf
    dynsec_path = tmp_path / "mosquitto" / "data" / "dynamic-security.json"
    assert f"plugin_opt_config_file {dynsec_path}" in conf
    dynsec = json.loads(dynsec_path.read_text())
    users = {c["username"] for c in dynsec["clients"]}
    assert users == {"sensorcloud-admin", env["SENSORCLOUD_MQTT_SERVICE_USERNAME"]}
    assert env["MQTT_SERVICE_PASSWORD"] not in dynsec_path.read_text(), "stored hashed"

    before = dynsec_path.read_bytes()
    second = run_broker_init(tmp_path, {**env, "MQTT_SERVICE_PASSWORD": "another"})
    assert second.returncode == 0, second.stderr
    assert dynsec_path.read_bytes() == before, "the broker's device store must never be overwritten"


def test_broker_accounts_match_the_service_urls() -> None:
    init_env = environment(services()["mqtt-init"])
    admin_url = environment(services()["auth"])["SENSORCLOUD_MQTT_ADMIN_URL"]
    assert admin_url.startswith("mqtt://sensorcloud-admin:${MQTT_ADMIN_PASSWORD:?")
    assert admin_url.endswith("@mqtt-broker:1883")
    assert '"sensorcloud-admin"' in broker_init_script()
    service_user = init_env["SENSORCLOUD_MQTT_SERVICE_USERNAME"]
    for svc in instances("ingest").values():
        url = environment(svc)["SENSORCLOUD_MQTT_URL"]
        assert url.startswith(f"mqtt://{service_user}:${{MQTT_SERVICE_PASSWORD:?")
        assert url.endswith("@mqtt-broker:1883")
    for var in ("MQTT_ADMIN_PASSWORD", "MQTT_SERVICE_PASSWORD"):
        assert ONE_REQUIRED_REFERENCE.match(init_env[var])
    assert (
        init_env["MQTT_SERVICE_PASSWORD"] == environment(services()["mqtt-broker"])["MQTT_SERVICE_PASSWORD"]
    )


def test_broker_shares_its_volumes_with_the_init_step() -> None:
    init_volumes = {v.split(":")[0] for v in services()["mqtt-init"]["volumes"]}
    broker_volumes = {v.split(":")[0] for v in services()["mqtt-broker"]["volumes"]}
    assert init_volumes == broker_volumes
    assert services()["mqtt-broker"]["depends_on"]["mqtt-init"]["condition"] == (
        "service_completed_successfully"
    )


# ---- the image ------------------------------------------------------------------------------------------


def stages() -> dict[str, list[str]]:
    """Dockerfile stage name -> its instructions (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", "\n".join(lines), flags=re.MULTILINE))
    result: dict[str, list[str]] = {}
    current = ""
    for line in lines:
        match = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, flags=re.IGNORECASE)
        if match:
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], match[1])
            current = match[2] or image
            result[current] = [f"FROM {image}"]
        elif current:
            result[current].append(line)
    return result


def test_image_stages() -> None:
    found = stages()
    assert found["app"][0] == "FROM python:3.11-slim"
    assert list(found)[-1] == "app", "the default target must be the services' image"
    assert found["web-build"][0].startswith("FROM node:20")
    app = found["app"]
    assert 'ENTRYPOINT ["sensorcloud"]' in app
    assert 'CMD ["serve"]' in app
    users = [line.split()[1] for line in app if line.startswith("USER ")]
    assert users
    assert users[-1].split(":")[0].isdigit()
    assert users[-1].split(":")[0] != "0"
    web_users = [line.split()[1] for line in found["web"] if line.startswith("USER ")]
    assert web_users
    assert web_users[-1].split(":")[0] != "0"
    assert any("requirements.lock" in line for line in found["python-build"])


def test_compose_builds_existing_targets_of_the_versioned_image() -> None:
    found = stages()
    for key, svc in services().items():
        if "build" in svc:
            assert svc["build"]["dockerfile"] == "deploy/Dockerfile"
            assert (COMPOSE.parent / svc["build"]["context"] / svc["build"]["dockerfile"]).is_file()
            assert svc["build"]["target"] in found, key
            assert svc["image"].endswith(f":{__version__}"), key


def test_image_copies_only_what_exists() -> None:
    for stage in stages().values():
        for line in stage:
            if line.startswith("COPY ") and "--from=" not in line:
                *sources, _ = line.split()[1:]
                for source in sources:
                    assert (ROOT / source).exists(), source
