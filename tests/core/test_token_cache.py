"""TokenVerifier's cache of verified tokens: hits skip verification, yet revocation and expiry still win."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from sensorcloud.core.errors import Unauthorized
from sensorcloud.core.keys import verification_key
from sensorcloud.core.settings import Settings
from sensorcloud.core.shared_state import MemoryState, RedisState, SharedState
from sensorcloud.core.tokens import LEEWAY_SECONDS, KeyRing, TokenIssuer, TokenVerifier, revoke_session
from tests.core.conftest import claims, forge, segment, split
from tests.support.redis import RedisServer


@dataclass
class Setup:
    settings: Settings
    key: rsa.RSAPrivateKey
    ring: KeyRing
    state: SharedState
    verifier: TokenVerifier
    issuer: TokenIssuer

    def issue(self, user_id: int = 1, session_id: str | None = None) -> str:
        return self.issuer.issue(user_id, "user", session_id or uuid.uuid4().hex)[0]

    def forge(self, **overrides: Any) -> str:
        kid = self.ring.all()[0].kid if len(self.ring) else verification_key(self.key.public_key()).kid
        return forge(
            {"alg": "RS256", "typ": "JWT", "kid": kid}, claims(self.settings, 1, **overrides), self.key
        )

    def forget_keys(self) -> None:
        """Empty the key ring: from now on only a cache hit can verify a token."""
        self.ring.replace([])


def make_setup(
    tmp_path: Path, key: rsa.RSAPrivateKey, state: SharedState | None = None, **overrides: Any
) -> Setup:
    settings = Settings(data_dir=tmp_path, **overrides)
    own = verification_key(key.public_key())
    ring = KeyRing([own])
    state = state or MemoryState()
    verifier = TokenVerifier(settings, ring, state)
    return Setup(settings, key, ring, state, verifier, TokenIssuer(settings, key, own.kid))


@pytest.fixture
def setup(tmp_path: Path, signing_key: rsa.RSAPrivateKey) -> Setup:
    return make_setup(tmp_path, signing_key)


async def refused(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(Unauthorized) as caught:
        await verifier.verify(token)
    return caught.value.message


async def test_a_verified_token_is_served_from_the_cache(setup: Setup) -> None:
    token = setup.issue(user_id=7)
    principal = await setup.verifier.verify(token)
    assert (principal.user_id, principal.role) == (7, "user")
    setup.forget_keys()
    assert await setup.verifier.verify(token) == principal
    assert await refused(setup.verifier, setup.issue()) == "Token was signed by an unknown key"


async def test_the_cache_is_keyed_by_the_whole_token(setup: Setup) -> None:
    token = setup.issue()
    await setup.verifier.verify(token)
    header, _, signature = token.split(".")
    tampered = f"{header}.{segment({**split(token)[1], 'role': 'admin'})}.{signature}"
    assert await refused(setup.verifier, tampered) == "Signature verification failed"


async def test_a_refused_token_is_not_cached(setup: Setup) -> None:
    own = setup.ring.all()
    setup.forget_keys()
    token = setup.issue()
    assert await refused(setup.verifier, token) == "Token was signed by an unknown key"
    setup.ring.replace(own)
    assert (await setup.verifier.verify(token)).user_id == 1


async def test_revocation_applies_to_cached_tokens(setup: Setup) -> None:
    token, other = setup.issue(session_id="s-1"), setup.issue(session_id="s-2")
    await setup.verifier.verify(token)
    await setup.verifier.verify(other)
    await revoke_session(setup.state, "s-1", setup.settings)
    assert await refused(setup.verifier, token) == "Token has been revoked"
    assert (await setup.verifier.verify(other)).session_id == "s-2"


@pytest.fixture
async def redis_state(redis_server: RedisServer) -> AsyncIterator[RedisState]:
    state = RedisState(redis_server.url, prefix=f"test-{uuid.uuid4().hex}:")
    yield state
    await state.close()


@pytest.mark.redis
async def test_revocation_reaches_every_replica_through_redis(
    tmp_path: Path, signing_key: rsa.RSAPrivateKey, redis_state: RedisState
) -> None:
    one = make_setup(tmp_path, signing_key, redis_state)
    two = make_setup(tmp_path, signing_key, redis_state)
    token = one.issue(session_id="replicated")
    assert await one.verifier.verify(token) == await two.verifier.verify(token)  # cached by both
    await revoke_session(one.state, "replicated", one.settings)
    assert await refused(two.verifier, token) == "Token has been revoked"


async def test_the_cache_is_bounded(tmp_path: Path, signing_key: rsa.RSAPrivateKey) -> None:
    setup = make_setup(tmp_path, signing_key, token_cache_size=10)
    tokens = [setup.issue(user_id=i) for i in range(1, 51)]
    for token in tokens:
        await setup.verifier.verify(token)
    setup.forget_keys()
    survivors = []
    for token in tokens:
        with contextlib.suppress(Unauthorized):
            survivors.append((await setup.verifier.verify(token)).user_id)
    assert survivors == list(range(41, 51))  # the ten most recent


async def test_a_zero_size_cache_caches_nothing(tmp_path: Path, signing_key: rsa.RSAPrivateKey) -> None:
    setup = make_setup(tmp_path, signing_key, token_cache_size=0)
    token = setup.issue()
    await setup.verifier.verify(token)
    setup.forget_keys()
    assert await refused(setup.verifier, token) == "Token was signed by an unknown key"


async def sleep_until(moment: float) -> None:
    await asyncio.sleep(max(0.0, moment - time.time()) + 0.05)


async def test_a_cached_token_past_its_expiry_is_verified_again(setup: Setup) -> None:
    now = int(time.time())
    token = setup.forge(iat=now - 10, nbf=now - 10, exp=now + 2)
    principal = await setup.verifier.verify(token)
    setup.forget_keys()
    assert await setup.verifier.verify(token) == principal  # still cached while valid
    await sleep_until(principal.expires_at)
    # PyJWT's leeway would still accept it: only a new verification (with no key left) can refuse it.
    assert await refused(setup.verifier, token) == "Token was signed by an unknown key"


async def test_an_expired_cached_token_fails(setup: Setup) -> None:
    now = int(time.time())
    # Accepted now only thanks to the leeway, and for at most one more second.
    exp = now - LEEWAY_SECONDS + 1
    token = setup.forge(iat=now - 60, nbf=now - 60, exp=exp)
    assert (await setup.verifier.verify(token)).expires_at == exp
    await sleep_until(exp + LEEWAY_SECONDS)
    assert await refused(setup.verifier, token) == "Token has expired"
