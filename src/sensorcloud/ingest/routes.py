"""HTTP side of ingest: devices without MQTT post readings; admins list dead letters."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, status
from pydantic import BaseModel
from sqlalchemy import func, select

from sensorcloud.broker.acl import DeviceIdentity, may_publish
from sensorcloud.core.deps import AdminPrincipal
from sensorcloud.core.errors import DomainError, Forbidden, Invalid, Unauthorized
from sensorcloud.ingest.models import DeadLetter
from sensorcloud.ingest.pipeline import to_item
from sensorcloud.ingest.runner import IngestService

router = APIRouter(tags=["ingest"])
ERR = {"content": {"application/json": {"example": {"msg": "..."}}}}


class PayloadTooLarge(DomainError):
    status_code = 413


class DeviceUnauthorized(Unauthorized):
    """401 with a Basic challenge: devices authenticate with their id and secret."""


def get_ingest(request: Request) -> IngestService:
    service: IngestService = request.app.state.ingest
    return service


Ingest = Annotated[IngestService, Depends(get_ingest)]


async def _device(request: Request, ingest: IngestService) -> DeviceIdentity:
    header = request.headers.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise DeviceUnauthorized("Device credentials required (HTTP Basic: device id and secret)")
    try:
        device_id, sep, secret = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise DeviceUnauthorized("Malformed Basic credentials") from None
    identity = await ingest.authenticator.authenticate(device_id, secret) if sep else None
    if identity is None:
        raise DeviceUnauthorized("Invalid device credentials")
    return identity


class IngestAnswer(BaseModel):
    topic: str
    readings: int


@router.post(
    "/api/v1/ingest/{topic:path}",
    status_code=status.HTTP_201_CREATED,
    response_model=IngestAnswer,
    responses={
        401: {"description": "Bad device credentials", **ERR},
        403: {"description": "Topic outside the device's namespace", **ERR},
        413: {"description": "Payload too large", **ERR},
        422: {"description": "Payload refused (kept as a dead letter)", **ERR},
    },
    openapi_extra={
        "requestBody": {"content": {"application/json": {"schema": {}}}, "required": True},
        "security": [{"deviceBasic": []}],
    },
)
async def ingest_http(topic: str, request: Request, ingest: Ingest) -> IngestAnswer:
    """Store readings sent over HTTP by a device (Basic auth: device id and secret); body as over MQTT."""
    identity = await _device(request, ingest)
    if not may_publish(identity, topic):
        raise Forbidden("This device may not publish to that topic")
    limit = ingest.limits.max_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"Payload too large (limit {limit} bytes)")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"Payload too large (limit {limit} bytes)")
    item = to_item(topic, bytes(body), datetime.now(UTC), identity, ingest.limits)
    await ingest.writer.write_now(item)
    if item.dead is not None:
        raise Invalid(f"Payload refused: {item.dead.reason}")
    return IngestAnswer(topic=topic, readings=len(item.rows))


class DeadLetterOut(BaseModel):
    id: int
    received_at: datetime
    topic: str
    device_id: str | None
    reason: str
    payload_size: int
    payload_preview: str


class DeadLetterList(BaseModel):
    data: list[DeadLetterOut]
    total: int


@router.get(
    "/api/v1/dead-letters",
    response_model=DeadLetterList,
    responses={
        401: {"description": "Missing or invalid token", **ERR},
        403: {"description": "Admins only", **ERR},
    },
)
async def dead_letters(
    _admin: AdminPrincipal,
    ingest: Ingest,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> DeadLetterList:
    """Messages that could not become readings, newest first, with their reason (admins only)."""
    async with ingest.engine.connect() as conn:
        total = int((await conn.execute(select(func.count()).select_from(DeadLetter))).scalar_one())
        rows = await conn.execute(
            select(DeadLetter).order_by(DeadLetter.id.desc()).limit(limit).offset(offset)
        )
        data = [_out(r._mapping) for r in rows]
    return DeadLetterList(data=data, total=total)


def _out(row: Any) -> DeadLetterOut:
    payload: bytes = row["payload"]
    return DeadLetterOut(
        id=row["id"],
        received_at=row["received_at"],
        topic=row["topic"],
        device_id=row["device_id"],
        reason=row["reason"],
        payload_size=row["payload_size"],
        payload_preview=payload[:256].decode("utf-8", errors="replace"),
    )
