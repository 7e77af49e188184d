"""CPU time of the processes of a benchmark case, from /proc: where the machine's time went.

A case runs publishers, a broker, a consumer and maybe PostgreSQL on the same cores; its rate says
how fast, this says who used the CPU meanwhile (microseconds per message, by component), which is
what decides how a consumer compares with another on a machine they share with their load.

Processes that are alive at both ends are read from /proc (utime + stime, all threads, of the
process and its descendants). Processes that exit in between (the publishers) report their own.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of a live process, or None once it is gone."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        raw = Path(f"/proc/{pid}/stat").read_text()
        fields = raw[raw.rindex(")") + 2 :].split()  # the name may hold spaces and parentheses
        return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICKS
    return None


def peak_rss_mb(pid: int) -> float | None:
    """The most resident memory a live process has used (VmHWM), in MB, or None once it is gone."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


def process_tree(roots: Iterable[int], exclude: frozenset[int] = frozenset()) -> dict[int, float]:
    """CPU seconds of each live process among `roots` and their descendants, but `exclude`."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None:
                parents[int(entry.name)], cpu[int(entry.name)] = stat
    wanted = {pid for pid in roots if pid in cpu}
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in wanted and pid not in wanted and pid not in exclude:
                wanted.add(pid)
                grew = True
    return {pid: cpu[pid] for pid in wanted}


class CpuMeter:
    """CPU used by named groups of process trees between `start` and `stop`.

    A process that began after `start` counts from zero; one that ended before `stop` is missed
    (what it used is lost with it): measure those with `add`. For the groups named in `memory`,
    `stop` also reads the peak resident memory of their largest process.
    """

    def __init__(
        self, groups: dict[str, list[int]], exclude: Iterable[int] = (), memory: Iterable[str] = ()
    ) -> None:
        self._groups = groups
        self._exclude = frozenset(exclude)
        self._memory = frozenset(memory)
        self._before: dict[str, dict[int, float]] = {}
        self.seconds: dict[str, float] = {}
        self.peak_mb: dict[str, float] = {}  # the largest process of each group, at its peak

    def start(self) -> None:
        self._before = {name: process_tree(pids, self._exclude) for name, pids in self._groups.items()}

    def stop(self) -> dict[str, float]:
        for name, pids in self._groups.items():
            before = self._before.get(name, {})
            now = process_tree(pids, self._exclude)
            self.seconds[name] = sum(max(0.0, cpu - before.get(pid, 0.0)) for pid, cpu in now.items())
            if name in self._memory:
                peaks = [mb for pid in now if (mb := peak_rss_mb(pid)) is not None]
                if peaks:
                    self.peak_mb[name] = round(max(peaks), 1)
        return self.seconds

    def add(self, name: str, seconds: float | None) -> None:
        if seconds is not None:
            self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def per_message_us(self, messages: int) -> dict[str, float]:
        """Microseconds of CPU per message, by group, and their sum under "total"."""
        us = {name: round(s * 1e6 / messages, 1) for name, s in self.seconds.items()}
        us["total"] = round(sum(self.seconds.values()) * 1e6 / messages, 1)
        return us
