"""The devices table: who owns a device, its topic namespace and the hash of its secret."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from sensorcloud.core.db import Base, UTCDateTime


class Device(Base):
    """A device; its id is also its MQTT username and client id."""

    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    topic_prefix: Mapped[str] = mapped_column(String(200), unique=True)
    # sha256 hex of the secret: secrets are 32 random bytes, so a slow password hash would
    # add nothing but cost on every MQTT connect
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    secret_rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
