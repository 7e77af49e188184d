"""Run a ../shared/baseline script unchanged, in this process, with MQTT credentials added.

    BENCH_MQTT_USERNAME=u BENCH_MQTT_PASSWORD=p python bench/run_baseline.py naive_ingest.py --port ...

The baselines connect anonymously, which both of the project's brokers refuse. Rather than edit them
or open the broker to anonymous clients (the benchmark must use the project's broker config for every
case), this sets the credentials on every paho client before it connects, then runs the script as
`__main__` with the remaining arguments. Nothing else of the script changes.
"""

from __future__ import annotations

import os
import runpy
import sys
from typing import Any

import paho.mqtt.client as mqtt

_connect = mqtt.Client.connect


def _connect_with_credentials(self: mqtt.Client, *args: Any, **kwargs: Any) -> Any:
    self.username_pw_set(os.environ["BENCH_MQTT_USERNAME"], os.environ.get("BENCH_MQTT_PASSWORD"))
    return _connect(self, *args, **kwargs)


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    script = sys.argv[1]
    mqtt.Client.connect = _connect_with_credentials  # type: ignore[method-assign]
    sys.argv = [script, *sys.argv[2:]]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
