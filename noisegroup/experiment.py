"""The LNS experiment end to end: data, training (or resuming), segmentation sweeps, tables, figures.

    results = run(config, workdir)    # what `python -m experiments.lns` does

For every (dataset, model) of the config:

1. train or resume S seeds with `noisegroup.train.train` in `workdir/models/<model>_<dataset>/`, or, with
   `config.pretrained` set, load shipped weights `<pretrained>/<model>_<dataset>.npz` (`noisegroup.pretrained`);
2. LNS over the (sigma, N) grid on `test` and, for the fair protocol, on `test_iid` (`noisegroup.sweep.evaluate`),
   and the noisy-reconstruction control at the selected N;
3. pick settings two ways: the paper's (best mean ARI on `test`, as its Table 1) and a fair one (best on `test_iid`,
   reported on `test`); mean +- SEM (`noisegroup.stats`);
4. save `workdir/segmentation/<model>_<dataset>.npz` (all ARIs, predictions at the paper's setting for seed 0,
   reconstructions) atomically; a re-run with the same settings loads it instead of recomputing.

Then `results.json`, `results.csv`, the printed table next to the paper's values, and figures (`noisegroup.plots`).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import time
import zlib
from pathlib import Path
from typing import Any, Mapping

import jax
import numpy as np

from noisegroup import logging as runlog
from noisegroup import pretrained, stats, sweep, train

# Paper Table 1 (Ward, best setting) and Table 2 (k-means at Ward's best setting): ARI per dataset.
_ORDER = ("kanizsa", "closure", "continuity", "proximity", "gradient_occlusion", "illusory_occlusion")
PAPER_ARI = {
    ("ae", "ward"): (0.859, 0.766, 0.552, 0.996, 0.926, 0.994),
    ("vae", "ward"): (0.871, 0.795, 0.593, 0.943, 0.918, 0.974),
    ("ae", "kmeans"): (0.854, 0.803, 0.553, 0.995, 0.922, 0.998),
    ("vae", "kmeans"): (0.866, 0.852, 0.589, 0.921, 0.924, 0.986),
    ("ae_control", "ward"): (0.246, 0.064, 0.570, 0.141, 0.982, -0.023),
    ("vae_control", "ward"): (0.343, 0.084, 0.611, 0.144, 0.977, -0.024),
    ("genesis", "ward"): (0.346, 0.755, 0.394, 0.879, 0.933, 0.294),
}
SEGMENTATION_KEYS = ("noise_stds", "num_noise_samples", "normalisation", "clustering", "num_clusters",
                     "fair_protocol", "control", "control_noise_std", "test_limit", "lns_seed")


def paper_value(model: str, dataset: str, clustering: str = "ward") -> float | None:
    """The paper's ARI for (model, dataset) with Ward or k-means clustering, or None if it has none."""
    values = PAPER_ARI.get((model, "kmeans" if "kmeans" in clustering else "ward"))
    return None if values is None or dataset not in _ORDER else values[_ORDER.index(dataset)]


def model_train_config(config: Mapping[str, Any], model: str, dataset: str) -> dict:
    """The training config of one (model, dataset) of an LNS config."""
    c = dict(config["train"])
    c.update(model=model, dataset=dataset, seeds=tuple(config["seeds"]), progress=config["progress"])
    return c


def _fingerprint(config: Mapping[str, Any], train_config: Mapping[str, Any], steps: int) -> str:
    """Digest of everything a segmentation result depends on (cached results with another digest are redone)."""
    items = {k: config[k] for k in SEGMENTATION_KEYS}
    items.update(train=train_config, steps=steps)
    return hashlib.sha256(json.dumps(runlog._jsonable(items), sort_keys=True).encode()).hexdigest()[:16]


def segment_model(config: Mapping[str, Any], graphdef, params, dataset: str, key: jax.Array) -> dict:
    """Sweeps, protocols and control for one trained (dataset, model): a dict of arrays (see module docstring)."""
    from datasets import good_gestalt as gg

    def load(split):
        data = gg.load(dataset, split)
        limit = int(config["test_limit"]) or len(data.images)
        return data.images[:limit], data.masks[:limit]

    common = dict(noise_stds=config["noise_stds"], num_noise_samples=config["num_noise_samples"],
                  normalisation=config["normalisation"], method=config["clustering"],
                  num_clusters=None if int(config["num_clusters"]) <= 0 else int(config["num_clusters"]),
                  workers=config.get("cluster_workers") or None, progress=config["progress"])
    images, masks = load("test")
    test = sweep.evaluate(graphdef, params, images, masks, jax.random.fold_in(key, 0), keep_labels=True, **common)
    out = {"test_ari": test.ari, "test_ari_fg": test.ari_fg, "zero_feature_fraction": test.zero_feature_fraction,
           "reconstructions": test.reconstructions[0], "images": images, "masks": masks}
    paper = stats.select_setting(test.ari)
    out["paper_setting"] = np.array(paper)
    out["labels"] = test.labels[0, paper[0], paper[1]]
    umap_images = min(int(config.get("umap_images", 0)), len(images))
    if umap_images:  # features of the first images at the paper's setting, seed 0, for UMAP plots
        sigma = float(np.asarray(config["noise_stds"])[paper[0]])
        n = int(np.asarray(config["num_noise_samples"])[paper[1]])
        params0 = jax.tree.map(lambda x: x[0], params)
        out["umap_features"] = np.asarray(sweep.features(graphdef, params0, images[:umap_images],
                                                         jax.random.fold_in(jax.random.fold_in(key, 0), 0), sigma, n,
                                                         config["normalisation"]))
    if config["fair_protocol"]:
        iid_images, iid_masks = load("test_iid")
        iid = sweep.evaluate(graphdef, params, iid_images, iid_masks, jax.random.fold_in(key, 1), **common)
        out["test_iid_ari"] = iid.ari
        out["fair_setting"] = np.array(stats.select_setting(iid.ari))
    if config["control"]:
        n = int(np.asarray(config["num_noise_samples"])[paper[1]])
        control = sweep.evaluate(graphdef, params, images, masks, jax.random.fold_in(key, 2), control=True,
                                 control_noise_std=config["control_noise_std"],
                                 **{**common, "num_noise_samples": (n,)})
        out["control_ari"] = control.ari[:, 0, 0]
        out["control_labels"] = control.labels[0, 0, 0] if control.labels is not None else None
    return {k: v for k, v in out.items() if v is not None}


def _summary_rows(config, dataset: str, model: str, seg: Mapping[str, np.ndarray]) -> list[dict]:
    sigmas, counts = np.asarray(config["noise_stds"]), np.asarray(config["num_noise_samples"])
    rows = []
    protocols = [("paper", tuple(seg["paper_setting"]))]
    if "fair_setting" in seg:
        protocols.append(("fair", tuple(seg["fair_setting"])))
    for protocol, (i, j) in protocols:
        s = stats.summarise(seg["test_ari"], (i, j))
        fg = stats.summarise(seg["test_ari_fg"], (i, j))
        rows.append(dict(dataset=dataset, model=model, protocol=protocol, noise_std=float(sigmas[i]),
                         num_noise_samples=int(counts[j]), ari=s["mean"], ari_sem=s["sem"], sem_over=s["sem_over"],
                         ari_fg=fg["mean"], per_seed=s["per_seed"], clustering=config["clustering"],
                         paper_ari=paper_value(model, dataset, config["clustering"])))
    if "control_ari" in seg:
        s = stats.mean_sem(seg["control_ari"])
        rows.append(dict(dataset=dataset, model=f"{model}_control", protocol="paper", noise_std=config["control_noise_std"],
                         num_noise_samples=int(counts[protocols[0][1][1]]), ari=s["mean"], ari_sem=s["sem"],
                         sem_over=s["sem_over"], ari_fg=None, per_seed=s["per_seed"], clustering=config["clustering"],
                         paper_ari=paper_value(f"{model}_control", dataset)))
    return rows


def format_table(rows: list[dict], protocol: str = "paper") -> str:
    """A text table of ARI per dataset (rows) and model (columns), ours next to the paper's."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    lookup = {(r["dataset"], r["model"]): r for r in rows if r["protocol"] == protocol or r["model"].endswith("_control")}
    header = f"{'dataset':<20}" + "".join(f"{m + ' (paper)':>26}" for m in models)
    lines = [header, "-" * len(header)]
    for d in datasets:
        cells = []
        for m in models:
            r = lookup.get((d, m))
            if r is None:
                cells.append(f"{'-':>26}")
                continue
            paper = "   -  " if r["paper_ari"] is None else f"{r['paper_ari']:6.3f}"
            cells.append(f"{r['ari']:7.3f} +-{r['ari_sem']:.3f} ({paper})".rjust(26))
        lines.append(f"{d:<20}" + "".join(cells))
    return "\n".join(lines)


def run(config: Mapping[str, Any], workdir: str | Path) -> list[dict]:
    """Runs the LNS experiment of `config` (see ``experiments/configs/lns.py``) in `workdir`; resumes.

    Returns:
        One summary row per (dataset, model, protocol), as written to results.csv / results.json.
    """
    config = dict(config)
    sweep.check_method(config["clustering"])
    workdir = Path(workdir)
    (workdir / "segmentation").mkdir(parents=True, exist_ok=True)
    rows, timings = [], {}
    key = jax.random.key(int(config["lns_seed"]))
    for dataset in config["datasets"]:
        for model in config["models"]:
            tic = time.perf_counter()
            train_config = model_train_config(config, model, dataset)
            trainer = train.trainer_from_config(train_config)
            if config.get("pretrained"):
                weights = Path(config["pretrained"]) / f"{model}_{dataset}.npz"
                if not weights.exists():
                    raise FileNotFoundError(
                        f"no shipped weights {weights} for model {model!r} on {dataset!r} (pretrained="
                        f"{config['pretrained']!r}; paths are relative to the working directory); "
                        '--config.pretrained="" trains instead')
                params = pretrained.load(weights, trainer)
                digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:16]
                fingerprint = _fingerprint(config, {"pretrained": digest}, 0)
            else:
                state = train.train(train_config, workdir / "models" / f"{model}_{dataset}")
                params = state.params
                fingerprint = _fingerprint(config, train_config, int(np.asarray(state.step).max()))
            graphdef = trainer.graphdef
            path = workdir / "segmentation" / f"{model}_{dataset}.npz"
            seg = None
            if path.exists():
                with np.load(path) as f:
                    if str(f["fingerprint"]) == fingerprint:
                        seg = {k: f[k] for k in f.files}
            if seg is None:
                model_key = jax.random.fold_in(key, zlib.crc32(f"{model}_{dataset}".encode()) & 0x7FFFFFFF)
                seg = segment_model(config, graphdef, params, dataset, model_key)
                runlog.save_npz_atomic(path, fingerprint=np.array(fingerprint), **seg)
            rows.extend(_summary_rows(config, dataset, model, seg))
            timings[f"{model}_{dataset}"] = time.perf_counter() - tic
    _write_results(workdir, config, rows, timings)
    if config.get("figures", True):
        from noisegroup import plots

        plots.write_all(workdir, config)
    return rows


def _write_results(workdir: Path, config: Mapping[str, Any], rows: list[dict], timings: dict) -> None:
    runlog.write_json_atomic(workdir / "results.json", {"config": config, "rows": rows, "seconds": timings})
    tmp = workdir / ".results.csv.tmp"
    fields = ["dataset", "model", "protocol", "noise_std", "num_noise_samples", "clustering", "ari", "ari_sem",
              "sem_over", "ari_fg", "paper_ari"]
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, workdir / "results.csv")
