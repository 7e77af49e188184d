"""Signing keys: load or create them, compute their kid (RFC 7638 thumbprint), publish them as JWKS."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from jwt.algorithms import OKPAlgorithm, RSAAlgorithm

from sensorcloud.core.errors import ConfigurationError
from sensorcloud.core.settings import Settings

PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
PublicKey = rsa.RSAPublicKey | ed25519.Ed25519PublicKey
HS256_KID = "shared-secret"


@dataclass(frozen=True)
class VerificationKey:
    kid: str
    key: Any  # a cryptography public key, or the HS256 secret bytes


def public_jwk(public: PublicKey) -> dict[str, Any]:
    """The public key as a JWK dict (without kid)."""
    if isinstance(public, rsa.RSAPublicKey):
        jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(public))
    else:
        jwk = json.loads(OKPAlgorithm.to_jwk(public))
    return jwk


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 JWK thumbprint, used as the kid."""
    members = ("e", "kty", "n") if jwk["kty"] == "RSA" else ("crv", "kty", "x")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _generate(algorithm: str) -> PrivateKey:
    if algorithm == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _write_private(path: Path, key: PrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written aside, then linked into place: several processes starting at once never read a
    # half-written file, and the first one to publish wins (the others load its key).
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink()


def _check_type(key: Any, algorithm: str, source: Path) -> None:
    wanted = ed25519.Ed25519PrivateKey if algorithm == "EdDSA" else rsa.RSAPrivateKey
    wanted_pub = ed25519.Ed25519PublicKey if algorithm == "EdDSA" else rsa.RSAPublicKey
    if not isinstance(key, wanted | wanted_pub):
        raise ConfigurationError(f"{source}: key type does not match SENSORCLOUD_JWT_ALGORITHM={algorithm}")
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey) and key.key_size < 2048:
        raise ConfigurationError(f"{source}: RSA keys must have at least 2048 bits")


def load_private_key(settings: Settings) -> PrivateKey:
    """The configured signing key; in development one is generated once into the data dir."""
    path = settings.jwt_private_key_file
    if path is None:
        if settings.is_production:
            raise ConfigurationError(
                "production mode needs SENSORCLOUD_JWT_PRIVATE_KEY_FILE (a PEM private key); "
                "refusing to start with a generated development key"
            )
        path = settings.data_dir / "keys" / f"jwt-{settings.jwt_algorithm.lower()}.pem"
        if not path.exists():
            _write_private(path, _generate(settings.jwt_algorithm))
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigurationError(f"cannot read the signing key {path}: {exc}") from exc
    _check_type(key, settings.jwt_algorithm, path)
    assert isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey)
    return key


def load_public_keys(path: Path, algorithm: str) -> list[PublicKey]:
    """Extra public keys (PEM blocks in one file): earlier keys still valid during a rotation."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigurationError(f"cannot read public keys {path}: {exc}") from exc
    keys: list[PublicKey] = []
    for block in text.split("-----END PUBLIC KEY-----"):
        if "-----BEGIN PUBLIC KEY-----" not in block:
            continue
        pem = (block.strip() + "\n-----END PUBLIC KEY-----\n").encode()
        try:
            key = serialization.load_pem_public_key(pem)
        except ValueError as exc:
            raise ConfigurationError(f"{path}: not a PEM public key: {exc}") from exc
        _check_type(key, algorithm, path)
        assert isinstance(key, rsa.RSAPublicKey | ed25519.Ed25519PublicKey)
        keys.append(key)
    if not keys:
        # A configured rotation file that yields nothing (empty, or PKCS#1 "RSA PUBLIC KEY"
        # blocks) would silently reject every token of the key being rotated out.
        raise ConfigurationError(f"{path}: no -----BEGIN PUBLIC KEY----- block found")
    return keys


def verification_key(public: PublicKey) -> VerificationKey:
    return VerificationKey(kid=thumbprint(public_jwk(public)), key=public)


def jwks_document(keys: list[VerificationKey], algorithm: str) -> dict[str, Any]:
    """The JWKS served at /.well-known/jwks.json (empty for HS256: a shared secret is never published)."""
    if algorithm == "HS256":
        return {"keys": []}
    out = []
    for vk in keys:
        jwk = public_jwk(vk.key)
        jwk.update({"kid": vk.kid, "use": "sig", "alg": algorithm})
        out.append(jwk)
    return {"keys": out}


def keys_from_jwks(document: Any, algorithm: str) -> list[VerificationKey]:
    """Parse a JWKS, keeping only keys of the one pinned algorithm's type."""
    want_kty = "OKP" if algorithm == "EdDSA" else "RSA"
    parsed: list[VerificationKey] = []
    entries = document.get("keys", []) if isinstance(document, dict) else []
    for jwk in entries:
        if not isinstance(jwk, dict) or jwk.get("kty") != want_kty or not isinstance(jwk.get("kid"), str):
            continue
        if jwk.get("alg", algorithm) != algorithm or jwk.get("use", "sig") != "sig":
            continue
        try:
            key = (RSAAlgorithm if want_kty == "RSA" else OKPAlgorithm).from_jwk(jwk)
        except (ValueError, KeyError, TypeError):
            continue
        if hasattr(key, "public_key") and not isinstance(key, rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
            continue  # a JWKS must never hand us a private key
        parsed.append(VerificationKey(kid=jwk["kid"], key=key))
    return parsed
