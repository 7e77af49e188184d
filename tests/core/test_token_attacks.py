"""Forged, tampered and malformed access tokens against a real app: each one gets 401 {"msg"}, never 5xx."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from sensorcloud.core.tokens import LEEWAY_SECONDS, REQUIRED_CLAIMS
from tests.conftest import bearer, login
from tests.core.conftest import (
    Victim,
    assert_refused,
    b64url,
    b64url_decode,
    forge,
    hmac_token,
    refusal_problems,
    rfc7638,
    segment,
    self_signed_x5c,
    split,
)


async def test_positive_control_hand_made_token_is_accepted(
    client: httpx.AsyncClient, victim: Victim, signing_key: rsa.RSAPrivateKey
) -> None:
    # Without this, a verifier refusing everything would pass every test below.
    me = await client.get("/auth/me", headers=bearer(victim.token))
    assert me.status_code == 200, me.text
    assert me.json()["id"] == victim.user_id
    forged = forge(victim.header(), victim.admin(), signing_key)
    assert (await client.get("/auth/me", headers=bearer(forged))).json()["id"] == victim.user_id
    assert (await client.get("/users", headers=bearer(forged))).status_code == 200
    assert (await client.get("/users", headers=bearer(victim.token))).status_code == 403


async def test_missing_authorization_header(client: httpx.AsyncClient) -> None:
    for path in ("/auth/me", "/users"):
        response = await client.get(path)
        assert response.status_code == 401
        assert response.json() == {"msg": "Missing Authorization Header"}
        assert response.headers["www-authenticate"] == "Bearer"


async def test_malformed_authorization_headers(client: httpx.AsyncClient, victim: Victim) -> None:
    nested = b64url(b"[" * 1500 + b"]" * 1500)  # a header JSON too deep to parse
    values: list[str | bytes] = [
        "Bearer",
        "Bearer ",
        "Basic x",
        "Basic dXNlcjpwYXNz",
        "garbage",
        victim.token,
        f"Token {victim.token}",
        f"Bearer {victim.token} extra",
        "Bearer garbage",
        "Bearer ..",
        "Bearer a.b",
        "Bearer a.b.c.d",
        "Bearer !!!.@@@.###",
        "Bearer e30.e30.",
        "Bearer W10.e30.e30",
        f"Bearer {nested}..",
        b"Bearer \xc3\xa9\xff.e30.e30",
    ]
    problems: list[str] = []
    for value in values:
        problems += await refusal_problems(client, {"Authorization": value}, repr(value)[:60])
    assert not problems, "\n".join(problems)


async def test_alg_none_in_every_spelling(client: httpx.AsyncClient, victim: Victim) -> None:
    real_signature = victim.token.rsplit(".", 1)[1]
    tokens = {}
    for alg in ("none", "None", "NONE", "nOnE"):
        for signature in ("", "AAAA", real_signature):
            for header in (victim.header(alg=alg), {"alg": alg, "typ": "JWT"}):
                label = f"alg={alg} sig={signature[:4]!r} kid={'kid' in header}"
                tokens[label] = f"{segment(header)}.{segment(victim.admin())}.{signature}"
    tokens["no alg"] = f"{segment({'typ': 'JWT', 'kid': victim.kid})}.{segment(victim.admin())}."
    tokens["alg null"] = f"{segment(victim.header(alg=None))}.{segment(victim.admin())}."
    await assert_refused(client, tokens)


async def test_hs256_signed_with_the_public_key_in_every_form(
    client: httpx.AsyncClient, victim: Victim, signing_key: rsa.RSAPrivateKey
) -> None:
    n = int.from_bytes(b64url_decode(victim.jwk["n"]), "big")
    e = int.from_bytes(b64url_decode(victim.jwk["e"]), "big")
    public = rsa.RSAPublicNumbers(e, n).public_key()
    assert public.public_numbers() == signing_key.public_key().public_numbers()
    enc, fmt = serialization.Encoding, serialization.PublicFormat
    spki_pem = public.public_bytes(enc.PEM, fmt.SubjectPublicKeyInfo)
    forms = {
        "PEM SubjectPublicKeyInfo": spki_pem,
        "PEM without final newline": spki_pem.strip(),
        "PKCS1 PEM": public.public_bytes(enc.PEM, fmt.PKCS1),
        "DER SubjectPublicKeyInfo": public.public_bytes(enc.DER, fmt.SubjectPublicKeyInfo),
        "DER PKCS1": public.public_bytes(enc.DER, fmt.PKCS1),
        "OpenSSH": public.public_bytes(enc.OpenSSH, fmt.OpenSSH),
        "JWK JSON": json.dumps(victim.jwk).encode(),
        "JWK JSON compact": json.dumps(victim.jwk, separators=(",", ":")).encode(),
        "JWKS document": victim.jwks_text.encode(),
        "n (base64url)": victim.jwk["n"].encode(),
        "n (bytes)": b64url_decode(victim.jwk["n"]),
    }
    tokens = {
        f"HS256 {name}": hmac_token("HS256", s, victim.header(), victim.admin()) for name, s in forms.items()
    }
    for alg in ("HS384", "HS512"):
        tokens[f"{alg} PEM"] = hmac_token(alg, spki_pem, victim.header(), victim.admin())
    await assert_refused(client, tokens)


async def test_other_algorithms_are_refused_even_with_the_real_key(
    client: httpx.AsyncClient, victim: Victim, signing_key: rsa.RSAPrivateKey
) -> None:
    headers = {"kid": victim.kid}
    payload = victim.admin()
    tokens = {
        "HS384 random secret": hmac_token("HS384", b"s" * 48, victim.header(), payload),
        "HS512 random secret": hmac_token("HS512", b"s" * 64, victim.header(), payload),
        "RS384 real key": jwt.encode(payload, signing_key, algorithm="RS384", headers=headers),
        "RS512 real key": jwt.encode(payload, signing_key, algorithm="RS512", headers=headers),
        "PS256 real key": jwt.encode(payload, signing_key, algorithm="PS256", headers=headers),
        "ES256": jwt.encode(payload, ec.generate_private_key(ec.SECP256R1()), "ES256", headers=headers),
        "EdDSA": jwt.encode(payload, ed25519.Ed25519PrivateKey.generate(), "EdDSA", headers=headers),
    }
    await assert_refused(client, tokens)


async def test_tokens_signed_by_another_key(
    client: httpx.AsyncClient, victim: Victim, other_rsa_key: rsa.RSAPrivateKey
) -> None:
    own_kid = rfc7638(other_rsa_key.public_key())
    tokens = {
        "same kid as the server": forge(victim.header(), victim.admin(), other_rsa_key),
        "its own kid": forge(victim.header(kid=own_kid), victim.admin(), other_rsa_key),
        "no kid": forge({"alg": "RS256", "typ": "JWT"}, victim.admin(), other_rsa_key),
    }
    await assert_refused(client, tokens)


async def test_tampered_signature_and_payload(client: httpx.AsyncClient, victim: Victim) -> None:
    header_seg, payload_seg, signature = victim.token.split(".")
    _, payload, _ = split(victim.token)

    def flipped(data: bytes, index: int) -> bytes:
        out = bytearray(data)
        out[index] ^= 0x01
        return bytes(out)

    raw_sig = b64url_decode(signature)
    raw_payload = b64url_decode(payload_seg)
    jti_at = raw_payload.index(b'"jti":"') + len(b'"jti":"')  # a hex digit: the JSON stays valid
    second = (await login(client, "victim"))["auth_token"]
    tokens = {
        "signature first byte flipped": f"{header_seg}.{payload_seg}.{b64url(flipped(raw_sig, 0))}",
        "signature last byte flipped": f"{header_seg}.{payload_seg}.{b64url(flipped(raw_sig, -1))}",
        "signature truncated": f"{header_seg}.{payload_seg}.{b64url(raw_sig[:-1])}",
        "signature empty": f"{header_seg}.{payload_seg}.",
        "signature of another token": f"{header_seg}.{payload_seg}.{second.rsplit('.', 1)[1]}",
        "payload byte flipped": f"{header_seg}.{b64url(flipped(raw_payload, jti_at))}.{signature}",
        "role=admin": f"{header_seg}.{segment({**payload, 'role': 'admin'})}.{signature}",
        "exp + 1 day": f"{header_seg}.{segment({**payload, 'exp': payload['exp'] + 86400})}.{signature}",
        "sub of user 2": f"{header_seg}.{segment({**payload, 'sub': '2'})}.{signature}",
    }
    await assert_refused(client, tokens)


async def test_wrong_audience_and_issuer(
    client: httpx.AsyncClient, victim: Victim, signing_key: rsa.RSAPrivateKey
) -> None:
    aud, iss = victim.settings.jwt_audience, victim.settings.jwt_issuer
    bad: dict[str, dict[str, Any]] = {
        "aud other": {"aud": "other-api"},
        "aud list with extra": {"aud": [aud, "other-api"]},
        "aud list other": {"aud": ["other-api"]},
        "aud prefix": {"aud": aud[:-1]},
        "aud empty": {"aud": ""},
        "iss other": {"iss": "someone-else"},
        "iss prefix": {"iss": "sensorclou"},
        "iss suffix": {"iss": "sensorcloud2"},
        "iss superstring": {"iss": "xsensorcloudx"},
        "iss list": {"iss": [iss]},
        "iss case": {"iss": iss.upper()},
        "iss trailing space": {"iss": iss + " "},
    }
    tokens = {label: forge(victim.header(), victim.admin(**o), signing_key) for label, o in bad.items()}
    await assert_refused(client, tokens)


async def test_time_claims(client: httpx.AsyncClient, victim: Victim, signing_key: rsa.RSAPrivateKey) -> None:
    now = int(time.time())
    bad: dict[str, dict[str, Any]] = {
        "expired a minute ago": {"iat": now - 900, "nbf": now - 900, "exp": now - 60},
        "expired just beyond leeway": {"iat": now - 900, "nbf": now - 900, "exp": now - LEEWAY_SECONDS - 2},
        "nbf in an hour": {"nbf": now + 3600},
        "iat in an hour": {"iat": now + 3600},
        "exp as a string": {"exp": str(now + 600)},
        "exp as a list": {"exp": [now + 600]},
        "exp infinite": {"exp": float("inf")},
        "exp true": {"exp": True},
        "nbf as an object": {"nbf": {}},
        "iat as text": {"iat": "yesterday"},
    }
    tokens = {label: forge(victim.header(), victim.admin(**o), signing_key) for label, o in bad.items()}
    await assert_refused(client, tokens)


async def test_each_required_claim_missing_or_null(
    client: httpx.AsyncClient, victim: Victim, signing_key: rsa.RSAPrivateKey
) -> None:
    tokens = {}
    for name in REQUIRED_CLAIMS:
        without = {k: v for k, v in victim.admin().items() if k != name}
        tokens[f"no {name}"] = forge(victim.header(), without, signing_key)
        tokens[f"{name} null"] = forge(victim.header(), victim.admin(**{name: None}), signing_key)
    await assert_refused(client, tokens)


async def test_claim_values(
    client: httpx.AsyncClient, victim: Victim, signing_key: rsa.RSAPrivateKey
) -> None:
    # Other scripts' digits pass str.isdigit(); int() reads them as the victim's id.
    arabic_indic = "".join(chr(0x660 + int(d)) for d in str(victim.user_id))
    bad: dict[str, dict[str, Any]] = {
        "typ refresh": {"typ": "refresh"},
        "typ Access": {"typ": "Access"},
        "role superuser": {"role": "superuser"},
        "role Admin": {"role": "Admin"},
        "role list": {"role": ["admin"]},
        "sub text": {"sub": "victim"},
        "sub decimal": {"sub": f"{victim.user_id}.0"},
        "sub negative": {"sub": f"-{victim.user_id}"},
        "sub padded": {"sub": f" {victim.user_id}"},
        "sub plus": {"sub": f"+{victim.user_id}"},
        "sub integer": {"sub": victim.user_id},
        "sub superscript": {"sub": "\u00b2"},
        "sub arabic-indic": {"sub": arabic_indic},
        "sub too long": {"sub": "9" * 30},
        "sub empty": {"sub": ""},
        "sid empty": {"sid": ""},
        "sid integer": {"sid": 5},
        "jti empty": {"jti": ""},
        "jti integer": {"jti": 5},
    }
    tokens = {label: forge(victim.header(), victim.admin(**o), signing_key) for label, o in bad.items()}
    tokens["payload a list"] = forge(victim.header(), [victim.admin()], signing_key)
    tokens["payload a string"] = forge(victim.header(), "admin", signing_key)
    await assert_refused(client, tokens)


async def test_header_parameters_naming_other_keys(
    client: httpx.AsyncClient,
    victim: Victim,
    signing_key: rsa.RSAPrivateKey,
    other_rsa_key: rsa.RSAPrivateKey,
) -> None:
    attacker_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(other_rsa_key.public_key()))
    attacker_kid = rfc7638(other_rsa_key.public_key())
    extra: dict[str, dict[str, Any]] = {
        "jku": {"jku": "https://attacker.test/jwks.json"},
        "x5u": {"x5u": "https://attacker.test/cert.pem"},
        "jwk": {"jwk": attacker_jwk},
        "x5c": {"x5c": self_signed_x5c(other_rsa_key)},
    }
    tokens = {}
    for name, params in extra.items():
        for kid in (victim.kid, attacker_kid):
            label = f"{name} kid={'server' if kid == victim.kid else 'attacker'}"
            tokens[label] = forge(victim.header(kid=kid, **params), victim.admin(), other_rsa_key)
    # Signed by the real key: only the unknown critical extension is wrong.
    crit = victim.header(crit=["urn:example:unknown"], **{"urn:example:unknown": True})
    tokens["unknown crit"] = forge(crit, victim.admin(), signing_key)
    await assert_refused(client, tokens)


async def test_hostile_kid_values(
    client: httpx.AsyncClient, victim: Victim, signing_key: rsa.RSAPrivateKey
) -> None:
    # Signed with the real key: the kid alone must be why these fail.
    kids: list[Any] = ["../../etc/passwd", "' OR 1=1 --", "k" * 10240, None, 123, "", [victim.kid]]
    kids += [victim.kid + "\u0000", {"kid": victim.kid}]
    tokens = {f"kid={kid!r:.40}": forge(victim.header(kid=kid), victim.admin(), signing_key) for kid in kids}
    await assert_refused(client, tokens)


async def test_oversized_tokens(
    client: httpx.AsyncClient, victim: Victim, signing_key: rsa.RSAPrivateKey
) -> None:
    huge = await client.get("/auth/me", headers={"Authorization": "Bearer " + "A" * 1_048_576})
    assert huge.status_code in (400, 401, 431), huge.text[:200]
    if huge.status_code == 401:
        assert set(huge.json()) == {"msg"}
    # Correctly signed, but larger than any token the server issues.
    padded = forge(victim.header(), victim.admin(jti="j" * 5000), signing_key)
    await assert_refused(client, {"5 KB signed token": padded})
    response = await client.get("/auth/me", headers=bearer(padded))
    assert response.json() == {"msg": "Token is too large"}
