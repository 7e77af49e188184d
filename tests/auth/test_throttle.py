"""Login throttling per account and per address, under concurrency, and shared by replicas via Redis."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from tests.auth.conftest import client_from
from tests.conftest import PASSWORD, AppFactory, bearer, login, register
from tests.support.redis import RedisServer

LIMITS = {"login_max_failures_per_account": 3, "login_max_failures_per_address": 5}
WINDOW = 900  # the default login_failure_window
WRONG = "wrong password!"


async def _attempt(client: httpx.AsyncClient, name: str, password: str = WRONG) -> httpx.Response:
    return await client.post("/auth/login", json={"email": f"{name}@test.com", "password": password})


def _assert_throttled(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.json() == {"msg": "Too many failed login attempts. Try again later."}
    retry_after = int(response.headers["retry-after"])
    assert 0 < retry_after <= WINDOW


async def test_account_is_throttled_after_its_failures(app_factory: AppFactory) -> None:
    async with app_factory(**LIMITS) as client:
        await register(client, "alice")
        for _ in range(3):
            assert (await _attempt(client, "alice")).status_code == 401
        # even the right password is refused now: the attacker learns nothing more
        _assert_throttled(await _attempt(client, "alice", PASSWORD))
        _assert_throttled(await _attempt(client, "ALICE", PASSWORD))
        # the same account from another address is throttled too (the limit is per account)
        async with client_from(client, "10.0.0.2") as elsewhere:
            _assert_throttled(await _attempt(elsewhere, "alice", PASSWORD))
            # other accounts are not affected
            await register(elsewhere, "bob")
            assert (await login(elsewhere, "bob"))["auth_token"]
        await register(client, "carol")
        assert (await login(client, "carol"))["auth_token"]


async def test_address_is_throttled_across_accounts(app_factory: AppFactory) -> None:
    async with app_factory(**LIMITS) as client:
        await register(client, "alice")
        for i in range(5):
            assert (await _attempt(client, f"nobody{i}")).status_code == 401
        _assert_throttled(await _attempt(client, "nobody9"))
        # alice has no failure of her own, but her address is spent
        _assert_throttled(await _attempt(client, "alice", PASSWORD))
        async with client_from(client, "10.0.0.3") as elsewhere:
            assert (await login(elsewhere, "alice"))["auth_token"]


async def test_successful_login_resets_the_account_counter(app_factory: AppFactory) -> None:
    async with app_factory(**LIMITS) as client:
        await register(client, "alice")
        for _ in range(2):
            assert (await _attempt(client, "alice")).status_code == 401
        await login(client, "alice")
        # four failures in the window, but never three in a row: no throttling
        for _ in range(2):
            assert (await _attempt(client, "alice")).status_code == 401
        await login(client, "alice")


async def test_concurrent_guesses_do_not_exceed_the_limit(app_factory: AppFactory) -> None:
    async with app_factory(login_max_failures_per_account=3, login_max_failures_per_address=100) as client:
        await register(client, "alice")
        guesses = [_attempt(client, "alice", f"guess number {i}") for i in range(12)]
        statuses = sorted(r.status_code for r in await asyncio.gather(*guesses))
        # only three passwords may be tried; the rest must be refused before any check
        assert statuses == [401] * 3 + [429] * 9
        _assert_throttled(await _attempt(client, "alice", PASSWORD))


async def test_disabled_account_with_right_password_is_not_a_failure(app_factory: AppFactory) -> None:
    async with app_factory(**LIMITS) as client:
        await register(client, "alice")
        for _ in range(2):
            assert (await _attempt(client, "alice")).status_code == 401
        assert (await login(client, "alice"))["auth_token"]
        statuses = [(await _attempt(client, "alice", PASSWORD)).status_code for _ in range(5)]
        assert statuses == [200] * 5


@pytest.mark.redis
async def test_replicas_share_throttling_and_revocation_through_redis(
    app_factory: AppFactory, redis_server: RedisServer
) -> None:
    # the Redis server lives for the whole run: unique names and addresses keep tests apart
    unique = uuid.uuid4()
    tag = unique.hex[:10]
    victim, other = f"v{tag}", f"o{tag}"
    host_a, host_b = (f"10.{b}.{unique.bytes[1]}.{unique.bytes[2]}" for b in (1, 2))
    shared = {**LIMITS, "redis_url": redis_server.url}
    async with (
        app_factory(client_host=host_a, **shared) as replica_a,
        app_factory(client_host=host_b, **shared) as replica_b,
    ):
        await register(replica_a, victim)
        await register(replica_a, other)
        session = await login(replica_b, other)
        for _ in range(3):
            assert (await _attempt(replica_a, victim)).status_code == 401
        _assert_throttled(await _attempt(replica_b, victim, PASSWORD))
        assert (await login(replica_b, other))["auth_token"]
        # a logout on one replica ends the session on the other at once
        assert (await replica_b.get("/auth/me", headers=bearer(session["auth_token"]))).status_code == 200
        out = await replica_a.post("/auth/logout", headers=bearer(session["auth_token"]))
        assert out.status_code == 200
        assert (await replica_b.get("/auth/me", headers=bearer(session["auth_token"]))).status_code == 401
