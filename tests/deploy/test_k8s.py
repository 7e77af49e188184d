"""deploy/k8s/*.yaml, checked without a cluster.

Every document is validated against the Kubernetes API's own JSON schemas (kubernetes-validate,
strict: an unknown or misspelt field fails), then held to the code and to each other: probes on
/ready and /health at SENSORCLOUD_HTTP_PORT, Services that reach a workload's port, autoscalers on
existing workloads, environment variables that are settings with values the settings accept, and
Secrets that carry no value.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml  # type: ignore[import-untyped]
from typer.testing import CliRunner

from sensorcloud import __version__
from sensorcloud.app import Target
from sensorcloud.cli import app as cli
from sensorcloud.core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
COMPOSE = ROOT / "deploy" / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"

# The oldest Kubernetes release still commonly run, and the newest the schemas know.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
SETTINGS = {f"SENSORCLOUD_{name.upper()}" for name in Settings.model_fields}
WORKLOADS = ("Deployment", "StatefulSet")
APP_IMAGE = "sensorcloud"
REFERENCE = re.compile(r"\$\(([A-Za-z0-9_]+)\)")

Doc = dict[str, Any]


def load() -> list[tuple[str, Doc]]:
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                found.append((path.name, doc))
    return found


DOCS = load()


def of_kind(*kinds: str) -> list[Doc]:
    return [doc for _, doc in DOCS if doc["kind"] in kinds]


def named(kind: str, name: str) -> Doc:
    matches = [doc for doc in of_kind(kind) if doc["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def config() -> dict[str, str]:
    (configmap,) = of_kind("ConfigMap")
    data = configmap["data"]
    assert isinstance(data, dict)
    return data


def pod_spec(workload: Doc) -> Doc:
    spec = workload["spec"]["template"]["spec"]
    assert isinstance(spec, dict)
    return spec


def containers(workload: Doc, *, init: bool = True) -> list[Doc]:
    spec = pod_spec(workload)
    return [*(spec.get("initContainers", []) if init else []), *spec["containers"]]


def image_name(container: Doc) -> str:
    return str(container["image"]).rsplit("/", 1)[-1].split(":")[0]


def serves(container: Doc) -> str | None:
    """The --target of a `sensorcloud serve` container, else None."""
    args = container.get("args", [])
    if image_name(container) == APP_IMAGE and args[:1] == ["serve"]:
        return str(args[args.index("--target") + 1])
    return None


def app_workloads() -> Iterator[tuple[Doc, Doc]]:
    for workload in of_kind(*WORKLOADS, "Job"):
        for container in containers(workload):
            if image_name(container) == APP_IMAGE:
                yield workload, container


def env_of(container: Doc) -> dict[str, str]:
    """The container's environment as Kubernetes builds it: envFrom first, then env, $(VAR) expanded."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        ref = source["configMapRef"]["name"]
        env.update(named("ConfigMap", ref)["data"])
    for item in container.get("env", []):
        if "value" in item:
            value = REFERENCE.sub(lambda m: env.get(m[1], m[0]), item["value"])
        else:
            value = f"x{item['name'].lower()}"  # from a Secret or the downward API: URL-safe stand-in
        env[item["name"]] = value
    return env


def port_number(container: Doc, port: int | str) -> int:
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    assert isinstance(number, int)
    return number


# ---- schema ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(
    "doc",
    [doc for _, doc in DOCS],
    ids=[f"{name}:{doc['kind']}/{doc['metadata']['name']}" for name, doc in DOCS],
)
def test_every_document_matches_the_kubernetes_schema(doc: Doc, version: str) -> None:
    kubernetes_validate.validate(doc, version, strict=True)


def test_the_expected_objects_are_there() -> None:
    kinds = {(doc["kind"], doc["metadata"]["name"]) for _, doc in DOCS}
    for name in ("auth", "iot", "gateway"):
        assert ("Deployment", name) in kinds
        assert ("Service", name) in kinds
    for name in ("ingest", "auth-db", "iot-db", "mqtt-broker", "redis"):
        assert ("StatefulSet", name) in kinds
        assert ("Service", name) in kinds
    for name in ("iot", "ingest"):
        assert ("HorizontalPodAutoscaler", name) in kinds
    assert ("Job", "migrate") in kinds
    assert {kind for kind, _ in kinds} >= {"Namespace", "ConfigMap", "Secret", "NetworkPolicy"}


def test_everything_lives_in_the_namespace() -> None:
    (namespace,) = of_kind("Namespace")
    for name, doc in DOCS:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == namespace["metadata"]["name"], f"{name}: {doc['kind']}"
    assert DOCS[0][1]["kind"] == "Namespace", "`kubectl apply -f deploy/k8s/` must create it first"


# ---- the services' containers ------------------------------------------------------------------------------


def test_every_sensorcloud_variable_is_a_setting() -> None:
    names = set(config())
    for _, container in app_workloads():
        names |= {item["name"] for item in container.get("env", [])}
    unknown = {n for n in names if n.startswith("SENSORCLOUD_")} - SETTINGS
    assert unknown == set()
    assert all(key.startswith("SENSORCLOUD_") for key in config()), "envFrom: anything else leaks into env"


def test_references_point_at_earlier_variables() -> None:
    """Kubernetes expands $(VAR) only from variables defined before it; anything else stays literal."""
    for workload, container in app_workloads():
        defined = set(config()) if container.get("envFrom") else set()
        for item in container.get("env", []):
            for name in REFERENCE.findall(item.get("value", "")):
                assert name in defined, f"{workload['metadata']['name']}: {item['name']} uses $({name})"
            defined.add(item["name"])
        for arg in container.get("args", []):
            for name in REFERENCE.findall(arg):
                assert name in defined


@pytest.mark.parametrize("target", ["auth", "iot", "ingest"])
def test_the_settings_accept_each_services_environment(target: str, monkeypatch: pytest.MonkeyPatch) -> None:
    (container,) = [c for _, c in app_workloads() if serves(c) == target]
    assert target in {t.value for t in Target}
    for var, value in env_of(container).items():
        monkeypatch.setenv(var, value)
    settings = Settings()
    assert settings.is_production
    assert settings.http_host == "0.0.0.0"
    assert settings.database_url is not None
    assert settings.database_url.startswith("postgresql://")
    assert settings.redis_url is not None
    if target == "auth":
        assert settings.jwt_private_key_file is not None
        assert settings.mqtt_admin_url is not None
    else:
        assert settings.jwks_url == f"http://auth:{settings.http_port}/.well-known/jwks.json"
    if target == "ingest":
        assert settings.mqtt_url is not None
        assert settings.auth_database_url is not None
        assert "@auth-db:" in settings.auth_database_url


def test_auth_reads_its_key_from_the_mounted_secret() -> None:
    auth = named("Deployment", "auth")
    (container,) = containers(auth)
    path = Path(env_of(container)["SENSORCLOUD_JWT_PRIVATE_KEY_FILE"])
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(auth)["volumes"]}
    (volume,) = [name for name, mount in mounts.items() if Path(mount) == path.parent]
    assert volumes[volume]["secret"]["secretName"] == "sensorcloud-jwt"
    assert path.name in named("Secret", "sensorcloud-jwt")["metadata"]["annotations"]["sensorcloud.io/keys"]


def test_ingest_replicas_have_stable_distinct_client_ids() -> None:
    ingest = named("StatefulSet", "ingest")
    (container,) = containers(ingest)
    env = {item["name"]: item for item in container["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert "$(POD_NAME)" in env["SENSORCLOUD_INGEST_CLIENT_ID"]["value"]


def test_the_migrate_job_covers_both_databases() -> None:
    job = named("Job", "migrate")
    hosts = set()
    for container in containers(job):
        assert container["args"] == ["migrate"]
        url = env_of(container)["SENSORCLOUD_DATABASE_URL"]
        hosts.add(re.sub(r".*@([^:/]+).*", r"\1", url))
    assert hosts == {"auth-db", "iot-db"}


# ---- probes, ports, services -----------------------------------------------------------------------------


def test_every_workload_container_has_readiness_and_liveness_probes() -> None:
    for workload in of_kind(*WORKLOADS):
        for container in containers(workload, init=False):
            name = f"{workload['metadata']['name']}/{container['name']}"
            assert "readinessProbe" in container, name
            assert "livenessProbe" in container, name


@pytest.mark.parametrize("target", ["auth", "iot", "ingest"])
def test_services_probe_ready_and_health_on_the_configured_port(target: str) -> None:
    (container,) = [c for _, c in app_workloads() if serves(c) == target]
    port = int(config()["SENSORCLOUD_HTTP_PORT"])
    ready = container["readinessProbe"]["httpGet"]
    live = container["livenessProbe"]["httpGet"]
    assert ready["path"] == "/ready"
    assert live["path"] == "/health"
    assert port_number(container, ready["port"]) == port
    assert port_number(container, live["port"]) == port
    assert "SENSORCLOUD_HTTP_PORT" not in {item["name"] for item in container.get("env", [])}


def workload_for(service: Doc) -> Doc:
    selector = service["spec"]["selector"]
    matches = [
        w
        for w in of_kind(*WORKLOADS)
        if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
    ]
    assert len(matches) == 1, f"Service {service['metadata']['name']} selects {len(matches)} workloads"
    return matches[0]


def test_services_select_a_workload_and_reach_its_ports() -> None:
    for service in of_kind("Service"):
        workload = workload_for(service)
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            exposed = [p for c in containers(workload, init=False) for p in c.get("ports", [])]
            assert any(target in (p["containerPort"], p.get("name")) for p in exposed), (
                f"Service {service['metadata']['name']} targets {target}"
            )


def test_workload_selectors_match_their_pods() -> None:
    for workload in of_kind(*WORKLOADS):
        selector = workload["spec"]["selector"]["matchLabels"]
        assert selector.items() <= workload["spec"]["template"]["metadata"]["labels"].items()
        if workload["kind"] == "StatefulSet":
            governing = named("Service", workload["spec"]["serviceName"])
            assert governing["spec"].get("clusterIP") == "None", "a StatefulSet's service is headless"
            assert workload_for(governing) is workload


def test_clients_reach_services_that_exist() -> None:
    ports = {(s["metadata"]["name"], p["port"]) for s in of_kind("Service") for p in s["spec"]["ports"]}
    urls = re.compile(r"^[a-z]+://(?:[^@/]*@)?([a-z0-9-]+):(\d+)")
    for _, container in app_workloads():
        for var, value in env_of(container).items():
            for part in value.split(","):
                match = urls.match(part.split("=", 1)[-1])
                if match:
                    assert (match[1], int(match[2])) in ports, f"{var}: {part}"


def test_gateway_routes_to_the_services_and_serves_on_its_port() -> None:
    gateway = named("Deployment", "gateway")
    render = next(c for c in pod_spec(gateway)["initContainers"] if c["args"][:2] == ["gateway", "config"])
    args = render["args"]
    options = dict(zip(args[2::2], args[3::2], strict=True))
    ports = {(s["metadata"]["name"], p["port"]) for s in of_kind("Service") for p in s["spec"]["ports"]}
    for upstream in ("--auth", "--iot", "--ingest"):
        host, port = options[upstream].rsplit(":", 1)
        assert (host, int(port)) in ports, upstream
    (nginx,) = containers(gateway, init=False)
    assert port_number(nginx, "http") == int(options["--listen"])
    assert options["--output"] in nginx["command"]
    mounts = {m["mountPath"]: m["name"] for m in nginx["volumeMounts"]}
    assert mounts[options["--web-root"]] == "web"
    assert mounts[options["--runtime-dir"]] == "run"
    assert str(Path(options["--output"]).parent) in mounts

    # The same arguments, through the real command: they must render a config for that port.
    without_output = [a for a in args if a not in ("--output", options["--output"])]
    result = CliRunner().invoke(cli, without_output)
    assert result.exit_code == 0, result.output
    assert f"listen {options['--listen-host']}:{options['--listen']};" in result.output
    assert f"pid {options['--runtime-dir']}/nginx.pid;" in result.output
    assert "daemon off;" in result.output
    assert "-g" not in nginx["command"], "the rendered file says `daemon off;` already"


def test_gateway_is_the_public_http_entry_on_8083() -> None:
    public = [s for s in of_kind("Service") if s["spec"].get("type") in ("LoadBalancer", "NodePort")]
    assert {s["metadata"]["name"] for s in public} == {"gateway", "mqtt-broker"}
    assert [p["port"] for p in named("Service", "gateway")["spec"]["ports"]] == [8083]
    assert [p["port"] for p in named("Service", "mqtt-broker")["spec"]["ports"]] == [1883]


# ---- scaling -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["iot", "ingest"])
def test_autoscalers_scale_existing_workloads(name: str) -> None:
    hpa = named("HorizontalPodAutoscaler", name)
    ref = hpa["spec"]["scaleTargetRef"]
    workload = named(ref["kind"], ref["name"])
    assert ref["apiVersion"] == workload["apiVersion"]
    assert hpa["spec"]["minReplicas"] >= 2
    assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    assert "replicas" not in workload["spec"], "a fixed count fights the autoscaler on every apply"
    metrics = {m["resource"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Resource"}
    for container in containers(workload, init=False):
        for metric in metrics:
            assert metric in container["resources"]["requests"], "utilisation is measured against requests"


def test_ingest_autoscaler_never_scales_down() -> None:
    """Removing a replica strands its MQTT session and that session's share of the stream."""
    assert named("HorizontalPodAutoscaler", "ingest")["spec"]["behavior"]["scaleDown"]["selectPolicy"] == (
        "Disabled"
    )


def test_stateful_parts_keep_their_data_on_volumes() -> None:
    for name, path in (
        ("auth-db", "/var/lib/postgresql/data"),
        ("iot-db", "/var/lib/postgresql/data"),
        ("mqtt-broker", "/mosquitto/data"),
        ("redis", "/data"),
    ):
        workload = named("StatefulSet", name)
        claims = {t["metadata"]["name"] for t in workload["spec"]["volumeClaimTemplates"]}
        mounts = {
            m["mountPath"]: m["name"] for c in containers(workload, init=False) for m in c["volumeMounts"]
        }
        assert mounts[path] in claims, name


def test_disruption_budgets_and_network_policies_select_pods() -> None:
    pods = [w["spec"]["template"]["metadata"]["labels"] for w in of_kind(*WORKLOADS, "Job")]
    for budget in of_kind("PodDisruptionBudget"):
        selector = budget["spec"]["selector"]["matchLabels"]
        assert any(selector.items() <= labels.items() for labels in pods), budget["metadata"]["name"]
    for policy in of_kind("NetworkPolicy"):
        selector = policy["spec"]["podSelector"].get("matchLabels", {})
        selected = [labels for labels in pods if selector.items() <= labels.items()]
        assert selected, policy["metadata"]["name"]


# ---- secrets and security ---------------------------------------------------------------------------------


def test_secrets_carry_no_value() -> None:
    secrets = of_kind("Secret")
    assert secrets
    for secret in secrets:
        assert not secret.get("data"), secret["metadata"]["name"]
        assert not secret.get("stringData"), secret["metadata"]["name"]
        assert "kubectl" in secret["metadata"]["annotations"]["sensorcloud.io/create-with"]


def secret_references() -> Iterator[tuple[str, str]]:
    for workload in of_kind(*WORKLOADS, "Job"):
        for container in containers(workload):
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    yield ref["name"], ref["key"]
        for volume in pod_spec(workload).get("volumes", []):
            if "secret" in volume:
                yield volume["secret"]["secretName"], ""


def test_every_secret_reference_is_declared_and_documented() -> None:
    for name, key in secret_references():
        secret = named("Secret", name)
        annotations = secret["metadata"]["annotations"]
        assert key in annotations["sensorcloud.io/keys"], f"{name}: {key} undocumented"
        assert key in annotations["sensorcloud.io/create-with"], f"{name}: {key} not created"


def test_no_password_in_plain_env() -> None:
    for workload in of_kind(*WORKLOADS, "Job"):
        for container in containers(workload):
            for item in container.get("env", []):
                if re.search(r"PASSWORD|SECRET|REDISCLI_AUTH", item["name"]):
                    assert "secretKeyRef" in item.get("valueFrom", {}), item["name"]
                value = item.get("value", "")
                credentials = re.match(r"^[a-z]+://[^:/@]*:([^@]+)@", value)
                if credentials:
                    assert REFERENCE.fullmatch(credentials[1]), f"{item['name']} holds a literal password"


def test_pods_run_as_non_root_without_privileges() -> None:
    for workload in of_kind(*WORKLOADS, "Job"):
        spec = pod_spec(workload)
        name = workload["metadata"]["name"]
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert spec["automountServiceAccountToken"] is False, name
        for container in containers(workload):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert context["readOnlyRootFilesystem"] is True, name
            assert "resources" in container, name


def test_sensorcloud_pods_run_as_the_images_user() -> None:
    uid = re.findall(r"^USER (\d+)", DOCKERFILE.read_text(), flags=re.MULTILINE)[-1]
    for workload, _ in app_workloads():
        context = pod_spec(workload)["securityContext"]
        if workload["metadata"]["name"] in ("gateway", "mqtt-broker"):
            continue  # their main container is nginx / mosquitto, whose users the init steps adopt
        assert str(context["runAsUser"]) == uid, workload["metadata"]["name"]


def test_images_are_the_packages_version() -> None:
    for _, container in app_workloads():
        assert container["image"] == f"{APP_IMAGE}:{__version__}"
    web = [c for w in of_kind(*WORKLOADS) for c in containers(w) if image_name(c) == "sensorcloud-web"]
    assert web
    assert all(c["image"] == f"sensorcloud-web:{__version__}" for c in web)


def test_the_broker_is_configured_exactly_as_in_compose() -> None:
    broker = named("StatefulSet", "mqtt-broker")
    (init,) = pod_spec(broker)["initContainers"]
    compose = yaml.safe_load(COMPOSE.read_text())["services"]["mqtt-init"]
    assert init["command"] == compose["entrypoint"]
    assert init["args"] == compose["command"]
    env = env_of(init)
    assert {"MQTT_ADMIN_PASSWORD", "MQTT_SERVICE_PASSWORD", "SENSORCLOUD_MQTT_SERVICE_USERNAME"} <= set(env)
    (mosquitto,) = containers(broker, init=False)
    assert mosquitto["command"][-1] == "/mosquitto/config/mosquitto.conf"
    assert pod_spec(broker)["securityContext"]["runAsUser"] == 1883
    for container in containers(named("StatefulSet", "ingest")):
        url = env_of(container)["SENSORCLOUD_MQTT_URL"]
        assert url.startswith(f"mqtt://{config()['SENSORCLOUD_MQTT_SERVICE_USERNAME']}:")
        assert url.endswith("@mqtt-broker:1883")
