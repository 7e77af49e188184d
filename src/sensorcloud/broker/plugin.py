"""The amqtt plugins of the embedded broker: authentication and topic ACL from the device registry.

The gate (gate.py) has already checked the credentials when amqtt asks; it hands amqtt the
CONNECT with the password replaced by a one-time admission token. The auth plugin redeems that
token, so amqtt never holds a device secret, a connection that did not pass the gate cannot log
in, and the registry is asked once per connect. The principal is then kept on the amqtt
session, where the topic plugin reads it for every publish, subscribe and delivery.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from amqtt.contexts import Action
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin

from sensorcloud.broker.principal import Principal
from sensorcloud.core.logging import get_logger

# amqtt asks extensions to namespace their session attributes (amqtt/session.py, Session.attributes)
PRINCIPAL_KEY = "sensorcloud.principal"

log = get_logger("sensorcloud.broker")


class Admissions:
    """Tokens for connections the gate admitted, each good for one amqtt login."""

    def __init__(self) -> None:
        self._tokens: dict[str, Principal] = {}

    def issue(self, principal: Principal) -> str:
        token = secrets.token_urlsafe(24)
        self._tokens[token] = principal
        return token

    def redeem(self, token: str | None) -> Principal | None:
        return self._tokens.pop(token, None) if token else None

    def revoke(self, token: str) -> None:
        """Forget a token amqtt never redeemed (the connection ended first)."""
        self._tokens.pop(token, None)


def principal_of(session: Any) -> Principal | None:
    """The principal an amqtt session logged in as, if it did."""
    principal = session.attributes.get(PRINCIPAL_KEY) if session is not None else None
    return principal if isinstance(principal, Principal) else None


class RegistryAuthPlugin(BaseAuthPlugin):  # type: ignore[misc]  # amqtt ships no type information
    """Logs in exactly the connections the gate admitted."""

    @dataclass
    class Config:
        admissions: Admissions

    async def authenticate(self, *, session: Any) -> bool:
        principal = self.config.admissions.redeem(session.password)
        # a persistent session is reused across connections: never keep an old login on it
        session.attributes.pop(PRINCIPAL_KEY, None)
        session.password = None
        if principal is None or principal.username != session.username:
            return False
        session.attributes[PRINCIPAL_KEY] = principal
        return True


class RegistryTopicPlugin(BaseTopicPlugin):  # type: ignore[misc]  # amqtt ships no type information
    """The ACL of acl.py on every publish, subscribe and delivery amqtt checks."""

    @dataclass
    class Config:
        pass

    async def topic_filtering(
        self, *, session: Any = None, topic: str | None = None, action: Action | None = None
    ) -> bool:
        principal = principal_of(session)
        if principal is None or topic is None:
            return False
        if action == Action.RECEIVE:
            return principal.may_receive(topic)
        if action == Action.PUBLISH:
            allowed = principal.may_publish(topic)
        elif action == Action.SUBSCRIBE:
            allowed = principal.may_subscribe(topic)
        else:
            allowed = False
        if not allowed:
            # MQTT 3.1.1 cannot tell a publisher it was denied (it still gets its PUBACK): log it
            log.info("mqtt action denied", username=principal.username, action=str(action), topic=topic)
        return allowed
