"""One microservices topology per test module (it takes ~12 s to start): PostgreSQL, Redis, Mosquitto,
auth x1, iot x2, ingest x2 and nginx, as `make up-services` runs them, on free ports."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sensorcloud.devstack.ports import free_port
from sensorcloud.devstack.topology import Topology, TopologyConfig
from tests.topology.support import Gateway


@pytest.fixture(scope="module")
def topology() -> Iterator[Topology]:
    # Not tmp_path: Mosquitto drops to its own user when started as root and must traverse the path
    # (/tmp/pytest-of-root is 0700).
    data_dir = Path(tempfile.mkdtemp(prefix="sc-topology-"))
    data_dir.chmod(0o755)
    topo = Topology(
        TopologyConfig(data_dir=data_dir, http_port=free_port(), mqtt_port=free_port(), durable=False)
    )
    try:
        topo.start()
        yield topo
    finally:
        topo.stop()
        if os.environ.get("SENSORCLOUD_KEEP_TOPOLOGY"):
            print(f"topology kept in {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def gateway(topology: Topology) -> Gateway:
    return Gateway(topology.config.http_port)


@pytest.fixture(scope="module")
def token(gateway: Gateway) -> str:
    """An ordinary user's access token (15 minutes: longer than the module runs)."""
    gateway.register("fault")
    return gateway.login("fault")
