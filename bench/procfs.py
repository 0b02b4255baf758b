"""What ``/proc`` says about the server and the machine: memory and CPU time of a
process tree (the server and any worker it forks), and of the whole machine."""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CpuProbe", "CpuShare", "busy_seconds", "cpu_seconds", "memory_kb"]

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# /proc/stat "cpu" columns charged to processes: user nice system. Interrupts are left
# out: loopback traffic is processed in softirq time, which is the benchmark's own.
_BUSY_COLUMNS = (0, 1, 2)


def memory_kb(pid: int, field: str = "VmRSS") -> int:
    """``field`` of /proc/<pid>/status (VmRSS, VmHWM), summed over the process tree."""
    return sum(_status_kb(member, field) for member in _process_tree(pid))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process tree so far."""
    return sum(_cpu_ticks(member) for member in _process_tree(pid)) / _CLOCK_TICKS


def _process_tree(pid: int) -> list[int]:
    tree, pending = [], [pid]
    while pending:
        member = pending.pop()
        tree.append(member)
        for task in Path(f"/proc/{member}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                pending += [int(child) for child in task.read_text().split()]
    return tree


def _status_kb(pid: int, field: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    return 0


def _cpu_ticks(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    # Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def busy_seconds() -> float:
    """CPU time all processes of the machine have used so far."""
    columns = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    return sum(int(columns[column]) for column in _BUSY_COLUMNS) / _CLOCK_TICKS


@dataclass(frozen=True)
class CpuShare:
    """Percent of one core used during a measured phase."""

    server: float
    others: float


class CpuProbe:
    """Server CPU over a phase, and what processes other than server and driver took
    (a busy machine makes the figures unreliable). NaN where no server pid is known."""

    def __init__(self, server_pid: int | None) -> None:
        self._pid = server_pid
        self._server = 0.0
        self._busy = 0.0

    def start(self) -> None:
        self._server = cpu_seconds(self._pid) if self._pid is not None else 0.0
        self._busy = busy_seconds()

    def share(self, elapsed: float, driver_cpu: float) -> CpuShare:
        if self._pid is None or elapsed <= 0:
            return CpuShare(math.nan, math.nan)
        server = cpu_seconds(self._pid) - self._server
        others = busy_seconds() - self._busy - server - driver_cpu
        return CpuShare(100 * server / elapsed, 100 * max(0.0, others) / elapsed)
