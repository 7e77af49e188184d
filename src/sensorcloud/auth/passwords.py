"""Password hashing with argon2id at OWASP parameters, off the event loop."""

from __future__ import annotations

import asyncio
import unicodedata
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# OWASP Password Storage Cheat Sheet: argon2id, m=19 MiB, t=2, p=1 (the minimum we accept).
HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
MIN_LENGTH = 8
MAX_LENGTH = 128
COMMON = frozenset(
    {
        "password",
        "password1",
        "password123",
        "12345678",
        "123456789",
        "1234567890",
        "qwertyuiop",
        "qwerty123",
        "iloveyou",
        "11111111",
        "00000000",
        "abcdefgh",
        "abc12345",
        "letmein1",
        "welcome1",
        "admin123",
        "changeme",
        "sunshine",
        "football",
        "baseball",
        "trustno1",
        "passw0rd",
        "superman",
        "1q2w3e4r",
        "qwertyui",
        "asdfghjk",
        "zxcvbnm1",
        "87654321",
    }
)


def normalize(password: str) -> str:
    """NFKC, so that the same password typed on two keyboards hashes the same (NIST SP 800-63B)."""
    return unicodedata.normalize("NFKC", password)


def password_problem(password: str, *, email: str = "", username: str = "") -> str | None:
    """Why a new password is not acceptable, or None. Unicode is allowed; nothing is truncated."""
    pw = normalize(password)
    if len(pw) < MIN_LENGTH:
        return f"password must be at least {MIN_LENGTH} characters"
    if len(pw) > MAX_LENGTH:
        return f"password must be at most {MAX_LENGTH} characters"
    if "\x00" in pw:
        return "password must not contain NUL characters"
    lowered = pw.lower()
    if lowered in COMMON or len(set(pw)) < 3:
        return "password is too common or too simple"
    if lowered in {email.lower(), username.lower(), email.lower().split("@")[0]} - {""}:
        return "password must not be your email or username"
    return None


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(HASHER.hash, normalize(password))


async def verify_password(stored_hash: str | None, password: str) -> bool:
    """Check a password; with no stored hash, spend the same time on a dummy one (no enumeration)."""
    target = stored_hash if stored_hash is not None else _dummy_hash()
    try:
        ok = await asyncio.to_thread(HASHER.verify, target, normalize(password))
    except (VerificationError, InvalidHashError):
        return False
    return bool(ok) and stored_hash is not None


def needs_rehash(stored_hash: str) -> bool:
    return HASHER.check_needs_rehash(stored_hash)


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return HASHER.hash("sensorcloud-timing-equaliser")


async def warm_up() -> None:
    """Compute the dummy hash before the first login, so the first unknown email is not slower."""
    await asyncio.to_thread(_dummy_hash)
