"""Helpers shared by the auth route tests: a second client on the same app, 422 body checks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx


def app_of(client: httpx.AsyncClient) -> Any:
    """The ASGI app a test client talks to (to attach a second client with another address)."""
    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    return transport.app


@asynccontextmanager
async def client_from(client: httpx.AsyncClient, host: str) -> AsyncIterator[httpx.AsyncClient]:
    """Another client of the same running app (same state), seen as coming from `host`."""
    transport = httpx.ASGITransport(app=app_of(client), client=(host, 50001))
    async with httpx.AsyncClient(transport=transport, base_url="http://sensorcloud.test") as other:
        yield other


def assert_validation_error(response: httpx.Response, field: str, secret: str | None = None) -> None:
    """A 422 in our shape: a "msg", an "errors" list naming `field`, and never the submitted secret."""
    assert response.status_code == 422, response.text
    body = response.json()
    assert set(body) == {"msg", "errors"}
    assert isinstance(body["msg"], str)
    assert body["msg"].startswith("Invalid request: ")
    assert body["errors"], body
    assert field in {e["field"] for e in body["errors"]}, body
    for error in body["errors"]:
        assert set(error) == {"field", "message"}
        assert error["message"], error
    if secret is not None:
        # the password must not come back anywhere: not in the body, not in a header
        assert secret not in response.text
        assert all(secret not in value for value in response.headers.values())
