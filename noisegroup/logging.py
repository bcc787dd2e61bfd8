"""Run records in the workdir: ``config.json`` (checked on resume) and ``metrics.jsonl`` (one JSON object a line)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.ndarray, np.generic)) or hasattr(value, "__array__"):
        array = np.asarray(value)
        return array.tolist() if array.ndim else array.item()
    return value


def save_npz_atomic(path: str | Path, **arrays) -> None:
    """`np.savez_compressed` to `path` via a temporary file, fsync and rename: never a half-written file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.npz")
    with open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json_atomic(path: str | Path, data: Any) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        json.dump(_jsonable(data), f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def check_or_write_config(workdir: Path, config: Mapping[str, Any], may_differ: tuple[str, ...] = ()) -> None:
    """Writes ``config.json``, or, if the workdir already has one, checks that the run is the same.

    Raises:
        ValueError: naming every key whose value differs (keys in `may_differ`, e.g. the number of steps, may).
    """
    path = workdir / "config.json"
    config = _jsonable(dict(config))
    if path.exists():
        old = json.loads(path.read_text())
        differ = sorted(k for k in set(old) | set(config) if k not in may_differ and old.get(k) != config.get(k))
        if differ:
            details = ", ".join(f"{k}: {old.get(k)!r} there, {config.get(k)!r} now" for k in differ)
            raise ValueError(f"workdir {str(workdir)!r} holds a run of another config ({details}); "
                             "use a new workdir or the same config")
    write_json_atomic(path, config)


class MetricsWriter:
    """Appends metrics as JSON lines. On resume from step `resume_step`, lines of later steps (written after the
    last checkpoint by the interrupted run) are dropped first, so the file reads as one uninterrupted run."""

    def __init__(self, path: str | Path, resume_step: int = 0):
        self.path = Path(path)
        if self.path.exists():
            keep = [line for line in self.path.read_text().splitlines() if line and json.loads(line)["step"] <= resume_step]
            tmp = self.path.with_name(f".{self.path.name}.tmp")
            tmp.write_text("".join(line + "\n" for line in keep))
            os.replace(tmp, self.path)
        self.file = open(self.path, "a")

    def write(self, step: int, metrics: Mapping[str, Any]) -> None:
        self.file.write(json.dumps({"step": int(step), **_jsonable(metrics)}) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def read_metrics(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line]
