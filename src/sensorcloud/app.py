"""Compose the services into one FastAPI app for a target: all (the monolith), auth, ..."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from enum import StrEnum

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from sensorcloud import __version__
from sensorcloud.auth import passwords
from sensorcloud.auth.routes import router as auth_router
from sensorcloud.core.db import create_engine, ping, session_factory
from sensorcloud.core.errors import ConfigurationError
from sensorcloud.core.health import router as health_router
from sensorcloud.core.http_errors import install_error_handlers
from sensorcloud.core.keys import (
    HS256_KID,
    VerificationKey,
    load_private_key,
    load_public_keys,
    verification_key,
)
from sensorcloud.core.metrics import HttpMetrics, MetricsMiddleware, metrics_route
from sensorcloud.core.migrate import migrate, schema_is_current
from sensorcloud.core.runtime import Runtime
from sensorcloud.core.settings import Settings
from sensorcloud.core.shared_state import create_shared_state
from sensorcloud.core.tokens import KeyRing, TokenIssuer, TokenVerifier, hs256_ring


class Target(StrEnum):
    ALL = "all"
    AUTH = "auth"


def _signing(settings: Settings) -> tuple[TokenIssuer, KeyRing, list[VerificationKey]]:
    """The issuer and the keys it publishes: its own key plus any earlier ones being rotated out."""
    if settings.jwt_algorithm == "HS256":
        return TokenIssuer(settings, None, HS256_KID), hs256_ring(settings), []
    private = load_private_key(settings)
    own = verification_key(private.public_key())
    published = [own]
    if settings.jwt_public_keys_file:
        published += [
            verification_key(k)
            for k in load_public_keys(settings.jwt_public_keys_file, settings.jwt_algorithm)
        ]
    return TokenIssuer(settings, private, own.kid), KeyRing(published), published


def build_runtime(settings: Settings, target: Target) -> Runtime:
    """Everything a service needs, built from settings; raises ConfigurationError when it cannot start."""
    if settings.uses_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.effective_database_url)
    state = create_shared_state(settings.redis_url)
    issuer, ring, published = _signing(settings)
    registry = CollectorRegistry(auto_describe=True)
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
    runtime.ready_checks["database"] = lambda: ping(engine)
    if settings.redis_url:
        runtime.ready_checks["redis"] = state.ping
    return runtime


def create_app(
    settings: Settings, target: Target = Target.ALL, *, auto_migrate: bool | None = None
) -> FastAPI:
    """The app for one target. SQLite databases are migrated at start unless auto_migrate=False."""
    runtime = build_runtime(settings, target)
    migrate_on_start = settings.uses_sqlite if auto_migrate is None else auto_migrate

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if migrate_on_start:
            await migrate(runtime.engine)
        elif not await schema_is_current(runtime.engine):
            raise ConfigurationError("the database schema is not current: run `sensorcloud migrate` first")
        await passwords.warm_up()
        try:
            yield
        finally:
            await runtime.state.close()
            await runtime.engine.dispose()

    app = FastAPI(
        title="sensorcloud",
        version=__version__,
        summary="IoT sensor platform: auth, ingestion and time-series queries",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    app.add_middleware(MetricsMiddleware, metrics=runtime.http_metrics)
    app.include_router(health_router)
    app.add_api_route("/metrics", metrics_route, methods=["GET"], tags=["health"], include_in_schema=False)
    app.include_router(auth_router)
    return app
