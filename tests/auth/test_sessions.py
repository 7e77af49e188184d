"""Sessions: refresh rotation and reuse detection, logout, and password change revoking everything."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import jwt

from tests.auth.conftest import assert_validation_error
from tests.conftest import PASSWORD, bearer, login, register

NEW_PASSWORD = "an entirely new passphrase"


async def _me(client: httpx.AsyncClient, token: str) -> int:
    return (await client.get("/auth/me", headers=bearer(token))).status_code


async def _refresh(client: httpx.AsyncClient, refresh_token: str) -> httpx.Response:
    return await client.post("/auth/refresh", json={"refresh_token": refresh_token})


def _sid(tokens: dict[str, Any]) -> str:
    sid: str = jwt.decode(tokens["auth_token"], options={"verify_signature": False})["sid"]
    return sid


async def test_refresh_rotates_and_keeps_the_session(client: httpx.AsyncClient) -> None:
    await register(client, "alice")
    first = await login(client, "alice")
    response = await _refresh(client, first["refresh_token"])
    assert response.status_code == 200, response.text
    second = response.json()
    assert set(second) == {"message", "auth_token", "refresh_token", "token_type", "expires_in"}
    assert second["token_type"] == "bearer"
    assert second["expires_in"] == 900
    assert second["refresh_token"] != first["refresh_token"]
    assert second["auth_token"] != first["auth_token"]
    assert _sid(second) == _sid(first)
    assert await _me(client, second["auth_token"]) == 200
    # the new refresh token rotates again
    third = await _refresh(client, second["refresh_token"])
    assert third.status_code == 200
    assert await _me(client, third.json()["auth_token"]) == 200


async def test_reusing_a_refresh_token_revokes_the_whole_session(client: httpx.AsyncClient) -> None:
    await register(client, "alice")
    first = await login(client, "alice")
    other = await login(client, "alice")
    second = (await _refresh(client, first["refresh_token"])).json()
    reused = await _refresh(client, first["refresh_token"])
    assert reused.status_code == 401
    assert reused.json() == {"msg": "Refresh token was already used; the session has been revoked."}
    # the thief's and the owner's newest tokens are both dead: the family is revoked
    assert (await _refresh(client, second["refresh_token"])).status_code == 401
    assert await _me(client, second["auth_token"]) == 401
    assert await _me(client, first["auth_token"]) == 401
    # another login of the same user is a different session and lives on
    assert await _me(client, other["auth_token"]) == 200
    assert (await _refresh(client, other["refresh_token"])).status_code == 200


async def test_unknown_or_malformed_refresh_token_is_rejected(client: httpx.AsyncClient) -> None:
    await register(client, "alice")
    tokens = await login(client, "alice")
    unknown = await _refresh(client, "x" * 43)
    assert unknown.status_code == 401
    assert unknown.json() == {"msg": "Invalid refresh token."}
    # an access token is not a refresh token
    assert (await _refresh(client, tokens["auth_token"])).status_code in (401, 422)
    assert_validation_error(await _refresh(client, ""), "refresh_token")
    assert_validation_error(await client.post("/auth/refresh", json={}), "refresh_token")
    # none of this harmed the real session
    assert (await _refresh(client, tokens["refresh_token"])).status_code == 200


async def test_logout_ends_only_this_session(client: httpx.AsyncClient) -> None:
    await register(client, "alice")
    session = await login(client, "alice")
    other = await login(client, "alice")
    response = await client.post(
        "/auth/logout",
        json={"refresh_token": session["refresh_token"]},
        headers=bearer(session["auth_token"]),
    )
    assert response.status_code == 200
    assert response.json() == {"message": "Successfully logged out."}
    assert await _me(client, session["auth_token"]) == 401
    assert (await _refresh(client, session["refresh_token"])).status_code == 401
    assert await _me(client, other["auth_token"]) == 200
    assert (await _refresh(client, other["refresh_token"])).status_code == 200


async def test_logout_without_body_still_kills_the_refresh_token(client: httpx.AsyncClient) -> None:
    await register(client, "alice")
    session = await login(client, "alice")
    response = await client.post("/auth/logout", headers=bearer(session["auth_token"]))
    assert response.status_code == 200, response.text
    assert await _me(client, session["auth_token"]) == 401
    # the session id names the refresh family, so the refresh token dies with the access token
    assert (await _refresh(client, session["refresh_token"])).status_code == 401


async def test_logout_cannot_end_another_users_session(client: httpx.AsyncClient) -> None:
    await register(client, "alice")
    await register(client, "bob")
    alice = await login(client, "alice")
    bob = await login(client, "bob")
    response = await client.post(
        "/auth/logout", json={"refresh_token": bob["refresh_token"]}, headers=bearer(alice["auth_token"])
    )
    assert response.status_code == 200
    assert await _me(client, bob["auth_token"]) == 200
    assert (await _refresh(client, bob["refresh_token"])).status_code == 200


async def test_logout_needs_a_token(client: httpx.AsyncClient) -> None:
    response = await client.post("/auth/logout")
    assert response.status_code == 401
    assert response.json() == {"msg": "Missing Authorization Header"}


async def _change(client: httpx.AsyncClient, token: str, current: str, new: str) -> httpx.Response:
    return await client.post(
        "/auth/password", json={"current_password": current, "new_password": new}, headers=bearer(token)
    )


async def test_password_change_with_wrong_current_password_is_403(client: httpx.AsyncClient) -> None:
    await register(client, "alice")
    tokens = await login(client, "alice")
    response = await _change(client, tokens["auth_token"], "not my password", NEW_PASSWORD)
    assert response.status_code == 403
    assert response.json() == {"msg": "Current password is wrong."}
    assert await _me(client, tokens["auth_token"]) == 200
    await login(client, "alice")


async def test_password_change_to_a_weak_password_is_422(client: httpx.AsyncClient) -> None:
    await register(client, "alice")
    tokens = await login(client, "alice")
    for weak in ("short", "qwerty123", "zzzzzzzzzz", "y" * 200):
        response = await _change(client, tokens["auth_token"], PASSWORD, weak)
        assert_validation_error(response, "new_password", secret=weak)
    # equal to the username: the service finds it, still a 422
    same = await _change(client, tokens["auth_token"], PASSWORD, "alice@test.com")
    assert same.status_code == 422
    assert "alice@test.com" not in same.text
    assert await _me(client, tokens["auth_token"]) == 200
    await login(client, "alice")


async def test_password_change_revokes_every_session(client: httpx.AsyncClient) -> None:
    await register(client, "alice")
    await register(client, "bob")
    first = await login(client, "alice")
    second = await login(client, "alice")
    rotated = (await _refresh(client, second["refresh_token"])).json()
    bob = await login(client, "bob")
    response = await _change(client, first["auth_token"], PASSWORD, NEW_PASSWORD)
    assert response.status_code == 200, response.text
    assert response.json() == {"message": "Password changed. Please log in again."}
    for token in (first["auth_token"], second["auth_token"], rotated["auth_token"]):
        assert await _me(client, token) == 401
    for refresh_token in (first["refresh_token"], rotated["refresh_token"]):
        assert (await _refresh(client, refresh_token)).status_code == 401
    old = await client.post("/auth/login", json={"email": "alice@test.com", "password": PASSWORD})
    assert old.status_code == 401
    new = await login(client, "alice", NEW_PASSWORD)
    assert await _me(client, new["auth_token"]) == 200
    # another user is untouched
    assert await _me(client, bob["auth_token"]) == 200


async def test_password_change_needs_a_token(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/auth/password", json={"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    )
    assert response.status_code == 401
    assert response.json() == {"msg": "Missing Authorization Header"}


async def test_concurrent_uses_of_one_refresh_token_mint_at_most_one_pair(client: httpx.AsyncClient) -> None:
    await register(client, "alice")
    tokens = await login(client, "alice")
    answers = await asyncio.gather(*[_refresh(client, tokens["refresh_token"]) for _ in range(4)])
    statuses = sorted(r.status_code for r in answers)
    # one request wins the token; the others are reuse, which revokes the family (the winner's too)
    assert statuses == [200, 401, 401, 401], [r.text for r in answers]
    winner = next(r.json() for r in answers if r.status_code == 200)
    assert await _me(client, winner["auth_token"]) == 401
    assert (await _refresh(client, winner["refresh_token"])).status_code == 401


async def test_logged_out_refresh_token_is_revoked_not_reused(client: httpx.AsyncClient) -> None:
    await register(client, "leaver")
    tokens = await login(client, "leaver")
    out = await client.post("/auth/logout", headers=bearer(tokens["auth_token"]))
    assert out.status_code == 200
    again = await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert again.status_code == 401
    assert again.json() == {"msg": "Refresh token has been revoked."}
