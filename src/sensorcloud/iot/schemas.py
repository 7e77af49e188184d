"""Response bodies of the iot service: the seed's {"topic", "data": [{"date", "value"}]} and /api/v1's."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

Value = Any  # a number, string, bool or JSON object, as the device sent it


class Point(BaseModel):
    date: datetime = Field(description="When the reading was taken (ISO-8601, UTC)")
    value: Value = Field(description="A number, or the string, bool or object the device sent")


class SeedReadings(BaseModel):
    """The original system's shape, kept exactly."""

    topic: str
    data: list[Point]


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
