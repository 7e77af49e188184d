"""Settings from environment variables (prefix SENSORCLOUD_), built once per app, never at import."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class Settings(BaseSettings):
    """Every option of every service; docs/configuration.md lists them with their meaning."""

    model_config = SettingsConfigDict(env_prefix="SENSORCLOUD_", extra="ignore")

    env: Environment = Environment.DEVELOPMENT
    http_host: str = "127.0.0.1"
    http_port: int = Field(8083, ge=1, le=65535)
    data_dir: Path = Path("./data")
    database_url: str | None = None
    redis_url: str | None = None
    log_level: str = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    forwarded_allow_ips: str = "127.0.0.1"
    status_peers: str | None = None  # microservices: "auth=http://h:p,iot=http://h:p,..." for /status
    web_dir: Path | None = None  # the dashboard's built files; default ./web/dist when it exists

    # tokens
    jwt_algorithm: Literal["RS256", "EdDSA", "HS256"] = "RS256"
    jwt_private_key_file: Path | None = None
    jwt_public_keys_file: Path | None = None
    jwt_secret: SecretStr | None = None
    jwks_url: str | None = None
    jwt_issuer: str = "sensorcloud"
    jwt_audience: str = "sensorcloud-api"
    access_token_ttl: int = Field(900, ge=30, le=86400)
    refresh_token_ttl: int = Field(30 * 86400, ge=300)
    token_cache_size: int = Field(10000, ge=0)

    # login throttling
    login_max_failures_per_account: int = Field(5, ge=1)
    login_max_failures_per_address: int = Field(30, ge=1)
    login_failure_window: int = Field(900, ge=1)

    # MQTT
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = Field(1883, ge=1, le=65535)
    mqtt_url: SecretStr | None = None  # microservices: mqtt://user:pass@host:port of Mosquitto
    mqtt_public_host: str | None = None  # the host name devices are told to connect to
    mqtt_public_port: int | None = None
    mqtt_service_username: str = "sensorcloud-service"
    mqtt_service_password: SecretStr | None = None
    mqtt_admin_url: SecretStr | None = None  # microservices: mqtt://admin:pass@host:port (dynsec admin)
    device_auth_cache_ttl: int = Field(30, ge=0)

    # ingestion
    ingest_batch_size: int = Field(10_000, ge=1, le=100_000)
    ingest_batch_interval_ms: int = Field(500, ge=1, le=60_000)
    ingest_batch_idle_ms: int = Field(10, ge=0, le=60_000)
    ingest_max_payload_bytes: int = Field(65536, ge=16, le=1 << 20)
    ingest_max_future_s: int = Field(300, ge=0)
    ingest_max_past_days: int = Field(365 * 5, ge=1)
    retention_days: int | None = Field(None, ge=1)
    ingest_client_id: str | None = None  # fixed per replica: its persistent MQTT session
    ingest_shared_group: str = "sensorcloud-ingest"
    auth_database_url: str | None = None  # microservices: where ingest reads the device registry

    # queries
    latest_cache_size: int = Field(50_000, ge=0)  # topics whose newest reading a process keeps (0: off)
    latest_cache_max_age: float = Field(5.0, gt=0, le=3600)  # seconds before an entry is read again

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("sqlite", "postgresql", "postgres://")):
            raise ValueError("SENSORCLOUD_DATABASE_URL must be a sqlite:/// or postgresql:// URL")
        return value

    @model_validator(mode="after")
    def _hs256_needs_secret(self) -> Settings:
        if self.jwt_algorithm == "HS256":
            secret = self.jwt_secret.get_secret_value() if self.jwt_secret else ""
            if len(secret.encode()) < 32:
                raise ValueError("SENSORCLOUD_JWT_ALGORITHM=HS256 needs SENSORCLOUD_JWT_SECRET of 32+ bytes")
        return self

    @property
    def is_production(self) -> bool:
        return self.env == Environment.PRODUCTION

    @property
    def effective_database_url(self) -> str:
        """The configured URL, or the SQLite file in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'sensorcloud.db').resolve()}"

    @property
    def uses_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")
