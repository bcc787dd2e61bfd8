"""Checkpoints of a training state behind one small class (orbax `CheckpointManager`, `StandardSave/Restore`).

Orbax writes each step to a temporary directory and renames it when complete, so a run killed mid-save (even with
kill -9) leaves at worst an unfinished temporary directory, which is ignored and cleaned up; the previous steps
stay intact.

Every finished step is sealed with the SHA-256 of each of its files (``<directory>.digests/<step>.json``, written
by process 0 once the step is complete), and checked before it is restored: a flipped byte that orbax would read as
a changed weight is caught, naming the file.

A checkpoint is moved aside as damaged only when an older one restores in its place (its files differ from their
seal, or it fails to restore while the older one restores into the same target), or when its directory holds no
file. When no step restores (every one damaged, or a target of another shape, another family, a missing sharding),
nothing is moved and `NoRestorableCheckpointError` names every step's failure: starting afresh is the user's call.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import re
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from noisegroup import atomic
from noisegroup.errors import ExpectedError


CHECKPOINT_SLACK_BYTES = 1 << 20  # orbax's metadata and the seal, generously


class CheckpointWriteError(OSError):
    """A checkpoint that could not be written (a full disk, a file-size limit); its temporary files are removed."""


_OS_REASONS = {errno.ENOSPC: "No space left on device", errno.EFBIG: "File too large",
               errno.EDQUOT: "Disk quota exceeded", errno.EROFS: "Read-only file system",
               errno.EACCES: "Permission denied"}


def _write_errno(error: BaseException) -> int | None:
    """The OS error behind a failed orbax write: its errno, or one named in tensorstore's message."""
    if isinstance(error, OSError) and error.errno:
        return error.errno
    code = re.search(r"os_error_code='(\d+)'", str(error))
    if code:
        return int(code.group(1))
    return next((number for number, text in _OS_REASONS.items() if text in str(error)), None)


class DamagedCheckpointError(Exception):
    """A step whose files differ from the digests written when it was saved."""


class NoRestorableCheckpointError(ExpectedError, ValueError):
    """Checkpoints exist but none restores; nothing was moved (the user decides whether to start afresh)."""


def file_digests(step_dir: Path) -> dict[str, str]:
    """{relative path: SHA-256} of every file of a checkpoint step."""
    digests = {}
    for path in sorted(p for p in step_dir.rglob("*") if p.is_file()):
        sha = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                sha.update(block)
        digests[str(path.relative_to(step_dir))] = sha.hexdigest()
    return digests


_FIRST_KEY = re.compile(r"\('([^']*)'")  # orbax's tree_metadata keys look like "('params', 'w', ...)"


class Checkpointer:
    """Saves and restores a pytree under ``directory/<step>``, keeping the newest `keep`.

    `read_only=True` (a reader beside a live run, e.g. `loop.restore`): never writes, so it neither removes the
    run's in-progress temporary directories nor moves a damaged checkpoint aside (it warns and skips it; the run
    itself moves it aside when it next resumes).
    """

    def __init__(self, directory: str | Path, keep: int = 3, read_only: bool = False):
        # (Not orbax's own read_only option: it logs two warnings at every open; a reader never saves, so nothing
        # is deleted, and without create / cleanup_tmp_directories opening writes nothing.)
        self.options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=not read_only,
                                                    cleanup_tmp_directories=not read_only)
        self.read_only = read_only
        self.directory = Path(directory).absolute()
        self.manager = ocp.CheckpointManager(self.directory, options=self.options)
        self.seals = self.directory.with_name(self.directory.name + ".digests")
        self.unsealed: list[int] = []

    def steps(self) -> list[int]:
        self.manager.reload()
        return sorted(self.manager.all_steps())

    def save(self, step: int, state: Any) -> None:
        """Saves asynchronously where orbax can; `wait` (or `close`, or the next save) makes it durable and seals
        it."""
        self.wait()
        self._check_free_space(step, state)
        (self.seals / f"{step}.json").unlink(missing_ok=True)  # a seal of an earlier step of this number is void
        self.manager.save(step, args=ocp.args.StandardSave(state), force=True)
        self.unsealed.append(step)

    def _check_free_space(self, step: int, state: Any) -> None:
        """Raises CheckpointWriteError (ENOSPC) before writing if the disk cannot hold this process's share of the
        state: failing here is one clean line, failing inside orbax's writer threads is not."""
        needed = sum(shard.data.nbytes for leaf in jax.tree.leaves(state) if isinstance(leaf, jax.Array)
                     for shard in leaf.addressable_shards if shard.replica_id == 0) + CHECKPOINT_SLACK_BYTES
        free = shutil.disk_usage(self.directory).free
        if free < needed:
            raise CheckpointWriteError(errno.ENOSPC, f"cannot write the checkpoint {self.directory / str(step)}: "
                                       f"{_OS_REASONS[errno.ENOSPC]} (it needs ~{needed / 1e6:.1f} MB, "
                                       f"{free / 1e6:.1f} MB are free)")

    def _seal(self) -> None:
        """Writes the digests of the finished steps not sealed yet, and drops those of steps orbax deleted."""
        if jax.process_index() != 0:
            self.unsealed = []
            return
        self.seals.mkdir(exist_ok=True)
        present = set(self.manager.all_steps())
        for step in self.unsealed:
            if step in present:
                atomic.write_json(self.seals / f"{step}.json", {"step": step, "files": file_digests(
                    self.directory / str(step))})
        self.unsealed = []
        for seal in self.seals.glob("*.json"):
            if seal.stem.isdigit() and int(seal.stem) not in present:
                seal.unlink(missing_ok=True)

    def verify(self, step: int) -> None:
        """Checks a step's files against its seal (a step without one, e.g. killed before sealing, passes).

        Raises:
            DamagedCheckpointError: naming the first file that differs or is missing.
        """
        seal = self.seals / f"{step}.json"
        if not seal.exists():
            return
        try:
            want = json.loads(seal.read_text())["files"]
        except (json.JSONDecodeError, KeyError):
            return  # a damaged seal proves nothing about the checkpoint
        got = file_digests(self.directory / str(step))
        for name, digest in want.items():
            if got.get(name) != digest:
                state = "missing" if name not in got else "changed since it was saved"
                raise DamagedCheckpointError(f"{self.directory / str(step) / name} is {state}")

    def restore_latest(self, abstract_state: Any, step: int | None = None) -> tuple[int, Any] | None:
        """The newest restorable (step, state) (at most `step` if given), or None if there is no checkpoint.

        Newer steps that fail while this one restores are moved aside as damaged (`_move_aside`). A step directory
        holding no file at all (a crash between orbax's rename and its first write, or a hand-made directory) is no
        checkpoint: it is moved aside at once with a warning.

        Args:
            abstract_state: the state's shapes, dtypes and shardings (``jax.eval_shape`` of the init).
            step: restore this step or the newest before it.

        Raises:
            NoRestorableCheckpointError: there are checkpoints but none restores (every one damaged, or all of
                another run's shapes); nothing is moved or deleted, so the run's history is kept.
        """
        self.wait()
        failures: list[tuple[int, Exception]] = []
        for candidate in reversed([s for s in self.steps() if step is None or s <= step]):
            if not any(p.is_file() for p in (self.directory / str(candidate)).rglob("*")):
                self._move_aside([(candidate, DamagedCheckpointError(f"{self.directory / str(candidate)} holds no "
                                                                     "file"))])
                continue
            try:
                self.verify(candidate)
                state = self._restore(candidate, abstract_state)
            except Exception as e:  # noqa: BLE001 - damage and mismatch both land here; told apart below
                failures.append((candidate, e))
                self._reopen()  # a failed restore can leave orbax's manager unable to restore any other step
                continue
            self._move_aside(failures)  # newer steps failed where this one restores: they are damaged
            return candidate, state
        if failures:
            reasons = "; ".join(f"step {s}: {' '.join(str(e).split())}" for s, e in failures)
            raise NoRestorableCheckpointError(
                f"no checkpoint in {self.directory} restores into this run's state ({reasons}); nothing was moved or "
                f"deleted. To start this run afresh, move {self.directory} (and the metrics beside it, to keep "
                "them) aside and run again") from failures[0][1]
        return None

    def _reopen(self) -> None:
        """A fresh orbax manager over the same directory (after a failed restore, orbax's manager may refuse to
        restore any other step: "Must provide `args` of type `Composite`")."""
        self.manager.close()
        self.manager = ocp.CheckpointManager(self.directory, options=self.options)

    def _restore(self, step: int, abstract_state: Any) -> Any:
        """Restores `step` into `abstract_state`. A dataclass state (e.g. `TrainState`) whose None fields (features
        off) are absent on disk, because the checkpoint predates them, restores without them and gets them back as
        None: a field added to the state must not strand older runs."""
        if not dataclasses.is_dataclass(abstract_state):
            return self.manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
        fields = {f.name: getattr(abstract_state, f.name) for f in dataclasses.fields(abstract_state)}
        on_disk = self._top_level_keys(step)
        absent = [k for k, v in fields.items() if v is None and on_disk is not None and k not in on_disk]
        if not absent:
            return self.manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
        present = {k: v for k, v in fields.items() if k not in absent}
        restored = self.manager.restore(step, args=ocp.args.StandardRestore(present))
        return type(abstract_state)(**restored, **{k: None for k in absent})

    def _top_level_keys(self, step: int) -> set[str] | None:
        """The top-level keys of a checkpoint's saved tree (from orbax's metadata file), or None if unreadable."""
        try:
            tree = json.loads((self.directory / str(step) / "default" / "_METADATA").read_text())["tree_metadata"]
        except (OSError, ValueError, KeyError):
            return None
        return {match.group(1) for match in map(_FIRST_KEY.match, tree) if match}

    def _move_aside(self, failures: list[tuple[int, Exception]]) -> None:
        """Keeps damaged steps for inspection under a name orbax ignores, with a warning saying why."""
        directory = Path(self.manager.directory)
        for damaged, error in failures:
            if self.read_only:
                warnings.warn(f"checkpoint at step {damaged} cannot be restored ({error}); skipped (read-only: left "
                              f"in place)", stacklevel=3)
                continue
            aside = directory / f"damaged-{damaged}-{int(time.time())}"
            (directory / str(damaged)).rename(aside)
            (self.seals / f"{damaged}.json").unlink(missing_ok=True)
            why = str(error) if isinstance(error, DamagedCheckpointError) else f"{error!r}, while an older one restores"
            warnings.warn(f"checkpoint at step {damaged} cannot be restored ({why}): moved to {aside}", stacklevel=3)
        if failures and not self.read_only:
            self.manager.reload()

    def wait(self) -> None:
        """Blocks until the pending save is on disk, then seals it.

        Raises:
            CheckpointWriteError: the save failed (e.g. no space left); the message names the step and the reason,
                and the step's temporary directory is removed (nothing half-written stays to be trusted later).
        """
        try:
            self.manager.wait_until_finished()
        except Exception as e:  # noqa: BLE001 - orbax and tensorstore raise their own types for OS errors
            steps, self.unsealed = self.unsealed, []
            for leftover in self.directory.glob("*.orbax-checkpoint-tmp*"):
                shutil.rmtree(leftover, ignore_errors=True)
            number = _write_errno(e)
            reason = _OS_REASONS.get(number, os.strerror(number)) if number else f"{type(e).__name__}: {e}"
            where = ", ".join(str(self.directory / str(s)) for s in steps) or str(self.directory)
            raise CheckpointWriteError(number or errno.EIO, f"cannot write the checkpoint {where}: {reason}") from e
        if self.unsealed:
            self._seal()

    def close(self) -> None:
        self.wait()
        self.manager.close()
