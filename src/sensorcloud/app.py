"""Compose the services into one FastAPI app for a target: all (the monolith), auth, iot or ingest.

This is the one module that knows every service; services never import each other.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from enum import StrEnum

from fastapi import FastAPI

from sensorcloud import __version__
from sensorcloud.auth import passwords
from sensorcloud.auth.broker_reconcile import BrokerReconciler
from sensorcloud.auth.devices_registry import DeviceRegistry
from sensorcloud.auth.devices_routes import router as devices_router
from sensorcloud.auth.routes import router as auth_router
from sensorcloud.broker.dynsec import DynsecSync
from sensorcloud.broker.embedded import EmbeddedBroker
from sensorcloud.core.db import create_engine, ping, session_factory
from sensorcloud.core.errors import ConfigurationError
from sensorcloud.core.health import router as health_router
from sensorcloud.core.http_errors import install_error_handlers
from sensorcloud.core.jwks import JwksClient
from sensorcloud.core.keys import (
    HS256_KID,
    VerificationKey,
    load_private_key,
    load_public_keys,
    verification_key,
)
from sensorcloud.core.logging import get_logger
from sensorcloud.core.metrics import HttpMetrics, MetricsMiddleware, metrics_route, process_registry
from sensorcloud.core.migrate import migrate, schema_is_current
from sensorcloud.core.runtime import Runtime
from sensorcloud.core.settings import Settings
from sensorcloud.core.shared_state import create_shared_state
from sensorcloud.core.status import router as status_router
from sensorcloud.core.tokens import KeyRing, TokenIssuer, TokenVerifier, hs256_ring
from sensorcloud.core.web import find_web_dir, mount_web
from sensorcloud.ingest.mqtt import SubscriberConfig
from sensorcloud.ingest.routes import router as ingest_router
from sensorcloud.ingest.runner import IngestService, broker_from_url, default_client_id
from sensorcloud.iot.latest_cache import LatestCache
from sensorcloud.iot.latest_fast import LatestFastPath
from sensorcloud.iot.latest_refresh import Refresher, register_metrics
from sensorcloud.iot.listener import LiveListener
from sensorcloud.iot.live import router as live_router
from sensorcloud.iot.routes import router as iot_router
from sensorcloud.iot.schemas import encode_latest
from sensorcloud.iot.service import IotService

log = get_logger(__name__)
Hook = Callable[[], Awaitable[None]]


class Target(StrEnum):
    ALL = "all"
    AUTH = "auth"
    IOT = "iot"
    INGEST = "ingest"


SIGNS_TOKENS = {Target.ALL, Target.AUTH}


def _signing(settings: Settings) -> tuple[TokenIssuer, KeyRing, list[VerificationKey]]:
    """The issuer and the keys it publishes: its own key plus any earlier ones being rotated out."""
    if settings.jwt_algorithm == "HS256":
        return TokenIssuer(settings, None, HS256_KID), hs256_ring(settings), []
    private = load_private_key(settings)
    own = verification_key(private.public_key())
    published = [own]
    if settings.jwt_public_keys_file:
        extra = load_public_keys(settings.jwt_public_keys_file, settings.jwt_algorithm)
        published += [verification_key(k) for k in extra]
    return TokenIssuer(settings, private, own.kid), KeyRing(published), published


def _verifying_ring(settings: Settings) -> tuple[KeyRing, JwksClient | None]:
    """Keys for a service that only verifies: a shared secret, configured public keys or the JWKS URL."""
    if settings.jwt_algorithm == "HS256":
        return hs256_ring(settings), None
    if settings.jwt_public_keys_file:
        keys = load_public_keys(settings.jwt_public_keys_file, settings.jwt_algorithm)
        return KeyRing([verification_key(k) for k in keys]), None
    if settings.jwks_url:
        ring = KeyRing()
        return ring, JwksClient(settings.jwks_url, settings.jwt_algorithm, ring)
    raise ConfigurationError(
        "this service verifies tokens but has no keys: set SENSORCLOUD_JWKS_URL "
        "(e.g. http://auth:8083/.well-known/jwks.json) or SENSORCLOUD_JWT_PUBLIC_KEYS_FILE"
    )


def build_runtime(settings: Settings, target: Target) -> Runtime:
    """Everything a service needs, built from settings; raises ConfigurationError when it cannot start."""
    if settings.uses_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    issuer: TokenIssuer | None = None
    published: list[VerificationKey] = []
    jwks: JwksClient | None = None
    if target in SIGNS_TOKENS:
        issuer, ring, published = _signing(settings)
    else:
        ring, jwks = _verifying_ring(settings)
    engine = create_engine(settings.effective_database_url)
    state = create_shared_state(settings.redis_url)
    registry = process_registry()
    runtime = Runtime(
        settings=settings,
        target=target.value,
        engine=engine,
        sessions=session_factory(engine),
        state=state,
        ring=ring,
        verifier=TokenVerifier(settings, ring, state),
        registry=registry,
        http_metrics=HttpMetrics(registry),
        issuer=issuer,
        published_keys=published,
    )
    if jwks is not None:
        runtime.verifier.on_unknown_kid = jwks.on_unknown_kid
        runtime.start_hooks.append(jwks.refresh)
    runtime.ready_checks["database"] = lambda: ping(engine)
    if settings.redis_url:
        runtime.ready_checks["redis"] = state.ping
    return runtime


def _monolith_broker(app: FastAPI, runtime: Runtime, registry: DeviceRegistry) -> EmbeddedBroker:
    """The embedded broker; the in-process ingest takes publishes straight from it (broker/tap.py)."""
    settings = runtime.settings
    password = settings.mqtt_service_password
    service_password = password.get_secret_value() if password else secrets.token_urlsafe(24)
    broker = EmbeddedBroker(
        settings.mqtt_host,
        settings.mqtt_port,
        registry,
        settings.mqtt_service_username,
        service_password,
        max_packet_bytes=settings.ingest_max_payload_bytes + 1024,
    )
    app.state.broker = broker
    runtime.device_listeners.append(broker)
    runtime.start_hooks.append(broker.start)
    runtime.ready_checks["broker"] = broker.ready
    runtime.stop_hooks.append(broker.stop)
    return broker


def _ingest_subscriber(settings: Settings) -> SubscriberConfig:
    if not settings.mqtt_url:
        raise ConfigurationError("the ingest service needs SENSORCLOUD_MQTT_URL (mqtt://user:pass@host:port)")
    host, port, user, password = broker_from_url(settings.mqtt_url.get_secret_value())
    return SubscriberConfig(
        host=host,
        port=port,
        username=user,
        password=password,
        client_id=settings.ingest_client_id or default_client_id(),
        shared_group=settings.ingest_shared_group,
        mqtt5=True,
    )


def _add_ingest(
    app: FastAPI, runtime: Runtime, registry: DeviceRegistry, registry_engine_url: str | None
) -> None:
    settings = runtime.settings
    registry_engine = runtime.engine if registry_engine_url is None else create_engine(registry_engine_url)
    ingest = IngestService(
        settings, runtime.engine, registry_engine, runtime.registry, registry, runtime.live
    )
    if runtime.target == Target.ALL:
        broker = _monolith_broker(app, runtime, registry)
        broker.attach_ingest(ingest.pipeline)
        ingest.on_pause.append(broker.pause_ingest)
    else:
        ingest.subscribe(_ingest_subscriber(settings))
    app.state.ingest = ingest
    runtime.device_listeners.append(ingest)
    runtime.start_hooks.append(ingest.start)
    runtime.stop_hooks.insert(0, ingest.stop)  # stop taking messages before the broker goes
    runtime.ready_checks["ingest"] = ingest.ready
    if registry_engine is not runtime.engine:
        runtime.stop_hooks.append(registry_engine.dispose)
    app.include_router(ingest_router)


def _add_dynsec(runtime: Runtime) -> None:
    """Microservices: push device credentials to Mosquitto's dynamic-security plugin as they change."""
    if runtime.settings.mqtt_admin_url is None:
        log.warning("SENSORCLOUD_MQTT_ADMIN_URL is not set: Mosquitto will not learn of device changes")
        return
    host, port, user, password = broker_from_url(runtime.settings.mqtt_admin_url.get_secret_value())
    sync = DynsecSync(host, port, user, password)
    runtime.device_listeners.append(sync)
    runtime.start_hooks.append(sync.start)
    runtime.stop_hooks.append(sync.close)
    reconciler = BrokerReconciler(sync, runtime.sessions)
    runtime.start_hooks.append(reconciler.start)
    runtime.stop_hooks.append(reconciler.stop)  # stops first: hooks stop in reverse order


def _add_iot(app: FastAPI, runtime: Runtime) -> None:
    """The read side. Alone (--target iot) it learns of new readings by LISTENing on PostgreSQL;
    in the monolith the ingest writer publishes to the in-process bus itself. The latest-value
    cache follows that feed, and is off while the feed may miss readings (iot/latest_cache.py)."""
    settings = runtime.settings
    alone = runtime.target == Target.IOT
    size = 0 if alone and settings.uses_sqlite else settings.latest_cache_size
    latest = LatestCache(encode_latest, size, settings.latest_cache_max_age, live=not alone)
    runtime.live.follow(latest)
    register_metrics(latest, runtime.registry)
    app.state.iot = service = IotService(runtime.engine, latest)
    if size:
        app.add_middleware(LatestFastPath, service=service, verifier=runtime.verifier)
        refresher = Refresher(latest, service.latest_rows)
        runtime.start_hooks.append(refresher.start)
        runtime.stop_hooks.append(refresher.stop)
    app.include_router(iot_router)
    app.include_router(live_router)
    if not alone:
        return
    if settings.uses_sqlite:
        log.warning("the iot service alone on SQLite has no live feed: it needs PostgreSQL (LISTEN/NOTIFY)")
        return
    listener = LiveListener(settings.effective_database_url, runtime.live, runtime.registry, latest.reset)
    app.state.live_listener = listener
    runtime.start_hooks.append(listener.start)
    runtime.stop_hooks.append(listener.stop)


def create_app(
    settings: Settings, target: Target = Target.ALL, *, auto_migrate: bool | None = None
) -> FastAPI:
    """The app for one target. SQLite databases are migrated at start unless auto_migrate=False."""
    runtime = build_runtime(settings, target)
    migrate_on_start = settings.uses_sqlite if auto_migrate is None else auto_migrate

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            stack.push_async_callback(runtime.engine.dispose)
            stack.push_async_callback(runtime.state.close)
            if migrate_on_start:
                await migrate(runtime.engine)
            elif not await schema_is_current(runtime.engine):
                raise ConfigurationError(
                    "the database schema is not current: run `sensorcloud migrate` first"
                )
            if runtime.issuer is not None:
                await passwords.warm_up()
            for hook in reversed(runtime.stop_hooks):
                stack.push_async_callback(hook)
            for start in runtime.start_hooks:
                await start()
            yield

    app = FastAPI(
        title="sensorcloud",
        version=__version__,
        summary="IoT sensor platform: auth, ingestion and time-series queries",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    app.include_router(health_router)
    app.include_router(status_router)
    app.add_api_route("/metrics", metrics_route, methods=["GET"], tags=["health"], include_in_schema=False)
    if target in (Target.ALL, Target.AUTH):
        app.include_router(auth_router)
        app.include_router(devices_router)
    if target in (Target.ALL, Target.IOT):
        _add_iot(app, runtime)
    registry = DeviceRegistry(runtime.sessions, settings.device_auth_cache_ttl)
    if target == Target.AUTH:
        runtime.device_listeners.append(registry)
        _add_dynsec(runtime)
    if target == Target.ALL:
        runtime.device_listeners.append(registry)
        _add_ingest(app, runtime, registry, None)
    if target == Target.INGEST:
        auth_url = settings.auth_database_url
        registry = (
            DeviceRegistry(session_factory(create_engine(auth_url)), settings.device_auth_cache_ttl)
            if auth_url
            else registry
        )
        _add_ingest(app, runtime, registry, auth_url)
    app.add_middleware(MetricsMiddleware, metrics=runtime.http_metrics)  # last added: outermost
    runtime.services = _services(target)
    web_dir = find_web_dir(settings.web_dir) if target == Target.ALL else None
    if web_dir is not None:
        mount_web(app, web_dir)  # last: its catch-all route must not shadow the API
    return app


def _services(target: Target) -> list[str]:
    if target == Target.ALL:
        return [t.value for t in Target if t != Target.ALL] + ["broker"]
    return [target.value]
