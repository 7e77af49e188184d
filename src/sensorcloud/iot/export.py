"""Text forms of exported readings: CSV (`date,value`) and NDJSON (one {"date", "value"} per line)."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Literal

from sensorcloud.core.live import iso
from sensorcloud.iot.repository import ReadingRow

Format = Literal["csv", "ndjson"]
MEDIA_TYPES: dict[str, str] = {"csv": "text/csv; charset=utf-8", "ndjson": "application/x-ndjson"}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _csv_value(value: Any) -> str:
    if type(value) is float:
        return repr(value)  # what json.dumps writes for a finite float, without its overhead
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))  # true/false, objects as JSON text


def csv_chunk(rows: Sequence[ReadingRow]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerows((iso(r.ts), _csv_value(r.value)) for r in rows)
    return out.getvalue()


def ndjson_chunk(rows: Sequence[ReadingRow]) -> str:
    return "".join(
        json.dumps({"date": iso(r.ts), "value": r.value}, separators=(",", ":")) + "\n" for r in rows
    )


async def encode(pages: AsyncIterator[Sequence[ReadingRow]], fmt: Format) -> AsyncIterator[bytes]:
    """The export body, one chunk per page of readings (CSV starts with its header line)."""
    chunk: Callable[[Sequence[ReadingRow]], str] = csv_chunk if fmt == "csv" else ndjson_chunk
    if fmt == "csv":
        yield b"date,value\n"
    async for rows in pages:
        yield chunk(rows).encode()


def filename(topic: str, fmt: Format) -> str:
    """A safe download name made of the topic: devices/ab/temp -> devices_ab_temp.csv."""
    stem = _UNSAFE.sub("_", topic).strip("._") or "readings"
    return f"{stem[:120]}.{fmt}"
