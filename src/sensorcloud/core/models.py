"""Import every service's tables so that Base.metadata knows them all (migrations, checks)."""

from __future__ import annotations


def import_all_models() -> None:
    import sensorcloud.auth.models  # noqa: F401
