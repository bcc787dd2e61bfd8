"""Run records in the workdir: ``config.json`` (checked on resume) and ``metrics.jsonl`` (one JSON object a line)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

from noisegroup import atomic
from noisegroup.errors import BadInputError, NotFoundError


def read_config(workdir: str | Path, name: str = "config.json") -> dict:
    """The `config.json` (or `name`) of a run.

    Raises:
        FileNotFoundError: the workdir holds no run.
        ValueError: the file is not valid JSON (naming it).
    """
    path = Path(workdir) / name
    if not path.exists():
        raise NotFoundError(f"{path} does not exist: {str(workdir)!r} holds no training run")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise BadInputError(f"{path} is damaged ({e}); restore it from the run's records or start a new workdir") from e


def check_or_write_config(workdir: Path, config: Mapping[str, Any], may_differ: tuple[str, ...] = (),
                          defaults: Mapping[str, Any] | None = None,
                          comparable: Callable[[Mapping[str, Any]], Mapping[str, Any]] = dict,
                          name: str = "config.json") -> None:
    """Writes ``config.json`` (or `name`), or, if the workdir already has one, checks that the run is the same.

    `defaults` gives the value of a key that a run written before the key existed lacks (it ran as the default).
    `comparable` maps both configs to what is compared (e.g. two spellings of the same loss to one).

    Raises:
        ValueError: naming every key whose value differs (keys in `may_differ`, e.g. the number of steps, may).
    """
    path = workdir / name
    config = atomic.jsonable(dict(config))
    if path.exists():
        old = read_config(workdir, name)
        old = {**{k: v for k, v in atomic.jsonable(dict(defaults or {})).items() if k not in old}, **old}
        old, new = atomic.jsonable(dict(comparable(old))), atomic.jsonable(dict(comparable(config)))
        differ = sorted(k for k in set(old) | set(new) if k not in may_differ and old.get(k) != new.get(k))
        if differ:
            details = ", ".join(f"{k}: {old.get(k)!r} there, {new.get(k)!r} now" for k in differ)
            raise BadInputError(f"workdir {str(workdir)!r} holds a run of another config ({details}); "
                             "use a new workdir or the same config")
    atomic.write_json(path, config)


def read_metrics(path: str | Path) -> list[dict]:
    """The records of a metrics file; a trailing line torn by a crash or a full disk is dropped with a warning.

    Raises:
        ValueError: a damaged line before the last (naming the file and line).
    """
    path = Path(path)
    lines = path.read_text().splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        if not line:
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            if number == len(lines):
                warnings.warn(f"{path}: dropped a torn last line ({len(line)} characters)", stacklevel=2)
                break
            raise BadInputError(f"{path}, line {number}, is damaged: {e}") from e
    return records


class MetricsWriter:
    """Appends metrics as JSON lines. On resume from step `resume_step`, lines of later steps (written after the
    last checkpoint by the interrupted run) are dropped first, so the file reads as one uninterrupted run."""

    def __init__(self, path: str | Path, resume_step: int = 0):
        self.path = Path(path)
        if self.path.exists():
            keep = [r for r in read_metrics(self.path) if r["step"] <= resume_step]
            atomic.write_text(self.path, "".join(json.dumps(r) + "\n" for r in keep))
        self.file = open(self.path, "a")

    def write(self, step: int, metrics: Mapping[str, Any]) -> None:
        self.file.write(json.dumps({"step": int(step), **atomic.jsonable(metrics)}) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()
