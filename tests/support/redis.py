"""Re-exported from sensorcloud.devstack: the tests and `make up-services` share one implementation."""

from sensorcloud.devstack.redis import *  # noqa: F403
