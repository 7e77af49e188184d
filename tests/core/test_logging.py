"""Logging: redaction (the quick test that skips most strings never lets through what the substitutions
hide), the access line's short way, and which libraries speak at which level."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from sensorcloud.core import logging as sc_logging
from sensorcloud.core.logging import (
    ACCESS_LOGGER,
    ARGON2_HASH,
    BEARER,
    JWT_LIKE,
    REDACTED,
    SENSITIVE_QUERY,
    _scrub,
    build_formatter,
)
from sensorcloud.core.settings import Settings

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
SAMPLES = [
    "",
    '127.0.0.1:5000 - "GET /iot/devices/a1/temperature/latest HTTP/1.1" 200',
    f'127.0.0.1:5000 - "GET /api/v1/live?access_token={JWT} HTTP/1.1" 101',
    "GET /x?Password=hunter2&page=2",
    "GET /x?page=2&api_secret=abc",
    f"Authorization: Bearer {JWT}",
    "authorization: BASIC dXNlcjpwYXNz",
    "bearer",  # the word alone
    "INSERT ... ('$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA')",
    f"token {JWT[:20]}",  # too short to be a JWT
    "?token=",  # empty value
]
PIECES = st.sampled_from(
    [
        *("eyJ", "abcde", "Z9-_", ".", "Bearer ", "basic ", "BASIC\t", "$argon2id$", "$argon2i$", "v=19,m=1"),
        *("?", "&", "token", "Pass", "x", "=", " ", "\n", '"', "'", "/", "+", "~", "ü"),
    ]
)


def reference(value: str) -> str:
    """The four substitutions alone, as they were before the quick test."""
    value = BEARER.sub(r"\1 " + REDACTED, JWT_LIKE.sub(REDACTED, value))
    return SENSITIVE_QUERY.sub(r"\1" + REDACTED, ARGON2_HASH.sub(REDACTED, value))


@pytest.mark.parametrize("text", SAMPLES)
def test_the_same_as_the_substitutions(text: str) -> None:
    assert _scrub(text) == reference(text)


@given(st.lists(PIECES, max_size=40).map("".join))
def test_the_same_on_anything_built_of_their_pieces(text: str) -> None:
    assert _scrub(text) == reference(text)


def test_a_rendered_exception_is_redacted_after_the_rest() -> None:
    event = sc_logging.redact(None, "info", {"event": f"GET /x?token={JWT}", "password": "p"})
    assert event == {"event": f"GET /x?token={REDACTED}", "password": REDACTED}
    event["exception"] = f"Traceback ...\nValueError: bad token {JWT}"  # what format_exc_info adds
    assert sc_logging.redact_exception(None, "info", event)["exception"].endswith(f"bad token {REDACTED}")


def _access_record(path: str, **extra: Any) -> logging.LogRecord:
    record = logging.LogRecord(ACCESS_LOGGER, logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d', (), None)
    record.args = ("127.0.0.1:5000", "GET", path, "1.1", 200)
    record.__dict__.update(extra)
    return record


def _same_time(line: str) -> str:
    return re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", "<time>", line)


@pytest.mark.parametrize("json_output", [False, True])
@pytest.mark.parametrize(
    "path", ["/iot/devices/a1/t/latest", f"/api/v1/live?access_token={JWT}", "/x?a=1&b=ü"]
)
def test_the_access_line_takes_a_short_way_to_the_same_output(json_output: bool, path: str) -> None:
    formatter = build_formatter(json_output)
    with structlog.contextvars.bound_contextvars(request_id="r-1"):
        short = formatter.format(_access_record(path))
        generic = structlog.stdlib.ProcessorFormatter.format(formatter, _access_record(path))
    assert _same_time(short) == _same_time(generic)
    assert JWT not in short
    assert "r-1" in short
    # a record with anything more goes the generic way
    with_extra = formatter.format(_access_record(path, client_token=JWT))
    assert "client_token" in with_extra
    assert JWT not in with_extra


@pytest.fixture
def restore_logging() -> Any:
    names = ("", *sc_logging.CHATTY_LOGGERS, *sc_logging.QUIET_LOGGERS)
    saved = {name: (logging.getLogger(name).level, logging.getLogger(name).handlers[:]) for name in names}
    saved_structlog = structlog.get_config()
    yield
    structlog.configure(**saved_structlog)
    for name, (level, handlers) in saved.items():
        logging.getLogger(name).setLevel(level)
        logging.getLogger(name).handlers[:] = handlers


@pytest.mark.parametrize(
    ("level", "chatty_info_shown"), [("info", False), ("warning", False), ("debug", True)]
)
def test_amqtt_and_its_state_machine_speak_only_when_debugging(
    restore_logging: None, level: str, chatty_info_shown: bool
) -> None:
    sc_logging.configure_logging(Settings(log_level=level))
    for name in ("amqtt.broker", "transitions.core"):
        logger = logging.getLogger(name)
        assert logger.isEnabledFor(logging.INFO) is chatty_info_shown
        assert logger.isEnabledFor(logging.WARNING)
    assert logging.getLogger("sensorcloud.broker").isEnabledFor(logging.INFO) is (level != "warning")
