"""Alembic migrations, shipped inside the package so `sensorcloud migrate` works wherever it is installed."""
