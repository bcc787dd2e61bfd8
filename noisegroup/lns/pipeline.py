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

import csv
import dataclasses
import functools
import hashlib
import io
import json
import time
import zlib
from pathlib import Path
from typing import Any, Mapping

import jax
import numpy as np

from noisegroup import atomic, stats
from noisegroup.checks import check_workdir
from noisegroup.engine import config as engine_config
from noisegroup.engine import loop, pretrained, workdir_lock
from noisegroup.engine.losses import closest
from noisegroup.lns import features, sweep, tangent

GESTALT_IMAGE_SHAPE = (64, 64, 3)


@functools.cache
def _paper_table() -> dict:
    return json.loads((Path(__file__).with_name("paper_ari.json")).read_text())


def paper_value(model: str, dataset: str, clustering: str = "ward") -> float | None:
    """The paper's ARI for (model, dataset) with Ward or k-means clustering (`paper_ari.json`), or None."""
    table = _paper_table()
    values = table["kmeans" if "kmeans" in clustering else "ward"].get(model)
    return None if values is None or dataset not in table["datasets"] else values[table["datasets"].index(dataset)]


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
    noise_stds: tuple[float, ...] = _segmentation((1e-3, 1e-2, 1e-1, 0.5))
    num_noise_samples: tuple[int, ...] = _segmentation((5, 20))
    normalisation: str = _segmentation("channel")
    clustering: str = _segmentation("kmeans")
    kmeans_restarts: int = _segmentation(1)
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
    umap_images: int = 1
    cluster_workers: int = 0
    figures: bool = True
    progress: bool = True

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any]) -> "LNSConfig":
        """The validated config: every key known, the grid, datasets, models, each training config and shipped file
        checked, so a typo fails in one line before any work.

        Raises:
            ValueError: naming the key (and the closest known key for a typo) or the bad value.
            FileNotFoundError: a shipped weight file the config needs is missing.
        """
        from datasets import good_gestalt as gg

        known = [f.name for f in dataclasses.fields(cls)]
        for key in config:
            if key not in known:
                raise ValueError(f"unknown LNS config key {key!r}{closest(key, known)}")
        tangent.check_features_kind(config.get("features", "lns"))
        for key in ("datasets", "models", "seeds", "noise_stds", "num_noise_samples"):
            value = config.get(key, ())
            if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
                raise ValueError(f"{key} must be a sequence, got {value!r} (a tuple such as \"(0.01, 0.1)\")")
        c = cls(**dict(config))
        from noisegroup.models import FAMILIES

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
        c.sweep_settings()  # checks the grid, normalisation, clustering method and k
        pixels = GESTALT_IMAGE_SHAPE[0] * GESTALT_IMAGE_SHAPE[1]
        if int(c.num_clusters) > pixels:  # what clustering would refuse after training: refused before it
            raise ValueError(f"num_clusters must be at most the number of pixels of an image ({pixels} for "
                             f"{GESTALT_IMAGE_SHAPE[0]} x {GESTALT_IMAGE_SHAPE[1]}), got {c.num_clusters!r}")
        if c.control_clustering:
            sweep.check_method(c.control_clustering)
        for dataset in c.datasets:
            for model in c.models:
                engine_config.parse(c.model_train_config(model, dataset))
                if c.pretrained and not c.weights_path(model, dataset).exists():
                    raise FileNotFoundError(
                        f"no shipped weights {c.weights_path(model, dataset)} for model {model!r} on {dataset!r} "
                        f"(pretrained={c.pretrained!r}; paths are relative to the working directory); "
                        '--config.pretrained="" trains instead')
                if c.pretrained:  # intact, and of this model, dataset and latent size
                    pretrained.verify(c.weights_path(model, dataset), c.model_train_config(model, dataset))
        return c

    def model_train_config(self, model: str, dataset: str) -> dict:
        """The training config of one (model, dataset): `train`, then `model_train[model]`'s overrides."""
        c = dict(self.train)
        c.update(self.model_train.get(model, {}))
        c.update(model=model, dataset=dataset, seeds=tuple(self.seeds), progress=self.progress)
        return c

    def weights_path(self, model: str, dataset: str) -> Path:
        return Path(self.pretrained) / f"{model}_{dataset}.npz"

    def sweep_settings(self, **overrides) -> sweep.SweepSettings:
        """The sweep every (model, dataset) runs on `test` (overrides: e.g. the control's)."""
        settings = dict(noise_stds=self.noise_stds, num_noise_samples=self.num_noise_samples,
                        normalisation=self.normalisation, method=self.clustering,
                        kmeans_restarts=self.kmeans_restarts,
                        num_clusters=None if int(self.num_clusters) <= 0 else int(self.num_clusters),
                        control_noise_std=self.control_noise_std, control_reading=self.control_reading,
                        workers=self.cluster_workers or None,
                        progress=self.progress)
        return sweep.SweepSettings(**{**settings, **overrides})

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


def segmentation_path(workdir: str | Path, model: str, dataset: str, kind: str = "lns") -> Path:
    """Where the segmentation cache of one (model, dataset) and features kind lives."""
    return Path(workdir) / "segmentation" / f"{model}_{dataset}{'' if kind == 'lns' else '_' + kind}.npz"


def load_training_data(train_config: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(train, valid) images of a training config's Good Gestalt dataset (cached; `*_limit` takes a prefix)."""
    from datasets import good_gestalt as gg

    def split(name, limit):
        if limit:
            return gg.generate(train_config["dataset"], name, limit=limit).images
        return gg.load(train_config["dataset"], name).images

    return split("train", train_config.get("train_limit")), split("valid", train_config.get("valid_limit"))


def model_key(key: jax.Array, model: str, dataset: str) -> jax.Array:
    """The segmentation key of one (model, dataset) from the run's `lns_seed` key: the same whatever else the run
    holds, so a cached or re-run pair draws the same noise (a stable hash, not Python's salted `hash`)."""
    return jax.random.fold_in(key, zlib.crc32(f"{model}_{dataset}".encode()) & 0x7FFFFFFF)


def segment_model(config: LNSConfig, graphdef, params, dataset: str, key: jax.Array, model: str = "") -> dict:
    """Sweeps, protocols and control for one trained (dataset, model): a dict of arrays (see module docstring);
    `model` names the progress bars."""
    from datasets import good_gestalt as gg

    def load(split, limit=0):
        data = gg.load(dataset, split)
        limit = min(int(limit) or len(data.images), int(config.test_limit) or len(data.images))
        return data.images[:limit], data.masks[:limit]

    images, masks = load("test")
    if config.features == "tangent":
        return segment_model_tangent(config, graphdef, params, images, masks, key)
    label = f"{dataset} / {model}:" if model else f"{dataset}:"
    test = sweep.evaluate(graphdef, params, images, masks, jax.random.fold_in(key, 0),
                          config.sweep_settings(keep_labels=True, label=f"{label} test"))
    out = {"test_ari": test.ari, "test_ari_fg": test.ari_fg, "zero_feature_fraction": test.zero_feature_fraction,
           "reconstructions": test.reconstructions[0], "images": images, "masks": masks}
    paper = stats.select_setting(test.ari)
    out["paper_setting"] = np.array(paper)
    out["labels"] = test.labels[0, paper[0], paper[1]]
    umap_images = min(int(config.umap_images), len(images))
    if umap_images:  # features of the first images at the paper's setting, seed 0, for UMAP plots
        sigma = float(np.asarray(config.noise_stds)[paper[0]])
        n = int(np.asarray(config.num_noise_samples)[paper[1]])
        params0 = jax.tree.map(lambda x: x[0], params)
        out["umap_features"] = np.asarray(sweep.setting_features(
            graphdef, params0, images[:umap_images], jax.random.fold_in(jax.random.fold_in(key, 0), 0), sigma, n,
            config.normalisation))
    if config.fair_protocol:
        iid_images, iid_masks = load("test_iid", config.fair_limit)
        iid = sweep.evaluate(graphdef, params, iid_images, iid_masks, jax.random.fold_in(key, 1),
                             config.sweep_settings(label=f"{label} test_iid"))
        out["test_iid_ari"] = iid.ari
        out["fair_setting"] = np.array(stats.select_setting(iid.ari))
    if config.control:
        n = int(np.asarray(config.num_noise_samples)[paper[1]])
        limit = int(config.control_limit) or len(images)
        control = sweep.evaluate(graphdef, params, images[:limit], masks[:limit], jax.random.fold_in(key, 2),
                                 config.sweep_settings(control=True, num_noise_samples=(n,),
                                                       method=config.control_method, label=f"{label} test"))
        out["control_ari"] = control.ari[:, 0, 0]
        out["control_labels"] = control.labels[0, 0, 0] if control.labels is not None else None
    return {k: v for k, v in out.items() if v is not None}


BRIDGE_IMAGES = 2  # test images of the Gram-matrix bridge figure (seed 0)
JACOBIAN_IMAGES = 4  # test images whose tangent features are kept for the Jacobian-row figure


def segment_model_tangent(config: LNSConfig, graphdef, params, images, masks, key: jax.Array) -> dict:
    """`segment_model` with tangent-limit features: ARIs `[S, b]`, labels and features of seed 0, the bridge."""
    result = tangent.evaluate(graphdef, params, images, masks, jax.random.fold_in(key, 0),
                              config.sweep_settings(keep_labels=True))
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


def _tangent_rows(config: LNSConfig, dataset: str, model: str, seg: Mapping[str, np.ndarray]) -> list[dict]:
    s, fg = stats.mean_sem(seg["test_ari"]), stats.mean_sem(seg["test_ari_fg"])
    protocols = ("paper", "fair") if config.fair_protocol else ("paper",)  # nothing selected: the same row for both
    return [dict(dataset=dataset, model=f"{model}_tangent", protocol=protocol, noise_std=None, num_noise_samples=None,
                 selection="none", ari=s["mean"], ari_sem=s["sem"], sem_over=s["sem_over"], ari_fg=fg["mean"],
                 per_seed=s["per_seed"], clustering=config.clustering,
                 paper_ari=paper_value(model, dataset, config.clustering)) for protocol in protocols]


def _summary_rows(config: LNSConfig, dataset: str, model: str, seg: Mapping[str, np.ndarray]) -> list[dict]:
    if config.features == "tangent":
        return _tangent_rows(config, dataset, model, seg)
    sigmas, counts = np.asarray(config.noise_stds), np.asarray(config.num_noise_samples)
    rows = []
    protocols = [("paper", tuple(seg["paper_setting"]))]
    if "fair_setting" in seg:
        protocols.append(("fair", tuple(seg["fair_setting"])))
    for protocol, (i, j) in protocols:
        s = stats.summarise(seg["test_ari"], (i, j))
        fg = stats.summarise(seg["test_ari_fg"], (i, j))
        rows.append(dict(dataset=dataset, model=model, protocol=protocol, noise_std=float(sigmas[i]),
                         num_noise_samples=int(counts[j]), ari=s["mean"], ari_sem=s["sem"], sem_over=s["sem_over"],
                         ari_fg=fg["mean"], per_seed=s["per_seed"],
                         per_image=np.asarray(seg["test_ari"])[:, i, j, :].mean(axis=0).tolist(),
                         clustering=config.clustering, paper_ari=paper_value(model, dataset, config.clustering)))
    if "control_ari" in seg:
        s = stats.mean_sem(seg["control_ari"])
        rows.append(dict(dataset=dataset, model=f"{model}_control", protocol="paper",
                         noise_std=config.control_noise_std, num_noise_samples=int(counts[protocols[0][1][1]]),
                         ari=s["mean"], ari_sem=s["sem"], sem_over=s["sem_over"], ari_fg=None,
                         per_seed=s["per_seed"], clustering=config.control_method,
                         paper_ari=paper_value(f"{model}_control", dataset)))
    return rows


def summary_line(dataset: str, model: str, rows: list[dict], seconds: float) -> str:
    """One line for a finished (dataset, model): its paper-protocol ARI and setting, the control, the paper's."""
    def paper(r):
        return "" if r.get("paper_ari") is None else f" (paper {r['paper_ari']:.3f})"

    parts = []
    for r in rows:
        if r["protocol"] == "paper" and not r["model"].endswith("_control"):
            setting = "" if r.get("selection") == "none" else f" at sigma {r['noise_std']:g}, N {r['num_noise_samples']}"
            parts.append(f"ARI {r['ari']:.3f}{paper(r)}{setting}")
        elif r["model"].endswith("_control"):
            parts.append(f"control {r['ari']:.3f}{paper(r)}")
    return f"{dataset} / {model}: " + "; ".join(parts) + f"; {seconds / 60:.1f} min"


def model_comparisons(rows: list[dict], protocol: str = "paper", models: tuple[str, str] = ("ae", "vae"),
                      alpha: float = 0.05) -> list[dict]:
    """The paper's AE-against-VAE test per dataset (Table 1's stars): a two-sample two-tailed t-test of the two models'
    ARIs at their chosen settings, over seeds (the paper: 5 each), or over test images when a model has one seed;
    starred when p <= alpha / m, Bonferroni over the m datasets that have both models (`stats.model_difference`).

    Returns:
        One dict per such dataset: dataset, protocol, models, t, p, n_a, n_b, over, p_bonferroni, star.
    """
    lookup = {(r["dataset"], r["model"]): r for r in rows if r["protocol"] == protocol}
    out = []
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        a, b = lookup.get((dataset, models[0])), lookup.get((dataset, models[1]))
        if a is None or b is None or "per_image" not in a or "per_image" not in b:
            continue
        by_seed = len(a["per_seed"]) > 1 and len(b["per_seed"]) > 1
        key = "per_seed" if by_seed else "per_image"
        test = stats.model_difference(a[key], b[key], over="seeds" if by_seed else "images")
        out.append(dict(dataset=dataset, protocol=protocol, models=list(models), **test))
    if out:
        family = stats.holm_bonferroni([c["p"] for c in out], alpha, procedure="bonferroni")
        for c, adjusted, star in zip(out, family.adjusted, family.rejected, strict=True):
            c.update(p_bonferroni=adjusted, star=star)
    return out


def format_table(rows: list[dict], protocol: str = "paper") -> str:
    """A text table of ARI per dataset (rows) and model (columns), ours next to the paper's; a `*` marks a row that
    needed no setting selection (tangent-limit features), with a footnote."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    lookup = {(r["dataset"], r["model"]): r for r in rows if r["protocol"] == protocol or r["model"].endswith("_control")}
    header = f"{'dataset':<20}" + "".join(f"{m + ' (paper)':>26}" for m in models)
    comparisons = {c["dataset"]: c for c in model_comparisons(rows, protocol)}
    if comparisons:
        header += f"{'ae vs vae p':>14}"
    lines = [header, "-" * len(header)]
    for d in datasets:
        cells = []
        for m in models:
            r = lookup.get((d, m))
            if r is None:
                cells.append(f"{'-':>26}")
                continue
            paper = "   -  " if r["paper_ari"] is None else f"{r['paper_ari']:6.3f}"
            mark = "*" if r.get("selection") == "none" else ""
            cells.append(f"{r['ari']:7.3f}{mark} +-{r['ari_sem']:.3f} ({paper})".rjust(26))
        if comparisons:
            c = comparisons.get(d)
            p_cell = "-" if c is None else f"{c['p_bonferroni']:.2g}{' *' if c['star'] else '  '}"
            cells.append(p_cell.rjust(14))
        lines.append(f"{d:<20}" + "".join(cells))
    if comparisons:
        over = ", ".join(sorted({c["over"] for c in comparisons.values()}))
        lines.append(f"ae vs vae p: two-sample two-tailed t-test over {over}, Bonferroni-adjusted over "
                     f"{len(comparisons)} datasets; * p <= 0.05 (the paper's Table 1 stars)")
    if any(r.get("selection") == "none" for r in lookup.values()):
        lines.append("* tangent limit (sigma -> 0, N -> inf): no (sigma, N) setting to select, the same under both "
                     "protocols; (paper) is the paper's LNS value")
    return "\n".join(lines)


def model_params(config: LNSConfig, workdir: Path, model: str, dataset: str):
    """(graphdef, params stacked over seeds, identity for the fingerprint) of one (model, dataset): shipped weights
    when `config.pretrained` is set, else trained (or resumed) in `workdir/models/<model>_<dataset>/`."""
    train_config = config.model_train_config(model, dataset)
    _, trainer, _ = loop.build(train_config, GESTALT_IMAGE_SHAPE)
    if config.pretrained:
        path = config.weights_path(model, dataset)
        params = pretrained.load(path, train_config, GESTALT_IMAGE_SHAPE)
        return trainer.graphdef, params, {"train": {"pretrained": hashlib.sha256(path.read_bytes()).hexdigest()[:16]},
                                          "steps": 0}
    train_images, valid_images = load_training_data(train_config)
    state = loop.train(train_config, workdir / "models" / f"{model}_{dataset}", train_images, valid_images)
    # The identity of a trained model, as the fingerprint has always taken it: the config given and the steps.
    return trainer.graphdef, state.inference_params, {"train": train_config, "steps": int(np.asarray(state.step).max())}


def run(config: Mapping[str, Any], workdir: str | Path) -> list[dict]:
    """Runs the LNS experiment of `config` (see ``experiments/configs/lns.py``) in `workdir`; resumes.

    Returns:
        One summary row per (dataset, model, protocol), as written to results.csv / results.json.
    """
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
    from datasets import good_gestalt as gg

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
            path = segmentation_path(workdir, model, dataset, config.features)
            if config.features == "tangent":  # LNS rows beside the tangent ones, from this workdir's LNS cache
                lns_config = dataclasses.replace(config, features="lns")
                cached = atomic.read_npz_cache(segmentation_path(workdir, model, dataset),
                                               lns_config.fingerprint(identity),
                                               **segmentation_layout(lns_config, num_seeds(params)))
                if cached is not None:
                    rows.extend(_summary_rows(lns_config, dataset, model, cached))
            seg = atomic.read_npz_cache(path, fingerprint, **segmentation_layout(config, num_seeds(params)))
            if seg is None:
                seg = segment_model(config, graphdef, params, dataset, model_key(key, model, dataset), model)
                atomic.save_npz(path, fingerprint=np.array(fingerprint), **seg)
            new_rows = _summary_rows(config, dataset, model, seg)
            rows.extend(new_rows)
            timings[f"{model}_{dataset}"] = time.perf_counter() - tic
            if config.progress:
                from tqdm.auto import tqdm

                tqdm.write(summary_line(dataset, model, new_rows, timings[f"{model}_{dataset}"]))
    _write_results(workdir, config, rows, timings)
    if config.figures:
        from noisegroup.lns import plots

        plots.write_all(workdir, dataclasses.asdict(config))
    return rows


def _write_results(workdir: Path, config: LNSConfig, rows: list[dict], timings: dict) -> None:
    comparisons = [c for protocol in ("paper", "fair") for c in model_comparisons(rows, protocol)]
    atomic.write_json(workdir / "results.json", {"config": dataclasses.asdict(config), "rows": rows,
                                                 "comparisons": comparisons, "seconds": timings})
    fields = ["dataset", "model", "protocol", "noise_std", "num_noise_samples", "clustering", "ari", "ari_sem",
              "sem_over", "ari_fg", "paper_ari"]
    if any("selection" in r for r in rows):
        fields.append("selection")
    text = io.StringIO()
    writer = csv.DictWriter(text, fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic.write_text(workdir / "results.csv", text.getvalue())
