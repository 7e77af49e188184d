"""Mosquitto's configuration in microservices mode: mosquitto.conf and the initial dynamic-security.json.

The broker authenticates and authorises through the dynamic-security plugin that ships with
Mosquitto 2.0. Its JSON file is the broker's own persistent store of device credentials: the auth
service pushes every device change to it over `$CONTROL/dynamic-security/v1` the moment it happens
(see `dynsec.py`), and the plugin rewrites the file after every change. This module only creates the
file once, with the two accounts that exist before any device: the admin that `DynsecSync` logs in
as, and the account every service (ingest, iot) connects with.

What clients must know (verified against Debian's mosquitto 2.0.11):
- A device connects with username = client id = its device id: the client id is pinned.
- A persistent subscriber (ingest) uses MQTT 3.1.1 clean_session=False, or MQTT 5 with a session
  expiry and clean_start=False on *every* connect, the first included: 2.0.11 keeps a session
  opened with clean_start=1 in memory but leaves it out of mosquitto.db, so a broker restart
  loses it and everything queued for it.
- A denied PUBLISH still gets its PUBACK on 3.1.1 (v5: reason "Not authorized") and is dropped;
  a will on a forbidden topic is accepted at CONNECT and dropped when it would be published.
"""

from __future__ import annotations

import base64
import glob
import hashlib
import json
import os
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PLUGIN_NAME = "mosquitto_dynamic_security.so"
PLUGIN_CANDIDATES = (
    "/usr/lib/*/" + PLUGIN_NAME,  # Debian/Ubuntu multiarch
    "/usr/lib/" + PLUGIN_NAME,  # eclipse-mosquitto image, Alpine
    "/usr/lib64/" + PLUGIN_NAME,
    "/usr/local/lib/" + PLUGIN_NAME,
)

LOG_TYPES = ("error", "warning", "notice", "information")  # "all" adds every packet, for debugging
CONTROL_TOPIC = "$CONTROL/dynamic-security/#"
ADMIN_ROLE = "sensorcloud-admin"
SERVICE_ROLE = "sensorcloud-service"

# Largest payload accepted: a message may carry a batch of readings; ingest applies its own, smaller
# limit (SENSORCLOUD_INGEST_MAX_PAYLOAD_BYTES) and rejects the rest with a reason.
MESSAGE_SIZE_LIMIT = 256 * 1024
# Enough for a restarting ingest replica: its persistent session keeps collecting while it is away.
MAX_QUEUED_MESSAGES = 1_000_000
# Ingest acks a message only after its batch is committed, so the broker must let at least a full
# batch (SENSORCLOUD_INGEST_BATCH_SIZE) be in flight, or delivery stalls until the batch interval
# fires. Mosquitto's default of 20 would cap ingest far below its measured rate. This is the limit
# for MQTT 3.1.1 subscribers: to an MQTT 5 one Mosquitto sends up to the Receive Maximum it asked
# for (the ingest asks for 30,000; checked: with this at 100, a v5 subscriber asking for 1,000
# received 500 messages it had not acknowledged).
MAX_INFLIGHT_MESSAGES = 10_000
# Mosquitto keeps sessions and queued messages in memory and writes them to mosquitto.db on a clean
# shutdown and every `autosave_interval` seconds. A crash (SIGKILL, OOM, power loss) loses whatever
# changed since the last save: up to this many seconds of queued messages and session changes.
AUTOSAVE_INTERVAL = 60
# dynsec's own 2.0.x default is 101 rounds; these two accounts authenticate rarely, so afford more.
PBKDF2_ITERATIONS = 10_000
SALT_BYTES = 12  # dynsec 2.0 refuses a stored salt of any other length


def find_dynsec_plugin() -> Path:
    """Where this machine's Mosquitto keeps its dynamic-security plugin."""
    for pattern in PLUGIN_CANDIDATES:
        for match in sorted(glob.glob(pattern)):
            return Path(match)
    raise FileNotFoundError(f"{PLUGIN_NAME} not found (is mosquitto 2.0 installed?)")


def render_mosquitto_conf(
    port: int,
    data_dir: Path,
    dynsec_file: Path,
    *,
    persistence: bool = True,
    bind: str = "127.0.0.1",
    plugin: Path | None = None,
    user: str | None = None,
    autosave_interval: int = AUTOSAVE_INTERVAL,
    max_queued_messages: int = MAX_QUEUED_MESSAGES,
    max_queued_bytes: int = 0,
    max_inflight_messages: int = MAX_INFLIGHT_MESSAGES,
    message_size_limit: int = MESSAGE_SIZE_LIMIT,
    log_types: Sequence[str] = LOG_TYPES,
) -> str:
    """mosquitto.conf for one broker: one listener, dynsec auth, no anonymous clients, deep queues.

    `user` matters only when mosquitto starts as root: it then drops to that user (Mosquitto's own
    default is `mosquitto`), which must be able to write `data_dir` and `dynsec_file`.
    `max_queued_bytes` 0 means no byte limit: `max_queued_messages` is the one that applies.
    """
    plugin_path = plugin or find_dynsec_plugin()
    for value in (str(data_dir), str(dynsec_file), str(plugin_path), bind, user or ""):
        if "\n" in value or "\r" in value:
            raise ValueError(f"a mosquitto.conf value must be one line: {value!r}")
    lines = [
        "# Rendered by sensorcloud.broker.mosquitto_config; edits are overwritten.",
        # One set of auth rules for every listener (the default in 2.0, stated so nobody flips it).
        "per_listener_settings false",
        "allow_anonymous false",
        f"listener {port} {bind}",
        f"plugin {plugin_path}",
        f"plugin_opt_config_file {dynsec_file}",
        f"max_queued_messages {max_queued_messages}",
        f"max_queued_bytes {max_queued_bytes}",
        f"max_inflight_messages {max_inflight_messages}",
        # 2.0 recommends max_packet_size over message_size_limit (it logs a note for the latter). A
        # packet is the payload plus a topic (<= 64 KiB) and properties; a bigger one disconnects
        # its sender (an MQTT 5 client is told the limit in CONNACK).
        f"max_packet_size {message_size_limit + 65536 + 1024}",
        "log_dest stderr",
        *(f"log_type {kind}" for kind in log_types),
        "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        "connection_messages true",
    ]
    if persistence:
        lines += [
            "persistence true",
            # Trailing slash: mosquitto concatenates the location and the file name.
            f"persistence_location {str(data_dir).rstrip('/')}/",
            f"autosave_interval {autosave_interval}",
        ]
    else:
        lines.append("persistence false")
    if user:
        lines.append(f"user {user}")
    return "\n".join(lines) + "\n"


def dynsec_password(password: str, iterations: int = PBKDF2_ITERATIONS) -> dict[str, Any]:
    """A client's stored password as dynsec 2.0 reads it: PBKDF2-HMAC-SHA512 over a 12-byte salt."""
    if not password:
        raise ValueError("an empty password would let nobody in; refusing to write one")
    salt = secrets.token_bytes(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return {
        "salt": base64.b64encode(salt).decode(),
        "password": base64.b64encode(digest).decode(),
        "iterations": iterations,
    }


def _acls(topics: dict[str, tuple[str, ...]]) -> list[dict[str, Any]]:
    return [
        {"acltype": acltype, "topic": topic, "allow": True}
        for acltype, filters in topics.items()
        for topic in filters
    ]


def dynsec_document(
    admin_user: str, admin_password: str, service_user: str, service_password: str
) -> dict[str, Any]:
    """The initial dynsec state: deny by default, one admin, one service account, no device yet."""
    if admin_user == service_user:
        raise ValueError("the dynsec admin and the service account must be different users")
    admin = (CONTROL_TOPIC,)
    # "#" never matches a topic starting with "$", so $SYS is granted on its own and $CONTROL never is;
    # subscribePattern "#" also covers "$share/<group>/..." (a shared ingest subscription).
    everything = ("#",)
    return {
        # Every ACL type denies unless a role allows: a device gets exactly what its role grants.
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": False,
            "subscribe": False,
            "unsubscribe": False,
        },
        "clients": [
            {
                "username": admin_user,
                "textname": "sensorcloud: dynamic-security admin (auth service)",
                "roles": [{"rolename": ADMIN_ROLE}],
                **dynsec_password(admin_password),
            },
            {
                "username": service_user,
                "textname": "sensorcloud: services (ingest, iot)",
                "roles": [{"rolename": SERVICE_ROLE}],
                **dynsec_password(service_password),
            },
        ],
        "groups": [],
        "roles": [
            {
                "rolename": ADMIN_ROLE,
                "acls": _acls(
                    {
                        "publishClientSend": admin,
                        "publishClientReceive": admin,
                        "subscribePattern": admin,
                        "unsubscribePattern": admin,
                    }
                ),
            },
            {
                "rolename": SERVICE_ROLE,
                "acls": _acls(
                    {
                        "publishClientSend": everything,
                        "publishClientReceive": (*everything, "$SYS/#"),
                        "subscribePattern": everything,
                        "unsubscribePattern": everything,
                    }
                ),
            },
        ],
    }


def init_dynsec(
    path: Path, admin_user: str, admin_password: str, service_user: str, service_password: str
) -> None:
    """Write the initial dynamic-security.json (mode 0600: it holds password hashes).

    Refuses to overwrite an existing file: after the first start it is the only copy of every
    device's broker credentials (the registry keeps just its own hashes).
    """
    document = dynsec_document(admin_user, admin_password, service_user, service_password)
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL: never clobber a live store, even if two starters race.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(document, f, indent=2)
        f.write("\n")
