"""Scaling benchmark: 1 against 2 replicas of each service, through nginx, side by side in one run.

    .venv/bin/python bench/scaling.py                          # what `make bench-scaling` runs
    .venv/bin/python bench/scaling.py --messages 20000 --duration 10 --rounds 1

Starts two microservices topologies (sensorcloud.devstack.topology, as `make up-services` does, on
free ports) and keeps both running for the whole run:
  A   auth x1, iot x1, ingest x1
  B   auth x1, iot x2, ingest x2
each with its own PostgreSQL (fsync on unless --no-durable), Redis, Mosquitto and nginx. In each
round it measures A and B back to back (the order alternates between rounds: A B, then B A):
  ingest  --messages QoS 1 messages from bench/load.py (--procs paho processes, 1,000 device
          topics, the ingest bench's payload: two readings each) into Mosquitto, timed from the
          first publish until every reading is stored (the writer's per-topic counts polled every
          100 ms; checked with a count(*) afterwards) (msgs/s)
  drain   the ingest replicas paused (SIGSTOP) while --drain-messages are published and queued in
          their sessions, then resumed and timed until all are stored: ingest with no publisher
          on the CPU (skip with --no-drain)
  latest  GET /iot/<topic>/latest through nginx over the 2,000 reading topics the ingest filled,
          --connections keep-alive clients (bench/query_load.py), --duration s after --warmup s
          (req/s, p50, p99)
Beside each figure it records the CPU time used by each component (from /proc), the whole
machine's busy CPU and the load average, since the machine is shared. Prints a table and writes
bench/results/scaling.json. About 2.5 minutes with the defaults on 2 cores (more when loaded).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # bench.common
BENCH = ROOT / "bench"
PYTHON = sys.executable
POLL_S = 0.1
DEVICES = 1000  # bench/load.py's topics: sensors/dev-XXXXX/temp
PASSWORD = "correct horse battery staple"  # noqa: S105 - a throwaway user
HZ = os.sysconf("SC_CLK_TCK")

import httpx  # noqa: E402
import psycopg  # noqa: E402
from bench.common import command_version, cpu_model, read_json_line  # noqa: E402

from sensorcloud.devstack.ports import free_port  # noqa: E402
from sensorcloud.devstack.topology import Topology, TopologyConfig  # noqa: E402

# ---- CPU accounting ------------------------------------------------------------------------------


def _proc_table() -> dict[int, tuple[int, float]]:
    """{pid: (parent pid, CPU seconds of the process and of its children it has reaped)}."""
    table: dict[int, tuple[int, float]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            raw = Path(entry.path, "stat").read_text()
            fields = raw[raw.rindex(")") + 2 :].split()
            # fields[0] is field 3 (state): ppid is field 4, utime..cstime fields 14..17
            cpu = sum(int(x) for x in fields[11:15]) / HZ
            table[int(entry.name)] = (int(fields[1]), cpu)
    return table


def tree_cpu(table: dict[int, tuple[int, float]], roots: list[int]) -> float:
    """CPU seconds of these processes and all their descendants (live ones, and the reaped ones
    through their parents' cutime/cstime)."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    total, todo, seen = 0.0, list(roots), set()
    while todo:
        pid = todo.pop()
        if pid in seen or pid not in table:
            continue
        seen.add(pid)
        total += table[pid][1]
        todo += children.get(pid, [])
    return total


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores."""
    values = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / HZ, sum(values) / HZ


def own_children_cpu() -> float:
    """CPU seconds of the child processes this process has reaped (the load generators)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class CpuWindow:
    """What each component of every stack, the load generator and the whole machine used between
    start() and stop(), in cores (CPU seconds / wall seconds)."""

    stacks: list[Stack]
    t0: float = 0.0
    table0: dict[int, tuple[int, float]] = field(default_factory=dict)
    machine0: tuple[float, float] = (0.0, 0.0)
    load0: float = 0.0

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.table0 = _proc_table()
        self.machine0 = machine_busy()
        self.load0 = own_children_cpu()

    def stop(self, measured: Stack) -> dict[str, Any]:
        wall = time.monotonic() - self.t0
        table1 = _proc_table()
        machine1 = machine_busy()
        load = own_children_cpu() - self.load0
        out: dict[str, Any] = {"window_s": round(wall, 2)}
        components: dict[str, float] = {}
        for name, roots in measured.pids().items():
            used = tree_cpu(table1, roots) - tree_cpu(self.table0, roots)
            components[name] = round(max(used, 0.0) / wall, 3)
        idle_stacks = 0.0
        for other in self.stacks:
            if other is measured:
                continue
            roots = [p for plist in other.pids().values() for p in plist]
            idle_stacks += tree_cpu(table1, roots) - tree_cpu(self.table0, roots)
        busy = (machine1[0] - self.machine0[0]) / wall
        ours = sum(components.values()) + load / wall + idle_stacks / wall
        out["cores"] = components
        out["load_generator_cores"] = round(load / wall, 3)
        out["other_stack_cores"] = round(idle_stacks / wall, 3)
        out["machine_busy_cores"] = round(busy, 3)
        out["not_ours_cores"] = round(max(busy - ours, 0.0), 3)  # other agents' work on the machine
        out["loadavg"] = [round(x, 2) for x in os.getloadavg()]
        return out


# ---- one topology --------------------------------------------------------------------------------


class Stack:
    """A running topology, its user, its device (prefix `sensors`: every load topic) and a counter."""

    def __init__(self, name: str, replicas: int, durable: bool, extra_env: dict[str, str]) -> None:
        self.name = name
        self.replicas = replicas
        self.data_dir = Path(tempfile.mkdtemp(prefix=f"sc-scaling-{name}-"))
        self.data_dir.chmod(0o755)  # Mosquitto drops to its own user when started as root
        self.topology = Topology(
            TopologyConfig(
                data_dir=self.data_dir,
                http_port=free_port(),
                mqtt_port=free_port(),
                auth_replicas=1,
                iot_replicas=replicas,
                ingest_replicas=replicas,
                durable=durable,
                extra_env=extra_env,
            )
        )
        self.url = f"http://127.0.0.1:{self.topology.config.http_port}"
        self.seq = 0  # every load gets its own seq range: no message repeats another
        self.rows_per_message = 0
        self.paths: list[str] = []
        self._conn: psycopg.Connection[Any] | None = None

    # -- life
    def start(self) -> None:
        self.topology.start()
        assert self.topology.pg is not None
        self._conn = psycopg.connect(self.topology.pg.url_for("iot"), autocommit=True)
        self._conn.execute("SET max_parallel_workers_per_gather = 0")  # keep the polling cheap
        self._wait_ingest_ready()
        with httpx.Client(base_url=self.url, timeout=30.0) as c:
            r = c.post(
                "/auth/register", json={"email": "bench@test.com", "username": "bench", "password": PASSWORD}
            )
            r.raise_for_status()
            r = c.post(
                "/api/v1/devices", json={"name": "load", "topic_prefix": "sensors"}, headers=self.auth()
            )
            if r.status_code != 201:
                raise RuntimeError(f"device creation answered {r.status_code}: {r.text}")

    def stop(self, keep: bool) -> None:
        if self._conn is not None:
            self._conn.close()
        self.topology.stop()
        if keep:
            print(f"{self.name}: topology kept in {self.data_dir}", file=sys.stderr)
        else:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def _wait_ingest_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        ports = [c.port for n, c in self.topology.children.items() if n.startswith("ingest-")]
        while time.monotonic() < deadline:
            ok = 0
            for port in ports:
                with contextlib.suppress(httpx.HTTPError):
                    ok += httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2.0).status_code == 200
            if ok == len(ports):
                return
            time.sleep(0.2)
        raise TimeoutError(f"{self.name}: ingest replicas not ready after {timeout}s")

    def auth(self) -> dict[str, str]:
        with httpx.Client(base_url=self.url, timeout=30.0) as c:
            r = c.post("/auth/login", json={"email": "bench@test.com", "password": PASSWORD})
            r.raise_for_status()
        return {"Authorization": f"Bearer {r.json()['auth_token']}"}

    def pids(self) -> dict[str, list[int]]:
        t = self.topology
        groups: dict[str, list[int]] = {}
        for name, child in t.children.items():
            if child.process is not None:
                groups.setdefault(name.rsplit("-", 1)[0], []).append(child.pid)
        if t.pg is not None and t.pg.process is not None:
            groups["postgres"] = [t.pg.process.pid]
        if t.broker is not None:
            groups["mosquitto"] = [t.broker.process.pid]
        if t.redis is not None:
            groups["redis"] = [t.redis.process.pid]
        return groups

    def count(self) -> int:
        """Readings stored, cheaply: the sum of the per-topic counts the writer keeps in `topics`, in
        the transaction that inserts the readings (a count(*) of a growing `readings` ten times a
        second would cost PostgreSQL more CPU than the writes it watches)."""
        assert self._conn is not None
        row = self._conn.execute("SELECT coalesce(sum(count), 0) FROM topics").fetchone()
        return int(row[0]) if row else 0

    def count_rows(self) -> int:
        """count(*) of `readings`: checks `count()` after a measurement, outside its window."""
        assert self._conn is not None
        row = self._conn.execute("SELECT count(*) FROM readings").fetchone()
        return int(row[0]) if row else 0

    # -- load
    def publishers(self, n: int, procs: int, log: Path) -> subprocess.Popen[str]:
        """bench/load.py, connected as the broker's service account, waiting for a line on stdin."""
        args = [PYTHON, str(BENCH / "load.py"), "--port", str(self.topology.mqtt_port)]
        args += ["--username", "sensorcloud-service", "--n", str(n), "--qos", "1", "--procs", str(procs)]
        args += ["--devices", str(DEVICES), "--seq-base", str(self.seq), "--wait-go"]
        self.seq += n
        env = {**os.environ, "BENCH_MQTT_PASSWORD": self.topology.secrets["service_password"]}
        with log.open("ab") as err:
            proc = subprocess.Popen(
                args, env=env, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True
            )
        read_json_line(proc, "the publishers")  # {"event": "ready"}: every connection is up
        return proc

    def warm_up(self, procs: int, log: Path, timeout: float = 90.0) -> None:
        """One message per load topic (the directory lookups and the `topics` rows happen here, not in
        the measured run); how many readings a load message makes; the paths of the latest query."""
        before = self.count()
        proc = self.publishers(DEVICES, procs, log)
        go(proc)
        read_json_line(proc, "the publishers")
        proc.wait(30)
        deadline = time.monotonic() + timeout
        last, settled = -1, time.monotonic()
        while time.monotonic() < deadline:
            now = self.count() - before
            if now != last:
                last, settled = now, time.monotonic()
            elif now > 0 and now % DEVICES == 0 and time.monotonic() - settled > 1.0:
                break
            time.sleep(0.2)
        else:
            raise TimeoutError(f"{self.name}: warm-up stored {last} readings for {DEVICES} messages")
        self.rows_per_message = last // DEVICES
        assert self._conn is not None
        rows = self._conn.execute("SELECT topic FROM topics WHERE topic LIKE 'sensors/%' ORDER BY topic")
        self.paths = [f"/iot/{topic}/latest" for (topic,) in rows.fetchall()]
        r = httpx.get(self.url + self.paths[0], headers=self.auth(), timeout=30.0)
        if r.status_code != 200 or len(r.json().get("data", [])) != 1:
            raise RuntimeError(f"{self.name}: {self.paths[0]} answered {r.status_code}: {r.text[:300]}")


def go(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()


# ---- the two measurements ------------------------------------------------------------------------


def wait_stored(stack: Stack, baseline: int, expected: int, stall: float) -> float | None:
    """Poll count(*) every POLL_S until `expected` rows are stored (the instant of that snapshot) or
    no row has arrived for `stall` seconds (None)."""
    last, changed = -1, time.monotonic()
    while True:
        t = time.monotonic()  # rows counted by this snapshot were stored by t
        stored = stack.count() - baseline
        if stored >= expected:
            return t
        if stored != last:
            last, changed = stored, t
        elif t - changed > stall:
            return None
        time.sleep(max(0.0, POLL_S - (time.monotonic() - t)))


def cpu_per_message(window: dict[str, Any], messages: int) -> dict[str, float]:
    return {k: round(v * window["window_s"] * 1e6 / messages, 1) for k, v in window["cores"].items()}


def measure_ingest(
    stack: Stack, stacks: list[Stack], messages: int, procs: int, stall: float, logs: Path
) -> dict[str, Any]:
    """Live: publishers and ingest at once, from the first publish until every message is stored."""
    out: dict[str, Any] = {"kind": "ingest", "stack": stack.name, "messages": messages}
    baseline, rows_before = stack.count(), stack.count_rows()
    proc = stack.publishers(messages, procs, logs / f"load-{stack.name}.log")
    cpu = CpuWindow(stacks)
    cpu.start()
    go(proc)
    t_done = wait_stored(stack, baseline, messages * stack.rows_per_message, stall)
    published = read_json_line(proc, "the publishers")
    proc.wait(30)
    out["cpu"] = cpu.stop(stack)
    out["cpu_us_per_msg"] = cpu_per_message(out["cpu"], messages)
    out["stored"] = (stack.count_rows() - rows_before) // stack.rows_per_message
    out["publish_msgs_per_s"] = published.get("rate")
    out["acked"] = published.get("acked")
    if t_done is None or out["stored"] < messages:
        out["status"] = "incomplete"
        return out
    elapsed = t_done - published["t_first_publish"]
    out.update(status="complete", elapsed_s=round(elapsed, 3), msgs_per_s=round(messages / elapsed, 1))
    return out


def measure_drain(
    stack: Stack, stacks: list[Stack], messages: int, procs: int, stall: float, logs: Path
) -> dict[str, Any]:
    """Backlog: the ingest replicas paused (SIGSTOP) while the messages are published and acknowledged
    (Mosquitto queues them in the replicas' sessions), then resumed (SIGCONT) and timed until every
    message is stored: the ingest side's rate with no publisher competing for the CPU. The pause is
    far shorter than the ingest's MQTT keepalive (30 s; the broker waits 1.5 x that)."""
    out: dict[str, Any] = {"kind": "drain", "stack": stack.name, "messages": messages}
    baseline, rows_before = stack.count(), stack.count_rows()
    replicas = stack.pids()["ingest"]
    proc = stack.publishers(messages, procs, logs / f"drain-{stack.name}.log")
    paused = time.monotonic()
    for pid in replicas:
        os.kill(pid, signal.SIGSTOP)
    try:
        go(proc)
        published = read_json_line(proc, "the publishers")
        proc.wait(30)
        cpu = CpuWindow(stacks)
        cpu.start()
        t_resume = time.monotonic()
    finally:
        for pid in replicas:
            os.kill(pid, signal.SIGCONT)
    out["paused_s"] = round(t_resume - paused, 2)
    t_done = wait_stored(stack, baseline, messages * stack.rows_per_message, stall)
    out["cpu"] = cpu.stop(stack)
    out["cpu_us_per_msg"] = cpu_per_message(out["cpu"], messages)
    out["stored"] = (stack.count_rows() - rows_before) // stack.rows_per_message
    out["acked"] = published.get("acked")
    if t_done is None or out["stored"] < messages:
        out["status"] = "incomplete"
        return out
    elapsed = t_done - t_resume
    out.update(status="complete", elapsed_s=round(elapsed, 3), msgs_per_s=round(messages / elapsed, 1))
    return out


def measure_latest(
    stack: Stack, stacks: list[Stack], connections: int, warmup: float, duration: float
) -> dict[str, Any]:
    port = stack.topology.config.http_port
    spec = {
        "targets": [["127.0.0.1", port]],
        "connections": connections,
        "warmup_s": warmup,
        "duration_s": duration,
        "groups": [{"headers": stack.auth(), "paths": stack.paths}],
    }
    cpu = CpuWindow(stacks)
    cpu.start()
    done = subprocess.run(
        [PYTHON, str(BENCH / "query_load.py")],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        timeout=warmup + duration + 120,
        check=False,
        cwd=ROOT,
    )
    window = cpu.stop(stack)
    if done.returncode != 0:
        raise RuntimeError(f"query_load.py failed ({done.returncode}): {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    keys = ("ok", "errors", "statuses", "rate", "p50_ms", "p90_ms", "p99_ms", "max_ms", "client_cpu")
    rate = float(result.get("rate") or 0)
    # cores / (requests/s): CPU seconds per request, assuming the warm-up ran at the measured rate
    per_req = {k: round(v * 1e6 / rate, 1) for k, v in window["cores"].items()} if rate else {}
    return {
        "kind": "latest",
        "stack": stack.name,
        **{k: result.get(k) for k in keys},
        "cpu": window,
        "cpu_us_per_req": per_req,
    }


# ---- report --------------------------------------------------------------------------------------


def median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def summarize(runs: list[dict[str, Any]], stacks: list[Stack]) -> dict[str, Any]:
    def pick(kind: str, name: str, key: str) -> list[float]:
        return [
            float(r[key])
            for r in runs
            if r["kind"] == kind
            and r["stack"] == name
            and r.get(key) is not None
            and r.get("status", "ok") != "incomplete"
        ]

    def cores(kind: str, name: str, component: str) -> float | None:
        vals = [
            r["cpu"]["cores"].get(component, 0.0) for r in runs if r["kind"] == kind and r["stack"] == name
        ]
        return round(statistics.median(vals), 2) if vals else None

    def machine(kind: str, name: str, key: str) -> float | None:
        vals = [r["cpu"][key] for r in runs if r["kind"] == kind and r["stack"] == name]
        return round(statistics.median(vals), 2) if vals else None

    def per_unit(kind: str, name: str, key: str) -> dict[str, float]:
        found: dict[str, list[float]] = {}
        for r in runs:
            if r["kind"] == kind and r["stack"] == name and r.get("status", "ok") != "incomplete":
                for component, value in r.get(key, {}).items():
                    found.setdefault(component, []).append(value)
        return {c: round(statistics.median(v), 1) for c, v in found.items() if statistics.median(v) > 0}

    out: dict[str, Any] = {}
    for s in stacks:
        out[s.name] = {
            "replicas": s.replicas,
            "ingest_msgs_per_s": median(pick("ingest", s.name, "msgs_per_s")),
            "ingest_runs_msgs_per_s": pick("ingest", s.name, "msgs_per_s"),
            "ingest_replica_cores": cores("ingest", s.name, "ingest"),
            "ingest_postgres_cores": cores("ingest", s.name, "postgres"),
            "ingest_mosquitto_cores": cores("ingest", s.name, "mosquitto"),
            "ingest_publishers_cores": machine("ingest", s.name, "load_generator_cores"),
            "ingest_machine_busy_cores": machine("ingest", s.name, "machine_busy_cores"),
            "ingest_not_ours_cores": machine("ingest", s.name, "not_ours_cores"),
            "latest_req_per_s": median(pick("latest", s.name, "rate")),
            "latest_runs_req_per_s": pick("latest", s.name, "rate"),
            "latest_p50_ms": median(pick("latest", s.name, "p50_ms")),
            "latest_p99_ms": median(pick("latest", s.name, "p99_ms")),
            "latest_errors": sum(
                int(r.get("errors") or 0) for r in runs if r["kind"] == "latest" and r["stack"] == s.name
            ),
            "ingest_cpu_us_per_msg": per_unit("ingest", s.name, "cpu_us_per_msg"),
            "drain_msgs_per_s": median(pick("drain", s.name, "msgs_per_s")),
            "drain_runs_msgs_per_s": pick("drain", s.name, "msgs_per_s"),
            "drain_replica_cores": cores("drain", s.name, "ingest"),
            "drain_postgres_cores": cores("drain", s.name, "postgres"),
            "drain_machine_busy_cores": machine("drain", s.name, "machine_busy_cores"),
            "drain_not_ours_cores": machine("drain", s.name, "not_ours_cores"),
            "drain_cpu_us_per_msg": per_unit("drain", s.name, "cpu_us_per_msg"),
            "latest_cpu_us_per_req": per_unit("latest", s.name, "cpu_us_per_req"),
            "latest_iot_cores": cores("latest", s.name, "iot"),
            "latest_nginx_cores": cores("latest", s.name, "nginx"),
            "latest_postgres_cores": cores("latest", s.name, "postgres"),
            "latest_client_cores": machine("latest", s.name, "load_generator_cores"),
            "latest_machine_busy_cores": machine("latest", s.name, "machine_busy_cores"),
            "latest_not_ours_cores": machine("latest", s.name, "not_ours_cores"),
        }
    a, b = out[stacks[0].name], out[stacks[-1].name]
    for key in ("ingest_msgs_per_s", "drain_msgs_per_s", "latest_req_per_s"):
        if a[key] and b[key]:
            out[f"ratio_{key}"] = round(b[key] / a[key], 2)
    return out


def fmt(value: Any, spec: str = ",.0f") -> str:
    return "-" if value is None else format(value, spec)


def print_table(summary: dict[str, Any], stacks: list[Stack]) -> None:
    print()
    head = f"{'':<34}" + "".join(
        f"{s.name + ' (' + str(s.replicas) + ' iot, ' + str(s.replicas) + ' ingest)':>26}" for s in stacks
    )
    print(head)
    rows = [
        ("ingest msgs/s (QoS 1, to stored)", "ingest_msgs_per_s", ",.0f"),
        ("  ingest replicas, cores used", "ingest_replica_cores", ".2f"),
        ("  postgres, cores used", "ingest_postgres_cores", ".2f"),
        ("  publishers, cores used", "ingest_publishers_cores", ".2f"),
        ("  ingest CPU us per message", "ingest_cpu_us_per_msg.ingest", ",.0f"),
        ("  postgres CPU us per message", "ingest_cpu_us_per_msg.postgres", ",.0f"),
        ("  mosquitto CPU us per message", "ingest_cpu_us_per_msg.mosquitto", ",.0f"),
        ("  machine busy / not ours, cores", "ingest", ""),
        ("drain msgs/s (backlog, no publisher)", "drain_msgs_per_s", ",.0f"),
        ("  ingest replicas, cores used", "drain_replica_cores", ".2f"),
        ("  postgres, cores used", "drain_postgres_cores", ".2f"),
        ("  ingest CPU us per message", "drain_cpu_us_per_msg.ingest", ",.0f"),
        ("  machine busy / not ours, cores", "drain", ""),
        ("latest req/s (c=32, via nginx)", "latest_req_per_s", ",.0f"),
        ("  p50 ms", "latest_p50_ms", ".1f"),
        ("  p99 ms", "latest_p99_ms", ".1f"),
        ("  iot replicas, cores used", "latest_iot_cores", ".2f"),
        ("  nginx, cores used", "latest_nginx_cores", ".2f"),
        ("  iot CPU us per request", "latest_cpu_us_per_req.iot", ",.0f"),
        ("  postgres CPU us per request", "latest_cpu_us_per_req.postgres", ",.0f"),
        ("  nginx CPU us per request", "latest_cpu_us_per_req.nginx", ",.0f"),
        ("  machine busy / not ours, cores", "latest", ""),
    ]
    for label, key, spec in rows:
        cells = []
        for s in stacks:
            v = summary[s.name]
            if key in ("ingest", "drain", "latest"):
                kind = key
                busy, not_ours = v[f"{kind}_machine_busy_cores"], v[f"{kind}_not_ours_cores"]
                cells.append(f"{fmt(busy, '.2f')} / {fmt(not_ours, '.2f')}")
            elif "." in key:
                outer, inner = key.split(".")
                cells.append(fmt(v[outer].get(inner), spec))
            else:
                cells.append(fmt(v[key], spec))
        print(f"{label:<34}" + "".join(f"{c:>26}" for c in cells))
    for key in ("ratio_ingest_msgs_per_s", "ratio_drain_msgs_per_s", "ratio_latest_req_per_s"):
        if key in summary:
            print(f"{key.replace('ratio_', 'B / A ').replace('_', ' '):<34}{summary[key]:>26.2f}")


def machine_facts() -> dict[str, Any]:
    commands = {
        "nginx": ["nginx", "-v"],
        "mosquitto": ["mosquitto", "-h"],
        "postgres": ["pg_config", "--version"],
    }
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {name: command_version(cmd) for name, cmd in commands.items()},
    }


# ---- main ----------------------------------------------------------------------------------------


def parse_env(values: list[str]) -> dict[str, str]:
    env = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("SENSORCLOUD_"):
            raise SystemExit(f"--service-env wants SENSORCLOUD_NAME=value, got {item!r}")
        env[key] = value
    return env


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--messages", type=int, default=50_000, help="QoS 1 messages per ingest run")
    ap.add_argument("--drain-messages", type=int, default=100_000, help="messages queued per drain run")
    ap.add_argument("--procs", type=int, default=2, help="publisher processes")
    ap.add_argument("--connections", type=int, default=32, help="HTTP clients of the latest query")
    ap.add_argument("--duration", type=float, default=15.0, help="seconds measured per latest run")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds of latest load before measuring")
    ap.add_argument("--rounds", type=int, default=2, help="rounds (A then B, then B then A, ...)")
    ap.add_argument("--replicas", type=int, default=2, help="replicas of iot and ingest in topology B")
    ap.add_argument("--stall-timeout", type=float, default=30.0, help="give up when no row arrives for")
    ap.add_argument("--no-drain", action="store_true", help="skip the backlog-drain measurement")
    ap.add_argument("--no-durable", action="store_true", help="PostgreSQL without fsync (faster, not real)")
    ap.add_argument("--service-env", action="append", default=[], help="SENSORCLOUD_X=y for every service")
    ap.add_argument("--keep", action="store_true", help="keep the topologies' data directories")
    ap.add_argument("--out", type=Path, default=BENCH / "results" / "scaling.json")
    args = ap.parse_args()

    started = dt.datetime.now(dt.UTC)
    t_start = time.monotonic()
    load_start = [round(x, 2) for x in os.getloadavg()]
    logs = Path(tempfile.mkdtemp(prefix="sc-scaling-logs-"))
    extra = parse_env(args.service_env)
    stacks = [
        Stack("A", 1, not args.no_durable, extra),
        Stack("B", args.replicas, not args.no_durable, extra),
    ]
    runs: list[dict[str, Any]] = []

    def say(message: str) -> None:
        print(f"[{time.monotonic() - t_start:6.1f}s] {message}", file=sys.stderr, flush=True)

    try:
        for s in stacks:
            say(f"starting topology {s.name} (iot x{s.replicas}, ingest x{s.replicas})")
            s.start()
            s.warm_up(args.procs, logs / f"warmup-{s.name}.log")
            say(f"{s.name}: up; {s.rows_per_message} readings per message, {len(s.paths)} topics")
        for rnd in range(args.rounds):
            order = stacks if rnd % 2 == 0 else stacks[::-1]
            for s in order:
                say(f"round {rnd + 1}: ingest {args.messages} messages into {s.name}")
                r = measure_ingest(s, stacks, args.messages, args.procs, args.stall_timeout, logs)
                runs.append({"round": rnd + 1, **r})
                say(f"  {r.get('msgs_per_s')} msgs/s ({r['status']}), loadavg {r['cpu']['loadavg'][0]}")
            if not args.no_drain:
                for s in order:
                    say(f"round {rnd + 1}: {s.name}: drain {args.drain_messages} queued messages")
                    r = measure_drain(s, stacks, args.drain_messages, args.procs, args.stall_timeout, logs)
                    runs.append({"round": rnd + 1, **r})
                    say(f"  {r.get('msgs_per_s')} msgs/s ({r['status']}), paused {r['paused_s']} s")
            for s in order:
                say(f"round {rnd + 1}: latest, {args.connections} connections, {args.duration}s on {s.name}")
                r = measure_latest(s, stacks, args.connections, args.warmup, args.duration)
                runs.append({"round": rnd + 1, **r})
                say(f"  {r['rate']} req/s, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, errors {r['errors']}")
    finally:
        for s in stacks:
            with contextlib.suppress(Exception):
                s.stop(args.keep)
        if not args.keep:
            shutil.rmtree(logs, ignore_errors=True)

    summary = summarize(runs, stacks)
    load_end = [round(x, 2) for x in os.getloadavg()]
    result: dict[str, Any] = {
        "benchmark": "scaling",
        "started": started.isoformat(timespec="seconds"),
        "duration_s": round(time.monotonic() - t_start, 1),
        "options": {
            "messages": args.messages,
            "drain_messages": None if args.no_drain else args.drain_messages,
            "publisher_procs": args.procs,
            "connections": args.connections,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "rounds": args.rounds,
            "durable": not args.no_durable,
            "service_env": extra,
        },
        "topologies": {s.name: {"auth": 1, "iot": s.replicas, "ingest": s.replicas} for s in stacks},
        "machine": {
            **machine_facts(),
            "loadavg_at_start": load_start,
            "loadavg_at_end": load_end,
        },
        "summary": summary,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print_table(summary, stacks)
    print(
        f"\nload average at start {load_start}, at end {load_end};"
        f" {os.cpu_count()} cores; PostgreSQL fsync {'on' if not args.no_durable else 'off'}; -> {args.out}"
    )


if __name__ == "__main__":
    main()
