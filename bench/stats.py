"""Pure helpers of the benchmark: percentiles, a process tree's CPU time from /proc, ranges over repeats.

Kept free of I/O beyond reading /proc so the unit tier can check them (tests/unit/test_bench_stats.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-quantile (0 <= q <= 1) by linear interpolation between the closest ranks (numpy's default)."""
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0 <= q <= 1:
        raise ValueError(f"quantile {q} outside [0, 1]")
    ordered = sorted(samples)
    position = q * (len(ordered) - 1)
    lower = int(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def summary(samples: Sequence[float]) -> dict[str, float]:
    """p50, p90 and p99 of the samples."""
    return {name: percentile(samples, q) for name, q in (("p50", 0.50), ("p90", 0.90), ("p99", 0.99))}


@dataclass(frozen=True)
class ProcStat:
    pid: int
    ppid: int
    cpu_ticks: int  # user + system time of the process (all its threads), in clock ticks


def parse_proc_stat(text: str) -> ProcStat:
    """One /proc/<pid>/stat line. The command name (field 2) is in parentheses and may itself hold spaces
    and parentheses, so the fields are counted from the last ')'."""
    pid_part, _, rest = text.rpartition(")")
    pid = int(pid_part.split("(", 1)[0])
    fields = rest.split()
    # After the name: state(3) ppid(4) ... utime(14) stime(15): indexes 0, 1, ... 11, 12 of `fields`.
    return ProcStat(pid=pid, ppid=int(fields[1]), cpu_ticks=int(fields[11]) + int(fields[12]))


def process_tree_cpu_seconds(pid: int, proc: Path = Path("/proc"), ticks_per_second: int | None = None) -> float:
    """CPU time (user + system) spent so far by the process `pid` and every live descendant, in seconds.

    A proxy may serve from a child (a worker started by its CLI), so the whole tree counts. Descendants
    that already exited are not counted: the targets measured here keep theirs for the whole run."""
    ticks = ticks_per_second or os.sysconf("SC_CLK_TCK")
    stats: dict[int, ProcStat] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stats[int(entry.name)] = parse_proc_stat((entry / "stat").read_text())
        except (OSError, ValueError, IndexError):
            continue  # exited while we looked, or not a process directory
    if pid not in stats:
        raise ProcessLookupError(pid)
    children: dict[int, list[int]] = {}
    for stat in stats.values():
        children.setdefault(stat.ppid, []).append(stat.pid)
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        total += stats[current].cpu_ticks
        pending.extend(children.get(current, []))
    return total / ticks


def cpu_ms_per_request(cpu_seconds_before: float, cpu_seconds_after: float, requests: int) -> float:
    """Milliseconds of CPU per request from a process's CPU time read before and after `requests` requests."""
    if requests <= 0:
        raise ValueError("no requests")
    if cpu_seconds_after < cpu_seconds_before:
        raise ValueError("CPU time went backwards: not the same process")
    return (cpu_seconds_after - cpu_seconds_before) * 1000 / requests


def value_range(values: Iterable[float], digits: int = 1, unit: str = "") -> str:
    """'low–high' (or one value when all repeats agree at this precision), e.g. '13.2–17.0 ms'."""
    numbers = list(values)
    if not numbers:
        return "n/a"
    low, high = f"{min(numbers):.{digits}f}", f"{max(numbers):.{digits}f}"
    text = low if low == high else f"{low}–{high}"
    return f"{text} {unit}".rstrip()


@dataclass(frozen=True)
class ImportTime:
    module: str
    self_us: int
    cumulative_us: int
    depth: int  # 0 for a module imported at top level


def parse_importtime(stderr: str) -> list[ImportTime]:
    """The lines of `python -X importtime` ("import time: self [us] | cumulative | imported package");
    other lines (the header, anything the program printed) are skipped."""
    entries = []
    for line in stderr.splitlines():
        if not line.startswith("import time:"):
            continue
        fields = line.removeprefix("import time:").split("|")
        if len(fields) != 3 or not fields[0].strip().isdigit():
            continue  # the header line
        name = fields[2].rstrip()
        indent = len(name) - len(name.lstrip())
        entries.append(ImportTime(name.strip(), int(fields[0]), int(fields[1]), max(0, (indent - 3) // 2)))
    return entries
