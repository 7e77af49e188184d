"""Access tokens: issued by the auth service, verified locally by every service.

Verification pins the one configured algorithm, reads the header only to pick a key
among the keys this process already trusts (never from jku/x5u/jwk), checks the
signature before any claim, requires every claim, and consults the revocation list.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Literal

import jwt

from sensorcloud.core.errors import Unauthorized
from sensorcloud.core.keys import HS256_KID, PrivateKey, VerificationKey
from sensorcloud.core.settings import Settings
from sensorcloud.core.shared_state import SharedState

Role = Literal["user", "admin"]
REQUIRED_CLAIMS = ("iss", "aud", "sub", "role", "iat", "nbf", "exp", "jti", "typ", "sid")
ALLOWED_HEADER = frozenset({"alg", "typ", "kid"})
MAX_TOKEN_LENGTH = 4096
LEEWAY_SECONDS = 5


@dataclass(frozen=True)
class Principal:
    """Who a verified access token speaks for."""

    user_id: int
    role: Role
    session_id: str
    token_id: str
    expires_at: int

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def revoked_session_key(session_id: str) -> str:
    return f"revoked:sid:{session_id}"


class TokenIssuer:
    """Signs access tokens. Only the auth service (or the monolith) holds one."""

    def __init__(self, settings: Settings, private_key: PrivateKey | None, kid: str) -> None:
        self._settings = settings
        self._kid = kid
        self._algorithm = settings.jwt_algorithm
        if self._algorithm == "HS256":
            assert settings.jwt_secret is not None
            self._key: Any = settings.jwt_secret.get_secret_value().encode()
        else:
            self._key = private_key

    def issue(self, user_id: int, role: Role, session_id: str) -> tuple[str, int]:
        """A signed access token and its lifetime in seconds."""
        now = int(time.time())
        ttl = self._settings.access_token_ttl
        claims = {
            "iss": self._settings.jwt_issuer,
            "aud": self._settings.jwt_audience,
            "sub": str(user_id),
            "role": role,
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
            "jti": uuid.uuid4().hex,
            "typ": "access",
            "sid": session_id,
        }
        token = jwt.encode(
            claims, self._key, algorithm=self._algorithm, headers={"kid": self._kid, "typ": "JWT"}
        )
        return token, ttl


class KeyRing:
    """The keys this process trusts, by kid. Filled from local keys or a fetched JWKS."""

    def __init__(self, keys: list[VerificationKey] | None = None) -> None:
        self._keys = {k.kid: k for k in keys or []}

    def replace(self, keys: list[VerificationKey]) -> None:
        self._keys = {k.kid: k for k in keys}

    def get(self, kid: str) -> VerificationKey | None:
        return self._keys.get(kid)

    def all(self) -> list[VerificationKey]:
        return list(self._keys.values())

    def __len__(self) -> int:
        return len(self._keys)


def hs256_ring(settings: Settings) -> KeyRing:
    assert settings.jwt_secret is not None
    return KeyRing([VerificationKey(kid=HS256_KID, key=settings.jwt_secret.get_secret_value().encode())])


_ERRORS: list[tuple[type[Exception], str]] = [
    (jwt.ExpiredSignatureError, "Token has expired"),
    (jwt.ImmatureSignatureError, "Token is not yet valid"),
    (jwt.InvalidAudienceError, "Token audience is invalid"),
    (jwt.InvalidIssuerError, "Token issuer is invalid"),
    (jwt.MissingRequiredClaimError, "Token is missing a required claim"),
    (jwt.InvalidSignatureError, "Signature verification failed"),
]


class TokenVerifier:
    """Checks access tokens with the key ring; caches verified tokens until they expire."""

    def __init__(self, settings: Settings, ring: KeyRing, state: SharedState) -> None:
        self._settings = settings
        self._ring = ring
        self._state = state
        self._algorithm = settings.jwt_algorithm
        self._cache: OrderedDict[str, Principal] = OrderedDict()
        self._cache_size = settings.token_cache_size
        self.on_unknown_kid: Any = None  # async callable that refreshes the ring (remote JWKS)

    async def verify(self, token: str) -> Principal:
        principal = self._cache.get(token)
        if principal is None or principal.expires_at <= time.time():
            principal = await self._verify_uncached(token)
            self._remember(token, principal)
        if await self._state.has_flag(revoked_session_key(principal.session_id)):
            raise Unauthorized("Token has been revoked")
        return principal

    def _remember(self, token: str, principal: Principal) -> None:
        if self._cache_size <= 0:
            return
        self._cache[token] = principal
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    async def _verify_uncached(self, token: str) -> Principal:
        if len(token) > MAX_TOKEN_LENGTH:
            raise Unauthorized("Token is too large")
        key = await self._key_for(token)
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[self._algorithm],
                audience=self._settings.jwt_audience,
                issuer=self._settings.jwt_issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": list(REQUIRED_CLAIMS), "verify_signature": True, "strict_aud": True},
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized(_reason(exc)) from None
        return self._principal(claims)

    async def _key_for(self, token: str) -> VerificationKey:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("Invalid token") from None
        if header.get("alg") != self._algorithm:
            raise Unauthorized("Token algorithm is not allowed")
        if not set(header) <= ALLOWED_HEADER:
            raise Unauthorized("Token header has unsupported parameters")
        if header.get("typ", "JWT") != "JWT":
            raise Unauthorized("Token type is invalid")
        kid = header.get("kid")
        if not isinstance(kid, str) or not 0 < len(kid) <= 128:
            raise Unauthorized("Token has no valid key id")
        key = self._ring.get(kid)
        if key is None and self.on_unknown_kid is not None:
            await self.on_unknown_kid()
            key = self._ring.get(kid)
        if key is None:
            raise Unauthorized("Token was signed by an unknown key")
        return key

    def _principal(self, claims: dict[str, Any]) -> Principal:
        # PyJWT has checked presence, signature, exp, nbf, iat, aud and iss; pin the exact values too.
        if claims.get("iss") != self._settings.jwt_issuer:
            raise Unauthorized("Token issuer is invalid")
        if claims.get("aud") != self._settings.jwt_audience:
            raise Unauthorized("Token audience is invalid")
        if claims.get("typ") != "access":
            raise Unauthorized("Token is not an access token")
        role, sub, sid, jti = claims.get("role"), claims.get("sub"), claims.get("sid"), claims.get("jti")
        if role not in ("user", "admin"):
            raise Unauthorized("Token role is invalid")
        # isascii: isdigit() also accepts "²" (int() raises: a 500) and Arabic-Indic digits (int() reads them)
        if not (isinstance(sub, str) and sub.isascii() and sub.isdigit() and len(sub) < 19):
            raise Unauthorized("Token subject is invalid")
        if not (isinstance(sid, str) and isinstance(jti, str) and sid and jti):
            raise Unauthorized("Token identifiers are invalid")
        exp = claims.get("exp")
        if not isinstance(exp, int):
            raise Unauthorized("Token expiry is invalid")
        return Principal(user_id=int(sub), role=role, session_id=sid, token_id=jti, expires_at=exp)


def _reason(exc: Exception) -> str:
    for cls, reason in _ERRORS:
        if isinstance(exc, cls):
            return reason
    return "Invalid token"


async def revoke_session(state: SharedState, session_id: str, settings: Settings) -> None:
    """Make every access token of this session fail from now on, on every replica sharing `state`."""
    await state.set_flag(revoked_session_key(session_id), settings.access_token_ttl + LEEWAY_SECONDS + 60)
