"""How the seed's /iot/... paths are read, given that a topic itself contains slashes.

- `/iot/{topic}/latest`: the newest reading of `topic`.
- `/iot/{topic}/{start_date}/{end_date}`: when either of the last two levels looks like a date
  (starts with YYYY-MM-DD or YYYYMMDD), a period; both must then be valid ISO-8601, else 422.
- `/iot/{topic}`: anything else is the newest reading of the whole path.

A topic whose last level is `latest` or whose last two levels look like dates is ambiguous; the
rule above wins, except that when the topic it names does not exist for the caller and the whole
path does, the whole path is read as a topic (so such a topic is still reachable with
`/iot/{topic}/latest`, or even `/iot/{topic}`).
"""

from __future__ import annotations

from dataclasses import dataclass

from sensorcloud.iot.timeparse import DATE_LIKE

LATEST = "/latest"


@dataclass(frozen=True)
class SeedQuery:
    topic: str
    start: str | None = None  # raw path segments; None means "the newest reading"
    end: str | None = None

    @property
    def is_range(self) -> bool:
        return self.start is not None


def parse_seed_path(rest: str) -> SeedQuery:
    """What a path after /iot/ asks for (see the module docstring)."""
    if rest.endswith(LATEST) and len(rest) > len(LATEST):
        return SeedQuery(rest[: -len(LATEST)])
    parts = rest.split("/")
    if len(parts) >= 3 and parts[-3] and (DATE_LIKE.match(parts[-1]) or DATE_LIKE.match(parts[-2])):
        return SeedQuery("/".join(parts[:-2]), parts[-2], parts[-1])
    return SeedQuery(rest)
