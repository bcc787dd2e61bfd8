"""`run(config, workdir)`: every method on every dataset, resumable cell by cell (what `experiments.compare` does).

Layout of `workdir`:
    models/<model>_<dataset>/      engine checkpoints of every trained model (resumed when interrupted)
    cells/<method>__<dataset>.json the cell's identity: its training config or weights and its evaluation settings,
                                   written when the cell starts; a re-run with another config is refused, naming the key
    cells/<method>__<dataset>.npz  its labels `[S, b, h, w]` and per-image ARI / FG-ARI (atomic; read back on re-runs)
    results.csv, results.json      one row per cell (results.json also holds the config, times and peak memory)
    figures/<dataset>.png          the side-by-side segmentations of every method
"""

from __future__ import annotations

import hashlib
import json
import resource
import time
from pathlib import Path
from typing import Any, Mapping

import jax
import numpy as np
from tqdm.auto import tqdm

from noisegroup import atomic, usage
from noisegroup.checks import check_workdir
from noisegroup.compare import cells, data, report
from noisegroup.compare.config import CompareConfig
from noisegroup.engine import workdir_lock
from noisegroup.errors import BadInputError


class CellConfigError(BadInputError):
    """A workdir's cell was computed with another config than the one asked for."""


# What a kept cell must hold to be used (`cells.compute`'s arrays); a damaged or older file is recomputed with a
# warning (`atomic.read_npz_cache`), never half-read.
CELL_LAYOUT = {"labels": ("seeds", "images", data.IMAGE_SHAPE[0], data.IMAGE_SHAPE[1]), "ari": ("seeds", "images"),
               "ari_fg": ("seeds", "images"), "steps": (), "train_seconds": (), "eval_seconds": (),
               "noise_std": (), "num_noise_samples": (), "num_groups": ("seeds", "images")}
CELL_OPTIONAL = ("noise_std", "num_noise_samples", "num_groups")  # what only LNS cells choose


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): value}


def check_or_record(path: Path, identity: Mapping[str, Any]) -> None:
    """Records a cell's identity, or checks it against the one recorded.

    Raises:
        CellConfigError: naming the first key that differs, its two values and what to do.
    """
    if not path.exists():
        atomic.write_json(path, identity)
        return
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError):  # torn or damaged: the cell restarts under this config
        atomic.write_json(path, identity)
        return
    old, new = _flat(recorded), _flat(atomic.jsonable(identity))
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            raise CellConfigError(
                f"cell {path.stem!r} of {path.parent.parent} was run with {key}={old.get(key)!r}, not the "
                f"{key}={new.get(key)!r} of this config: use another --workdir, or delete {path.parent}/{path.stem}.* "
                f"(and models/ for a training change) to redo it")


def _digest(identity: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(atomic.jsonable(identity), sort_keys=True).encode()).hexdigest()[:16]


def _cell_key(key: jax.Array, method: str, dataset: str) -> jax.Array:
    """A cell's evaluation key: the same whatever else the run holds (a stable hash of its names)."""
    return jax.random.fold_in(key, int(hashlib.sha256(f"{method}/{dataset}".encode()).hexdigest()[:7], 16))


def run(config: CompareConfig | Mapping[str, Any], workdir: str | Path) -> list[dict]:
    """Runs (or resumes) the comparison; returns one row per (method, dataset) (`report.row`).

    Raises:
        ValueError / BadInputError: a bad config (before any work); CellConfigError: a cell of `workdir` was
            computed under another config.
    """
    if not isinstance(config, CompareConfig):
        config = CompareConfig.from_mapping(config)
    workdir = check_workdir(workdir)
    (workdir / "cells").mkdir(parents=True, exist_ok=True)
    with workdir_lock.hold(workdir):
        return _run(config, workdir)


def _run(config: CompareConfig, workdir: Path) -> list[dict]:
    tic, cpu = time.perf_counter(), usage.cpu_seconds()
    key = jax.random.key(int(config.key))
    rows: list[dict] = []
    identities = {(m.name, d): cells.identity(config, m, d) for d in config.datasets for m in config.methods}
    for (method, dataset), identity in identities.items():  # every cell checked before any is computed
        check_or_record(workdir / "cells" / f"{method}__{dataset}.json", identity)
    for dataset in config.datasets:
        shown = []
        for method in config.methods:
            path = workdir / "cells" / f"{method.name}__{dataset}.npz"
            fingerprint = _digest(identities[(method.name, dataset)])
            cell = atomic.read_npz_cache(path, fingerprint, CELL_LAYOUT, optional=CELL_OPTIONAL,
                                         sizes={"images": data.test_size(dataset, config.test_limit)})
            if cell is None:
                cell = cells.compute(config, workdir, method, dataset, _cell_key(key, method.name, dataset))
                atomic.save_npz(path, fingerprint=np.array(fingerprint), **cell)
            r = report.row(method, dataset, cell)
            rows.append(r)
            shown.append((method.label, cell["labels"][0], cell["ari"][0]))
            if config.progress:
                paper = f" (paper {r['paper_ari']:.3f})" if r["paper_ari"] is not None else ""
                tqdm.write(f"{dataset:>18} {method.name:<18} ARI {r['ari']:.3f} +- {r['ari_sem']:.3f}{paper}, "
                           f"FG-ARI {r['ari_fg']:.3f}; {r['steps']} steps, "
                           f"{(r['train_seconds'] + r['eval_seconds']) / 60:.1f} min")
        n = min(int(config.figure_images), len(shown[0][1]))
        if n:
            images, masks = data.test_split(dataset, n)
            (workdir / "figures").mkdir(exist_ok=True)
            report.figure(workdir / "figures" / f"{dataset}.png", dataset, images, masks,
                          [(label, seg[:n], ari[:n]) for label, seg, ari in shown])
    spent = {"wall_seconds": time.perf_counter() - tic, "cpu_seconds": usage.cpu_seconds() - cpu,
             "peak_rss_mb": _peak_rss_mb()}
    report.write_results(workdir, rows, {"config": atomic.jsonable(_config_record(config)), "this_run": spent})
    return rows


def _config_record(config: CompareConfig) -> dict:
    record = {k: getattr(config, k) for k in config.__dataclass_fields__}
    record["methods"] = [m.name for m in config.methods]
    return record


def _peak_rss_mb() -> dict:
    return {"process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "largest_child": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}
