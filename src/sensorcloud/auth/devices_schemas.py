"""Request and response bodies of the device routes. Only create and rotate carry a secret."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from sensorcloud.auth.devices_service import prefix_problem

DeviceName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class DeviceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: DeviceName
    topic_prefix: str | None = Field(
        default=None,
        max_length=200,
        description="The device's topic namespace (it publishes to <prefix>/...); default devices/<id>",
        examples=["home/kitchen"],
    )

    @field_validator("topic_prefix")
    @classmethod
    def _acceptable(cls, value: str | None) -> str | None:
        problem = prefix_problem(value) if value is not None else None
        if problem:
            raise ValueError(problem)
        return value


class DeviceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    owner_id: int
    topic_prefix: str
    created_at: datetime
    secret_rotated_at: datetime | None


class MqttConnection(BaseModel):
    """Where and as whom the device connects; the password is the secret."""

    host: str
    port: int
    username: str
    client_id: str


class DeviceCredentials(DeviceOut):
    secret: str = Field(description="Shown only now; store it on the device (the MQTT password)")
    mqtt: MqttConnection
    publish_example: str = Field(description="A mosquitto_pub command that publishes one reading")


class DeviceList(BaseModel):
    data: list[DeviceOut]
    total: int
