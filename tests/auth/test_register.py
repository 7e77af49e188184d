"""POST /auth/register: the created user, conflicts, the password policy and what a 422 may show."""

from __future__ import annotations

import asyncio
import unicodedata
from typing import Any

import httpx

from tests.auth.conftest import assert_validation_error
from tests.conftest import PASSWORD, bearer, login, make_admin

USER_KEYS = {"id", "email", "username", "active", "role", "created_at"}


def _body(name: str = "alice", password: str = PASSWORD, **extra: Any) -> dict[str, Any]:
    return {"email": f"{name}@test.com", "username": name, "password": password, **extra}


async def test_register_returns_the_user_without_secrets(client: httpx.AsyncClient) -> None:
    response = await client.post("/auth/register", json=_body())
    assert response.status_code == 201, response.text
    user = response.json()
    assert set(user) == USER_KEYS
    assert user["email"] == "alice@test.com"
    assert user["username"] == "alice"
    assert user["active"] is True
    assert user["role"] == "user"
    assert isinstance(user["id"], int)
    assert user["id"] >= 1
    assert PASSWORD not in response.text
    assert "$argon2" not in response.text


async def test_email_is_stored_lowercase_and_login_ignores_case(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/auth/register", json={"email": "Bob@Test.COM", "username": "Bob", "password": PASSWORD}
    )
    assert response.status_code == 201, response.text
    assert response.json()["email"] == "bob@test.com"
    login_response = await client.post("/auth/login", json={"email": "BOB@test.com", "password": PASSWORD})
    assert login_response.status_code == 200, login_response.text


async def test_duplicate_email_is_a_conflict(client: httpx.AsyncClient) -> None:
    assert (await client.post("/auth/register", json=_body())).status_code == 201
    again = {"email": "ALICE@test.com", "username": "alice2", "password": PASSWORD}
    response = await client.post("/auth/register", json=again)
    assert response.status_code == 409
    assert response.json() == {"msg": "A user with this email already exists."}


async def test_duplicate_username_ignoring_case_is_a_conflict(client: httpx.AsyncClient) -> None:
    assert (await client.post("/auth/register", json=_body())).status_code == 201
    again = {"email": "other@test.com", "username": "ALICE", "password": PASSWORD}
    response = await client.post("/auth/register", json=again)
    assert response.status_code == 409
    assert response.json() == {"msg": "A user with this username already exists."}


async def test_invalid_email_is_rejected(client: httpx.AsyncClient) -> None:
    for email in ("not-an-email", "a@", "@test.com", "a b@test.com", "", "x" * 250 + "@test.com"):
        response = await client.post("/auth/register", json={**_body(), "email": email})
        assert_validation_error(response, "email", secret=PASSWORD)


WEAK = [
    ("Zq9!x", "at least 8 characters"),
    ("qwerty123", "too common"),
    ("QWERTY123", "too common"),
    ("zzzzzzzzzzzz", "too simple"),
    ("abababababab", "too simple"),
    ("x" * 129, "at most 128 characters"),
    ("Zq9!" * 300, "at most"),
    ("nul\x00inside!", "NUL"),
]


async def test_weak_password_is_rejected_without_echo(client: httpx.AsyncClient) -> None:
    for password, reason in WEAK:
        response = await client.post("/auth/register", json=_body(password=password))
        assert_validation_error(response, "password", secret=password)
        assert reason in response.json()["msg"], (reason, response.text)
    # nothing was created along the way
    assert (await client.post("/auth/register", json=_body())).status_code == 201


async def test_password_equal_to_username_or_email_is_rejected(client: httpx.AsyncClient) -> None:
    name = "zebrastripes"
    # the username itself, in another case; the whole email; the email's local part
    for password in ("ZebraStripes", f"{name}@test.com", name):
        response = await client.post("/auth/register", json=_body(name=name, password=password))
        assert_validation_error(response, "password", secret=password)
        assert "must not be your email or username" in response.json()["msg"]


async def test_megabyte_password_is_rejected_quickly(client: httpx.AsyncClient) -> None:
    password = "Zq9!" * (1024 * 256)
    response = await client.post("/auth/register", json=_body(password=password))
    assert_validation_error(response, "password", secret="Zq9!Zq9!")
    assert len(response.content) < 2000


async def test_missing_field_is_named(client: httpx.AsyncClient) -> None:
    for missing in ("email", "username", "password"):
        body = _body()
        del body[missing]
        response = await client.post("/auth/register", json=body)
        assert_validation_error(response, missing, secret=PASSWORD)
        assert f"{missing}: Field required" in response.json()["msg"]
    empty = await client.post("/auth/register", json={})
    assert {e["field"] for e in empty.json()["errors"]} == {"email", "username", "password"}


async def test_non_json_body_is_a_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/auth/register", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert "msg" in response.json()


async def test_bad_username_is_rejected(client: httpx.AsyncClient) -> None:
    for username in ("ab", "has space", "-leading", "x" * 33, "ünï", ""):
        response = await client.post("/auth/register", json={**_body(), "username": username})
        assert_validation_error(response, "username", secret=PASSWORD)


async def test_role_fields_in_the_body_are_ignored(client: httpx.AsyncClient) -> None:
    body = _body(role="admin", is_admin=True, active=False, id=999)
    response = await client.post("/auth/register", json=body)
    assert response.status_code == 201, response.text
    user = response.json()
    assert user["role"] == "user"
    assert user["active"] is True
    assert user["id"] != 999
    tokens = await login(client, "alice")
    # the stored user is a normal user too, not only the answer
    assert (await client.get("/users", headers=bearer(tokens["auth_token"]))).status_code == 403
    admin = await make_admin(client)
    listed = await client.get("/users", headers=bearer(admin["auth_token"]))
    stored = {u["username"]: u for u in listed.json()["data"]["users"]}["alice"]
    assert (stored["role"], stored["active"]) == ("user", True)


async def test_unicode_password_works_for_login(client: httpx.AsyncClient) -> None:
    password = "pässwörd-ünïcödé-日本"
    assert (await client.post("/auth/register", json=_body(password=password))).status_code == 201
    tokens = await login(client, "alice", password)
    assert tokens["auth_token"]
    wrong = await client.post(
        "/auth/login", json={"email": "alice@test.com", "password": "passwörd-ünïcödé-日本"}
    )
    assert wrong.status_code == 401
    # the same characters typed decomposed (a + combining diaeresis, as some keyboards send them)
    decomposed = unicodedata.normalize("NFD", password)
    assert decomposed != password
    assert (await login(client, "alice", decomposed))["auth_token"]


async def test_long_password_is_not_truncated(client: httpx.AsyncClient) -> None:
    password = "".join(chr(ord("a") + i % 26) for i in range(99)) + "Z"
    assert len(password) == 100
    assert (await client.post("/auth/register", json=_body(password=password))).status_code == 201
    assert (await login(client, "alice", password))["auth_token"]
    changed_last = password[:-1] + "Y"
    response = await client.post("/auth/login", json={"email": "alice@test.com", "password": changed_last})
    assert response.status_code == 401


async def test_concurrent_registrations_of_one_name_create_one_user(client: httpx.AsyncClient) -> None:
    bodies = [
        {"email": f"alice{i}@test.com", "username": "Alice" if i % 2 else "alice", "password": PASSWORD}
        for i in range(4)
    ]
    answers = await asyncio.gather(*[client.post("/auth/register", json=b) for b in bodies])
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [201, 409, 409, 409], [r.text for r in answers]
    same_email = [{"email": "bob@test.com", "username": f"bob{i}", "password": PASSWORD} for i in range(3)]
    answers = await asyncio.gather(*[client.post("/auth/register", json=b) for b in same_email])
    assert sorted(r.status_code for r in answers) == [201, 409, 409], [r.text for r in answers]
