"""Import every service's tables so that Base.metadata knows them all (migrations, checks)."""

from __future__ import annotations


def import_all_models() -> None:
    import sensorcloud.auth.devices_models
    import sensorcloud.auth.models
    import sensorcloud.ingest.models  # noqa: F401
