"""Who is on the other end of a broker connection, and what the ACL lets them do.

The rules themselves live in `acl`; this only picks the rule set for a device or a service account.
"""

from __future__ import annotations

from dataclasses import dataclass

from sensorcloud.broker import acl
from sensorcloud.broker.acl import DeviceIdentity

# amqtt 0.12 has no shared subscriptions: `$share/g/x` would be granted as a literal filter
# that matches nothing, so a service would wait silently. Refusing it makes the SUBACK say so.
SHARED_PREFIX = "$share/"


@dataclass(frozen=True)
class Principal:
    """An authenticated connection: a device, or a service account (device is None)."""

    username: str
    device: DeviceIdentity | None = None

    @property
    def is_service(self) -> bool:
        return self.device is None

    def owns_client_id(self, client_id: str) -> bool:
        """Devices use their id, or `<id>-<anything>`, so none can take over another's session."""
        if self.device is None:
            return True
        device_id = self.device.device_id
        return client_id == device_id or client_id.startswith(device_id + "-")

    def may_publish(self, topic: str) -> bool:
        if self.device is not None:
            return acl.may_publish(self.device, topic)
        # services publish anywhere, but only to topics a client could legally publish to
        return bool(topic) and not topic.startswith("$") and not any(c in topic for c in "+#\x00")

    def may_subscribe(self, topic_filter: str) -> bool:
        if self.device is not None:
            return acl.may_subscribe(self.device, topic_filter)
        return not topic_filter.startswith(SHARED_PREFIX)

    def may_receive(self, topic: str) -> bool:
        if self.device is None:
            return True
        return acl.in_namespace(self.device.topic_prefix, topic)
