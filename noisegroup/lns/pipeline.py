"""The LNS experiment end to end: data, training (or resuming), segmentation sweeps, tables, figures.

    results = run(config, workdir)    # what `python -m experiments.lns` does

For every (dataset, model) of the config:

1. train or resume S seeds with `noisegroup.engine.train` in `workdir/models/<model>_<dataset>/`, or, with
   `config.pretrained` set, load shipped weights `<pretrained>/<model>_<dataset>.npz` (`noisegroup.engine.pretrained`);
2. LNS over the (sigma, N) grid on `test` and, for the fair protocol, on `test_iid` (`noisegroup.lns.sweep.evaluate`),
   and the noisy-reconstruction control at the selected N;
3. pick settings two ways: the paper's (best mean ARI on `test`, as its Table 1) and a fair one (best on `test_iid`,
   reported on `test`); mean +- SEM (`noisegroup.stats`); with both AE and VAE, the paper's t-test between them per
   dataset, Bonferroni-corrected (`model_comparisons`, the table's last column);
4. save `workdir/segmentation/<model>_<dataset>.npz` (all ARIs, predictions at the paper's setting for seed 0,
   reconstructions) atomically; a re-run with the same settings loads it instead of recomputing.

With `features="tangent"` steps 2-3 are the tangent limit instead (`noisegroup.lns.tangent`): the decoder's
Jacobian rows at the latent mean, clustered the same way, on `test`; no (sigma, N), so nothing is selected (the
row is the same under both protocols) and no control. The (sigma, N) grid then only drives the Gram-matrix bridge
figure. Saved as `segmentation/<model>_<dataset>_tangent.npz`; the table also shows the LNS rows when this workdir
holds an LNS segmentation of the same settings.

Then `results.json`, `results.csv`, the printed table next to the paper's values, and figures (`noisegroup.lns.plots`).

The config is checked whole (`LNSConfig`, the training config, the sweep grid, shipped files) before any data is
generated or any model trained.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import time
import zlib
from pathlib import Path
from typing import Any, Mapping

import jax
import numpy as np
from tqdm.auto import tqdm

from datasets import good_gestalt as gg
from noisegroup import atomic, baselines
from noisegroup.checks import check_workdir, closest
from noisegroup.engine import config as engine_config
from noisegroup.engine import loop, pretrained, workdir_lock
from noisegroup.lns import features, plots, results, sweep, tangent
from noisegroup.models import FAMILIES

GESTALT_IMAGE_SHAPE = (64, 64, 3)


def _segmentation(default):
    """A field that changes the segmentation results (part of the cache fingerprint)."""
    return dataclasses.field(default=default, metadata={"segmentation": True})


@dataclasses.dataclass(frozen=True)
class LNSConfig:
    """The keys of an LNS experiment config (``experiments/configs/lns.py`` says what each means)."""

    datasets: tuple[str, ...] = ("kanizsa", "closure", "continuity", "proximity", "gradient_occlusion",
                                 "illusory_occlusion")
    models: tuple[str, ...] = ("ae", "vae")
    seeds: tuple[int, ...] = (0,)
    train: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    model_train: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    noise_stds: tuple[float, ...] = _segmentation(sweep.SweepSettings.noise_stds)
    num_noise_samples: tuple[int, ...] = _segmentation(sweep.SweepSettings.num_noise_samples)
    normalisation: str = _segmentation(sweep.SweepSettings.normalisation)
    clustering: str = _segmentation("kmeans")
    kmeans_restarts: int = _segmentation(sweep.SweepSettings.kmeans_restarts)
    num_clusters: int = _segmentation(0)
    fair_protocol: bool = _segmentation(True)
    control: bool = _segmentation(True)
    control_noise_std: float = _segmentation(features.CONTROL_NOISE_STD)
    control_space: str = _segmentation(features.ControlReading.space)
    control_noise: str = _segmentation(features.ControlReading.noise)
    control_difference: bool = _segmentation(features.ControlReading.difference)
    control_normalisation: str = _segmentation(features.ControlReading.normalisation)
    control_clustering: str = _segmentation("ward")
    test_limit: int = _segmentation(0)
    fair_limit: int = _segmentation(0)
    control_limit: int = _segmentation(0)
    lns_seed: int = _segmentation(42)
    features: str = _segmentation("lns")
    pretrained: str = ""
    baselines: tuple[str, ...] = ()
    baseline_budget: str = "default"
    baseline_train: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    baseline_pretrained: str = ""
    baseline_population_batches: int = 10
    umap_images: int = 1
    cluster_workers: int = 0
    figures: bool = True
    progress: bool = True

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any]) -> "LNSConfig":
        """The validated config: every key known, the grid, datasets, models, each training config and shipped file
        checked, so a typo fails in one line before any work. Parsed once: the sweep settings (`sweep`) and every
        (model, dataset)'s training config (`run_configs`) are made here and passed down.

        Raises:
            ValueError: naming the key (and the closest known key for a typo) or the bad value.
            FileNotFoundError: a shipped weight file the config needs is missing.
        """
        known = [f.name for f in dataclasses.fields(cls)]
        for key in config:
            if key not in known:
                raise ValueError(f"unknown LNS config key {key!r}{closest(key, known)}")
        tangent.check_features_kind(config.get("features", "lns"))
        for key in ("datasets", "models", "seeds", "noise_stds", "num_noise_samples", "baselines"):
            value = config.get(key, ())
            if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
                raise ValueError(f"{key} must be a sequence, got {value!r} (a tuple such as \"(0.01, 0.1)\")")
        c = cls(**dict(config))
        for model, overrides in c.model_train.items():
            if model not in FAMILIES:
                raise ValueError(f"model_train names model {model!r}{closest(model, list(FAMILIES))}; known: "
                                 f"{sorted(FAMILIES)}")
            if not isinstance(overrides, Mapping):
                raise ValueError(f"model_train.{model} must map training keys to values, got {overrides!r}")
        for name in c.datasets:
            if name not in gg.NAMES:
                raise ValueError(f"unknown dataset {name!r}{closest(name, gg.NAMES)}; known: {gg.NAMES}")
        if not c.datasets or not c.models:
            raise ValueError(f"datasets and models must not be empty, got {c.datasets!r} and {c.models!r}")
        for key in ("test_limit", "fair_limit", "control_limit"):
            if int(getattr(c, key)) < 0:
                raise ValueError(f"{key} must be >= 0 (0: every image), got {getattr(c, key)!r}")
        for key in ("umap_images", "cluster_workers"):
            if int(getattr(c, key)) < 0:
                raise ValueError(f"{key} must be >= 0, got {getattr(c, key)!r}")
        c.sweep  # noqa: B018  (the grid, normalisation, clustering method and k, checked once)
        pixels = GESTALT_IMAGE_SHAPE[0] * GESTALT_IMAGE_SHAPE[1]
        if int(c.num_clusters) > pixels:  # what clustering would refuse after training: refused before it
            raise ValueError(f"num_clusters must be at most the number of pixels of an image ({pixels} for "
                             f"{GESTALT_IMAGE_SHAPE[0]} x {GESTALT_IMAGE_SHAPE[1]}), got {c.num_clusters!r}")
        if c.control_clustering:
            sweep.check_method(c.control_clustering)
        for name in c.baselines:
            if name not in baselines.BASELINES:
                raise ValueError(f"unknown baseline {name!r}{closest(name, baselines.BASELINES)}; known: "
                                 f"{baselines.BASELINES}")
        for name, overrides in c.baseline_train.items():
            if name not in baselines.BASELINES or not isinstance(overrides, Mapping):
                raise ValueError(f"baseline_train maps a baseline of {baselines.BASELINES} to training keys, got "
                                 f"{name!r}: {overrides!r}")
        if c.baseline_budget not in baselines.BUDGETS:
            raise ValueError(f"baseline_budget must be one of {tuple(baselines.BUDGETS)}, got {c.baseline_budget!r}")
        if int(c.baseline_population_batches) < 1:
            raise ValueError(f"baseline_population_batches must be >= 1, got {c.baseline_population_batches!r}")
        for (name, dataset), run in c.baseline_run_configs.items():
            path = Path(c.baseline_pretrained) / f"{name}_{dataset}.npz"
            if c.baseline_pretrained and path.exists():
                pretrained.verify(path, run)
        for (model, dataset), run in c.run_configs.items():
            if c.pretrained and not c.weights_path(model, dataset).exists():
                raise FileNotFoundError(
                    f"no shipped weights {c.weights_path(model, dataset)} for model {model!r} on {dataset!r} "
                    f"(pretrained={c.pretrained!r}; paths are relative to the working directory); "
                    '--config.pretrained="" trains instead')
            if c.pretrained:  # intact, and of this model, dataset and latent size
                pretrained.verify(c.weights_path(model, dataset), run)
        return c

    def model_train_config(self, model: str, dataset: str) -> dict:
        """The flat training config of one (model, dataset): `train`, then `model_train[model]`'s overrides."""
        c = dict(self.train)
        c.update(self.model_train.get(model, {}))
        c.update(model=model, dataset=dataset, seeds=tuple(self.seeds), progress=self.progress)
        return c

    @functools.cached_property
    def run_configs(self) -> dict[tuple[str, str], engine_config.RunConfig]:
        """{(model, dataset): its training config, parsed once}."""
        return {(model, dataset): engine_config.parse(self.model_train_config(model, dataset))
                for dataset in self.datasets for model in self.models}

    @functools.cached_property
    def baseline_run_configs(self) -> dict[tuple[str, str], engine_config.RunConfig]:
        """{(baseline, dataset): its training config (official settings, `baseline_budget`, `baseline_train`)}."""
        return {(name, dataset): engine_config.parse(baselines.training_config(
                    name, dataset, self.seeds, self.baseline_budget, {**self.baseline_train.get(name, {}),
                                                                      "progress": self.progress}))
                for dataset in self.datasets for name in self.baselines}

    def weights_path(self, model: str, dataset: str) -> Path:
        return Path(self.pretrained) / f"{model}_{dataset}.npz"

    @functools.cached_property
    def sweep(self) -> sweep.SweepSettings:
        """The sweep every (model, dataset) runs on `test` and `test_iid`, made (and checked) once; variants (the
        control's, kept labels) are `dataclasses.replace`s of it."""
        return sweep.SweepSettings(noise_stds=self.noise_stds, num_noise_samples=self.num_noise_samples,
                                   normalisation=self.normalisation, method=self.clustering,
                                   kmeans_restarts=self.kmeans_restarts,
                                   num_clusters=None if int(self.num_clusters) <= 0 else int(self.num_clusters),
                                   control_noise_std=self.control_noise_std, control_reading=self.control_reading,
                                   workers=self.cluster_workers or None, progress=self.progress)

    def control_sweep(self, num_noise_samples: int) -> sweep.SweepSettings:
        """The noisy-reconstruction control's sweep at the selected N (its own clustering)."""
        return dataclasses.replace(self.sweep, control=True, num_noise_samples=(num_noise_samples,),
                                   method=self.control_method)

    @property
    def control_method(self) -> str:
        """The control's clustering: `control_clustering`, or the run's when that is ""."""
        return self.control_clustering or self.clustering

    @property
    def control_reading(self) -> features.ControlReading:
        return features.ControlReading(self.control_space, self.control_noise, self.control_difference,
                                       self.control_normalisation)

    def fingerprint(self, model_identity: Mapping[str, Any]) -> str:
        """Digest of everything a segmentation result depends on (cached results with another digest are redone)."""
        items = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata.get("segmentation")}
        items.update(model_identity)
        return hashlib.sha256(json.dumps(atomic.jsonable(items), sort_keys=True).encode()).hexdigest()[:16]


def model_key(key: jax.Array, model: str, dataset: str) -> jax.Array:
    """The segmentation key of one (model, dataset) from the run's `lns_seed` key: the same whatever else the run
    holds, so a cached or re-run pair draws the same noise (a stable hash, not Python's salted `hash`)."""
    return jax.random.fold_in(key, zlib.crc32(f"{model}_{dataset}".encode()) & 0x7FFFFFFF)


def segment_model(config: LNSConfig, graphdef, params, dataset: str, key: jax.Array, model: str = "") -> dict:
    """Sweeps, protocols and control for one trained (dataset, model): a dict of arrays (see module docstring);
    `model` names the progress bars."""
    def load(split, limit=0):
        data = gg.load(dataset, split)
        limit = min(int(limit) or len(data.images), int(config.test_limit) or len(data.images))
        return data.images[:limit], data.masks[:limit]

    images, masks = load("test")
    if config.features == "tangent":
        return segment_model_tangent(config, graphdef, params, images, masks, key)
    label = f"{dataset} / {model}:" if model else f"{dataset}:"
    test = sweep.evaluate(graphdef, params, images, masks, jax.random.fold_in(key, 0), config.sweep, keep_labels=True,
                          label=f"{label} test")
    out = {"test_ari": test.ari, "test_ari_fg": test.ari_fg, "zero_feature_fraction": test.zero_feature_fraction,
           "reconstructions": test.reconstructions[0], "images": images, "masks": masks}
    paper = results.best_setting(test.ari)
    out["paper_setting"] = np.array(paper)
    out["labels"] = test.labels[0, paper[0], paper[1]]
    umap_images = min(int(config.umap_images), len(images))
    if umap_images:  # features of the first images at the paper's setting, seed 0, for UMAP plots
        sigma, n = config.sweep.noise_stds[paper[0]], config.sweep.num_noise_samples[paper[1]]
        params0 = jax.tree.map(lambda x: x[0], params)
        out["umap_features"] = np.asarray(sweep.setting_features(
            graphdef, params0, images[:umap_images], jax.random.fold_in(jax.random.fold_in(key, 0), 0), sigma, n,
            config.normalisation))
    if config.fair_protocol:
        iid_images, iid_masks = load("test_iid", config.fair_limit)
        iid = sweep.evaluate(graphdef, params, iid_images, iid_masks, jax.random.fold_in(key, 1), config.sweep,
                             label=f"{label} test_iid")
        out["test_iid_ari"] = iid.ari
        out["fair_setting"] = np.array(results.best_setting(iid.ari))
    if config.control:
        n = config.sweep.num_noise_samples[paper[1]]
        limit = int(config.control_limit) or len(images)
        control = sweep.evaluate(graphdef, params, images[:limit], masks[:limit], jax.random.fold_in(key, 2),
                                 config.control_sweep(n), label=f"{label} test")
        out["control_ari"] = control.ari[:, 0, 0]
        out["control_labels"] = control.labels[0, 0, 0] if control.labels is not None else None
    return {k: v for k, v in out.items() if v is not None}


BRIDGE_IMAGES = 2  # test images of the Gram-matrix bridge figure (seed 0)
JACOBIAN_IMAGES = 4  # test images whose tangent features are kept for the Jacobian-row figure


def segment_model_tangent(config: LNSConfig, graphdef, params, images, masks, key: jax.Array) -> dict:
    """`segment_model` with tangent-limit features: ARIs `[S, b]`, labels and features of seed 0, the bridge."""
    result = tangent.evaluate(graphdef, params, images, masks, jax.random.fold_in(key, 0), config.sweep,
                              keep_labels=True)
    params0 = jax.tree.map(lambda x: x[0], params)
    shown = images[: max(JACOBIAN_IMAGES, int(config.umap_images))]
    feats = np.asarray(tangent.tangent_features(graphdef, params0, shown, config.normalisation))
    bridge = tangent.bridge(graphdef, params0, images[:BRIDGE_IMAGES], jax.random.fold_in(key, 3), config.noise_stds,
                            config.num_noise_samples, config.normalisation)
    out = {"test_ari": result.ari, "test_ari_fg": result.ari_fg, "zero_feature_fraction": result.zero_feature_fraction,
           "reconstructions": result.reconstructions[0], "images": images, "masks": masks,
           "labels": result.labels[0], "tangent_features": feats[:JACOBIAN_IMAGES],
           **{f"bridge_{k}": v for k, v in bridge.items()}}
    if int(config.umap_images):
        out["umap_features"] = feats[: int(config.umap_images)]
    return out


def model_params(config: LNSConfig, workdir: Path, model: str, dataset: str):
    """(graphdef, params stacked over seeds, identity for the fingerprint) of one (model, dataset): shipped weights
    when `config.pretrained` is set, else trained (or resumed) in `workdir/models/<model>_<dataset>/`."""
    run = config.run_configs[(model, dataset)]
    _, trainer, _ = loop.build(run, GESTALT_IMAGE_SHAPE)
    if config.pretrained:
        path = config.weights_path(model, dataset)
        params = pretrained.load(path, run, GESTALT_IMAGE_SHAPE)
        return trainer.graphdef, params, {"train": {"pretrained": hashlib.sha256(path.read_bytes()).hexdigest()[:16]},
                                          "steps": 0}
    engine = run.engine
    train_images, valid_images = gg.training_images(dataset, engine.train_limit, engine.valid_limit)
    state = loop.train(run, results.model_dir(workdir, model, dataset), train_images, valid_images)
    # The identity of a trained model: its parsed training config (the loss as it sums) and the steps.
    identity = engine_config.comparable(run.as_dict())
    return trainer.graphdef, state.inference_params, {"train": identity, "steps": int(np.asarray(state.step).max())}


def baseline_params(config: LNSConfig, workdir: Path, name: str, dataset: str):
    """(family, graphdef, params stacked over seeds, identity) of one baseline on one dataset: shipped weights when
    `baseline_pretrained` holds `<name>_<dataset>.npz`, else trained (or resumed) in
    `workdir/models/<name>_<dataset>`."""
    run = config.baseline_run_configs[(name, dataset)]
    _, trainer, _ = loop.build(run, GESTALT_IMAGE_SHAPE)
    path = Path(config.baseline_pretrained) / f"{name}_{dataset}.npz"
    if config.baseline_pretrained and path.exists():
        params = pretrained.load(path, run, GESTALT_IMAGE_SHAPE)
        return run.family, trainer.graphdef, params, {"pretrained": hashlib.sha256(path.read_bytes()).hexdigest()[:16]}
    engine = run.engine
    state = loop.train(run, results.model_dir(workdir, name, dataset),
                       *gg.training_images(dataset, engine.train_limit, engine.valid_limit))
    identity = {"train": engine_config.comparable(run.as_dict()), "steps": int(np.asarray(state.step).max())}
    return run.family, trainer.graphdef, state.inference_params, identity


def segment_baseline(config: LNSConfig, workdir: Path, name: str, dataset: str, key: jax.Array) -> dict:
    """The scores of one baseline on one dataset's `test` (`noisegroup.baselines.evaluate`), cached in
    `segmentation/<name>_<dataset>.npz` under a fingerprint of the weights and the scoring settings."""
    family, graphdef, params, identity = baseline_params(config, workdir, name, dataset)
    data = gg.load(dataset, "test")
    limit = int(config.test_limit) or len(data.images)
    images, masks = data.images[:limit], data.masks[:limit]
    settings = {"model": identity, "lns_seed": config.lns_seed, "test_limit": limit,
                "population_batches": config.baseline_population_batches}
    fingerprint = hashlib.sha256(json.dumps(atomic.jsonable(settings), sort_keys=True).encode()).hexdigest()[:16]
    path = results.segmentation_path(workdir, name, dataset)
    cached = atomic.read_npz_cache(path, fingerprint)
    if cached is not None and {"masks_ari", "masks_ari_fg", "labels_masks"} <= set(cached):
        return cached
    batch, batches = config.baseline_run_configs[(name, dataset)].engine.batch_size, config.baseline_population_batches
    train_images = gg.training_images(dataset, batch * int(batches), 1)[0]  # the first training images
    scores = baselines.evaluate(family, graphdef, params, images, masks, key, train_images, int(batches), batch)
    seg = {**scores, "images": images, "masks": masks}
    atomic.save_npz(path, fingerprint=np.array(fingerprint), **seg)
    return seg


def run(config: LNSConfig | Mapping[str, Any], workdir: str | Path) -> list[dict]:
    """Runs the LNS experiment of `config` (see ``experiments/configs/lns.py``) in `workdir`; resumes.

    Args:
        config: an `LNSConfig`, or a mapping (validated by `LNSConfig.from_mapping` before any work).

    Returns:
        One summary row per (dataset, model, protocol), as written to results.csv / results.json.
    """
    if not isinstance(config, LNSConfig):
        config = LNSConfig.from_mapping(config)
    workdir = check_workdir(workdir)
    (workdir / "segmentation").mkdir(parents=True, exist_ok=True)
    with workdir_lock.hold(workdir):
        return _run(config, workdir)


def num_seeds(params) -> int:
    """The number of seeds of parameters stacked over seeds (their leading axis)."""
    return int(jax.tree.leaves(params)[0].shape[0])


def segmentation_layout(config: LNSConfig, seeds: int) -> dict:
    """What `segment_model` writes for `config` (its features kind) and `seeds` models: the arrays and shapes a
    cached segmentation must hold to be used, as keyword arguments of `atomic.read_npz_cache` (shapes, optional,
    sizes). The fingerprint says which settings a cache is of; this says that it holds their results whole.

    Image counts follow `segment_model`'s limits on the Good Gestalt split sizes. "umap_features" is optional and of
    any count: `umap_images` is not a segmentation setting (not in the fingerprint), so a cache of another count
    is kept.
    """
    h, w, c = GESTALT_IMAGE_SHAPE
    n_test, n_iid = gg.SPLIT_SIZES["test"], gg.SPLIT_SIZES["test_iid"]
    images = min(int(config.test_limit) or n_test, n_test)
    sizes = {"seeds": seeds, "images": images, "sigmas": len(config.noise_stds),
             "Ns": len(config.num_noise_samples)}
    shapes = {"reconstructions": ("images", h, w, c), "images": ("images", h, w, c), "masks": ("images", h, w),
              "labels": ("images", h, w), "umap_features": (None, h * w, "features")}
    if config.features == "tangent":
        per_image = ("seeds", "images")
        sizes.update(jacobian_images=min(images, JACOBIAN_IMAGES), bridge_images=min(images, BRIDGE_IMAGES))
        shapes.update(tangent_features=("jacobian_images", h * w, "features"), bridge_noise_stds=("sigmas",),
                      bridge_sample_counts=("Ns",), bridge_distance=("sigmas", "Ns", "bridge_images"),
                      bridge_linear_limit=("Ns", "bridge_images"), bridge_expected_fluctuation=("Ns",))
    else:
        per_image = ("seeds", "sigmas", "Ns", "images")
        shapes["paper_setting"] = (2,)
        if config.fair_protocol:
            sizes["iid_images"] = min(int(config.fair_limit) or n_iid, int(config.test_limit) or n_iid)
            shapes.update(test_iid_ari=("seeds", "sigmas", "Ns", "iid_images"), fair_setting=(2,))
        if config.control:
            sizes["control_images"] = min(int(config.control_limit) or images, images)
            shapes["control_ari"] = ("seeds", "control_images")
    shapes.update(test_ari=per_image, test_ari_fg=per_image, zero_feature_fraction=per_image)
    return {"shapes": shapes, "optional": ("umap_features",), "sizes": sizes}


def _run(config: LNSConfig, workdir: Path) -> list[dict]:
    rows, timings = [], {}
    key = jax.random.key(int(config.lns_seed))
    for dataset in config.datasets:
        for model in config.models:
            tic = time.perf_counter()
            graphdef, params, identity = model_params(config, workdir, model, dataset)
            fingerprint = config.fingerprint(identity)
            path = results.segmentation_path(workdir, model, dataset, config.features)
            if config.features == "tangent":  # LNS rows beside the tangent ones, from this workdir's LNS cache
                lns_config = dataclasses.replace(config, features="lns")
                cached = atomic.read_npz_cache(results.segmentation_path(workdir, model, dataset),
                                               lns_config.fingerprint(identity),
                                               **segmentation_layout(lns_config, num_seeds(params)))
                if cached is not None:
                    rows.extend(results.summary_rows(lns_config, dataset, model, cached))
            seg = atomic.read_npz_cache(path, fingerprint, **segmentation_layout(config, num_seeds(params)))
            if seg is None:
                seg = segment_model(config, graphdef, params, dataset, model_key(key, model, dataset), model)
                atomic.save_npz(path, fingerprint=np.array(fingerprint), **seg)
            new_rows = results.summary_rows(config, dataset, model, seg)
            rows.extend(new_rows)
            timings[f"{model}_{dataset}"] = time.perf_counter() - tic
            if config.progress:
                tqdm.write(results.summary_line(dataset, model, new_rows, timings[f"{model}_{dataset}"]))
        for name in config.baselines:
            tic = time.perf_counter()
            seg = segment_baseline(config, workdir, name, dataset, model_key(key, name, dataset))
            new_rows = results.baseline_rows(config, dataset, name, seg)
            rows.extend(new_rows)
            timings[f"{name}_{dataset}"] = time.perf_counter() - tic
            if config.progress:
                tqdm.write(results.summary_line(dataset, name, new_rows, timings[f"{name}_{dataset}"]))
    results.write_results(workdir, config, rows, timings)
    if config.figures:
        plots.write_all(workdir, dataclasses.asdict(config))
    return rows
