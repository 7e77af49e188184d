"""/health (the process is alive) and /ready (its dependencies answer), on every service."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from sensorcloud import __version__
from sensorcloud.core.deps import RuntimeDep
from sensorcloud.core.logging import get_logger

router = APIRouter(tags=["health"])
log = get_logger(__name__)
CHECK_TIMEOUT = 3.0


@router.get("/health")
async def health(runtime: RuntimeDep) -> dict[str, object]:
    """Liveness: answers as long as the process serves requests."""
    return {
        "status": "ok",
        "service": runtime.target,
        "version": __version__,
        "uptime_s": round(time.time() - runtime.started_at, 1),
    }


@router.get("/ready", responses={503: {"description": "A dependency does not answer"}})
async def ready(runtime: RuntimeDep) -> JSONResponse:
    """Readiness: every dependency (database, Redis, ...) answers within a few seconds."""
    results: dict[str, str] = {}
    for name, check in runtime.ready_checks.items():
        try:
            await asyncio.wait_for(check(), CHECK_TIMEOUT)
            results[name] = "ok"
        except Exception as exc:  # a failing dependency of any kind makes us not ready
            log.warning("readiness check failed", check=name, error=type(exc).__name__)
            results[name] = "unavailable"
    ok = all(v == "ok" for v in results.values())
    return JSONResponse(
        {"status": "ready" if ok else "not ready", "checks": results}, status_code=200 if ok else 503
    )
