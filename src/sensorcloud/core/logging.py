"""Structured logging: JSON lines in production, readable lines in development.

Every record passes through `redact`, so a password, token or secret that reaches a
log call by mistake is replaced before it is written.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from sensorcloud.core.settings import Settings

SENSITIVE_KEY = re.compile(r"pass|secret|token|authorization|cookie|private|credential|jwt", re.I)
# A JWT (three base64url parts) or a bearer credential, wherever it appears in a string.
JWT_LIKE = re.compile(r"eyJ[\w-]{5,}\.[\w-]{5,}\.[\w-]*")
BEARER = re.compile(r"(?i)(bearer|basic)\s+[\w\-.~+/=]+")
# A password hash, e.g. inside SQL parameters quoted by a database error or a driver's debug line.
ARGON2_HASH = re.compile(r"\$argon2(?:id|i|d)\$[\w$=,+/]*")  # PHC string: $v=19$m=..,t=..,p=..$salt$hash
# A sensitive query parameter (?access_token=...) in a logged URL, e.g. uvicorn's access log.
SENSITIVE_QUERY = re.compile(rf"(?i)([?&][^=&\s]*(?:{SENSITIVE_KEY.pattern})[^=&\s]*=)[^&\s\"']+")
# Libraries whose debug records quote SQL parameters (password and token hashes) verbatim.
QUIET_LOGGERS = ("aiosqlite", "httpx", "httpcore")
REDACTED = "[redacted]"


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        value = BEARER.sub(r"\1 " + REDACTED, JWT_LIKE.sub(REDACTED, value))
        return SENSITIVE_QUERY.sub(r"\1" + REDACTED, ARGON2_HASH.sub(REDACTED, value))
    if isinstance(value, dict):
        return {k: REDACTED if SENSITIVE_KEY.search(str(k)) else _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def redact(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: hide values of sensitive keys and token-shaped strings."""
    event_dict.pop("color_message", None)  # uvicorn's ANSI duplicate of the message
    for key in list(event_dict):
        if SENSITIVE_KEY.search(key):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _scrub(event_dict[key])
    return event_dict


def configure_logging(settings: Settings) -> None:
    """Route structlog and the standard library (uvicorn, alembic) through one formatter."""
    json_output = settings.log_format == "json" or (settings.log_format == "auto" and settings.is_production)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        # Before redact, so `extra=` fields (and uvicorn's color_message) are redacted too;
        # it only acts on standard-library records.
        structlog.stdlib.ExtraAdder(),
        redact,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer() if json_output else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact,  # again: a rendered traceback may quote SQL parameters or a token
            renderer,
        ],
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


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger
