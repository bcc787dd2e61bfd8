"""glibc malloc settings under which XLA:CPU reuses its buffers instead of page-faulting them in at every call.

XLA:CPU allocates one temporary buffer per execution with `malloc` (336 MB for the LNS autoencoder's train step at
batch 64). glibc serves a block that large from a worker thread's arena with `mmap` and gives it back with `munmap`
when freed, so every step page-faults the whole buffer in again, in kernel time. With one arena, no `mmap` and no
trimming, glibc hands the same freed block back: a tenth of the faults (`tests/test_malloc.py` checks them; the
README gives the times).

The cost: freed memory stays with the process (up to 1 GiB at the heap's top) instead of returning to the OS, and
all threads share one arena. So nothing applies them at import: the entry points (`experiments/*`, `benchmarks/*`)
call `reuse_freed_memory()` first thing, before JAX starts its CPU threads (a thread keeps the arena it first used);
a user's script may do the same. `NOISEGROUP_MALLOC=default` in the environment keeps glibc's defaults.
"""

from __future__ import annotations

import ctypes
import os
import sys

ENV_VAR = "NOISEGROUP_MALLOC"
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8  # glibc's malloc.h
SETTINGS = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 1 << 30))


def reuse_freed_memory() -> bool:
    """Applies the settings above to this process's glibc malloc.

    Returns:
        True if applied; False on other platforms or C libraries, or when `NOISEGROUP_MALLOC=default`.

    Raises:
        ValueError: `NOISEGROUP_MALLOC` is set to something other than "reuse" or "default".
    """
    mode = os.environ.get(ENV_VAR, "reuse")
    if mode not in ("reuse", "default"):
        raise ValueError(f"{ENV_VAR} must be 'reuse' or 'default', got {mode!r}")
    if mode == "default" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl, ...): nothing to tune
        return False
    return all(mallopt(param, value) == 1 for param, value in SETTINGS)
