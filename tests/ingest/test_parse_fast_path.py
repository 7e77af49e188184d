"""parse() has a fast path for plain payloads (ingest/parse.py, _decode_plain): whatever it accepts
must come out exactly as the careful path makes it (readings, types, keys), and whatever it does not
vouch for goes the careful way. Every payload of the contract tests, and thousands of mutations of
them, are parsed both ways."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from sensorcloud.ingest import parse as parse_module
from sensorcloud.ingest.parse import Limits, Reading, Rejection, parse
from tests.ingest.test_parse import ACCEPTED, LOADGEN, RECEIVED, REJECTED, TOPIC

PAYLOADS = [c[1] for c in ACCEPTED] + [c[1] for c in REJECTED] + [LOADGEN]
MORE = [
    b'{"a": 1, "b": 2.5, "c": "x", "d": true, "e": null, "ts": 1732680000, "seq": 7}',
    b'{"a": 1e-400, "b": -0.0, "id": "m-1"}',
    b'{"a": 9223372036854775807, "b": -9223372036854775808}',
    b'{"a": 9223372036854775808}',
    b'{"a": 1e309}',
    b'{"a": NaN, "b": 1e309}',
    b'{"a": 1, "a": NaN}',
    b'{"a": "\\u00e9", "b": 1}',
    '{"a": "é", "ü": 2}'.encode(),
    b'{"value": 1, "data": 2, "value": 3}',
    b"  42  ",
    b"-1e5",
    b'"text"',
    b"[]",
    b"{}",
    b'{"ts": "2024-11-27T04:00:00Z", "t": 1}',
    # orjson (the fast path's decoder) turns integers beyond 64 bits into floats: never vouched for
    b'{"a": -9223372036854775809}',
    b'{"a": 18446744073709551615}',
    b'{"a": 18446744073709551616}',
    b'{"a": 100000000000000000000000000000}',
    b"-9223372036854775809",
    b'{"a": 9.3e18, "b": -9.3e18, "c": 1e400}',
    # duplicates however spaced, BOM, whitespace JSON does not know, a backslash outside escapes
    b'{"a":1,"b":2,"a":3}',
    b'{"a" :1,"b":2}',
    b'{"a" : 1, "a" : 2}',
    b'\xef\xbb\xbf{"a": 1}',
    '{"a":\u00a01}'.encode(),
    b'{"a":\x0c1}',
    b'{"a":1}\n\t\r ',
    b'{"a":"x\\"}',
    b'{"a":"b\\":1}',
]


def both_ways(payload: bytes, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    fast = parse(TOPIC, payload, RECEIVED, "dev-1", Limits())
    with monkeypatch.context() as m:
        m.setattr(parse_module, "_decode_plain", lambda _p, _l: parse_module._UNSURE)
        careful = parse(TOPIC, payload, RECEIVED, "dev-1", Limits())
    return fast, careful


def same(fast: list[Reading] | Rejection, careful: list[Reading] | Rejection) -> None:
    assert fast == careful
    if isinstance(fast, list):
        assert isinstance(careful, list)
        assert [type(r.value) for r in fast] == [type(r.value) for r in careful]


@pytest.mark.parametrize("payload", PAYLOADS + MORE)
def test_fast_and_careful_paths_agree(payload: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    same(*both_ways(payload, monkeypatch))


def test_the_fast_path_takes_the_load_generator_payload() -> None:
    doc = parse_module._decode_plain(LOADGEN, Limits())
    assert doc == json.loads(LOADGEN)


@pytest.mark.parametrize("seed", [b'{"temp": 21.5, "hum": 40, "seq": 3, "fw": "1.0", "ok": true}', LOADGEN])
def test_mutations_agree(seed: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(seed)
    alphabet = b'{}[]",:0123456789.eE+-\\u \x00\xff\xc3nulltrueNaNInfinity'
    for _ in range(3000):
        data = bytearray(seed)
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(data) + 1)
            action = rng.randrange(3)
            if action == 0:
                data[i:i] = bytes([rng.choice(alphabet)])
            elif action == 1 and i < len(data):
                del data[i]
            elif i < len(data):
                data[i] = rng.choice(alphabet)
        same(*both_ways(bytes(data), monkeypatch))


@pytest.mark.parametrize(
    "doc",
    [
        {"seq": 7},
        {"id": "m-1"},
        {"id": 'é " \\\\ ✓', "seq": -(2**63)},
        {"id": 2**63 - 1, "seq": "x" * 128},
    ],
)
@pytest.mark.parametrize("device_topic", [("dev-1", TOPIC), ('d"1', "a/ü/\\\\t")])
def test_id_key_material_is_the_json_of_its_parts(doc: dict[str, Any], device_topic: tuple[str, str]) -> None:
    """The id path assembles its key material from cached pieces: it must equal the JSON array
    that names its parts (stored keys depend on it)."""
    device, topic = device_topic
    identity = parse_module._identity(doc)
    assert identity is not None
    listed = [v for name in ("id", "seq") if name in doc for v in (name, doc[name])]
    for stamp in (None, 1732680000123456):
        assert parse_module._id_prefix(device, topic, identity, stamp) == parse_module._key_prefix(
            ["id", device, topic, listed, stamp]
        )
