"""Response bodies of the iot service: the seed's {"topic", "data": [{"date", "value"}]} and /api/v1's."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import pydantic_core
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

Value = Any  # a number, string, bool or JSON object, as the device sent it


class Point(BaseModel):
    date: datetime = Field(description="When the reading was taken (ISO-8601, UTC)")
    value: Value = Field(description="A number, or the string, bool or object the device sent")


class SeedReadings(BaseModel):
    """The original system's shape, kept exactly."""

    topic: str
    data: list[Point]


_SEED = TypeAdapter(SeedReadings)


def encode_latest(topic: str, ts: datetime, value: Any) -> bytes:
    """The seed's answer of one reading as JSON, byte for byte what FastAPI sends for the model
    (its response fast path: the model's TypeAdapter.dump_json), so it can be cached encoded."""
    return _SEED.dump_json(SeedReadings(topic=topic, data=[Point(date=ts, value=value)]), by_alias=True)


class TopicOut(BaseModel):
    topic: str
    device_id: str
    last_date: datetime
    last_value: Value
    count: int


class TopicList(BaseModel):
    data: list[TopicOut]


class ReadingsPage(BaseModel):
    topic: str
    data: list[Point]
    next_cursor: str | None = Field(
        description="Pass as `cursor` (with the same topic and order) for the next page; null on the last"
    )


class BucketOut(BaseModel):
    """A bucket's start and the functions asked for; functions not asked for are left out."""

    date: datetime = Field(description="Start of the bucket")
    avg: float | None = None
    min: float | None = None
    max: float | None = None
    count: int | None = None
    first: float | None = None
    last: float | None = None


class AggregateOut(BaseModel):
    topic: str
    interval: str = Field(description="The bucket width used (the one chosen when `auto` was asked)")
    from_: datetime = Field(alias="from", serialization_alias="from")
    to: datetime
    data: list[BucketOut]

    model_config = ConfigDict(populate_by_name=True)


def encode_aggregate(
    topic: str,
    interval: str,
    start: datetime,
    end: datetime,
    buckets: Iterable[tuple[datetime, dict[str, Any]]],
) -> bytes:
    """AggregateOut as JSON without building a model per bucket: byte for byte what FastAPI sends for
    AggregateOut (dump_json, by alias, unset fields left out; the same serializer, pydantic-core's, with
    the fields in the models' order: FUNCTIONS' order is BucketOut's), a quarter of the CPU for a year
    of days."""
    data = [{"date": date, **values} for date, values in buckets]
    return pydantic_core.to_json(
        {"topic": topic, "interval": interval, "from": start, "to": end, "data": data}
    )
