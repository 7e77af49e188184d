"""Helpers for the token tests: hand-made JWTs (base64url JSON), signed with real keys or not at all."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from cryptography.x509.oid import NameOID

from sensorcloud.core.settings import Settings
from tests.conftest import bearer, login, register

PROTECTED = ("/auth/me", "/users")
# The answer of /auth/me for a token that verified but names no user: it must never be why a
# forged token is refused, or a broken verifier would go unnoticed.
ACCOUNT_GONE = "This account no longer exists or is disabled."


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def segment(value: Any) -> str:
    """One JWT segment: compact JSON, base64url without padding."""
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def rs256_signature(key: rsa.RSAPrivateKey, signing_input: str) -> str:
    return b64url(key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256()))


def forge(header: dict[str, Any], payload: Any, key: rsa.RSAPrivateKey) -> str:
    """A token with exactly this header and payload, RS256-signed by `key`."""
    signing_input = f"{segment(header)}.{segment(payload)}"
    return f"{signing_input}.{rs256_signature(key, signing_input)}"


def split(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    header, payload, signature = token.split(".")
    return json.loads(b64url_decode(header)), json.loads(b64url_decode(payload)), signature


def rfc7638(public: rsa.RSAPublicKey | ed25519.Ed25519PublicKey) -> str:
    """The JWK thumbprint computed here from the key itself, independently of sensorcloud.core.keys."""
    if isinstance(public, rsa.RSAPublicKey):
        numbers = public.public_numbers()
        n = b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big"))
        e = b64url(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big"))
        canonical = f'{{"e":"{e}","kty":"RSA","n":"{n}"}}'
    else:
        x = b64url(public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))
        canonical = f'{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}'
    return b64url(hashlib.sha256(canonical.encode()).digest())


def claims(settings: Settings, user_id: int, **overrides: Any) -> dict[str, Any]:
    """Every claim an access token of `user_id` carries, valid now; overrides replace values."""
    now = int(time.time())
    values: dict[str, Any] = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": str(user_id),
        "role": "user",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
        "typ": "access",
        "sid": uuid.uuid4().hex,
    }
    values.update(overrides)
    return values


async def refusal_problems(
    client: httpx.AsyncClient, headers: dict[str, Any], label: str, paths: tuple[str, ...] = PROTECTED
) -> list[str]:
    """Why these request headers were not refused as they must be: 401 and {"msg": "..."} only."""
    problems = []
    for path in paths:
        response = await client.get(path, headers=headers)
        try:
            body = response.json()
        except ValueError:
            body = None
        well_formed = isinstance(body, dict) and set(body) == {"msg"} and isinstance(body["msg"], str)
        if response.status_code != 401 or not well_formed or not body["msg"] or body["msg"] == ACCOUNT_GONE:
            problems.append(f"{label} {path}: {response.status_code} {response.text[:200]}")
    return problems


async def assert_refused(client: httpx.AsyncClient, tokens: dict[str, str]) -> None:
    """Each token (by label) is answered 401 {"msg": ...} on every protected route."""
    problems: list[str] = []
    for label, token in tokens.items():
        problems += await refusal_problems(client, bearer(token), label)
    assert not problems, "\n".join(problems)


def write_private_pem(path: Path, key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)
    return path


@pytest.fixture(scope="session")
def signing_key(signing_key_file: Path) -> rsa.RSAPrivateKey:
    """The server's own private key (the one the `settings` fixture configures)."""
    key = serialization.load_pem_private_key(signing_key_file.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


@pytest.fixture(scope="session")
def other_rsa_key() -> rsa.RSAPrivateKey:
    """A second RSA key: the attacker's, or the key being rotated out."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass(frozen=True)
class Victim:
    user_id: int
    token: str  # a genuine access token from POST /auth/login
    kid: str
    jwk: dict[str, Any]
    jwks_text: str
    settings: Settings

    def admin(self, **overrides: Any) -> dict[str, Any]:
        """Claims that would open every protected route, were the token accepted."""
        return claims(self.settings, self.user_id, **{"role": "admin", **overrides})

    def header(self, **overrides: Any) -> dict[str, Any]:
        return {"alg": "RS256", "typ": "JWT", "kid": self.kid, **overrides}


@pytest.fixture
async def victim(client: httpx.AsyncClient, settings: Settings, signing_key: rsa.RSAPrivateKey) -> Victim:
    user = await register(client, "victim")
    token = (await login(client, "victim"))["auth_token"]
    jwks = await client.get("/.well-known/jwks.json")
    (jwk,) = jwks.json()["keys"]
    assert jwk["kid"] == rfc7638(signing_key.public_key())
    return Victim(user["id"], token, jwk["kid"], jwk, jwks.text, settings)


def hmac_token(alg: str, secret: bytes, header: dict[str, Any], payload: dict[str, Any]) -> str:
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    signing_input = f"{segment({**header, 'alg': alg})}.{segment(payload)}"
    return f"{signing_input}.{b64url(hmac.new(secret, signing_input.encode(), digest).digest())}"


def self_signed_x5c(key: rsa.RSAPrivateKey) -> list[str]:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sensorcloud")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
