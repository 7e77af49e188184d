"""One message (topic + payload bytes) to readings, or the reason it cannot be: pure, no I/O.

Accepted payloads, UTF-8 JSON of at most `Limits.max_bytes`:
- a bare number: one reading on the message's topic. Bare strings and booleans are refused: they
  must come as `{"value": ...}`, so a stray `"ok"` or `true` is not mistaken for a measurement;
- `{"value": v}` or `{"data": v}` (the original format): v a number, a string (<= 1024 characters),
  a boolean or an object (stored as-is); other members besides ts/id/seq are ignored;
- any other object: one reading per numeric member, on `<topic>/<member>`. Members that are not
  numbers ("device", "fw", ...) are metadata and ignored; at least one numeric member is needed.
Any object may carry `ts` (epoch seconds, epoch milliseconds if > 1e11, or ISO-8601 where no zone
means UTC) and `id` and/or `seq` (an integer or a string) that make redeliveries deduplicable.
The device is whoever the connection authenticated as, never a payload field.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeAlias, TypeGuard

import orjson

if TYPE_CHECKING:
    from sensorcloud.core.settings import Settings

Value: TypeAlias = float | int | str | bool | dict[str, Any]
# the time of a message's readings, and each reading's (topic, value, dedup key)
Parsed: TypeAlias = tuple[datetime, list[tuple[str, Value, str]]]

MAX_STRING_VALUE = 1024
MAX_ID_LENGTH = 128
MAX_FIELD_NAME = 64
MAX_ISO_TS = 64
# 1e11 s is the year 5138 and 1e11 ms is 1973: no sane clock is in both ranges
MS_THRESHOLD = 1e11
INT_MIN, INT_MAX = -(2**63), 2**63 - 1  # what a BIGINT / jsonb consumer can hold exactly
FLOAT_SURE = 2.0**63  # see _decode_plain
META = frozenset({"ts", "id", "seq"})
# one topic level: no separator or wildcard, no leading $ (reserved for the broker), NUL refused earlier
_FIELD_NAME = re.compile(rf"[^$/+#][^/+#]{{0,{MAX_FIELD_NAME - 1}}}", re.DOTALL)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FAR_PAST = datetime.min.replace(tzinfo=UTC)
FAR_FUTURE = datetime.max.replace(tzinfo=UTC)
MAX_CACHED_NAMES = 10_000
KEY_BYTES = 16  # dedup keys: 128 bits, 32 hex digits (readings.dedup_key is varchar(32))
_hash = hashlib.blake2b
_ONE_MICROSECOND = timedelta(microseconds=1)
_valid_names: set[str] = set()  # field names already checked: devices repeat theirs
_ID_HEADS: dict[tuple[str, str], str] = {}  # _id_prefix: '["id","<device>","<topic>"' by both
_UNSURE: Any = object()  # _decode_plain: "not for me"


@dataclass(frozen=True)
class Limits:
    """What a payload may not exceed."""

    max_bytes: int = 65536
    max_future_s: int = 300
    max_past_days: int = 1825
    max_depth: int = 8
    max_fields: int = 100

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_past_days", "max_depth", "max_fields"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.max_future_s < 0:
            raise ValueError("max_future_s must not be negative")

    @cached_property
    def future_window(self) -> timedelta | None:
        """max_future_s as a timedelta; None when beyond what one can hold (no limit in practice)."""
        try:
            return timedelta(seconds=self.max_future_s)
        except OverflowError:
            return None

    @cached_property
    def past_window(self) -> timedelta | None:
        try:
            return timedelta(days=self.max_past_days)
        except OverflowError:
            return None


@dataclass(frozen=True)
class Reading:
    """One value of one topic at one time; `dedup_key` is equal for redeliveries of the same message."""

    topic: str
    ts: datetime  # aware, UTC
    value: Value
    dedup_key: str


@dataclass(frozen=True)
class Rejection:
    """Why a payload was refused: short, stable, human readable; it goes to the dead-letter table."""

    reason: str


class _Reject(Exception):
    # not a ValueError, so it passes through json.loads untouched when a hook raises it
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def limits_from_settings(settings: Settings) -> Limits:
    return Limits(
        max_bytes=settings.ingest_max_payload_bytes,
        max_future_s=settings.ingest_max_future_s,
        max_past_days=settings.ingest_max_past_days,
    )


def parse(
    topic: str, payload: bytes, received_at: datetime, device_id: str, limits: Limits = Limits()
) -> list[Reading] | Rejection:
    """The readings in `payload`, or why there are none. Never raises for any payload."""
    if received_at.tzinfo is None:
        raise ValueError("received_at must be timezone-aware")
    parsed = parse_message(topic, payload, received_at.astimezone(UTC), device_id, limits)
    if isinstance(parsed, Rejection):
        return parsed
    ts, readings = parsed
    return [Reading(name, ts, value, key) for name, value, key in readings]


def parse_message(
    topic: str, payload: bytes, received_at: datetime, device_id: str, limits: Limits
) -> Parsed | Rejection:
    """`parse` without the Reading objects, for the ingest's hot path: (ts, [(topic, value, dedup key)]).

    `received_at` must be aware and in UTC (`datetime.now(UTC)`).
    """
    try:
        return _parse(topic, payload, received_at, device_id, limits)
    except _Reject as rejected:
        return Rejection(rejected.reason)


def _parse(topic: str, payload: bytes, received_at: datetime, device_id: str, limits: Limits) -> Parsed:
    if not topic or "+" in topic or "#" in topic or "\x00" in topic:
        raise _Reject("invalid topic")
    doc = _decode_plain(payload, limits)
    if doc is _UNSURE:
        doc = _decode(payload, limits)
        _check_tree(doc, limits)
    if type(doc) is not dict:
        if not _is_number(doc):
            raise _Reject(f"unsupported payload: {_json_type(doc)}")
        prefix = _key_prefix(["content", device_id, topic, _micros(received_at), _canonical(doc)])
        return received_at, [(topic, doc, _key(prefix, None))]
    sent_at = _timestamp(doc["ts"], received_at, limits) if "ts" in doc else None
    fields = _fields(doc, limits)
    identity = _identity(doc)
    if identity is not None:
        # the device's own ts joins its id: a seq counter restarts at 0 when the device reboots,
        # and the readings after that are no duplicates. The receive time never joins: it
        # differs on every redelivery.
        stamp = _micros(sent_at) if sent_at else None
        prefix = _id_prefix(device_id, topic, identity, stamp)
    else:
        prefix = _key_prefix(["content", device_id, topic, _micros(sent_at or received_at), _canonical(doc)])
    if len(fields) == 1 and fields[0][0] is None:
        return sent_at or received_at, [(topic, fields[0][1], _key(prefix, None))]
    base = _hash(prefix, digest_size=KEY_BYTES)
    readings = []
    for field, value in fields:
        # a field name is never empty, and the prefix is self-delimiting (_key_prefix)
        h = base.copy()
        h.update(field.encode())  # type: ignore[union-attr]  # None only as the single field above
        readings.append((f"{topic}/{field}", value, h.hexdigest()))
    return sent_at or received_at, readings


def _decode_plain(payload: bytes, limits: Limits) -> Any:
    """The common payload, decoded by orjson (strict JSON, UTF-8 checked, no NaN), or _UNSURE.

    It answers only for what it can vouch for: a flat object (or a bare number) of finite numbers
    within 64 bits, strings, booleans and nulls, no duplicate key, no backslash at all (so no escape:
    no NUL and no lone surrogate; a raw control character is invalid JSON to both decoders). That
    is exactly what `_decode` + `_check_tree` would return for the same bytes. Anything else,
    including every payload to be refused, goes the careful way, which names the reason.

    Duplicate keys: orjson keeps the last. Without a backslash every `"` delimits a string, so in a
    flat object each key, and nothing else, ends in `":`; fewer members than that means a key came
    twice (a key spaced from its colon also lands on the careful path, which is only slower).
    """
    if len(payload) > limits.max_bytes or b"\\" in payload:
        return _UNSURE
    try:
        doc = _loads(payload)
    except orjson.JSONDecodeError:  # invalid in any way: the careful path says why
        return _UNSURE
    if type(doc) is dict:
        if payload.count(b'":') != len(doc):
            return _UNSURE
        values: Any = doc.values()
    else:
        values = (doc,)
    for value in values:
        kind = type(value)
        if kind is float:
            # inf or nan; or beyond 2**63, where orjson gives an integer literal too big for
            # 64 bits as a float (the careful path refuses it): only a float is sure to be one
            if not -FLOAT_SURE < value < FLOAT_SURE:
                return _UNSURE
        elif kind is int:
            if not INT_MIN <= value <= INT_MAX:
                return _UNSURE
        elif kind is not str and kind is not bool and value is not None:
            return _UNSURE  # an object or array: depth and its strings need the full checks
    return doc


def _decode(payload: bytes, limits: Limits) -> Any:
    # size first: never spend time decoding what will be refused anyway
    if len(payload) > limits.max_bytes:
        raise _Reject(f"payload too large ({len(payload)} > {limits.max_bytes} bytes)")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise _Reject("invalid UTF-8") from None
    if not text.strip(" \t\r\n"):
        raise _Reject("empty payload")
    try:
        return _DECODER.decode(text)
    except RecursionError:
        # the C decoder recurses per level; this is far above max_depth, so say the same thing
        raise _Reject(f"nesting too deep (> {limits.max_depth} levels)") from None
    except ValueError:
        raise _Reject("invalid JSON") from None


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Reject(f"duplicate key {_quote(key)}")
            seen.add(key)
    return obj


def _constant(name: str) -> float:
    raise _Reject("non-finite number")  # NaN, Infinity, -Infinity


def _float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):  # 1e309 and the like
        raise _Reject("number out of range")
    return value


def _int(text: str) -> int:
    # the length test first: int() of thousands of digits is slow, and refused above 4300
    if len(text) > 20 or not INT_MIN <= (value := int(text)) <= INT_MAX:
        raise _Reject("number out of range")
    return value


def _check_tree(doc: Any, limits: Limits) -> None:
    """Depth and string checks, iteratively: a payload must not be able to exhaust the stack."""
    if isinstance(doc, str):
        _check_string(doc)
    stack: list[tuple[Any, int]] = [(doc, 1)] if isinstance(doc, dict | list) else []
    while stack:
        node, depth = stack.pop()
        if depth > limits.max_depth:
            raise _Reject(f"nesting too deep (> {limits.max_depth} levels)")
        if isinstance(node, dict):
            for key in node:
                _check_string(key)
            children = node.values()
        else:
            children = node
        for child in children:
            # only containers go on the stack: the common flat payload never grows it
            if isinstance(child, str):
                _check_string(child)
            elif isinstance(child, dict | list):
                stack.append((child, depth + 1))


def _check_string(text: str) -> None:
    # NUL ends strings in C and PostgreSQL text refuses it; a lone surrogate (from a "\ud800"
    # escape) cannot be encoded to UTF-8, so either would fail the write of a whole batch later
    if "\x00" in text:
        raise _Reject("NUL character in string")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise _Reject("lone surrogate in string") from None


def _fields(doc: dict[str, Any], limits: Limits) -> Sequence[tuple[str | None, Value]]:
    """(field name or None for the message's own topic, value) of each reading in an object."""
    if "value" in doc and "data" in doc:
        raise _Reject("both 'value' and 'data' given")
    for name in ("value", "data"):
        if name in doc:
            return [(None, _single_value(name, doc[name]))]
    fields = [
        (name, value) for name, value in doc.items() if type(value) in _NUMBER_TYPES and name not in META
    ]
    if not fields:
        raise _Reject("no numeric field")
    if len(fields) > limits.max_fields:
        raise _Reject(f"too many fields ({len(fields)} > {limits.max_fields})")
    for name, _ in fields:
        if name not in _valid_names:
            if not _FIELD_NAME.fullmatch(name):
                raise _Reject(f"invalid field name {_quote(name)}")
            if len(_valid_names) >= MAX_CACHED_NAMES:
                _valid_names.clear()
            _valid_names.add(name)
    return fields


def _single_value(name: str, value: Any) -> Value:
    if isinstance(value, str):
        if len(value) > MAX_STRING_VALUE:
            raise _Reject(f"string value too long ({len(value)} > {MAX_STRING_VALUE} characters)")
        return value
    if _is_number(value) or isinstance(value, bool | dict):
        return value
    raise _Reject(f"unsupported {name}: {_json_type(value)}")


def _timestamp(raw: Any, received_at: datetime, limits: Limits) -> datetime:
    if _is_number(raw):
        ts = _from_epoch(raw)
    elif isinstance(raw, str) and len(raw) <= MAX_ISO_TS:
        try:
            parsed = datetime.fromisoformat(raw)
            ts = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
        except (ValueError, OverflowError):
            raise _Reject("invalid ts") from None
    else:
        raise _Reject("invalid ts")
    # ts - received_at is exact and never overflows, where received_at +- the window may
    ahead = ts - received_at
    if limits.future_window is not None and ahead > limits.future_window:
        raise _Reject(f"ts too far in the future (> {limits.max_future_s} s ahead)")
    if limits.past_window is not None and -ahead > limits.past_window:
        raise _Reject(f"ts too far in the past (> {limits.max_past_days} days)")
    return ts


def _from_epoch(raw: int | float) -> datetime:
    try:
        # timedelta is exact for integers, where a float division would round milliseconds
        if abs(raw) > MS_THRESHOLD:
            return EPOCH + timedelta(milliseconds=raw)
        # seconds: rounded to the microsecond like timedelta(seconds=raw), in half the time
        return datetime.fromtimestamp(raw, UTC)
    except (OverflowError, ValueError, OSError):
        # beyond datetime's years 1..9999: clamp, so the window check names the right side
        return FAR_FUTURE if raw > 0 else FAR_PAST


def _identity(doc: dict[str, Any]) -> str | None:
    """The message's `id` and/or `seq` as the JSON array ["id", id, "seq", seq] (compact), or None."""
    parts = []
    for name in ("id", "seq"):
        if name in doc:
            value = doc[name]
            kind = type(value)  # decoded JSON holds exact types: a bool is not an int here
            if kind is int:
                parts.append(f'"{name}",{value}')  # int's repr: what the JSON encoder writes
            elif kind is str and 0 < len(value) <= MAX_ID_LENGTH:
                parts.append(f'"{name}",{_COMPACT(value)}')
            else:
                raise _Reject(f"invalid {name} (an integer or 1 to {MAX_ID_LENGTH} characters)")
    return f"[{','.join(parts)}]" if parts else None


def _canonical(doc: Any) -> str:
    """The payload with key order and whitespace normalised, so equal messages hash equal."""
    return _CANONICAL(doc)


def _key_prefix(material: list[Any]) -> bytes:
    # JSON keeps the parts apart: no device id or topic can forge another's separator, and
    # the array is self-delimiting, so the field name appended by _key cannot either
    return _COMPACT(material).encode()


def _id_prefix(device_id: str, topic: str, identity: str, stamp: int | None) -> bytes:
    """_key_prefix(["id", device_id, topic, <identity>, stamp]), byte for byte, with its constant
    start (device and topic) encoded once per topic rather than per message."""
    head = _ID_HEADS.get((device_id, topic))
    if head is None:
        if len(_ID_HEADS) >= MAX_CACHED_NAMES:
            _ID_HEADS.clear()
        head = _ID_HEADS[(device_id, topic)] = _COMPACT(["id", device_id, topic])[:-1]  # without "]"
    return f"{head},{identity},{'null' if stamp is None else stamp}]".encode()


def _key(prefix: bytes, field: str | None) -> str:
    """32 hex digits: BLAKE2b-128 of the prefix and the field name. A field name is never empty,
    so "no field" cannot collide with one."""
    return _hash(prefix + field.encode() if field else prefix, digest_size=KEY_BYTES).hexdigest()


def _micros(ts: datetime) -> int:
    """The instant in the key material: exact, and cheaper than isoformat() (a third of a key)."""
    return (ts - EPOCH) // _ONE_MICROSECOND


_DECODER = json.JSONDecoder(
    object_pairs_hook=_object, parse_constant=_constant, parse_float=_float, parse_int=_int
)
_loads = orjson.loads  # _decode_plain checks what it returns


def _json_encoder(sort_keys: bool) -> Callable[[Any], str]:
    """Compact JSON of decoded JSON values: byte for byte what json.JSONEncoder(separators=(",", ":"),
    sort_keys=...).encode gives (the dedup keys of stored readings depend on it), through the C
    encoder that JSONEncoder builds on every call, built once (no circular check: decoded JSON has
    no cycles)."""
    encoder = json.JSONEncoder(separators=(",", ":"), sort_keys=sort_keys)
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return encoder.encode
    try:
        c_encode = make(
            None,
            encoder.default,
            json.encoder.encode_basestring_ascii,
            None,
            ":",
            ",",
            sort_keys,
            False,
            True,
        )
    except TypeError:  # another signature: use the public way
        return encoder.encode

    def encode(value: Any) -> str:
        return "".join(c_encode(value, 0))

    return encode


_COMPACT = _json_encoder(sort_keys=False)
_CANONICAL = _json_encoder(sort_keys=True)


_NUMBER_TYPES = frozenset({int, float})  # decoded JSON holds exact types: bool is not a number here


def _is_number(value: Any) -> TypeGuard[int | float]:
    return type(value) in _NUMBER_TYPES


def _json_type(value: Any) -> str:
    names = {type(None): "null", bool: "boolean", str: "string", list: "array", dict: "object"}
    return names.get(type(value), "number")


def _quote(text: str) -> str:
    # ascii(): a reason must stay printable and short whatever the key held
    quoted = ascii(text)
    return quoted if len(quoted) <= 42 else quoted[:41] + "...'"
