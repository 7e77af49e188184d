"""Keeps Mosquitto's dynamic-security plugin in step with the device registry (microservices mode).

The registry stores only hashes of device secrets, so the broker cannot be rebuilt from it: the
plugin's own JSON file is the broker's persistent store of device credentials, and `DynsecSync`
(a `DeviceListener`) pushes every create, rotation and deletion to it the moment it happens.
`device_clients` and `remove_stale_devices` let a reconciliation (auth/broker_reconcile.py)
delete broker clients the registry no longer has. While the plugin cannot be reached, creating,
rotating or deleting a device fails with 503 and changes nothing (auth/devices_service.py): no
device is left with a secret the broker does not know, or with an old one it still accepts.

Each device is a dynsec client (username = device id, client id pinned to the device id, so no
one else can take over its session) with a role of its own that grants its namespace only.
Mosquitto 2.0's dynsec has no %u/%c substitution in ACL topics, hence one role per device.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from typing import Any, TypeVar

from sensorcloud.broker.acl import DeviceIdentity, valid_prefix
from sensorcloud.broker.dynsec_client import ConnectionLost, DynsecClient, DynsecError, raise_errors
from sensorcloud.core.logging import get_logger

__all__ = ["DynsecError", "DynsecSync", "device_acls", "device_role"]

DEVICE_ROLE_PREFIX = "sensorcloud-device:"
ATTEMPTS = 3  # a broker restart costs one attempt; paho reconnects within a second or two

T = TypeVar("T")

log = get_logger(__name__)


def device_role(device_id: str) -> str:
    return DEVICE_ROLE_PREFIX + device_id


def device_acls(prefix: str) -> list[dict[str, Any]]:
    """What a device may do: publish, subscribe and receive inside `<prefix>/#`, nothing else."""
    problem = valid_prefix(prefix)
    if problem:
        raise ValueError(problem)
    inside = prefix + "/#"  # also matches `prefix` itself, for publish and subscribe alike
    grants = [
        ("publishClientSend", prefix),
        ("publishClientSend", inside),
        ("publishClientReceive", inside),
        ("subscribePattern", inside),
        ("unsubscribePattern", inside),
    ]
    return [{"acltype": acltype, "topic": topic, "allow": True} for acltype, topic in grants]


class DynsecSync(DynsecClient):
    """A DeviceListener that writes devices into Mosquitto as dynsec clients, each with its role.

    It only ever changes clients that carry their own device role: the admin and service
    accounts (or any other account) cannot be overwritten or deleted through a device id.
    A credential store: a device change fails while it cannot be reached (auth/devices_service.py).
    """

    holds_credentials = True

    async def _device_client_exists(self, device_id: str) -> bool:
        """True if a device client of that name exists; refuses to touch any other broker account."""
        [response] = await self.execute([{"command": "getClient", "username": device_id}])
        if response.get("error") == "Client not found":
            return False
        raise_errors([response])
        roles = response.get("data", {}).get("client", {}).get("roles", [])
        if not any(r.get("rolename") == device_role(device_id) for r in roles):
            raise DynsecError(f"broker account {device_id!r} is not a device: refusing to change it")
        return True

    async def _idempotent(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run a whole operation again if the connection dropped under it: each one is idempotent
        (create answers "already exists" and becomes modify, delete tolerates "not found")."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return await operation()
            except ConnectionLost:
                if attempt == ATTEMPTS:
                    raise
                log.info("dynsec.retry_after_reconnect", attempt=attempt)
        raise AssertionError("unreachable")

    async def device_saved(self, identity: DeviceIdentity, secret: str) -> None:
        """Create the device's client and role, or update them (a rotation kicks live sessions)."""
        await self._idempotent(lambda: self._save(identity, secret))

    async def _save(self, identity: DeviceIdentity, secret: str) -> None:
        if not secret:
            raise ValueError("a device secret must not be empty")
        device_id, role = identity.device_id, device_role(identity.device_id)
        acls = device_acls(identity.topic_prefix)
        client: dict[str, Any] = {
            "username": device_id,
            "password": secret,
            "clientid": device_id,
            "roles": [{"rolename": role}],
        }
        if await self._device_client_exists(device_id):
            # modifyClient sets the new secret and disconnects sessions that used the old one.
            commands = [
                {"command": "modifyRole", "rolename": role, "acls": acls},
                {"command": "modifyClient", **client},
            ]
            raise_errors(await self.execute(commands))
            log.info("dynsec.device_updated", device_id=device_id)
            return
        commands = [
            {"command": "createRole", "rolename": role, "acls": acls},
            {"command": "createClient", "textname": f"device of user {identity.owner_id}", **client},
        ]
        responses = await self.execute(commands)
        if responses[0].get("error") == "Role already exists":  # left by an interrupted earlier save
            raise_errors(await self.execute([{"command": "modifyRole", "rolename": role, "acls": acls}]))
        raise_errors(responses, tolerated={"Role already exists"})
        log.info("dynsec.device_created", device_id=device_id)

    async def device_removed(self, device_id: str) -> None:
        """Delete the device's client (the plugin disconnects its live sessions) and its role.

        A rotation must call this before device_saved, never after (that would delete the new
        secret); device_saved alone also disconnects sessions opened with the old secret.
        """
        await self._idempotent(lambda: self._remove(device_id))

    async def _remove(self, device_id: str) -> None:
        if await self._device_client_exists(device_id):
            responses = await self.execute([{"command": "deleteClient", "username": device_id}])
            raise_errors(responses, tolerated={"Client not found"})
        responses = await self.execute([{"command": "deleteRole", "rolename": device_role(device_id)}])
        raise_errors(responses, tolerated={"Role not found"})
        log.info("dynsec.device_removed", device_id=device_id)

    async def list_clients(self) -> list[str]:
        """Every username the plugin knows: devices, the admin and the service account."""
        return await self._idempotent(self._list_clients)

    async def _list_clients(self) -> list[str]:
        [response] = await self.execute([{"command": "listClients", "verbose": False, "count": -1}])
        raise_errors([response])
        return [str(name) for name in response.get("data", {}).get("clients", [])]

    async def device_clients(self) -> list[str]:
        """The usernames that are devices (they carry their own device role)."""
        return await self._idempotent(self._device_clients)

    async def _device_clients(self) -> list[str]:
        [response] = await self.execute([{"command": "listClients", "verbose": True, "count": -1}])
        raise_errors([response])
        devices = []
        for client in response.get("data", {}).get("clients", []):
            name = str(client.get("username"))
            if any(r.get("rolename") == device_role(name) for r in client.get("roles", [])):
                devices.append(name)
        return devices

    async def remove_stale_devices(self, registered: Callable[[], Awaitable[Collection[str]]]) -> list[str]:
        """Delete every device client whose id `registered()` (the registry's ids) does not hold.

        The broker is listed first and the registry read after: a device created in between is in
        the registry before the broker hears of it, so it is never taken for stale."""
        clients = await self.device_clients()
        keep = await registered()
        stale = [name for name in clients if name not in keep]
        for device_id in stale:
            await self.device_removed(device_id)
        return stale
