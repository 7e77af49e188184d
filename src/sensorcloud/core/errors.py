"""Domain errors. Services raise these; only the HTTP layer turns them into status codes."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error a service reports to its caller; the message is safe to show."""

    status_code = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(DomainError):
    status_code = 404


class Conflict(DomainError):
    status_code = 409


class Invalid(DomainError):
    status_code = 422


class Unauthorized(DomainError):
    status_code = 401


class Forbidden(DomainError):
    status_code = 403


class Throttled(DomainError):
    status_code = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(DomainError):
    status_code = 503


class ConfigurationError(Exception):
    """The service cannot start with this configuration (reported and exit non-zero)."""
