"""Checkpoints of a training state behind one small class (orbax `CheckpointManager`, `StandardSave/Restore`).

Orbax writes each step to a temporary directory and renames it when complete, so a run killed mid-save (even with
kill -9) leaves at worst an unfinished temporary directory, which is ignored and cleaned up; the previous steps
stay intact.

A checkpoint is moved aside as damaged only when it is proven so: it fails to restore while an older one restores
into the same target. Any other failure (every step fails alike: a target of another shape, another family, a
missing sharding) touches nothing and raises the newest step's error.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import orbax.checkpoint as ocp


class Checkpointer:
    """Saves and restores a pytree under ``directory/<step>``, keeping the newest `keep`."""

    def __init__(self, directory: str | Path, keep: int = 3):
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, cleanup_tmp_directories=True)
        self.manager = ocp.CheckpointManager(Path(directory).absolute(), options=options)

    def steps(self) -> list[int]:
        self.manager.reload()
        return sorted(self.manager.all_steps())

    def save(self, step: int, state: Any) -> None:
        """Saves asynchronously where orbax can; `wait` (or `close`) makes it durable."""
        self.manager.save(step, args=ocp.args.StandardSave(state), force=True)

    def restore_latest(self, abstract_state: Any, step: int | None = None) -> tuple[int, Any] | None:
        """The newest restorable (step, state) (at most `step` if given), or None if there is no checkpoint.

        Args:
            abstract_state: the state's shapes, dtypes and shardings (``jax.eval_shape`` of the init).
            step: restore this step or the newest before it.
        """
        self.wait()
        failures: list[tuple[int, Exception]] = []
        for candidate in reversed([s for s in self.steps() if step is None or s <= step]):
            try:
                state = self.manager.restore(candidate, args=ocp.args.StandardRestore(abstract_state))
            except Exception as e:  # noqa: BLE001 - damage and mismatch both land here; told apart below
                failures.append((candidate, e))
                continue
            self._move_aside(failures)  # newer steps failed where this one restores: they are damaged
            return candidate, state
        if failures:
            newest, error = failures[0]
            raise ValueError(f"no checkpoint in {self.manager.directory} restores into this run's state (step {newest}: "
                             f"{error}); nothing was moved or deleted") from error
        return None

    def _move_aside(self, failures: list[tuple[int, Exception]]) -> None:
        """Keeps damaged steps for inspection under a name orbax ignores, with a warning saying why."""
        directory = Path(self.manager.directory)
        for damaged, error in failures:
            aside = directory / f"damaged-{damaged}-{int(time.time())}"
            (directory / str(damaged)).rename(aside)
            warnings.warn(f"checkpoint at step {damaged} cannot be restored ({error!r}) while an older one can: "
                          f"moved to {aside}", stacklevel=3)
        if failures:
            self.manager.reload()

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
