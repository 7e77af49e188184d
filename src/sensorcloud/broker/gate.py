"""Admission: the decision on a CONNECT, taken before amqtt sees the connection.

amqtt 0.12 acts on a CONNECT's client id before its auth plugins run: a clean session deletes
the existing session of that id, a persistent one is taken over (its live connection closed,
its will replaced by the newcomer's) even when the login then fails (amqtt/broker.py,
_initialize_client_session and _handle_client_session). An auth plugin is too late to stop
that, so identity, client id and will are all decided here.
"""

from __future__ import annotations

import hmac
from typing import Any

from amqtt.mqtt.connack import (
    BAD_USERNAME_PASSWORD,
    IDENTIFIER_REJECTED,
    NOT_AUTHORIZED,
    SERVER_UNAVAILABLE,
    UNACCEPTABLE_PROTOCOL_VERSION,
)

from sensorcloud.broker.acl import DeviceAuthenticator
from sensorcloud.broker.principal import Principal
from sensorcloud.core.logging import get_logger

MQTT_311 = 4
MQTT_5 = 5
# MQTT 5 reason codes for the 3.1.1 return codes, for the one refusal a v5 client gets
V5_REASON = {
    UNACCEPTABLE_PROTOCOL_VERSION: 0x84,
    IDENTIFIER_REJECTED: 0x85,
    BAD_USERNAME_PASSWORD: 0x86,
    NOT_AUTHORIZED: 0x87,
    SERVER_UNAVAILABLE: 0x88,
}

log = get_logger("sensorcloud.broker")


class Refused(Exception):
    """A CONNECT the broker answers with a refusing CONNACK."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def connack(code: int, proto_level: int) -> bytes:
    """A refusing CONNACK in the client's protocol version (amqtt 0.12 only speaks 3.1.1)."""
    if proto_level == MQTT_5:
        return bytes([0x20, 3, 0, V5_REASON.get(code, 0x80), 0])
    return bytes([0x20, 2, 0, code])


class Gate:
    """Who may connect, with which client id and which will."""

    def __init__(
        self, authenticator: DeviceAuthenticator, service_username: str, service_password: str | None
    ) -> None:
        self._authenticator = authenticator
        self._service_username = service_username
        # no password configured: the service account cannot log in at all
        self._service_password = service_password.encode() if service_password else None

    async def admit(self, connect: Any) -> Principal:
        """The principal behind an amqtt ConnectPacket, or Refused."""
        if connect.proto_name != "MQTT" or connect.proto_level != MQTT_311:
            raise Refused(UNACCEPTABLE_PROTOCOL_VERSION, f"protocol level {connect.proto_level}")
        username, password = connect.username, connect.password
        if not connect.username_flag or not username or not connect.password_flag or password is None:
            raise Refused(NOT_AUTHORIZED, "anonymous")
        principal = await self._identify(username, password)
        client_id: str = connect.client_id
        if connect.payload.client_id_is_random:
            # amqtt made one up; a device must say who it is, and nothing random can be resumed
            if not principal.is_service or not connect.clean_session_flag:
                raise Refused(IDENTIFIER_REJECTED, "empty client id")
        elif not principal.owns_client_id(client_id):
            raise Refused(IDENTIFIER_REJECTED, "client id belongs to another device")
        # amqtt publishes a will without asking the topic plugin (broker.py, _handle_disconnect)
        if connect.will_flag and not principal.may_publish(connect.will_topic or ""):
            raise Refused(NOT_AUTHORIZED, "will topic outside the namespace")
        return principal

    async def _identify(self, username: str, password: str) -> Principal:
        if username == self._service_username:
            if self._service_password is None or not hmac.compare_digest(
                password.encode(), self._service_password
            ):
                raise Refused(BAD_USERNAME_PASSWORD, "wrong service password")
            return Principal(username)
        try:
            identity = await self._authenticator.authenticate(username, password)
        except Exception:
            # the registry (its database) failing must not look like a wrong secret
            log.exception("device authentication failed", username=username)
            raise Refused(SERVER_UNAVAILABLE, "device registry unavailable") from None
        if identity is None or identity.device_id != username:
            raise Refused(BAD_USERNAME_PASSWORD, "unknown device or wrong secret")
        return Principal(username, identity)
