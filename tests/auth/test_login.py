"""POST /auth/login: the token answer, identical failures for wrong password and unknown email."""

from __future__ import annotations

import httpx
import jwt

from tests.auth.conftest import assert_validation_error
from tests.conftest import PASSWORD, bearer, make_admin, register


async def test_login_answers_tokens_in_the_documented_shape(client: httpx.AsyncClient) -> None:
    user = await register(client, "alice")
    response = await client.post("/auth/login", json={"email": "alice@test.com", "password": PASSWORD})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"message", "auth_token", "refresh_token", "token_type", "expires_in"}
    assert body["message"] == "Successfully logged in."
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 900
    assert body["refresh_token"] != body["auth_token"]
    claims = jwt.decode(body["auth_token"], options={"verify_signature": False})
    assert claims["sub"] == str(user["id"])
    assert claims["role"] == "user"
    assert claims["exp"] - claims["iat"] == 900
    me = await client.get("/auth/me", headers=bearer(body["auth_token"]))
    assert me.status_code == 200
    assert me.json()["id"] == user["id"]


async def test_each_login_is_a_new_session(client: httpx.AsyncClient) -> None:
    await register(client, "alice")
    credentials = {"email": "alice@test.com", "password": PASSWORD}
    first = (await client.post("/auth/login", json=credentials)).json()
    second = (await client.post("/auth/login", json=credentials)).json()
    assert first["refresh_token"] != second["refresh_token"]
    sid = [jwt.decode(t["auth_token"], options={"verify_signature": False})["sid"] for t in (first, second)]
    assert sid[0] != sid[1]


async def test_wrong_password_and_unknown_email_answer_the_same(client: httpx.AsyncClient) -> None:
    await register(client, "alice")
    wrong = await client.post("/auth/login", json={"email": "alice@test.com", "password": PASSWORD + "x"})
    unknown = await client.post("/auth/login", json={"email": "nobody@test.com", "password": PASSWORD})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.content == unknown.content
    assert wrong.json() == {"msg": "Invalid email or password."}
    assert wrong.headers.get("www-authenticate") == unknown.headers.get("www-authenticate")


async def test_disabled_account_is_forbidden(client: httpx.AsyncClient) -> None:
    user = await register(client, "alice")
    admin = await make_admin(client)
    patched = await client.patch(
        f"/users/{user['id']}", json={"active": False}, headers=bearer(admin["auth_token"])
    )
    assert patched.status_code == 200, patched.text
    response = await client.post("/auth/login", json={"email": "alice@test.com", "password": PASSWORD})
    assert response.status_code == 403
    assert response.json() == {"msg": "This account is disabled."}
    # a wrong password still says only "wrong": being disabled is not revealed without the password
    wrong = await client.post("/auth/login", json={"email": "alice@test.com", "password": "not it at all"})
    assert wrong.status_code == 401
    enabled = await client.patch(
        f"/users/{user['id']}", json={"active": True}, headers=bearer(admin["auth_token"])
    )
    assert enabled.status_code == 200
    again = await client.post("/auth/login", json={"email": "alice@test.com", "password": PASSWORD})
    assert again.status_code == 200


async def test_missing_field_is_a_422(client: httpx.AsyncClient) -> None:
    for missing in ("email", "password"):
        body = {"email": "alice@test.com", "password": PASSWORD}
        del body[missing]
        response = await client.post("/auth/login", json=body)
        assert_validation_error(response, missing, secret=PASSWORD)


async def test_empty_and_oversized_passwords_are_422_without_echo(client: httpx.AsyncClient) -> None:
    await register(client, "alice")
    empty = await client.post("/auth/login", json={"email": "alice@test.com", "password": ""})
    assert_validation_error(empty, "password")
    huge = "Zq9!" * (1024 * 256)
    response = await client.post("/auth/login", json={"email": "alice@test.com", "password": huge})
    assert_validation_error(response, "password", secret="Zq9!Zq9!")


async def test_non_string_password_is_a_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/auth/login", json={"email": "alice@test.com", "password": 12345678})
    assert_validation_error(response, "password")
