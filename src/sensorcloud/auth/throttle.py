"""Login throttling per account and per client address, shared between replicas through Redis."""

from __future__ import annotations

import hashlib

from sensorcloud.core.errors import Throttled
from sensorcloud.core.settings import Settings
from sensorcloud.core.shared_state import SharedState

THROTTLED = "Too many failed login attempts. Try again later."


def _keys(email: str, address: str) -> tuple[str, str]:
    # Hash the email so the shared store holds no personal data in clear.
    account = hashlib.sha256(email.lower().encode()).hexdigest()[:32]
    return f"login:acct:{account}", f"login:addr:{address}"


class LoginThrottle:
    def __init__(self, settings: Settings, state: SharedState) -> None:
        self._state = state
        self._window = settings.login_failure_window
        self._max_account = settings.login_max_failures_per_account
        self._max_address = settings.login_max_failures_per_address

    async def reserve(self, email: str, address: str) -> None:
        """Count an attempt on the account before its password is checked; raise Throttled when spent."""
        account_key, address_key = _keys(email, address)
        count, left = await self._state.count(address_key)
        if count >= self._max_address:
            raise Throttled(THROTTLED, retry_after=left)
        # Up first, atomically: checking now and counting only failed attempts would let any
        # number of concurrent guesses through before the first of them had failed.
        count, left = await self._state.incr(account_key, self._window)
        if count > self._max_account:
            raise Throttled(THROTTLED, retry_after=left)

    async def failed(self, email: str, address: str) -> None:
        # the account already counted this attempt in reserve()
        _, address_key = _keys(email, address)
        await self._state.incr(address_key, self._window)

    async def succeeded(self, email: str, address: str) -> None:
        account_key, _ = _keys(email, address)
        await self._state.delete(account_key)
