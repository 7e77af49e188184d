"""Signing keys: JWKS contents, development keys, production refusal, rotation, EdDSA and HS256 modes."""

from __future__ import annotations

import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from pydantic import ValidationError

from sensorcloud.app import Target, build_runtime, create_app
from sensorcloud.core.errors import ConfigurationError
from sensorcloud.core.keys import load_private_key, load_public_keys, thumbprint
from sensorcloud.core.settings import Settings
from tests.conftest import AppFactory, bearer, login, register
from tests.core.conftest import (
    assert_refused,
    b64url_decode,
    claims,
    forge,
    hmac_token,
    rfc7638,
    split,
    write_private_pem,
)

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


def public_pem(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


async def jwks_of(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    response = await client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    keys: list[dict[str, Any]] = response.json()["keys"]
    return keys


async def me_status(client: httpx.AsyncClient, token: str) -> int:
    return (await client.get("/auth/me", headers=bearer(token))).status_code


def test_thumbprint_matches_the_rfc7638_example() -> None:
    # RFC 7638, section 3.1.
    jwk = {
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECP"
        "ebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMi"
        "cAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPk"
        "sINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


async def test_jwks_has_one_public_rsa_key_named_by_its_thumbprint(
    client: httpx.AsyncClient, signing_key: rsa.RSAPrivateKey
) -> None:
    (jwk,) = await jwks_of(client)
    assert jwk["kty"] == "RSA"
    assert jwk["alg"] == "RS256"
    assert jwk["use"] == "sig"
    assert not PRIVATE_MEMBERS & set(jwk), jwk
    numbers = signing_key.public_key().public_numbers()
    assert int.from_bytes(b64url_decode(jwk["n"]), "big") == numbers.n
    assert int.from_bytes(b64url_decode(jwk["e"]), "big") == numbers.e
    assert jwk["kid"] == rfc7638(signing_key.public_key())
    await register(client)
    token = (await login(client))["auth_token"]
    assert split(token)[0] == {"alg": "RS256", "typ": "JWT", "kid": jwk["kid"]}


async def test_development_key_is_generated_private_and_reused(
    app_factory: AppFactory, tmp_path: Path
) -> None:
    async with app_factory(jwt_private_key_file=None) as first:
        (jwk,) = await jwks_of(first)
        await register(first)
        token = (await login(first))["auth_token"]
    path = tmp_path / "data" / "keys" / "jwt-rs256.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(loaded, rsa.RSAPrivateKey)
    assert jwk["kid"] == rfc7638(loaded.public_key())
    pem = path.read_bytes()
    async with app_factory(jwt_private_key_file=None) as second:
        assert [k["kid"] for k in await jwks_of(second)] == [jwk["kid"]]
        assert await me_status(second, token) == 200  # a token from before the restart still works
    assert path.read_bytes() == pem
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind


def test_concurrent_starts_share_one_development_key(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    with ThreadPoolExecutor(4) as pool:
        keys = list(pool.map(lambda _: load_private_key(settings), range(4)))
    assert len({rfc7638(k.public_key()) for k in keys}) == 1


async def test_production_refuses_to_start_without_a_configured_key(
    tmp_path: Path, signing_key_file: Path
) -> None:
    production = Settings(env="production", data_dir=tmp_path / "data")
    with pytest.raises(ConfigurationError, match="SENSORCLOUD_JWT_PRIVATE_KEY_FILE"):
        build_runtime(production, Target.ALL)
    with pytest.raises(ConfigurationError, match="SENSORCLOUD_JWT_PRIVATE_KEY_FILE"):
        create_app(production, Target.AUTH)
    assert not (tmp_path / "data" / "keys").exists()  # no development key was made either
    configured = production.model_copy(update={"jwt_private_key_file": signing_key_file})
    runtime = build_runtime(configured, Target.ALL)
    await runtime.engine.dispose()
    assert [k.kid for k in runtime.published_keys] == [thumbprint_of(signing_key_file)]


def thumbprint_of(private_pem: Path) -> str:
    key = serialization.load_pem_private_key(private_pem.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return rfc7638(key.public_key())


def test_unusable_key_files_are_configuration_errors(tmp_path: Path, signing_key_file: Path) -> None:
    weak = rsa.generate_private_key(65537, 1024)  # noqa: S505 - the point: it must be refused
    small = write_private_pem(tmp_path / "small.pem", weak)
    with pytest.raises(ConfigurationError, match="2048"):
        load_private_key(Settings(data_dir=tmp_path, jwt_private_key_file=small))
    with pytest.raises(ConfigurationError, match="does not match"):
        load_private_key(
            Settings(data_dir=tmp_path, jwt_algorithm="EdDSA", jwt_private_key_file=signing_key_file)
        )
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_private_key(Settings(data_dir=tmp_path, jwt_private_key_file=garbage))
    mixed = tmp_path / "mixed.pem"
    mixed.write_bytes(
        public_pem(rsa.generate_private_key(65537, 2048)) + public_pem(ed25519.Ed25519PrivateKey.generate())
    )
    with pytest.raises(ConfigurationError, match="does not match"):
        load_public_keys(mixed, "RS256")
    # A rotation file that yields no key would silently drop the old key: refuse it.
    pkcs1 = tmp_path / "pkcs1.pem"
    pkcs1.write_bytes(
        rsa.generate_private_key(65537, 2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
    )
    with pytest.raises(ConfigurationError, match="no -----BEGIN PUBLIC KEY"):
        load_public_keys(pkcs1, "RS256")


async def test_rotation_keeps_the_old_key_valid(
    app_factory: AppFactory,
    tmp_path: Path,
    signing_key: rsa.RSAPrivateKey,
    other_rsa_key: rsa.RSAPrivateKey,
) -> None:
    old_keys = tmp_path / "old-keys.pem"
    old_keys.write_text("# rotated out on 2024-01-01\n" + public_pem(other_rsa_key).decode())
    async with app_factory(jwt_public_keys_file=old_keys) as client:
        current_kid, old_kid = rfc7638(signing_key.public_key()), rfc7638(other_rsa_key.public_key())
        assert [k["kid"] for k in await jwks_of(client)] == [current_kid, old_kid]
        user = await register(client)
        issued = (await login(client))["auth_token"]
        assert split(issued)[0]["kid"] == current_kid  # new tokens use the new key
        settings = Settings(data_dir=tmp_path)
        old_token = forge(
            {"alg": "RS256", "typ": "JWT", "kid": old_kid}, claims(settings, user["id"]), other_rsa_key
        )
        assert await me_status(client, old_token) == 200
        mislabelled = forge(
            {"alg": "RS256", "typ": "JWT", "kid": current_kid}, claims(settings, user["id"]), other_rsa_key
        )
        await assert_refused(client, {"old key, current kid": mislabelled})


async def test_eddsa_mode(app_factory: AppFactory, tmp_path: Path, signing_key: rsa.RSAPrivateKey) -> None:
    async with app_factory(jwt_algorithm="EdDSA", jwt_private_key_file=None) as client:
        (jwk,) = await jwks_of(client)
        path = tmp_path / "data" / "keys" / "jwt-eddsa.pem"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        assert isinstance(key, ed25519.Ed25519PrivateKey)
        assert {k: jwk[k] for k in ("kty", "crv", "alg", "use")} == {
            "kty": "OKP",
            "crv": "Ed25519",
            "alg": "EdDSA",
            "use": "sig",
        }
        assert jwk["kid"] == rfc7638(key.public_key())
        assert "d" not in jwk
        user = await register(client)
        token = (await login(client))["auth_token"]
        assert split(token)[0] == {"alg": "EdDSA", "typ": "JWT", "kid": jwk["kid"]}
        assert await me_status(client, token) == 200
        settings = Settings(data_dir=tmp_path)
        rs256 = claims(settings, user["id"])
        hs256 = hmac_token("HS256", b64url_decode(jwk["x"]), {"typ": "JWT", "kid": jwk["kid"]}, rs256)
        await assert_refused(
            client,
            {
                "RS256 with the EdDSA kid": forge(
                    {"alg": "RS256", "typ": "JWT", "kid": jwk["kid"]}, rs256, signing_key
                ),
                "RS256 with its own kid": forge(
                    {"alg": "RS256", "typ": "JWT", "kid": rfc7638(signing_key.public_key())},
                    rs256,
                    signing_key,
                ),
                "HS256 with the Ed25519 public key": hs256,
            },
        )


async def test_hs256_opt_in(app_factory: AppFactory, tmp_path: Path, signing_key: rsa.RSAPrivateKey) -> None:
    secret = "a shared secret of at least 32 bytes!"
    async with app_factory(jwt_algorithm="HS256", jwt_secret=secret) as client:
        assert (await client.get("/.well-known/jwks.json")).json() == {"keys": []}
        user = await register(client)
        token = (await login(client))["auth_token"]
        header = split(token)[0]
        assert header["alg"] == "HS256"
        assert await me_status(client, token) == 200
        payload = claims(Settings(data_dir=tmp_path), user["id"])

        def hs256(key: bytes) -> str:
            return hmac_token("HS256", key, header, payload)

        assert await me_status(client, hs256(secret.encode())) == 200  # positive control
        await assert_refused(
            client,
            {
                "RS256 with the HS256 kid": forge({**header, "alg": "RS256"}, payload, signing_key),
                "RS256 with its own kid": forge(
                    {"alg": "RS256", "typ": "JWT", "kid": rfc7638(signing_key.public_key())},
                    payload,
                    signing_key,
                ),
                "HS256 with another secret": hs256(b"another secret of at least 32 bytes"),
                "HS256 with a truncated secret": hs256(secret.encode()[:-1]),
            },
        )


def test_hs256_needs_a_secret_of_32_bytes(tmp_path: Path) -> None:
    for secret in (None, "", "x" * 31):
        with pytest.raises(ValidationError, match="32\\+ bytes"):
            Settings(data_dir=tmp_path, jwt_algorithm="HS256", jwt_secret=secret)
    assert Settings(data_dir=tmp_path, jwt_algorithm="HS256", jwt_secret="x" * 32).jwt_secret is not None
    # Bytes, not characters: 16 two-byte characters are enough.
    assert Settings(data_dir=tmp_path, jwt_algorithm="HS256", jwt_secret="\u00e9" * 16).jwt_secret is not None
