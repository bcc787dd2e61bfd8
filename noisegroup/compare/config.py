"""The schema of a comparison config (`experiments/configs/compare.py` says what each key means), parsed once.

    config = CompareConfig.from_mapping(mapping)   # every key, name and training config checked before any work
    config.methods                                 # tuple of `Method`
    config.run_config("slot_attention", "kanizsa") # the engine's parsed training config of one trained model
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

from noisegroup.checks import closest
from noisegroup.compare.data import IMAGE_SHAPE
from noisegroup.compare.methods import LNS_MODELS, Method, check_dataset, parse_method
from noisegroup.engine import config as engine_config
from noisegroup.lns import num_groups, sweep


@dataclasses.dataclass(frozen=True)
class CompareConfig:
    """A parsed comparison config.

    Attributes:
        methods: the rows (`noisegroup.compare.methods.METHODS`), parsed.
        datasets: the columns (`DATASETS`).
        seeds: training seeds (every trained model) and the seeds scored (LNS: every seed of the weights).
        test_limit: test images per dataset (0: the whole test split).
        select_limit: selection images (Good Gestalt `test_iid`, Multi-dSprites `valid`) on which LNS chooses its
            (sigma, N) when the grid holds more than one.
        noise_stds, num_noise_samples: LNS's (sigma, N) grid.
        normalisation: LNS's feature normalisation ("channel": the reference's).
        kmeans_restarts: k-means initialisations per image.
        estimator, k_max: the estimated-k variant's estimator and largest k.
        pretrained: folder of shipped AE / beta-VAE weights `<model>_<dataset>.npz` used where they exist (the
            Good Gestalt sets); "" trains every LNS model.
        train: {model family: flat training config} of every family a method trains (engine keys and the family's;
            `model`, `dataset`, `seeds` and `progress` are set per cell).
        key: the evaluation's noise seed.
        figure_images: test images per dataset in the side-by-side figure (0: no figure).
        progress: progress bars.
    """

    methods: tuple[Method, ...]
    datasets: tuple[str, ...]
    seeds: tuple[int, ...] = (0,)
    test_limit: int = 0
    select_limit: int = 32
    noise_stds: tuple[float, ...] = (0.01, 0.1)
    num_noise_samples: tuple[int, ...] = (20,)
    normalisation: str = "channel"
    kmeans_restarts: int = 1
    estimator: str = num_groups.DEFAULT_ESTIMATOR
    k_max: int = num_groups.DEFAULT_K_MAX
    pretrained: str = "pretrained"
    train: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    key: int = 0
    figure_images: int = 4
    progress: bool = True

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any]) -> "CompareConfig":
        """The validated config.

        Raises:
            ValueError: naming the bad key (and the closest known one), method, dataset or value.
        """
        known = [f.name for f in dataclasses.fields(cls)]
        for key in config:
            if key not in known:
                raise ValueError(f"unknown compare config key {key!r}{closest(key, known)}")
        values = dict(config)
        for key in ("methods", "datasets", "seeds", "noise_stds", "num_noise_samples"):
            value = values.get(key, ())
            if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
                raise ValueError(f"{key} must be a sequence, got {value!r} (a tuple such as \"('a', 'b')\")")
            values[key] = tuple(value)
        values["methods"] = tuple(parse_method(m) for m in values.get("methods", ()))
        values["datasets"] = tuple(check_dataset(d) for d in values.get("datasets", ()))
        if not values["methods"] or not values["datasets"]:
            raise ValueError(f"methods and datasets must not be empty, got {config.get('methods')!r} and "
                             f"{config.get('datasets')!r}")
        values["train"] = {k: dict(v) for k, v in dict(values.get("train", {})).items()}
        c = cls(**values)
        for key in ("test_limit", "select_limit", "figure_images"):
            if int(getattr(c, key)) < 0:
                raise ValueError(f"{key} must be >= 0, got {getattr(c, key)!r}")
        if not c.seeds:
            raise ValueError("seeds must not be empty")
        c.sweep_settings()  # the grid, normalisation and clustering checked once
        num_groups.check_estimator(c.estimator)
        num_groups.check_k_max(c.k_max, IMAGE_SHAPE[0] * IMAGE_SHAPE[1])
        if len(c.noise_stds) * len(c.num_noise_samples) > 1 and not int(c.select_limit):
            raise ValueError("select_limit must be > 0 when the (noise_stds, num_noise_samples) grid has more than "
                             "one setting: LNS chooses its setting on those images, never on the test set")
        for method in c.methods:
            for dataset in c.datasets:
                if c.trains(method, dataset):
                    c.run_config(method.model, dataset)  # every training config parsed before any work
        return c

    def trains(self, method: Method, dataset: str) -> bool:
        """Whether the method's model is trained here (not shipped) on `dataset`."""
        return method.model not in LNS_MODELS or not self.shipped(method.model, dataset)

    def shipped(self, model: str, dataset: str) -> bool:
        """Whether shipped weights of `model` on `dataset` are used."""
        return bool(self.pretrained) and (Path(self.pretrained) / f"{model}_{dataset}.npz").exists()

    def run_config(self, model: str, dataset: str) -> engine_config.RunConfig:
        """The engine's parsed training config of `model` on `dataset` (its `train` entry, this cell's dataset and the
        config's seeds).

        Raises:
            ValueError: `train` has no entry for the family, or the entry has a bad key or value (naming it).
        """
        if model not in self.train:
            raise ValueError(f"train has no entry for model {model!r} (trained on {dataset!r}); it has "
                             f"{sorted(self.train)}")
        flat = {**self.train[model], "model": model, "dataset": dataset, "seeds": tuple(self.seeds),
                "progress": bool(self.progress)}
        try:
            return engine_config.parse(flat)
        except ValueError as error:
            raise ValueError(f"train.{model}: {error}") from None

    def sweep_settings(self, clustering: str = "ward") -> sweep.SweepSettings:
        """LNS's sweep over the grid with `clustering` ("ward", "complete" or "kmeans"), each image into its mask's
        number of labels (`noisegroup.evaluation.clusters_for`)."""
        return sweep.SweepSettings(noise_stds=tuple(float(s) for s in self.noise_stds),
                                   num_noise_samples=tuple(int(n) for n in self.num_noise_samples),
                                   normalisation=self.normalisation, method=clustering,
                                   kmeans_restarts=int(self.kmeans_restarts), num_clusters=None,
                                   progress=bool(self.progress))
