"""Opaque page cursors: the position (ts, dedup_key) of the last reading served, with the order read in."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

Order = Literal["asc", "desc"]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_CURSOR_LENGTH = 512


class BadCursor(ValueError):
    pass


@dataclass(frozen=True)
class Position:
    """A reading's place in the (ts, dedup_key) order that every page of a topic is read in."""

    ts: datetime
    key: str


def _micros(ts: datetime) -> int:
    delta = ts - EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def encode(position: Position, order: Order, topic: str) -> str:
    # The topic is kept so that a cursor is refused by another topic's query instead of skipping
    # into the middle of it.
    doc = {"t": _micros(position.ts), "k": position.key, "o": order, "q": topic}
    raw = json.dumps(doc, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode(cursor: str, order: Order, topic: str) -> Position:
    """The position a cursor holds; BadCursor if it is malformed or from another query."""
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise BadCursor("cursor is too long")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        doc = json.loads(raw)
        micros, key, cursor_order, cursor_topic = doc["t"], doc["k"], doc["o"], doc["q"]
    except (binascii.Error, ValueError, TypeError, KeyError):
        raise BadCursor("cursor is not one this API gave out") from None
    if not (isinstance(micros, int) and isinstance(key, str) and len(key) <= 64):
        raise BadCursor("cursor is not one this API gave out")
    if cursor_order != order or cursor_topic != topic:
        raise BadCursor("cursor belongs to a query with another topic or order")
    try:
        ts = EPOCH + timedelta(microseconds=micros)
    except OverflowError:
        raise BadCursor("cursor is not one this API gave out") from None
    return Position(ts=ts, key=key)
