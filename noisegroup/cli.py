"""What the command-line entry points (`experiments/*`) share: the user's mistakes and the machine's limits end in
one line on stderr and an exit status, not a traceback.

    def main(argv):
        with cli.config_errors():                 # a bad key or value: one line, exit status 2
            config = pipeline.LNSConfig.from_mapping(raw)
        pipeline.run(raw, workdir)                # a full disk, a busy workdir, no checkpoint that restores: status 1

    if __name__ == "__main__":
        cli.run(main)

`run` is the one place that reports: the flag parser's errors (a mistyped `--config.` key names the closest valid
key) and `errors.BadInputError` end in status 2; `errors.ExpectedError` and disk errors (full, read-only, forbidden)
in status 1. Anything else (a bug) keeps its traceback, and so does everything with `--debug` or
`NOISEGROUP_DEBUG=1`.

Why `os._exit`: after a failed asynchronous checkpoint write, orbax's background threads and coroutines print dozens
of tracebacks while the interpreter shuts down ("Event loop is closed"), burying the one line that matters.
(`Checkpointer.save` checks the free space first, so a full disk normally fails before orbax writes anything; a
write that fails midway, e.g. when another process fills the disk, still shows tensorstore's own "Event loop is
closed" reports, printed from its threads, above our line.) Every file this project writes is atomic
(`noisegroup.atomic`, orbax's temporary directories, which `Checkpointer` removes on a failed write), so skipping
the interpreter's shutdown leaves nothing half-written behind; the workdir lock is an flock, released by the kernel.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import sys
from typing import Callable, Iterator

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

from noisegroup.errors import BadInputError, ExpectedError


CONFIG_ERRORS = (ValueError, KeyError, FileNotFoundError)  # what config validation raises
DEBUG_ENV = "NOISEGROUP_DEBUG"  # "1": every error keeps its traceback (as --debug)

_DEBUG = flags.DEFINE_bool("debug", False, f"show the traceback of every error (also {DEBUG_ENV}=1)")
# The machine's limits: a full disk or quota, a file-size limit, a read-only or forbidden directory.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES})


def is_disk_error(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in DISK_ERRNOS


def debugging() -> bool:
    """Whether errors keep their traceback (`--debug`, or the environment switch before flags are parsed)."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0") or (flags.FLAGS.is_parsed() and _DEBUG.value)


def fail(message: str, status: int) -> None:
    """Prints ``error: <message>`` in one line on stderr and exits at once with `status` (see the module docstring
    for why `os._exit`)."""
    sys.stdout.flush()
    sys.stderr.write(f"error: {' '.join(message.split())}\n")
    sys.stderr.flush()
    os._exit(status)


@contextlib.contextmanager
def config_errors() -> Iterator[None]:
    """Raises what config validation raises in the block (`CONFIG_ERRORS`) as `BadInputError`: bad input, status 2."""
    try:
        yield
    except BadInputError:
        raise
    except CONFIG_ERRORS as e:
        message = str(e) if not isinstance(e, KeyError) else f"missing key {e}"
        raise BadInputError(message) from e


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """Turns expected errors raised in the block into one line on stderr and an immediate exit:
    `errors.ExpectedError` with its own status (2 for `BadInputError`), disk errors with status 1. Others are
    re-raised, and so is everything when `debugging()`."""
    try:
        yield
    except BaseException as e:  # noqa: BLE001 - re-raised below unless it is one of ours
        if debugging():
            raise
        if isinstance(e, ExpectedError):
            status = e.exit_status
        elif is_disk_error(e):
            status = 1
        else:
            raise
        fail(str(e), status)


def _debug_requested(argv: list[str]) -> bool:
    """`debugging()` before absl has parsed the flags: the environment switch or a `--debug` argument."""
    return debugging() or any(a.split("=")[0] in ("--debug", "-debug") for a in argv[1:])


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, with every mistake in one line and exit status 2. A `--config.<key>` override of a key
    the config lacks names the key and the closest valid one (ml_collections raises an AttributeError from deep
    inside the parser, which absl's own parser lets through as a traceback)."""
    try:
        return flags.FLAGS(argv)
    except _FLAG_MISTAKES as e:
        _report_flag_mistake(e, argv)
        raise


def define_config_file(default: str, help_text: str):
    """`config_flags.DEFINE_config_file("config", default, help_text)`, whose `--config.<key>` overrides of the
    default file are applied at once, while the module defines its flags: a mistyped key ends there in one line
    and exit status 2, as in `parse_flags`."""
    try:
        return config_flags.DEFINE_config_file("config", default, help_text)
    except _FLAG_MISTAKES as e:
        _report_flag_mistake(e, sys.argv)
        raise


# absl's own errors, and what ml_collections raises for an override of a key the config lacks (AttributeError from
# KeyError) or under a value that has no keys (TypeError, ValueError).
_FLAG_MISTAKES = (flags.Error, AttributeError, KeyError, TypeError, ValueError)


def _report_flag_mistake(error: BaseException, argv: list[str]) -> None:
    """One line and exit status 2 for a mistake in the flags; returns (the caller re-raises) when debugging."""
    if not _debug_requested(argv):
        fail(flag_error_message(error) if isinstance(error, flags.Error) else unknown_override_message(argv, error), 2)


def flag_error_message(error: BaseException) -> str:
    """absl's message for a bad flag, less the traceback ml_collections pastes into it when a config file's
    `get_config` raises (kept: the flag and the last line, the error itself)."""
    text = str(error)
    if "Traceback (most recent call last)" not in text:
        return text
    head = text.split("Traceback (most recent call last)")[0].rstrip()
    return f"{head} {[line for line in text.splitlines() if line.strip()][-1].strip()}"


def unknown_override_message(argv: list[str], error: BaseException) -> str:
    """One line for a `--config.a.b=v` override whose key the config lacks: the key, its flag, the closest key.

    ml_collections raises an AttributeError from a KeyError from a KeyError of the bare key; the bare key is the
    innermost one's argument, and its "Did you mean" hint is in the outer messages."""
    chain, e = [], error
    while e is not None and len(chain) < 10:
        chain.append(e)
        e = e.__cause__ or e.__context__
    name = next((c.args[0] for c in reversed(chain) if isinstance(c, KeyError) and c.args
                 and isinstance(c.args[0], str) and "\n" not in c.args[0]), None)
    suggestion = next((m.group(1) for c in chain for m in [re.search(r'Did you mean \\?"([^"\\]+)', str(c))] if m),
                      None)
    if name is None:  # e.g. a key under a tuple: TypeError: tuple indices must be integers or slices, not str
        overrides = " ".join(a for a in argv if a.startswith("--config."))
        return f"cannot apply the config override(s) {overrides}: {error}"
    flag = next((a.split("=", 1)[0] for a in argv if a.startswith("--config.")
                 and a.split("=", 1)[0].split(".")[-1] == name), None)
    where = f" in {flag}" if flag else ""
    hint = f" (did you mean {suggestion!r}?)" if suggestion else ""
    return f"unknown config key {name!r}{where}{hint}"


def _check_config_file_loaded() -> None:
    """ml_collections defers a `--config` file it could not load (a wrong path) to the first use of the config, as
    an OSError with a multi-line report: raised here, before `main`, as one line of bad input."""
    if "config" not in flags.FLAGS:
        return
    try:
        getattr(flags.FLAGS["config"].value, "to_dict", None)
    except OSError as e:
        last = [line.strip() for line in str(e).splitlines() if line.strip()][-1]
        raise BadInputError(f"cannot load --config={flags.FLAGS['config'].serialize().split('=', 1)[-1]}: "
                            f"{last}") from e


def run(main: Callable[[list[str]], None]) -> None:
    """Runs an entry point's `main(argv)` as `absl.app.run` does, with `parse_flags` and every expected error
    reported in one line (the module docstring)."""

    def reported(argv):
        absl_logging.set_verbosity(absl_logging.WARNING)
        quiet_orbax_logs()
        with one_line_errors():
            _check_config_file_loaded()
            return main(argv)

    app.run(reported, flags_parser=parse_flags)


class _DropOrbaxRecords(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "orbax" not in record.pathname


def quiet_orbax_logs() -> None:
    """Drops orbax's own log records: INFO on every save, and ERROR with a traceback from its writer threads when a
    write fails, which then reaches us as the exception of the call that waits for it, and is reported once."""
    logging.getLogger("absl").addFilter(_DropOrbaxRecords())
