"""One cell of the comparison: a method on a dataset, trained (or loaded), segmented and scored by the one evaluation.

    cell = compute(config, workdir, method, dataset, key)   # {"labels": [S, b, h, w], "ari": [S, b], ...}

Models live in `workdir/models/<model>_<dataset>/` (engine checkpoints: an interrupted run resumes), shared by every
method of that model (the LNS clustering variants and the control share one AE). Each method's segmentations come
out as integer label maps of every seed, and `noisegroup.evaluation.score` scores them all alike.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
import warnings
from pathlib import Path
from typing import Any

import jax
import numpy as np

from noisegroup import atomic, baselines, evaluation
from noisegroup.compare import data
from noisegroup.compare.config import CompareConfig
from noisegroup.compare.methods import Method
from noisegroup.engine import config as engine_config
from noisegroup.engine import loop, pretrained
from noisegroup.lns import segmentation, sweep, tangent

POPULATION_BATCHES = 10  # GENESIS's BatchNorm statistics: training batches averaged (`baselines.population_statistics`)
_warned_slots: set[tuple[str, int, int]] = set()


def model_dir(workdir: Path, model: str, dataset: str) -> Path:
    return Path(workdir) / "models" / f"{model}_{dataset}"


def shipped_weights(config: CompareConfig, model: str, dataset: str) -> tuple[Path, str]:
    """(path, "name sha256:<digest>") of the shipped weights of `model` on `dataset`."""
    path = Path(config.pretrained) / f"{model}_{dataset}.npz"
    return path, f"{path.name} sha256:{hashlib.sha256(path.read_bytes()).hexdigest()[:16]}"


def trained_model(config: CompareConfig, workdir: Path, model: str, dataset: str) -> tuple[Any, Any, Any, int]:
    """(family, graphdef, params stacked over seeds, steps trained) of `model` on `dataset`: shipped weights where
    `config.shipped`, else trained or resumed by the engine."""
    if model in ("ae", "vae") and config.shipped(model, dataset):
        path, _ = shipped_weights(config, model, dataset)
        meta = pretrained.read_meta(path)  # the file's own recipe: the check in `load` then only verifies it
        run = engine_config.parse({k: v for k, v in meta["train"].items() if k not in pretrained.NOT_RECIPE})
        _, trainer, _ = loop.build(run, data.IMAGE_SHAPE)
        return run.family, trainer.graphdef, pretrained.load(path, run, data.IMAGE_SHAPE), int(meta.get("steps", 0))
    run = config.run_config(model, dataset)
    _, trainer, _ = loop.build(run, data.IMAGE_SHAPE)
    train, valid = data.training_split(dataset, run.engine.train_limit, run.engine.valid_limit)
    state = loop.train(run, model_dir(workdir, model, dataset), train, valid)
    return run.family, trainer.graphdef, state.inference_params, int(np.asarray(state.step).max())


def identity(config: CompareConfig, method: Method, dataset: str) -> dict:
    """Everything a cell's result depends on, before it is computed (a resumed cell must match it)."""
    out: dict[str, Any] = {"method": method.name, "dataset": dataset, "test_limit": int(config.test_limit),
                           "key": int(config.key)}
    if config.trains(method, dataset):
        out["train"] = engine_config.comparable(config.run_config(method.model, dataset).as_dict())
    else:
        out["weights"] = shipped_weights(config, method.model, dataset)[1]
    if method.kind != "masks":
        out.update(noise_stds=[float(s) for s in config.noise_stds],
                   num_noise_samples=[int(n) for n in config.num_noise_samples], normalisation=config.normalisation,
                   select_limit=int(config.select_limit), kmeans_restarts=int(config.kmeans_restarts))
        if method.clustering == "estimated":
            out.update(estimator=config.estimator, k_max=int(config.k_max))
    return atomic.jsonable(out)


_chosen: dict[str, tuple[float, int]] = {}  # (the model's identity, clustering) -> (sigma, N), in this process


def _select(config: CompareConfig, method: Method, dataset: str, graphdef, params, key: jax.Array,
            clustering: str) -> tuple[float, int]:
    """LNS's (sigma, N) for a dataset: the grid's one setting, or the best mean ARI on the selection images (made
    once per model, dataset and clustering: the Ward variants and the control share Ward's choice)."""
    settings = config.sweep_settings(clustering)
    if len(settings.noise_stds) * len(settings.num_noise_samples) == 1:
        return settings.noise_stds[0], settings.num_noise_samples[0]
    found = {k: v for k, v in identity(config, method, dataset).items() if k not in ("method", "estimator", "k_max")}
    memo = json.dumps({**found, "model": method.model, "clustering": clustering}, sort_keys=True)
    if memo not in _chosen:
        images, masks = data.selection_split(dataset, config.select_limit)
        result = sweep.evaluate(graphdef, params, images, masks, jax.random.fold_in(key, 1), settings,
                                label=f"{dataset} / {method.model}: choosing sigma, N ({clustering})")
        i, j = np.unravel_index(np.argmax(result.ari.mean(axis=(0, 3))), result.ari.shape[1:3])
        _chosen[memo] = (settings.noise_stds[i], settings.num_noise_samples[j])
    return _chosen[memo]


def _lns_labels(config: CompareConfig, method: Method, dataset: str, graphdef, params, images, masks,
                key: jax.Array) -> tuple[np.ndarray, dict]:
    """Labels `[S, b, h, w]` of an LNS or control method, and what it chose."""
    if method.clustering == "tangent":
        settings = config.sweep_settings("ward")
        return tangent.evaluate(graphdef, params, images, masks, key, settings, keep_labels=True).labels, {}
    clustering = "ward" if method.clustering in ("estimated", "ward") or method.kind == "control" else \
        method.clustering
    sigma, n = _select(config, method, dataset, graphdef, params, jax.random.key(int(config.key)), clustering)
    chosen = {"noise_std": sigma, "num_noise_samples": n}
    if method.kind == "control":
        settings = config.sweep_settings("ward")
        settings = dataclasses.replace(settings, control=True, num_noise_samples=(n,))
        result = sweep.evaluate(graphdef, params, images, masks, key, settings, keep_labels=True,
                                label=f"{dataset}: {method.name}")
        return result.labels[:, 0, 0], {"num_noise_samples": n}
    if method.clustering == "estimated":
        seeds = int(jax.tree.leaves(params)[0].shape[0])
        found = [segmentation.segment((graphdef, jax.tree.map(lambda x: x[s], params)), images,
                                      key=jax.random.fold_in(key, s), num_groups=None, noise_std=sigma,
                                      num_noise_samples=n, normalisation=config.normalisation, clustering="ward",
                                      estimator=config.estimator, k_max=int(config.k_max),
                                      progress=bool(config.progress)) for s in range(seeds)]
        chosen["num_groups"] = np.stack([f.num_groups for f in found])
        return np.stack([f.labels for f in found]), chosen
    settings = config.sweep_settings(clustering)
    settings = dataclasses.replace(settings, noise_stds=(sigma,), num_noise_samples=(n,))
    result = sweep.evaluate(graphdef, params, images, masks, key, settings, keep_labels=True,
                            label=f"{dataset}: {method.name}")
    return result.labels[:, 0, 0], chosen


def warn_few_slots(method: Method, family, masks: np.ndarray) -> None:
    """Warns once per (method, K, groups) when a mask family has fewer slots than some test image has groups."""
    slots = int(getattr(family, "num_slots", 0))
    groups = int(evaluation.clusters_for(masks).max())
    if slots and slots < groups and (method.name, slots, groups) not in _warned_slots:
        _warned_slots.add((method.name, slots, groups))
        warnings.warn(f"{method.name} has {slots} slots but some test images have {groups} ground-truth groups "
                      f"(background included): those images cannot be segmented whole", stacklevel=2)


def compute(config: CompareConfig, workdir: Path, method: Method, dataset: str, key: jax.Array) -> dict[str, Any]:
    """Trains (or loads) and segments one cell; scores it.

    Returns:
        {"labels": `[S, b, h, w]` (uint8 where the labels fit), "ari", "ari_fg": float32 `[S, b]`, "steps": int,
         "train_seconds", "eval_seconds": float, plus what LNS chose ("noise_std", "num_noise_samples",
         "num_groups" `[S, b]`)}.
    """
    images, masks = data.test_split(dataset, config.test_limit)
    tic = time.perf_counter()
    family, graphdef, params, steps = trained_model(config, workdir, method.model, dataset)
    train_seconds = time.perf_counter() - tic
    tic = time.perf_counter()
    chosen: dict[str, Any] = {}
    if method.kind == "masks":
        warn_few_slots(method, family, masks)
        train_images, batch = None, 16
        if getattr(family, "eval_norm", "batch") == "population":  # GENESIS: statistics of its training batches
            batch = config.run_config(method.model, dataset).engine.batch_size
            train_images = data.training_split(dataset, batch * POPULATION_BATCHES, 1)[0]
        labels = baselines.seed_labels(family, graphdef, params, images, key, train_images, POPULATION_BATCHES,
                                       batch)["labels_masks"]
    else:
        labels, chosen = _lns_labels(config, method, dataset, graphdef, params, images, masks, key)
    scores = evaluation.score(labels, masks)
    narrow = np.uint8 if int(labels.max(initial=0)) < 256 else np.int32
    return {"labels": labels.astype(narrow), **scores, "steps": steps, "train_seconds": train_seconds,
            "eval_seconds": time.perf_counter() - tic, **chosen}
