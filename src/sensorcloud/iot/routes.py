"""HTTP routes of the iot service: the seed's /iot/... and /api/v1/topics, readings, aggregates, export."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import BeforeValidator

from sensorcloud.core.deps import CurrentPrincipal
from sensorcloud.core.errors import NotFound
from sensorcloud.core.tokens import Principal
from sensorcloud.iot import export
from sensorcloud.iot.aggregate import FUNCTIONS
from sensorcloud.iot.cursor import Order
from sensorcloud.iot.repository import ReadingRow
from sensorcloud.iot.schemas import (
    AggregateOut,
    Point,
    ReadingsPage,
    SeedReadings,
    TopicList,
    TopicOut,
    encode_aggregate,
)
from sensorcloud.iot.seed import SeedQuery, parse_seed_path
from sensorcloud.iot.service import DEFAULT_PAGE, MAX_PAGE, SEED_RANGE_LIMIT, IotService
from sensorcloud.iot.timeparse import BadValue, parse_inclusive_end, parse_interval, parse_when

router = APIRouter(tags=["iot"])
ERR = {"content": {"application/json": {"example": {"msg": "..."}}}}
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or invalid token", **ERR},
    404: {"description": "No such topic among the caller's (an admin sees every topic)", **ERR},
    422: {"description": "Invalid date, range or parameter", **ERR},
}
TRUNCATED = "X-Truncated"
JSON = "application/json"
DEFAULT_FUNCTIONS = ("avg", "min", "max", "count")


def service_of(request: Request) -> IotService:
    """The app's one IotService (app.state.iot, built by app.py with the latest-value cache)."""
    service: IotService = request.app.state.iot
    return service


async def get_service(request: Request) -> IotService:  # async: no thread-pool hop per request
    return service_of(request)


Service = Annotated[IotService, Depends(get_service)]


def _when(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return parse_when(value)
        except BadValue as exc:
            raise ValueError(str(exc)) from None
    return value


def _functions(value: Any) -> Any:
    items = value if isinstance(value, list) else [value]
    names = [n.strip().lower() for item in items for n in str(item).split(",") if n.strip()]
    unknown = [n for n in names if n not in FUNCTIONS]
    if unknown or not names:
        raise ValueError(f"fn must be one or more of {', '.join(FUNCTIONS)} (comma-separated)")
    return list(dict.fromkeys(names))


When = Annotated[datetime, BeforeValidator(_when)]
From = Annotated[When | None, Query(alias="from", description="Start, inclusive (ISO-8601; UTC if no zone)")]
To = Annotated[When | None, Query(description="End, exclusive (ISO-8601; UTC if no zone)")]
TopicParam = Annotated[str, Query(min_length=1, max_length=255, description="e.g. devices/<id>/temperature")]


def query_error(field: str, message: str, where: str = "query") -> RequestValidationError:
    """A 422 in the same shape as FastAPI's own validation errors."""
    return RequestValidationError([{"loc": (where, field), "msg": message, "type": "value_error"}])


def _points(rows: list[ReadingRow]) -> list[Point]:
    return [Point(date=r.ts, value=r.value) for r in rows]


async def _seed(
    service: IotService, principal: Principal, rest: str, response: Response | None
) -> SeedReadings | Response:
    query = parse_seed_path(rest)
    try:
        return await _answer(service, principal, query, response)
    except (NotFound, RequestValidationError) as exc:
        if query.topic == rest:
            raise
        first_error = exc
    # an ambiguous path (see iot/seed.py): the whole of it may be the caller's topic
    try:
        return await _answer(service, principal, SeedQuery(rest), response)
    except NotFound:
        raise first_error from None


async def _answer(
    service: IotService, principal: Principal, query: SeedQuery, response: Response | None
) -> SeedReadings | Response:
    if not query.is_range:  # encoded as the response model would be, and cached so (service.latest_json)
        return Response(await service.latest_json(principal, query.topic), media_type=JSON)
    assert query.start is not None
    assert query.end is not None
    try:
        start = parse_when(query.start)
    except BadValue as exc:
        raise query_error("start_date", str(exc), "path") from None
    try:
        end = parse_inclusive_end(query.end)
    except BadValue as exc:
        raise query_error("end_date", str(exc), "path") from None
    if end <= start:
        raise query_error("end_date", "end_date must not be before start_date", "path")
    rows, truncated = await service.seed_range(principal, query.topic, start, end)
    if truncated and response is not None:
        response.headers[TRUNCATED] = "true"
    return SeedReadings(topic=query.topic, data=_points(rows))


SEED_NOTE = "A topic contains slashes; the last levels of the path decide what is asked (see docs/iot.md). "


@router.get("/iot/{topic:path}/latest", response_model=SeedReadings, responses=ERRORS)
async def seed_latest(topic: str, principal: CurrentPrincipal, request: Request) -> Any:
    """Newest reading of a topic: {"topic", "data": [{"date", "value"}]} (the original route)."""
    # the hottest route: no dependency but the caller (each costs on every request); no range here
    return await _seed(service_of(request), principal, f"{topic}/latest", None)


@router.get(
    "/iot/{topic:path}/{start_date}/{end_date}",
    response_model=SeedReadings,
    responses=ERRORS,
    description=SEED_NOTE
    + f"Both ends inclusive; a bare date covers its whole day. Oldest first, at most {SEED_RANGE_LIMIT} "
    f"readings (header {TRUNCATED}: true when there were more; /api/v1/readings pages through any range).",
)
async def seed_range(
    topic: str,
    start_date: str,
    end_date: str,
    principal: CurrentPrincipal,
    service: Service,
    response: Response,
) -> Any:
    """Readings of a topic in a period (the original route)."""
    return await _seed(service, principal, f"{topic}/{start_date}/{end_date}", response)


@router.get("/iot/{topic:path}", response_model=SeedReadings, responses=ERRORS, description=SEED_NOTE)
async def seed_topic(topic: str, principal: CurrentPrincipal, service: Service, response: Response) -> Any:
    """Newest reading of a topic, as /iot/{topic}/latest (the original route)."""
    return await _seed(service, principal, topic, response)


@router.get("/api/v1/topics", response_model=TopicList, responses={401: ERRORS[401]})
async def list_topics(principal: CurrentPrincipal, service: Service) -> TopicList:
    """The caller's topics (every topic for an admin) with their newest reading and count."""
    rows = await service.topics(principal)
    return TopicList(
        data=[
            TopicOut(
                topic=r.topic,
                device_id=r.device_id,
                last_date=r.last_ts,
                last_value=r.last_value,
                count=r.count,
            )
            for r in rows
        ]
    )


@router.get("/api/v1/readings", response_model=ReadingsPage, responses=ERRORS)
async def readings(
    principal: CurrentPrincipal,
    service: Service,
    topic: TopicParam,
    from_: From = None,
    to: To = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description=f"At most {MAX_PAGE}")] = DEFAULT_PAGE,
    order: Annotated[Order, Query(description="asc: oldest first; desc: newest first")] = "asc",
    cursor: Annotated[
        str | None, Query(max_length=512, description="next_cursor of the previous page")
    ] = None,
) -> ReadingsPage:
    """A page of a topic's readings; follow next_cursor for the next (keyset: no gaps or repeats)."""
    page = await service.page(principal, topic, start=from_, end=to, order=order, limit=limit, cursor=cursor)
    return ReadingsPage(topic=topic, data=_points(list(page.rows)), next_cursor=page.next_cursor)


@router.get(
    "/api/v1/readings/aggregate",
    response_model=AggregateOut,
    response_model_exclude_unset=True,
    responses=ERRORS,
)
async def aggregate(
    principal: CurrentPrincipal,
    service: Service,
    topic: TopicParam,
    from_: Annotated[
        When | None, Query(alias="from", description="Start (default: 24 hours before `to`)")
    ] = None,
    to: Annotated[When | None, Query(description="End, exclusive (default: now)")] = None,
    interval: Annotated[
        str, Query(max_length=16, description="Bucket width: 30s, 5m, 1h, 1d, 1w...; auto: about 500 buckets")
    ] = "auto",
    fn: Annotated[
        list[str] | None,
        BeforeValidator(_functions),
        Query(description="Any of avg,min,max,count,first,last, comma-separated (default avg,min,max,count)"),
    ] = None,
) -> Any:
    """Numeric readings of a topic in time buckets, computed by the database (empty buckets left out)."""
    try:
        width = None if interval.strip().lower() == "auto" else parse_interval(interval)
    except BadValue as exc:
        raise query_error("interval", str(exc)) from None
    result = await service.aggregate(
        principal, topic, start=from_, end=to, width=width, functions=fn or DEFAULT_FUNCTIONS
    )
    body = encode_aggregate(topic, result.label, result.start, result.end, result.buckets)
    return Response(body, media_type=JSON)


@router.get(
    "/api/v1/readings/export",
    response_class=StreamingResponse,
    responses={
        **ERRORS,
        200: {
            "description": "The readings, oldest first, streamed",
            "content": {"text/csv": {}, "application/x-ndjson": {}},
        },
    },
)
async def export_readings(
    principal: CurrentPrincipal,
    service: Service,
    topic: TopicParam,
    from_: From = None,
    to: To = None,
    format: Annotated[export.Format, Query(description="csv (date,value) or ndjson")] = "csv",
) -> StreamingResponse:
    """Every reading of a topic in a range, streamed as CSV or NDJSON in constant memory."""
    pages = await service.export(principal, topic, start=from_, end=to)
    return StreamingResponse(
        export.encode(pages, format),
        media_type=export.MEDIA_TYPES[format],
        headers={"Content-Disposition": f'attachment; filename="{export.filename(topic, format)}"'},
    )
