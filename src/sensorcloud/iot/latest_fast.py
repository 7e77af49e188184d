"""GET /iot/{topic}/latest answered from the latest-value cache before FastAPI routes the request.

The hottest route: on a cache hit nothing is left to do but check the token and send bytes encoded
beforehand, and FastAPI's routing and dependency solving would cost more than that (see
docs/performance.md). So a plain hit is answered here: a GET of that path, a valid
`Authorization: Bearer` token (the same verifier, revocation included), the topic cached and the
caller's (or the caller an admin). Anything else, a miss, a refusal, another route, goes on to
FastAPI, whose route gives the same bytes and headers for a hit. Sits inside the metrics
middleware, which counts the request under the route's template; uvicorn logs it as any other.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from sensorcloud.core.deps import bearer_token
from sensorcloud.core.errors import DomainError
from sensorcloud.core.tokens import TokenVerifier
from sensorcloud.iot.seed import parse_seed_path
from sensorcloud.iot.service import IotService

PREFIX = "/iot/"
SUFFIX = "/latest"
ROUTE = "/iot/{topic:path}/latest"  # iot/routes.py's seed_latest, which answers everything else
CONTENT_TYPE = (b"content-type", b"application/json")


class _Route:
    """What the metrics middleware reads of scope["route"]: the template it counts under."""

    path = ROUTE


class LatestFastPath:
    def __init__(self, app: ASGIApp, service: IotService, verifier: TokenVerifier) -> None:
        self.app = app
        self._service = service
        self._verifier = verifier

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await self._hit(scope) if scope["type"] == "http" else None
        if body is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = _Route
        headers = [(b"content-length", str(len(body)).encode()), CONTENT_TYPE]  # as FastAPI's Response
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _hit(self, scope: Scope) -> bytes | None:
        path: str = scope["path"]
        # the route's own pattern, ^/iot/(?P<topic>.*)/latest$ (no "." matches a newline), on a path
        # with no root_path to strip
        if (
            scope["method"] != "GET"
            or scope.get("root_path")
            or len(path) < len(PREFIX) + len(SUFFIX)
            or not path.startswith(PREFIX)
            or not path.endswith(SUFFIX)
            or "\n" in path
        ):
            return None
        topic = parse_seed_path(path[len(PREFIX) :]).topic  # as the route reads "{topic}/latest"
        if not self._service.has_cached(topic):
            return None  # a miss: the token is checked once, by the route
        header = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        try:
            token = bearer_token(None if header is None else header.decode("latin-1"))
            principal = await self._verifier.verify(token)
        except DomainError:
            return None  # the route refuses it, in its words
        return self._service.cached_json(principal, topic)
