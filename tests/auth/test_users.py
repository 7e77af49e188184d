"""GET /users, GET and PATCH /users/{id}, GET /auth/me: who may read and change which user."""

from __future__ import annotations

import httpx

from tests.auth.conftest import assert_validation_error
from tests.conftest import PASSWORD, bearer, login, make_admin, register

MISSING = {"msg": "Missing Authorization Header"}


async def test_list_users_is_for_admins_only(client: httpx.AsyncClient) -> None:
    alice = await register(client, "alice")
    user = await login(client, "alice")
    admin = await make_admin(client)
    listed = await client.get("/users", headers=bearer(admin["auth_token"]))
    assert listed.status_code == 200
    users = listed.json()["data"]["users"]
    assert [u["username"] for u in users] == ["alice", "admin"]
    assert users[0] == alice
    assert all("password" not in str(u) and "hash" not in str(u) for u in users)
    forbidden = await client.get("/users", headers=bearer(user["auth_token"]))
    assert forbidden.status_code == 403
    assert forbidden.json() == {"msg": "Admin rights required"}


async def test_list_users_without_token_answers_the_original_message(client: httpx.AsyncClient) -> None:
    response = await client.get("/users")
    assert response.status_code == 401
    assert response.json() == MISSING
    assert response.headers["www-authenticate"] == "Bearer"


BAD_HEADERS = [
    "Bearer garbage",
    "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.",
    "Bearer a.b.c",
    "Basic dXNlcjpwYXNz",
    "Bearer",
    "Bearer two tokens",
]


async def test_list_users_with_a_bad_token_is_401(client: httpx.AsyncClient) -> None:
    for header in BAD_HEADERS:
        response = await client.get("/users", headers={"Authorization": header})
        assert response.status_code == 401, header
        assert set(response.json()) == {"msg"}
        assert response.json() != MISSING


async def test_user_reads_self_but_not_others(client: httpx.AsyncClient) -> None:
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    token = (await login(client, "alice"))["auth_token"]
    own = await client.get(f"/users/{alice['id']}", headers=bearer(token))
    assert own.status_code == 200
    assert own.json() == alice
    other = await client.get(f"/users/{bob['id']}", headers=bearer(token))
    assert other.status_code == 403
    assert "bob" not in other.text
    # an id that does not exist says the same as one that does: no enumeration of users
    assert (await client.get("/users/999999", headers=bearer(token))).status_code == 403
    assert (await client.get(f"/users/{alice['id']}")).json() == MISSING


async def test_admin_reads_anyone_and_unknown_is_404(client: httpx.AsyncClient) -> None:
    bob = await register(client, "bob")
    admin = await make_admin(client)
    response = await client.get(f"/users/{bob['id']}", headers=bearer(admin["auth_token"]))
    assert response.status_code == 200
    assert response.json() == bob
    missing = await client.get("/users/999999", headers=bearer(admin["auth_token"]))
    assert missing.status_code == 404
    assert missing.json() == {"msg": "User does not exist."}


async def test_impossible_user_ids_are_422(client: httpx.AsyncClient) -> None:
    admin = await make_admin(client)
    for user_id in ("0", "-1", str(2**40), "abc", "1.5"):
        response = await client.get(f"/users/{user_id}", headers=bearer(admin["auth_token"]))
        assert_validation_error(response, "user_id")
        patched = await client.patch(f"/users/{user_id}", json={}, headers=bearer(admin["auth_token"]))
        assert_validation_error(patched, "user_id")


async def test_admin_deactivation_ends_sessions_and_blocks_login(client: httpx.AsyncClient) -> None:
    alice = await register(client, "alice")
    tokens = await login(client, "alice")
    admin = await make_admin(client)
    assert (await client.get("/auth/me", headers=bearer(tokens["auth_token"]))).status_code == 200
    patched = await client.patch(
        f"/users/{alice['id']}", json={"active": False}, headers=bearer(admin["auth_token"])
    )
    assert patched.status_code == 200, patched.text
    assert patched.json() == {**alice, "active": False}
    assert (await client.get("/auth/me", headers=bearer(tokens["auth_token"]))).status_code == 401
    refreshed = await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 401
    relogin = await client.post("/auth/login", json={"email": "alice@test.com", "password": PASSWORD})
    assert relogin.status_code == 403
    # the admin's own session is untouched
    assert (await client.get("/users", headers=bearer(admin["auth_token"]))).status_code == 200


async def test_admin_role_change_takes_effect_on_next_login(client: httpx.AsyncClient) -> None:
    alice = await register(client, "alice")
    old = await login(client, "alice")
    admin = await make_admin(client)
    patched = await client.patch(
        f"/users/{alice['id']}", json={"role": "admin"}, headers=bearer(admin["auth_token"])
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["role"] == "admin"
    # the old token still says "user": it must not live on with a stale role
    assert (await client.get("/auth/me", headers=bearer(old["auth_token"]))).status_code == 401
    stale = await client.post("/auth/refresh", json={"refresh_token": old["refresh_token"]})
    assert stale.status_code == 401
    new = await login(client, "alice")
    listed = await client.get("/users", headers=bearer(new["auth_token"]))
    assert listed.status_code == 200
    assert (await client.get("/auth/me", headers=bearer(new["auth_token"]))).json()["role"] == "admin"


async def test_patch_without_change_keeps_sessions(client: httpx.AsyncClient) -> None:
    alice = await register(client, "alice")
    tokens = await login(client, "alice")
    admin = await make_admin(client)
    same = await client.patch(
        f"/users/{alice['id']}", json={"active": True, "role": "user"}, headers=bearer(admin["auth_token"])
    )
    assert same.status_code == 200
    assert same.json() == alice
    assert (await client.get("/auth/me", headers=bearer(tokens["auth_token"]))).status_code == 200


async def test_non_admin_cannot_patch(client: httpx.AsyncClient) -> None:
    alice = await register(client, "alice")
    token = (await login(client, "alice"))["auth_token"]
    for body in ({"role": "admin"}, {"active": False}):
        response = await client.patch(f"/users/{alice['id']}", json=body, headers=bearer(token))
        assert response.status_code == 403
        assert response.json() == {"msg": "Admin rights required"}
    assert (await client.get("/auth/me", headers=bearer(token))).json()["role"] == "user"
    assert (await client.patch(f"/users/{alice['id']}", json={"active": False})).json() == MISSING


async def test_patch_rejects_unknown_fields_and_values(client: httpx.AsyncClient) -> None:
    alice = await register(client, "alice")
    admin = await make_admin(client)
    bodies = [{"password": "new one please"}, {"email": "x@test.com"}, {"role": "root"}, {"active": "maybe"}]
    for body in bodies:
        response = await client.patch(f"/users/{alice['id']}", json=body, headers=bearer(admin["auth_token"]))
        assert_validation_error(response, next(iter(body)), secret="new one please")
    unchanged = await client.get(f"/users/{alice['id']}", headers=bearer(admin["auth_token"]))
    assert unchanged.json() == alice


async def test_patch_unknown_user_is_404(client: httpx.AsyncClient) -> None:
    admin = await make_admin(client)
    response = await client.patch(
        "/users/999999", json={"active": False}, headers=bearer(admin["auth_token"])
    )
    assert response.status_code == 404
    assert response.json() == {"msg": "User does not exist."}


async def test_me_answers_the_caller(client: httpx.AsyncClient) -> None:
    alice = await register(client, "alice")
    await register(client, "bob")
    token = (await login(client, "alice"))["auth_token"]
    response = await client.get("/auth/me", headers=bearer(token))
    assert response.status_code == 200
    assert response.json() == alice
    missing = await client.get("/auth/me")
    assert missing.status_code == 401
    assert missing.json() == MISSING
