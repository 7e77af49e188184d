"""Login throttling per account and per client address, shared between replicas through Redis."""

from __future__ import annotations

import hashlib

from sensorcloud.core.errors import Throttled
from sensorcloud.core.settings import Settings
from sensorcloud.core.shared_state import SharedState


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

    async def check(self, email: str, address: str) -> None:
        """Raise Throttled while the account or the address has used up its failures."""
        account_key, address_key = _keys(email, address)
        for key, limit in ((account_key, self._max_account), (address_key, self._max_address)):
            count, left = await self._state.count(key)
            if count >= limit:
                raise Throttled("Too many failed login attempts. Try again later.", retry_after=left)

    async def failed(self, email: str, address: str) -> None:
        account_key, address_key = _keys(email, address)
        await self._state.incr(account_key, self._window)
        await self._state.incr(address_key, self._window)

    async def succeeded(self, email: str, address: str) -> None:
        account_key, _ = _keys(email, address)
        await self._state.delete(account_key)
