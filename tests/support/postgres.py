"""Re-exported from sensorcloud.devstack: the tests and `make up-services` share one implementation."""

from sensorcloud.devstack.postgres import *  # noqa: F403
