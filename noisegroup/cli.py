"""What the command-line entry points (`experiments/*`) share: the user's mistakes and the machine's limits end in
one line, not a traceback.

    def main(argv):
        quiet_orbax_logs()
        with one_line_errors(CONFIG_ERRORS):            # a typo in a config: one line, exit status 2
            config = pipeline.LNSConfig.from_mapping(raw)
        with one_line_errors():                         # a full disk, a busy workdir: one line, exit status 1
            pipeline.run(raw, workdir)

Anything else (a bug) keeps its traceback. Why `os._exit`: after a failed asynchronous checkpoint write, orbax's
background threads and coroutines print dozens of tracebacks while the interpreter shuts down ("Event loop is
closed"), burying the one line that matters. (`Checkpointer.save` checks the free space first, so a full disk
normally fails before orbax writes anything; a write that fails midway, e.g. when another process fills the disk,
still shows tensorstore's own "Event loop is closed" reports, printed from its threads, above our line.) Every file
this project writes is atomic (`noisegroup.atomic`, orbax's temporary directories, which `Checkpointer` removes on a
failed write), so skipping the interpreter's shutdown leaves nothing half-written behind; the workdir lock is an
flock, released by the kernel.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sys
from typing import Iterator

from noisegroup.engine.workdir_lock import WorkdirBusyError

CONFIG_ERRORS = (ValueError, KeyError, FileNotFoundError)  # what config validation raises
# The machine's limits: a full disk or quota, a file-size limit, a read-only or forbidden directory.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES})


def is_disk_error(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in DISK_ERRNOS


@contextlib.contextmanager
def one_line_errors(kinds: tuple[type[BaseException], ...] = (), exit_status: int | None = None) -> Iterator[None]:
    """Turns `kinds` of errors, disk errors and a busy workdir raised in the block into one line on stderr
    (``error: <message>``) and an immediate exit: status 2 for `kinds` (a bad config), 1 otherwise."""
    try:
        yield
    except BaseException as e:  # noqa: BLE001 - re-raised below unless it is one of ours
        if isinstance(e, kinds):
            status = 2 if exit_status is None else exit_status
        elif is_disk_error(e) or isinstance(e, WorkdirBusyError):
            status = 1 if exit_status is None else exit_status
        else:
            raise
        message = str(e) if not isinstance(e, KeyError) else f"missing key {e}"
        sys.stdout.flush()
        sys.stderr.write(f"error: {' '.join(message.split())}\n")
        sys.stderr.flush()
        os._exit(status)


class _DropOrbaxRecords(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "orbax" not in record.pathname


def quiet_orbax_logs() -> None:
    """Drops orbax's own log records: INFO on every save, and ERROR with a traceback from its writer threads when a
    write fails, which then reaches us as the exception of the call that waits for it, and is reported once."""
    logging.getLogger("absl").addFilter(_DropOrbaxRecords())
