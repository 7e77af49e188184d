"""The `sensorcloud` command line as a user runs it: help, exit codes and error messages."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from sensorcloud import __version__
from tests.support.ports import free_port
from tests.support.process import run_cli

pytestmark = pytest.mark.e2e

ADMIN_PASSWORD = "Gl4cier-Orbit-Lantern"


def data_env(tmp_path: Path) -> dict[str, str]:
    return {"SENSORCLOUD_DATA_DIR": str(tmp_path / "data")}


@pytest.mark.parametrize(
    ("args", "phrases"),
    [
        ([], ["IoT sensor platform", "serve", "migrate", "user", "version"]),
        (
            ["serve"],
            ["Run sensorcloud", "--target", "--port", "SENSORCLOUD_HTTP_PORT", "SENSORCLOUD_DATA_DIR"],
        ),
        (["migrate"], ["database schema", "--database-url", "SENSORCLOUD_DATABASE_URL"]),
        (["user"], ["Manage users", "create"]),
        (["user", "create"], ["standard input", "--email", "--username", "--password-stdin", "--admin"]),
        (["version"], ["Print the version"]),
    ],
    ids=["top", "serve", "migrate", "user", "user-create", "version"],
)
def test_help_describes_each_command(tmp_path: Path, args: list[str], phrases: list[str]) -> None:
    result = run_cli([*args, "--help"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for phrase in phrases:
        assert phrase in result.stdout, f"{phrase!r} missing from `{' '.join(args)} --help`"
    assert not (tmp_path / "data").exists(), "--help must not create anything"


def test_version_prints_the_package_version(tmp_path: Path) -> None:
    result = run_cli(["version"], cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == __version__


def test_user_create_without_password_stdin_is_refused(tmp_path: Path) -> None:
    result = run_cli(
        ["user", "create", "--email", "a@x.io", "--username", "admin"],
        cwd=tmp_path,
        env=data_env(tmp_path),
        stdin=ADMIN_PASSWORD + "\n",
    )
    assert result.returncode == 2
    assert "--password-stdin" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists(), "nothing may be created before the arguments are valid"


def test_user_create_with_a_weak_password_says_why(tmp_path: Path) -> None:
    result = run_cli(
        ["user", "create", "--email", "a@x.io", "--username", "admin", "--password-stdin"],
        cwd=tmp_path,
        env=data_env(tmp_path),
        stdin="short\n",
    )
    assert result.returncode == 2
    assert "password must be at least 8 characters" in result.stderr
    assert "short" not in result.stderr, "the password itself is never echoed"
    assert not (tmp_path / "data").exists()


def test_user_create_then_duplicate_email_fails(tmp_path: Path) -> None:
    env = data_env(tmp_path)
    first = run_cli(
        ["user", "create", "--email", "a@x.io", "--username", "admin", "--password-stdin", "--admin"],
        cwd=tmp_path,
        env=env,
        stdin=ADMIN_PASSWORD + "\n",
    )
    assert first.returncode == 0, first.stderr
    assert "created user 1" in first.stderr
    assert "(admin)" in first.stderr
    assert ADMIN_PASSWORD not in first.stderr + first.stdout
    # Emails are case-insensitive: the same address in capitals is the same account.
    second = run_cli(
        ["user", "create", "--email", "A@X.io", "--username", "other", "--password-stdin"],
        cwd=tmp_path,
        env=env,
        stdin=ADMIN_PASSWORD + "\n",
    )
    assert second.returncode == 1
    assert "already exists" in second.stderr
    assert "Traceback" not in second.stderr
    with sqlite3.connect(tmp_path / "data" / "sensorcloud.db") as db:
        rows = db.execute("SELECT email, username, role FROM users").fetchall()
    db.close()
    assert rows == [("a@x.io", "admin", "admin")]


def test_serve_with_an_unknown_target_exits_2(tmp_path: Path) -> None:
    result = run_cli(["serve", "--target", "nonsense"], cwd=tmp_path, env=data_env(tmp_path))
    assert result.returncode == 2
    assert "unknown target 'nonsense'" in result.stderr
    assert "all" in result.stderr


def test_invalid_port_in_the_environment_is_a_configuration_error(tmp_path: Path) -> None:
    result = run_cli(["serve"], cwd=tmp_path, env={**data_env(tmp_path), "SENSORCLOUD_HTTP_PORT": "abc"})
    assert result.returncode == 2
    assert "configuration error" in result.stderr
    assert "SENSORCLOUD_HTTP_PORT" in result.stderr
    assert "Traceback" not in result.stderr


def test_migrate_creates_the_sqlite_schema_and_is_idempotent(tmp_path: Path) -> None:
    env = data_env(tmp_path)
    for _ in range(2):
        result = run_cli(["migrate"], cwd=tmp_path, env=env)
        assert result.returncode == 0, result.stderr
        assert "schema is up to date" in result.stderr
    with sqlite3.connect(tmp_path / "data" / "sensorcloud.db") as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    db.close()
    assert {"users", "refresh_tokens", "alembic_version"} <= tables


def test_migrate_against_an_unreachable_database_fails_cleanly(tmp_path: Path) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"  # nothing listens there
    result = run_cli(["migrate"], cwd=tmp_path, env={"SENSORCLOUD_DATABASE_URL": url})
    assert result.returncode == 1
    assert "cannot reach the database" in result.stderr
    assert "Traceback" not in result.stderr
