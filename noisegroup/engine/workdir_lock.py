"""One run per workdir: an exclusive lock held for as long as a run writes there.

    with workdir_lock.hold(workdir):
        ...   # train, segment

The lock is `fcntl.flock` on `<workdir>/.lock`, which the OS drops when the holder exits in any way (kill -9
included), so a killed run never leaves a stale lock. The file records the holder's pid and host, so the refusal
names the other process.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from pathlib import Path
from typing import Iterator

from noisegroup.errors import ExpectedError


class WorkdirBusyError(ExpectedError, RuntimeError):
    """Another process holds the workdir."""


@contextlib.contextmanager
def hold(workdir: str | Path) -> Iterator[None]:
    """Holds `workdir`'s lock for the block.

    Raises:
        WorkdirBusyError: another process holds it (naming its pid and host).
    """
    path = Path(workdir) / ".lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "an unknown process"
            raise WorkdirBusyError(f"{workdir} is in use by {holder}; wait for it to finish or use another "
                                   "workdir") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()}")
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()
            fcntl.flock(f, fcntl.LOCK_UN)
