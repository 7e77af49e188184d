"""The seed's register -> login -> users flow, on SQLite and PostgreSQL."""

from __future__ import annotations

import httpx

from tests.conftest import bearer, login, make_admin, register


async def test_register_login_and_list_users_as_admin(client: httpx.AsyncClient) -> None:
    user = await register(client)
    assert set(user) >= {"id", "email", "username", "active"}
    assert "password" not in user
    assert "password_hash" not in user
    tokens = await login(client)
    assert tokens["message"] == "Successfully logged in."
    assert tokens["token_type"] == "bearer"
    admin = await make_admin(client)
    listed = await client.get("/users", headers=bearer(admin["auth_token"]))
    assert listed.status_code == 200
    emails = [u["email"] for u in listed.json()["data"]["users"]]
    assert emails == ["user@test.com", "admin@test.com"]
    assert (await client.get("/users")).json() == {"msg": "Missing Authorization Header"}
    assert (await client.get("/users", headers=bearer(tokens["auth_token"]))).status_code == 403
