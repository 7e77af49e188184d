"""Fixtures of the iot tests that run the iot service alone beside an auth service (microservices)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from sensorcloud.core.settings import Settings
from tests.support.ports import free_port


@pytest.fixture
def public_keys_file(signing_key_file: Path, tmp_path: Path) -> Path:
    """The auth service's public key, as an iot replica alone is given it."""
    private = serialization.load_pem_private_key(signing_key_file.read_bytes(), None)
    path = tmp_path / "public.pem"
    path.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


@pytest.fixture
def pg_monolith_settings(pg_database_url: str, tmp_path: Path, signing_key_file: Path) -> Settings:
    """The whole service on PostgreSQL, signing tokens: the auth side of an iot-replica test."""
    return Settings(
        database_url=pg_database_url,
        data_dir=tmp_path / "data",
        jwt_private_key_file=signing_key_file,
        mqtt_port=free_port(),
    )
