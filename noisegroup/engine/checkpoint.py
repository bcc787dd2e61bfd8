"""Checkpoints of a training state behind one small class (orbax `CheckpointManager`, `StandardSave/Restore`).

Orbax writes each step to a temporary directory and renames it when complete, so a run killed mid-save (even with
kill -9) leaves at worst an unfinished temporary directory, which is ignored and cleaned up; the previous steps
stay intact. If the newest finished checkpoint cannot be restored (damaged on disk), `restore_latest` falls back to
the one before it, with a warning.
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
        for step in reversed([s for s in self.steps() if step is None or s <= step]):
            try:
                return step, self.manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
            except Exception as e:  # noqa: BLE001 - any damage to a step's files lands here
                # Kept for inspection under a name orbax ignores; the run continues from an earlier step.
                directory = Path(self.manager.directory)
                aside = directory / f"damaged-{step}-{int(time.time())}"
                (directory / str(step)).rename(aside)
                self.manager.reload()
                warnings.warn(f"checkpoint at step {step} cannot be restored ({e!r}); moved to {aside}, trying the "
                              "previous one", stacklevel=2)
        return None

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
