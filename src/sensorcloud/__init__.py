"""sensorcloud: an IoT sensor platform that runs as one process or as microservices."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sensorcloud")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
