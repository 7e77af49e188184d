"""Structured logging: JSON lines in production, readable lines in development.

Every record passes through `redact`, so a password, token or secret that reaches a
log call by mistake is replaced before it is written.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from functools import lru_cache
from typing import Any

import structlog

from sensorcloud.core.settings import Settings

SENSITIVE_KEY = re.compile(r"pass|secret|token|authorization|cookie|private|credential|jwt", re.I)
# A JWT (three base64url parts) or a bearer credential, wherever it appears in a string.
_JWT = r"eyJ[\w-]{5,}\.[\w-]{5,}\.[\w-]*"
_BEARER = r"(bearer|basic)\s+[\w\-.~+/=]+"
# A password hash, e.g. inside SQL parameters quoted by a database error or a driver's debug line.
_ARGON2 = r"\$argon2(?:id|i|d)\$[\w$=,+/]*"  # PHC string: $v=19$m=..,t=..,p=..$salt$hash
# A sensitive query parameter (?access_token=...) in a logged URL, e.g. uvicorn's access log.
_QUERY = rf"([?&][^=&\s]*(?:{SENSITIVE_KEY.pattern})[^=&\s]*=)[^&\s\"']+"
JWT_LIKE = re.compile(_JWT)
BEARER = re.compile(_BEARER, re.I)
ARGON2_HASH = re.compile(_ARGON2)
SENSITIVE_QUERY = re.compile(_QUERY, re.I)
# Any of the four: most strings hold none, and one search costs less than four substitutions (the
# access log passes every request's strings through here).
SUSPECT = re.compile(f"{_JWT}|(?i:{_BEARER})|{_ARGON2}|(?i:{_QUERY})")
# Libraries whose debug records quote SQL parameters (password and token hashes) verbatim.
QUIET_LOGGERS = ("aiosqlite", "httpx", "httpcore")
# Libraries that log routine steps at info: amqtt each connection (which the broker plugin logs
# too, with the device), transitions each state change of each amqtt session (six lines per device
# connect). Warnings only, unless the log level is debug.
CHATTY_LOGGERS = ("amqtt", "transitions")
REDACTED = "[redacted]"


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        if SUSPECT.search(value) is None:
            return value
        value = BEARER.sub(r"\1 " + REDACTED, JWT_LIKE.sub(REDACTED, value))
        return SENSITIVE_QUERY.sub(r"\1" + REDACTED, ARGON2_HASH.sub(REDACTED, value))
    if isinstance(value, dict):
        return {k: REDACTED if SENSITIVE_KEY.search(str(k)) else _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


@lru_cache(maxsize=4096)  # the keys of log events are few: the same ones come again and again
def _sensitive_key(key: str) -> bool:
    return SENSITIVE_KEY.search(key) is not None


def redact(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: hide values of sensitive keys and token-shaped strings."""
    event_dict.pop("color_message", None)  # uvicorn's ANSI duplicate of the message
    for key in list(event_dict):
        if _sensitive_key(key):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _scrub(event_dict[key])
    return event_dict


def redact_exception(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """After format_exc_info, whose rendered traceback may quote SQL parameters or a token: the
    one value added since `redact` ran (which every event has been through)."""
    if "exception" in event_dict:
        event_dict["exception"] = _scrub(event_dict["exception"])
    return event_dict


# What a LogRecord holds by itself; anything else came as `extra=` (structlog's ExtraAdder adds it).
_RECORD_KEYS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
ACCESS_LOGGER = "uvicorn.access"


class Formatter(structlog.stdlib.ProcessorFormatter):
    """The one formatter of every record. uvicorn's access line (one per request) takes a short way
    to the same output: the chain's steps that do nothing for it (copying the record, adding
    extras it has none of, formatting an exception it has none of) are skipped."""

    def __init__(self, stamper: Any, renderer: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._stamper = stamper
        self._renderer = renderer

    def format(self, record: logging.LogRecord) -> str:
        if (
            record.name != ACCESS_LOGGER
            or record.exc_info
            or record.stack_info
            or record.__dict__.keys() - _RECORD_KEYS
        ):
            return super().format(record)
        level = record.levelname.lower()
        event: Any = structlog.contextvars.merge_contextvars(None, level, {"event": record.getMessage()})
        event["level"] = level
        event["logger"] = record.name
        event = redact(None, level, self._stamper(None, level, event))
        return str(self._renderer(None, level, event))


def build_formatter(json_output: bool) -> Formatter:
    """The formatter of every record; its foreign_pre_chain is what structlog's own events go through."""
    stamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        stamper,
        # Before redact, so `extra=` fields (and uvicorn's color_message) are redacted too;
        # it only acts on standard-library records.
        structlog.stdlib.ExtraAdder(),
        redact,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer() if json_output else structlog.dev.ConsoleRenderer(colors=False)
    )
    return Formatter(
        stamper,
        renderer,
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_exception,
            renderer,
        ],
    )


def configure_logging(settings: Settings) -> None:
    """Route structlog and the standard library (uvicorn, alembic) through one formatter."""
    json_output = settings.log_format == "json" or (settings.log_format == "auto" and settings.is_production)
    formatter = build_formatter(json_output)
    structlog.configure(
        processors=[
            *(formatter.foreign_pre_chain or ()),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "alembic"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.INFO, root.level))
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING if root.level > logging.DEBUG else logging.NOTSET)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger
