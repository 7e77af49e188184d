"""GET /status: every service's health, version and uptime, with the database and broker as dependencies.

Public and free of secrets: names, states, versions, uptimes. Behind nginx the gateway extends it to
every replica (see the microservices docs); the monolith reports the services it runs itself.
"""

from __future__ import annotations

import asyncio
import time
from typing import Literal

import httpx
from fastapi import APIRouter
from pydantic import BaseModel

from sensorcloud import __version__
from sensorcloud.core.deps import RuntimeDep
from sensorcloud.core.health import CHECK_TIMEOUT
from sensorcloud.core.runtime import Runtime

router = APIRouter(tags=["health"])
State = Literal["up", "down"]


class Instance(BaseModel):
    address: str
    status: State


class ServiceStatus(BaseModel):
    name: str
    status: State
    version: str
    uptime_s: float
    instances: list[Instance]


class Dependency(BaseModel):
    name: str
    status: State


class Status(BaseModel):
    status: Literal["ok", "degraded"]
    version: str
    mode: str
    services: list[ServiceStatus]
    dependencies: list[Dependency]


async def _check(check: object) -> State:
    try:
        await asyncio.wait_for(check(), CHECK_TIMEOUT)  # type: ignore[operator]
    except Exception:  # any failure means down; the reason is in the service's own logs
        return "down"
    return "up"


def parse_peers(text: str) -> list[tuple[str, str]]:
    """ "auth=http://h:p,iot=http://h:p" -> [(name, base url)]."""
    peers = []
    for item in text.split(","):
        name, sep, url = item.strip().partition("=")
        if sep and name and url:
            peers.append((name.strip(), url.strip().rstrip("/")))
    return peers


async def _probe(client: httpx.AsyncClient, name: str, url: str) -> tuple[str, Instance, str, float]:
    """One replica: (service, instance, version, uptime); down if /ready does not answer 200."""
    try:
        health, ready = await asyncio.gather(client.get(f"{url}/health"), client.get(f"{url}/ready"))
        body = health.json()
        up = health.status_code == 200 and ready.status_code == 200
        return (
            name,
            Instance(address=url, status="up" if up else "down"),
            str(body.get("version", "")),
            float(body.get("uptime_s", 0.0)),
        )
    except (httpx.HTTPError, ValueError):
        return name, Instance(address=url, status="down"), "", 0.0


async def cluster_services(peers: list[tuple[str, str]]) -> list[ServiceStatus]:
    """Every replica of every service, grouped by service; a service is up while one replica is."""
    async with httpx.AsyncClient(timeout=CHECK_TIMEOUT) as client:
        probes = await asyncio.gather(*(_probe(client, name, url) for name, url in peers))
    services: dict[str, ServiceStatus] = {}
    for name, instance, version, uptime in probes:
        entry = services.setdefault(
            name, ServiceStatus(name=name, status="down", version=version, uptime_s=uptime, instances=[])
        )
        entry.instances.append(instance)
        if instance.status == "up":
            entry.status = "up"
            entry.version = entry.version or version
            entry.uptime_s = max(entry.uptime_s, uptime)
    return list(services.values())


@router.get("/status", response_model=Status)
async def status(runtime: RuntimeDep) -> Status:
    """Health, version and uptime of every service and dependency (public; no secrets)."""
    if runtime.settings.status_peers:
        return await _cluster_status(runtime)
    names = list(runtime.ready_checks)
    states = await asyncio.gather(*(_check(runtime.ready_checks[n]) for n in names))
    dependencies = [Dependency(name=n, status=s) for n, s in zip(names, states, strict=True)]
    healthy = all(s == "up" for s in states)
    uptime = round(time.time() - runtime.started_at, 1)
    address = (
        "in-process"
        if runtime.target == "all"
        else f"{runtime.settings.http_host}:{runtime.settings.http_port}"
    )
    services = [
        ServiceStatus(
            name=name,
            status="up" if healthy else "down",
            version=__version__,
            uptime_s=uptime,
            instances=[Instance(address=address, status="up" if healthy else "down")],
        )
        for name in runtime.services
    ]
    return Status(
        status="ok" if healthy else "degraded",
        version=__version__,
        mode="monolith" if runtime.target == "all" else runtime.target,
        services=services,
        dependencies=dependencies,
    )


async def _cluster_status(runtime: Runtime) -> Status:
    assert runtime.settings.status_peers is not None
    services = await cluster_services(parse_peers(runtime.settings.status_peers))
    names = list(runtime.ready_checks)
    states = await asyncio.gather(*(_check(runtime.ready_checks[n]) for n in names))
    dependencies = [Dependency(name=n, status=s) for n, s in zip(names, states, strict=True)]
    healthy = all(s.status == "up" for s in services) and all(s == "up" for s in states)
    return Status(
        status="ok" if healthy else "degraded",
        version=__version__,
        mode="microservices",
        services=services,
        dependencies=dependencies,
    )
