"""parse(): every accepted payload form and every class of refused payload, table by table."""

from __future__ import annotations

import json
import random
import re
from dataclasses import FrozenInstanceError
from datetime import UTC, datetime, timedelta, timezone

import pytest

from sensorcloud.core.settings import Settings
from sensorcloud.ingest.parse import Limits, Reading, Rejection, limits_from_settings, parse

TOPIC = "devices/dev-1/temp"
DEVICE = "dev-1"
RECEIVED = datetime(2024, 11, 27, 4, 5, tzinfo=UTC)


def accepted(
    payload: bytes,
    topic: str = TOPIC,
    received_at: datetime = RECEIVED,
    device_id: str = DEVICE,
    limits: Limits | None = None,
) -> list[Reading]:
    result = parse(topic, payload, received_at, device_id, limits or Limits())
    assert isinstance(result, list), result
    return result


def rejected(payload: bytes, topic: str = TOPIC, limits: Limits | None = None) -> str:
    result = parse(topic, payload, RECEIVED, DEVICE, limits or Limits())
    assert isinstance(result, Rejection), result
    return result.reason


def nested(levels: int) -> bytes:
    """{"value": ...} whose value is an object: `levels` levels of nesting in all."""
    return b'{"value":' + b'{"a":' * (levels - 1) + b"1" + b"}" * levels


ACCEPTED: list[tuple[str, bytes, list[tuple[str, object]]]] = [
    ("bare float", b"21.5", [(TOPIC, 21.5)]),
    ("bare int", b"-3", [(TOPIC, -3)]),
    ("bare zero", b"0", [(TOPIC, 0)]),
    ("bare exponent", b"2.5e3", [(TOPIC, 2500.0)]),
    ("bare with whitespace", b" \t42\r\n", [(TOPIC, 42)]),
    ("value float", b'{"value": 21.5}', [(TOPIC, 21.5)]),
    ("value string", b'{"value": "on"}', [(TOPIC, "on")]),
    ("value empty string", b'{"value": ""}', [(TOPIC, "")]),
    ("value unicode string", '{"value": "grün ☀"}'.encode(), [(TOPIC, "grün ☀")]),
    ("value true", b'{"value": true}', [(TOPIC, True)]),
    ("value false", b'{"value": false}', [(TOPIC, False)]),
    ("value object", b'{"value": {"lat": 1.5, "lon": 2}}', [(TOPIC, {"lat": 1.5, "lon": 2})]),
    ("value object with array", b'{"value": {"xs": [1, 2]}}', [(TOPIC, {"xs": [1, 2]})]),
    ("value string 1024 chars", b'{"value": "' + b"x" * 1024 + b'"}', [(TOPIC, "x" * 1024)]),
    ("value max int64", b'{"value": 9223372036854775807}', [(TOPIC, 2**63 - 1)]),
    ("value min int64", b'{"value": -9223372036854775808}', [(TOPIC, -(2**63))]),
    ("value largest double", b'{"value": 1.7976931348623157e308}', [(TOPIC, 1.7976931348623157e308)]),
    ("value underflow to zero", b'{"value": 1e-400}', [(TOPIC, 0.0)]),
    ("value with extra members", b'{"value": 3, "unit": "C", "hum": 4}', [(TOPIC, 3)]),
    ("data, the original format", b'{"data": 7}', [(TOPIC, 7)]),
    ("data string", b'{"data": "open"}', [(TOPIC, "open")]),
    ("multi-field", b'{"temp": 21.5, "hum": 40}', [(f"{TOPIC}/temp", 21.5), (f"{TOPIC}/hum", 40)]),
    (
        "multi-field with metadata",
        b'{"device": "dev-9", "fw": "1.4.2", "ok": true, "err": null, "loc": {"x": 1}, "temp": 1}',
        [(f"{TOPIC}/temp", 1)],
    ),
    ("numeric device field is a reading", b'{"device": 5}', [(f"{TOPIC}/device", 5)]),
    ("multi-field with id and seq", b'{"id": "a", "seq": 1, "t": 2}', [(f"{TOPIC}/t", 2)]),
    ("field name at 64 chars", b'{"' + b"f" * 64 + b'": 1}', [(f"{TOPIC}/{'f' * 64}", 1)]),
    ("field name with $ inside", b'{"a$b": 1}', [(f"{TOPIC}/a$b", 1)]),
    ("8 levels of nesting", nested(8), [(TOPIC, json.loads(nested(8))["value"])]),
]


@pytest.mark.parametrize(("payload", "expected"), [c[1:] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED])
def test_accepted_forms(payload: bytes, expected: list[tuple[str, object]]) -> None:
    readings = accepted(payload)
    assert [(r.topic, r.value) for r in readings] == expected
    # True == 1 and 1.0 == 1 in Python: the types must match too
    assert [type(r.value) for r in readings] == [type(v) for _, v in expected]
    for reading in readings:
        assert reading.ts == RECEIVED
        assert reading.ts.tzinfo is UTC
        assert re.fullmatch(r"[0-9a-f]{32}", reading.dedup_key)


def many_fields(count: int) -> bytes:
    return json.dumps({f"f{i}": i for i in range(count)}).encode()


REJECTED: list[tuple[str, bytes, str]] = [
    ("empty", b"", "empty payload"),
    ("whitespace", b" \t\r\n ", "empty payload"),
    ("truncated object", b'{"value": 1', "invalid JSON"),
    ("single quotes", b"{'value': 1}", "invalid JSON"),
    ("unquoted word", b"on", "invalid JSON"),
    ("two numbers", b"21.5 22", "invalid JSON"),
    ("leading zero", b"01", "invalid JSON"),
    ("trailing comma", b'{"value": 1,}', "invalid JSON"),
    ("utf-8 BOM", b"\xef\xbb\xbf21", "invalid JSON"),
    ("raw control character in string", b'{"value": "a\x00b"}', "invalid JSON"),
    ("bare NaN", b"NaN", "non-finite number"),
    ("NaN", b'{"value": NaN}', "non-finite number"),
    ("Infinity", b'{"value": Infinity}', "non-finite number"),
    ("-Infinity", b'{"value": -Infinity}', "non-finite number"),
    ("NaN in metadata", b'{"temp": 1, "x": NaN}', "non-finite number"),
    ("1e309", b'{"value": 1e309}', "number out of range"),
    ("bare -1e309", b"-1e309", "number out of range"),
    ("2**63", b'{"value": 9223372036854775808}', "number out of range"),
    ("-2**63-1", b'{"value": -9223372036854775809}', "number out of range"),
    ("5000 digits", b"1" + b"0" * 5000, "number out of range"),
    ("null", b"null", "unsupported payload: null"),
    ("bare string", b'"on"', "unsupported payload: string"),
    ("bare true", b"true", "unsupported payload: boolean"),
    ("bare array", b"[1, 2]", "unsupported payload: array"),
    ("value null", b'{"value": null}', "unsupported value: null"),
    ("value array", b'{"value": [1, 2]}', "unsupported value: array"),
    ("data null", b'{"data": null}', "unsupported data: null"),
    ("value and data", b'{"value": 1, "data": 2}', "both 'value' and 'data' given"),
    (
        "value string 1025 chars",
        b'{"value": "' + b"x" * 1025 + b'"}',
        "string value too long (1025 > 1024 characters)",
    ),
    ("duplicate key", b'{"value": 1, "value": 2}', "duplicate key 'value'"),
    ("duplicate field", b'{"temp": 1, "hum": 2, "temp": 1}', "duplicate key 'temp'"),
    ("duplicate nested key", b'{"value": {"a": 1, "a": 1}}', "duplicate key 'a'"),
    ("NUL in value", b'{"value": "a\\u0000b"}', "NUL character in string"),
    ("NUL in key", b'{"te\\u0000mp": 1}', "NUL character in string"),
    ("NUL in metadata", b'{"temp": 1, "fw": "\\u0000"}', "NUL character in string"),
    ("NUL in nested key", b'{"value": {"\\u0000": 1}}', "NUL character in string"),
    ("lone surrogate", b'{"value": "\\ud800"}', "lone surrogate in string"),
    ("lone surrogate in key", b'{"\\udfff": 1}', "lone surrogate in string"),
    ("invalid byte", b"\xff", "invalid UTF-8"),
    ("invalid sequence in string", b'{"value": "\xc3\x28"}', "invalid UTF-8"),
    ("encoded surrogate", b'{"value": "\xed\xa0\x80"}', "invalid UTF-8"),
    ("overlong encoding", b'{"value": "\xc0\xaf"}', "invalid UTF-8"),
    ("truncated sequence", b'{"value": "\xe2\x82"}', "invalid UTF-8"),
    ("9 levels of nesting", nested(9), "nesting too deep (> 8 levels)"),
    ("10,000 nested arrays", b"[" * 10_000 + b"]" * 10_000, "nesting too deep (> 8 levels)"),
    ("30,000 unclosed arrays", b"[" * 30_000, "nesting too deep (> 8 levels)"),
    ("5,000 nested objects", b'{"a":' * 5_000 + b"1" + b"}" * 5_000, "nesting too deep (> 8 levels)"),
    (
        "500 nested arrays in value",
        b'{"value":' + b"[" * 500 + b"]" * 500 + b"}",
        "nesting too deep (> 8 levels)",
    ),
    ("empty object", b"{}", "no numeric field"),
    ("only metadata", b'{"device": "dev-1", "fw": "1.4.2", "ok": true}', "no numeric field"),
    ("only ts and seq", b'{"ts": 1732680000, "seq": 3}', "no numeric field"),
    ("101 fields", many_fields(101), "too many fields (101 > 100)"),
    ("field with slash", b'{"a/b": 1}', "invalid field name 'a/b'"),
    ("field with plus", b'{"a+": 1}', "invalid field name 'a+'"),
    ("field with hash", b'{"#": 1}', "invalid field name '#'"),
    (
        "field name of emoji",
        b'{"x/' + "\U0001f600".encode() * 30 + b'": 1}',
        "invalid field name 'x/\\U0001f600\\U0001f600\\U0001f600\\U0001f6...'",
    ),
    ("field starting with $", b'{"$SYS": 1}', "invalid field name '$SYS'"),
    ("empty field name", b'{"": 1}', "invalid field name ''"),
    ("field name 65 chars", b'{"' + b"f" * 65 + b'": 1}', f"invalid field name '{'f' * 40}...'"),
    ("ts true", b'{"value": 1, "ts": true}', "invalid ts"),
    ("ts null", b'{"value": 1, "ts": null}', "invalid ts"),
    ("ts word", b'{"value": 1, "ts": "yesterday"}', "invalid ts"),
    ("ts epoch as string", b'{"value": 1, "ts": "1732680000"}', "invalid ts"),
    ("ts array", b'{"value": 1, "ts": [1732680000]}', "invalid ts"),
    ("ts object", b'{"value": 1, "ts": {"s": 1}}', "invalid ts"),
    ("ts long string", b'{"value": 1, "ts": "' + b"2" * 65 + b'"}', "invalid ts"),
    ("ts beyond year 9999 in UTC", b'{"value": 1, "ts": "9999-12-31T23:59:59-01:00"}', "invalid ts"),
    (
        "ts year 3000",
        b'{"value": 1, "ts": "3000-01-01T00:00:00Z"}',
        "ts too far in the future (> 300 s ahead)",
    ),
    ("ts year 1900", b'{"value": 1, "ts": "1900-01-01T00:00:00Z"}', "ts too far in the past (> 1825 days)"),
    ("ts epoch 0", b'{"value": 1, "ts": 0}', "ts too far in the past (> 1825 days)"),
    ("ts negative", b'{"value": 1, "ts": -1732680000}', "ts too far in the past (> 1825 days)"),
    ("ts 1e11 is seconds", b'{"value": 1, "ts": 100000000000}', "ts too far in the future (> 300 s ahead)"),
    ("ts 1e20", b'{"value": 1, "ts": 1e20}', "ts too far in the future (> 300 s ahead)"),
    ("ts -1e20", b'{"value": 1, "ts": -1e20}', "ts too far in the past (> 1825 days)"),
    ("ts max int64", b'{"value": 1, "ts": 9223372036854775807}', "ts too far in the future (> 300 s ahead)"),
    ("ts min int64", b'{"value": 1, "ts": -9223372036854775808}', "ts too far in the past (> 1825 days)"),
    ("id true", b'{"value": 1, "id": true}', "invalid id (an integer or 1 to 128 characters)"),
    ("id float", b'{"value": 1, "id": 1.5}', "invalid id (an integer or 1 to 128 characters)"),
    ("id empty", b'{"value": 1, "id": ""}', "invalid id (an integer or 1 to 128 characters)"),
    ("id null", b'{"value": 1, "id": null}', "invalid id (an integer or 1 to 128 characters)"),
    (
        "id 129 chars",
        b'{"value": 1, "id": "' + b"i" * 129 + b'"}',
        "invalid id (an integer or 1 to 128 characters)",
    ),
    ("seq object", b'{"temp": 1, "seq": {}}', "invalid seq (an integer or 1 to 128 characters)"),
    ("seq array", b'{"temp": 1, "seq": [1]}', "invalid seq (an integer or 1 to 128 characters)"),
]


@pytest.mark.parametrize(("payload", "reason"), [c[1:] for c in REJECTED], ids=[c[0] for c in REJECTED])
def test_rejected(payload: bytes, reason: str) -> None:
    assert rejected(payload) == reason


def at_size(size: int) -> bytes:
    """A valid payload of exactly `size` bytes, padded with JSON whitespace."""
    head, tail = b'{"value": 1', b"}"
    return head + b" " * (size - len(head) - len(tail)) + tail


def test_payload_exactly_at_the_limit_is_accepted() -> None:
    assert len(at_size(65536)) == 65536
    assert [r.value for r in accepted(at_size(65536))] == [1]


def test_payload_one_byte_over_the_limit_is_refused() -> None:
    assert rejected(at_size(65537)) == "payload too large (65537 > 65536 bytes)"


def test_size_is_checked_before_decoding() -> None:
    assert rejected(b"\xff" * 65537) == "payload too large (65537 > 65536 bytes)"
    assert rejected(b"[" * 70_000) == "payload too large (70000 > 65536 bytes)"


def test_exactly_max_fields_is_accepted() -> None:
    readings = accepted(many_fields(100))
    assert len(readings) == 100
    assert readings[99].topic == f"{TOPIC}/f99"


TS_ACCEPTED: list[tuple[str, bytes, datetime]] = [
    ("iso with Z", b'"2024-11-27T04:00:00Z"', datetime(2024, 11, 27, 4, tzinfo=UTC)),
    ("iso with offset", b'"2024-11-27T06:00:00+02:00"', datetime(2024, 11, 27, 4, tzinfo=UTC)),
    ("iso negative offset", b'"2024-11-26T23:30:00-04:30"', datetime(2024, 11, 27, 4, tzinfo=UTC)),
    ("iso naive is UTC", b'"2024-11-27T04:00:00"', datetime(2024, 11, 27, 4, tzinfo=UTC)),
    ("iso microseconds", b'"2024-11-27T04:00:00.123456Z"', datetime(2024, 11, 27, 4, 0, 0, 123456, UTC)),
    ("iso date only", b'"2024-11-27"', datetime(2024, 11, 27, tzinfo=UTC)),
    ("epoch seconds int", b"1732680000", datetime(2024, 11, 27, 4, tzinfo=UTC)),
    ("epoch seconds float", b"1732680000.25", datetime(2024, 11, 27, 4, 0, 0, 250000, UTC)),
    ("epoch ms int", b"1732680000123", datetime(2024, 11, 27, 4, 0, 0, 123000, UTC)),
    ("epoch ms float", b"1732680000123.0", datetime(2024, 11, 27, 4, 0, 0, 123000, UTC)),
    ("300 s ahead", b'"2024-11-27T04:10:00Z"', datetime(2024, 11, 27, 4, 10, tzinfo=UTC)),
    ("1825 days back", b'"2019-11-29T04:05:00Z"', RECEIVED - timedelta(days=1825)),
]


@pytest.mark.parametrize(("ts", "expected"), [c[1:] for c in TS_ACCEPTED], ids=[c[0] for c in TS_ACCEPTED])
def test_ts_accepted(ts: bytes, expected: datetime) -> None:
    for payload in (b'{"value": 1, "ts": ' + ts + b"}", b'{"a": 1, "b": 2, "ts": ' + ts + b"}"):
        readings = accepted(payload)
        assert [r.ts for r in readings] == [expected] * len(readings)
        assert all(r.ts.utcoffset() == timedelta(0) for r in readings)


TS_REFUSED: list[tuple[str, bytes, str]] = [
    ("301 s ahead", b'"2024-11-27T04:10:01Z"', "ts too far in the future (> 300 s ahead)"),
    ("1825 days and 1 s back", b'"2019-11-29T04:04:59Z"', "ts too far in the past (> 1825 days)"),
    ("301 s ahead as epoch ms", b"1732680601000", "ts too far in the future (> 300 s ahead)"),
]


@pytest.mark.parametrize(("ts", "reason"), [c[1:] for c in TS_REFUSED], ids=[c[0] for c in TS_REFUSED])
def test_ts_just_outside_the_window_is_refused(ts: bytes, reason: str) -> None:
    assert rejected(b'{"value": 1, "ts": ' + ts + b"}") == reason


def test_receive_time_is_used_without_ts_and_normalised_to_utc() -> None:
    received = datetime(2024, 11, 27, 6, 5, tzinfo=timezone(timedelta(hours=2)))
    [reading] = accepted(b'{"value": 1}', received_at=received)
    assert reading.ts == RECEIVED
    assert reading.ts.tzinfo is UTC


def test_naive_receive_time_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse(TOPIC, b"1", datetime(2024, 11, 27), DEVICE)


@pytest.mark.parametrize("topic", ["", "devices/+/temp", "devices/#", "dev\x00ices"])
def test_invalid_topic(topic: str) -> None:
    assert rejected(b"1", topic=topic) == "invalid topic"


LATER = RECEIVED + timedelta(seconds=7)
Message = tuple[str, bytes, datetime, str]  # topic, payload, received_at, device_id
BASE: Message = (TOPIC, b'{"value": 1, "seq": 17}', RECEIVED, DEVICE)
TS_PAYLOAD = b'{"value": 1, "ts": 1732680000}'

DEDUP: list[tuple[str, Message, Message, bool]] = [
    ("identical message", BASE, BASE, True),
    ("seq: redelivered later", BASE, (TOPIC, BASE[1], LATER, DEVICE), True),
    ("seq: key order and spacing", BASE, (TOPIC, b'{ "seq":17 ,"value":1 }', RECEIVED, DEVICE), True),
    ("seq: other seq", BASE, (TOPIC, b'{"value": 1, "seq": 18}', RECEIVED, DEVICE), False),
    ("seq: int vs string", BASE, (TOPIC, b'{"value": 1, "seq": "17"}', RECEIVED, DEVICE), False),
    ("seq vs id", BASE, (TOPIC, b'{"value": 1, "id": 17}', RECEIVED, DEVICE), False),
    (
        "seq: other ts (device restarted its counter)",
        (TOPIC, b'{"value": 1, "seq": 17, "ts": 1732680000}', RECEIVED, DEVICE),
        (TOPIC, b'{"value": 1, "seq": 17, "ts": 1732680001}', RECEIVED, DEVICE),
        False,
    ),
    ("seq: other device", BASE, (TOPIC, BASE[1], RECEIVED, "dev-2"), False),
    ("seq: other topic", BASE, ("devices/dev-1/hum", BASE[1], RECEIVED, DEVICE), False),
    (
        "id: redelivered later",
        (TOPIC, b'{"value": 1, "id": "m-1"}', RECEIVED, DEVICE),
        (TOPIC, b'{"value": 1, "id": "m-1"}', LATER, DEVICE),
        True,
    ),
    (
        "ts: redelivered later",
        (TOPIC, TS_PAYLOAD, RECEIVED, DEVICE),
        (TOPIC, TS_PAYLOAD, LATER, DEVICE),
        True,
    ),
    (
        "ts: other value",
        (TOPIC, TS_PAYLOAD, RECEIVED, DEVICE),
        (TOPIC, b'{"value": 2, "ts": 1732680000}', RECEIVED, DEVICE),
        False,
    ),
    (
        "ts: other ts",
        (TOPIC, TS_PAYLOAD, RECEIVED, DEVICE),
        (TOPIC, b'{"value": 1, "ts": 1732680001}', RECEIVED, DEVICE),
        False,
    ),
    (
        "ts: other device",
        (TOPIC, TS_PAYLOAD, RECEIVED, DEVICE),
        (TOPIC, TS_PAYLOAD, RECEIVED, "dev-2"),
        False,
    ),
    (
        "ts: other topic",
        (TOPIC, TS_PAYLOAD, RECEIVED, DEVICE),
        ("devices/dev-1/x", TS_PAYLOAD, RECEIVED, DEVICE),
        False,
    ),
    ("bare: same receive time", (TOPIC, b"1.0", RECEIVED, DEVICE), (TOPIC, b"10e-1", RECEIVED, DEVICE), True),
    ("bare: other receive time", (TOPIC, b"1", RECEIVED, DEVICE), (TOPIC, b"1", LATER, DEVICE), False),
    ("bare: other value", (TOPIC, b"1", RECEIVED, DEVICE), (TOPIC, b"2", RECEIVED, DEVICE), False),
    ("bare: int vs float", (TOPIC, b"1", RECEIVED, DEVICE), (TOPIC, b"1.0", RECEIVED, DEVICE), False),
    ("bare: other device", (TOPIC, b"1", RECEIVED, DEVICE), (TOPIC, b"1", RECEIVED, "dev-2"), False),
    (
        "value vs data",
        (TOPIC, b'{"value": 1}', RECEIVED, DEVICE),
        (TOPIC, b'{"data": 1}', RECEIVED, DEVICE),
        False,
    ),
    (
        "metadata is part of the content",
        (TOPIC, b'{"value": 1, "fw": "1"}', RECEIVED, DEVICE),
        (TOPIC, b'{"value": 1, "fw": "2"}', RECEIVED, DEVICE),
        False,
    ),
    # separators are not ambiguous: "a:b" + "c" is not "a" + "b:c"
    ("device/topic boundary", ("b:c", b"1", RECEIVED, "a"), ("c", b"1", RECEIVED, "a:b"), False),
]


@pytest.mark.parametrize(("first", "second", "same"), [c[1:] for c in DEDUP], ids=[c[0] for c in DEDUP])
def test_dedup_key(first: Message, second: Message, same: bool) -> None:
    [a] = accepted(first[1], topic=first[0], received_at=first[2], device_id=first[3])
    [b] = accepted(second[1], topic=second[0], received_at=second[2], device_id=second[3])
    assert (a.dedup_key == b.dedup_key) is same


@pytest.mark.parametrize(
    "payload",
    [b'{"a": 1, "b": 1}', b'{"a": 1, "b": 1, "seq": 4}', b'{"a": 1, "b": 1, "ts": 1732680000}'],
    ids=["content", "seq", "ts"],
)
def test_each_field_of_a_message_has_its_own_key(payload: bytes) -> None:
    a, b = accepted(payload)
    assert a.dedup_key != b.dedup_key


LOADGEN = b'{"device":"dev-00001","ts":1732680000.123,"temp":21.5,"hum":40.1,"seq":17,"fw":"1.4.2"}'
LOADGEN_TOPIC = "bench/dev-00001/temp"


def test_load_generator_payload() -> None:
    sent = datetime(2024, 11, 27, 4, 0, 0, 123000, UTC)
    readings = accepted(
        LOADGEN, topic=LOADGEN_TOPIC, received_at=sent + timedelta(seconds=1), device_id="dev-00001"
    )
    assert [(r.topic, r.value, r.ts) for r in readings] == [
        (f"{LOADGEN_TOPIC}/temp", 21.5, sent),
        (f"{LOADGEN_TOPIC}/hum", 40.1, sent),
    ]
    # a redelivery (later, seq unchanged) has the same keys; the next message (seq 18) does not
    again = accepted(
        LOADGEN, topic=LOADGEN_TOPIC, received_at=sent + timedelta(seconds=9), device_id="dev-00001"
    )
    assert [r.dedup_key for r in again] == [r.dedup_key for r in readings]
    following = accepted(
        LOADGEN.replace(b'"seq":17', b'"seq":18'),
        topic=LOADGEN_TOPIC,
        received_at=sent + timedelta(seconds=1),
        device_id="dev-00001",
    )
    assert not {r.dedup_key for r in following} & {r.dedup_key for r in readings}


def test_custom_limits_apply() -> None:
    assert rejected(b"12345678901234567", limits=Limits(max_bytes=16)) == "payload too large (17 > 16 bytes)"
    assert rejected(nested(3), limits=Limits(max_depth=2)) == "nesting too deep (> 2 levels)"
    assert rejected(many_fields(3), limits=Limits(max_fields=2)) == "too many fields (3 > 2)"
    ahead = b'{"value": 1, "ts": "2024-11-27T04:05:01Z"}'
    assert rejected(ahead, limits=Limits(max_future_s=0)) == "ts too far in the future (> 0 s ahead)"
    behind = b'{"value": 1, "ts": "2024-11-26T04:04:59Z"}'
    assert rejected(behind, limits=Limits(max_past_days=1)) == "ts too far in the past (> 1 days)"
    # a window wider than datetime's range must not overflow
    assert accepted(b'{"value": 1, "ts": 1}', limits=Limits(max_past_days=10**9, max_future_s=10**15))


@pytest.mark.parametrize(
    "kwargs",
    [{"max_bytes": 0}, {"max_depth": 0}, {"max_fields": 0}, {"max_past_days": 0}, {"max_future_s": -1}],
)
def test_limits_validate_themselves(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        Limits(**kwargs)


def test_limits_from_settings() -> None:
    settings = Settings(ingest_max_payload_bytes=1024, ingest_max_future_s=60, ingest_max_past_days=30)
    assert limits_from_settings(settings) == Limits(max_bytes=1024, max_future_s=60, max_past_days=30)


def test_results_are_frozen() -> None:
    [reading] = accepted(b"1")
    with pytest.raises(FrozenInstanceError):
        reading.value = 2  # type: ignore[misc]


SEEDS = [b"21.5", b'{"value": {"a": [1, "x"]}, "ts": "2024-11-27T04:00:00Z"}', LOADGEN]


@pytest.mark.parametrize("seed", SEEDS, ids=["bare", "object value", "load generator"])
def test_mutated_payloads_never_raise(seed: bytes) -> None:
    """A bad payload must never stop ingestion: whatever the bytes, parse returns, never raises."""
    rng = random.Random(seed)
    alphabet = b'{}[]",:0123456789.eE+-\\u \x00\xff\xc3nulltrueNaNInfinity'
    for _ in range(2000):
        data = bytearray(seed)
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(data) + 1)
            action = rng.randrange(3)
            if action == 0:
                data[i:i] = bytes([rng.choice(alphabet)])
            elif action == 1 and i < len(data):
                del data[i]
            elif i < len(data):
                data[i] = rng.choice(alphabet)
        result = parse(TOPIC, bytes(data), RECEIVED, DEVICE)
        assert isinstance(result, list | Rejection)
        if isinstance(result, Rejection):
            assert result.reason
            assert result.reason.isprintable()
