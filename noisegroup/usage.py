"""What a run cost the machine, read from the kernel: CPU seconds and peak resident memory (stdlib only).

    cpu = usage.cpu_seconds(); ...; spent = usage.cpu_seconds() - cpu
"""

from __future__ import annotations

import resource
from pathlib import Path


def cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and of its finished children (e.g. clustering workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def peak_rss_gb() -> float:
    """This process's peak resident memory in GB: VmHWM (not ru_maxrss, which a process started by exec inherits
    from its parent), or ru_maxrss where /proc has no status."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9
