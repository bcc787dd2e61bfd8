"""How well is the number of groups found without ground truth? Every k estimator on the six Good Gestalt test sets
with the shipped AEs and beta-VAEs, against the k of the masks.

    python -m experiments.lns_num_groups                                   # 6 datasets x AE, VAE x 100 images
    python -m experiments.lns_num_groups --datasets=proximity --models=vae --test_limit=20 --out=/tmp/k

Per (dataset, model), as the LNS experiment's default run segments it:
1. the setting (sigma, N): the fair protocol's, chosen with k from the masks on the first 50 `test_iid` images over the
   default grid {0.01, 0.1, 0.5} x {5, 20, 40} with k-means (what `python -m experiments.lns` chooses);
2. the `test` features at that setting, from the pipeline's key (`noisegroup.lns.segment`, so the numbers are the
   pipeline's for seed 0);
3. per image, ONE Ward tree (the reference's clustering), cut at the masks' k and at each estimator's k_hat
   (`noisegroup.lns.num_groups`, k in 2..k_max); every estimator is timed, beside the tree itself; and at k = 2
   for every image ("always_2"), the answer an estimator must beat (most test images have 2 or 3 groups).

Output (--out, default workdirs/num_groups): `results.json` / `results.csv` (per dataset, model and estimator: exact-k
accuracy, mean |k_hat - k|, mean k_hat, mean ARI with k_hat and with the true k, seconds per image) and `table.md`,
the pooled table printed at the end. A cache per (dataset, model) makes a re-run resume.
"""

from __future__ import annotations

import concurrent.futures
import csv
import hashlib
import io
import json
import multiprocessing
import time
from pathlib import Path

import jax
import numpy as np
from absl import flags
from tqdm.auto import tqdm

from datasets import good_gestalt as gg
from noisegroup import atomic, cli, metrics
from noisegroup.errors import BadInputError
from noisegroup.lns import cluster, linkage, pipeline, results, segmentation, sweep
from noisegroup.lns import num_groups as groups

_DATASETS = flags.DEFINE_list("datasets", list(gg.NAMES), "Good Gestalt datasets")
_MODELS = flags.DEFINE_list("models", ["ae", "vae"], "shipped models (pretrained/<model>_<dataset>.npz)")
_PRETRAINED = flags.DEFINE_string("pretrained", "pretrained", "folder of the shipped weights")
_ESTIMATORS = flags.DEFINE_list("estimators", [*groups.ESTIMATORS, "always_2"],
                                "k estimators, and always_2 (k = 2 for every image: the row to beat)")
_K_MAX = flags.DEFINE_integer("k_max", groups.DEFAULT_K_MAX, "largest k an estimator may return")
_TEST_LIMIT = flags.DEFINE_integer("test_limit", 100, "test images per dataset")
_FAIR_LIMIT = flags.DEFINE_integer("fair_limit", 50, "test_iid images that choose the setting")
_WORKERS = flags.DEFINE_integer("workers", 0, "processes over images (0: all cores)")
_OUT = flags.DEFINE_string("out", "workdirs/num_groups", "output folder")

CONSTANT = "always_2"  # a row beside the estimators: k = 2 for every image, what an estimator must beat
GRID = {"noise_stds": (0.01, 0.1, 0.5), "num_noise_samples": (5, 20, 40)}  # the default LNS run's grid
LNS_SEED = 42  # the default run's lns_seed


def score_image(x: np.ndarray, estimators: tuple[str, ...], k_max: int, true_k: int, seed: int):
    """One image's Ward tree, cut at the true k and at each estimator's k.

    Returns:
        (labels at the true k `[p]`, {estimator: (k_hat, labels `[p]`, seconds)}, seconds of the tree and cut).
    """
    tic = time.perf_counter()
    tree = linkage.ward_tree(x)
    true_labels = linkage.cut_tree_at(tree, int(true_k))
    ward_seconds = time.perf_counter() - tic
    found = {}
    for name in estimators:
        if name == CONSTANT:  # the reference point: no estimate, every image split in two
            found[name] = (2, linkage.cut_tree_at(tree, 2), 0.0)
            continue
        tic = time.perf_counter()
        k = groups.estimate_from_tree(tree, k_max) if name == "ward_gap" else groups.estimate(x, name, k_max, seed=seed)
        found[name] = (int(k), linkage.cut_tree_at(tree, int(k)), time.perf_counter() - tic)
    return true_labels, found, ward_seconds


def fair_setting(graphdef, params, dataset: str, key) -> tuple[float, int]:
    """The fair protocol's (sigma, N) of one model: best mean ARI on the first `fair_limit` `test_iid` images."""
    iid = gg.load(dataset, "test_iid")
    n = _FAIR_LIMIT.value
    settings = sweep.SweepSettings(method="kmeans", **GRID)
    stacked = jax.tree.map(lambda v: v[None], params)
    result = sweep.evaluate(graphdef, stacked, iid.images[:n], iid.masks[:n], jax.random.fold_in(key, 1), settings)
    i, j = results.best_setting(result.ari)
    return settings.noise_stds[i], settings.num_noise_samples[j]


def measure(dataset: str, model: str, pool) -> dict:
    """The arrays of one (dataset, model): true k, k_hat, ARIs and seconds per estimator and image."""
    graphdef, params = segmentation.load_model(Path(_PRETRAINED.value) / f"{model}_{dataset}.npz")
    key = pipeline.model_key(jax.random.key(LNS_SEED), model, dataset)
    sigma, n = fair_setting(graphdef, params, dataset, key)
    test = gg.load(dataset, "test")
    images, masks = test.images[: _TEST_LIMIT.value], test.masks[: _TEST_LIMIT.value]
    true_k = cluster.num_clusters_from_masks(masks)
    seg = segmentation.segment((graphdef, params), images, key=jax.random.fold_in(key, 0), num_groups=true_k,
                               noise_std=sigma, num_noise_samples=n, clustering="kmeans", return_features=True)
    estimators = tuple(_ESTIMATORS.value)
    jobs = [pool.submit(score_image, x, estimators, _K_MAX.value, int(k), i)
            for i, (x, k) in enumerate(zip(seg.features, true_k))]
    h, w = masks.shape[1:]
    out = {"true_k": true_k, "setting": np.array([sigma, n]), "ward_seconds": np.zeros(len(jobs))}
    labels = {"true": np.zeros((len(jobs), h, w), np.int32)}
    for name in estimators:
        out[f"{name}_k"], out[f"{name}_seconds"] = np.zeros(len(jobs), np.int32), np.zeros(len(jobs))
        labels[name] = np.zeros((len(jobs), h, w), np.int32)
    for i, job in enumerate(tqdm(jobs, desc=f"{dataset} / {model}", unit="img", leave=False)):
        true_labels, found, out["ward_seconds"][i] = job.result()
        labels["true"][i] = true_labels.reshape(h, w)
        for name, (k, pred, seconds) in found.items():
            out[f"{name}_k"][i], out[f"{name}_seconds"][i] = k, seconds
            labels[name][i] = pred.reshape(h, w)
    for name, pred in labels.items():
        out[f"{name}_ari"] = metrics.batch_ari(pred, masks)
    return out


def summary_rows(dataset: str, model: str, arrays: dict) -> list[dict]:
    rows = []
    true_k = arrays["true_k"]
    for name in _ESTIMATORS.value:
        k = arrays[f"{name}_k"]
        rows.append({"dataset": dataset, "model": model, "estimator": name,
                     "noise_std": float(arrays["setting"][0]), "num_noise_samples": int(arrays["setting"][1]),
                     "images": len(k), "mean_true_k": float(true_k.mean()), "mean_k_hat": float(k.mean()),
                     "exact_k": float(np.mean(k == true_k)), "mean_abs_error": float(np.mean(np.abs(k - true_k))),
                     "ari_k_hat": float(arrays[f"{name}_ari"].mean()), "ari_true_k": float(arrays["true_ari"].mean()),
                     "seconds_per_image": float(arrays[f"{name}_seconds"].mean()),
                     "ward_seconds_per_image": float(arrays["ward_seconds"].mean())})
    return rows


def pooled_table(rows: list[dict]) -> str:
    """Markdown: per estimator, the means over every (dataset, model) row."""
    lines = ["| estimator | exact k | mean abs(k_hat - k) | ARI with k_hat | ARI with true k | s / image (Ward tree) |",
             "|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["estimator"] for r in rows):
        mine = [r for r in rows if r["estimator"] == name]
        mean = {c: np.mean([r[c] for r in mine]) for c in ("exact_k", "mean_abs_error", "ari_k_hat", "ari_true_k",
                                                            "seconds_per_image", "ward_seconds_per_image")}
        lines.append(f"| {name} | {mean['exact_k']:.2f} | {mean['mean_abs_error']:.2f} | {mean['ari_k_hat']:.3f} | "
                     f"{mean['ari_true_k']:.3f} | {mean['seconds_per_image']:.2f} ({mean['ward_seconds_per_image']:.2f}) |")
    return "\n".join(lines)


def per_dataset_table(rows: list[dict]) -> str:
    """Markdown: exact-k accuracy and ARI with k_hat / true k, per dataset and model, one column per estimator."""
    names = list(dict.fromkeys(r["estimator"] for r in rows))
    lines = ["| dataset | model | true k | " + " | ".join(f"{n}: exact k, ARI" for n in names) + " | ARI true k |",
             "|---|---|---|" + "---|" * (len(names) + 1)]
    for dataset, model in dict.fromkeys((r["dataset"], r["model"]) for r in rows):
        mine = {r["estimator"]: r for r in rows if (r["dataset"], r["model"]) == (dataset, model)}
        first = next(iter(mine.values()))
        cells = " | ".join(f"{mine[n]['exact_k']:.2f}, {mine[n]['ari_k_hat']:.3f}" for n in names)
        lines.append(f"| {dataset} | {model} | {first['mean_true_k']:.2f} | {cells} | {first['ari_true_k']:.3f} |")
    return "\n".join(lines)


def main(argv):
    del argv
    for name in _ESTIMATORS.value:
        if name != CONSTANT:
            groups.check_estimator(name)
    for dataset in _DATASETS.value:
        if dataset not in gg.NAMES:
            raise BadInputError(f"unknown dataset {dataset!r}; known: {gg.NAMES}")
    out = Path(_OUT.value)
    (out / "cache").mkdir(parents=True, exist_ok=True)
    settings = {"estimators": _ESTIMATORS.value, "k_max": _K_MAX.value, "test_limit": _TEST_LIMIT.value,
                "fair_limit": _FAIR_LIMIT.value, "grid": GRID, "lns_seed": LNS_SEED}
    workers = _WORKERS.value or multiprocessing.cpu_count()
    rows = []
    # Spawned workers (forking this multithreaded JAX process can deadlock); each image's tree is built once.
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for dataset in _DATASETS.value:
            for model in _MODELS.value:
                weights = Path(_PRETRAINED.value) / f"{model}_{dataset}.npz"
                fingerprint = hashlib.sha256(json.dumps({**settings, "weights": hashlib.sha256(
                    weights.read_bytes()).hexdigest()}, sort_keys=True).encode()).hexdigest()[:16]
                path = out / "cache" / f"{model}_{dataset}.npz"
                arrays = atomic.read_npz_cache(path, fingerprint)
                if arrays is None:
                    arrays = measure(dataset, model, pool)
                    atomic.save_npz(path, fingerprint=np.array(fingerprint), **arrays)
                new = summary_rows(dataset, model, arrays)
                rows += new
                tqdm.write(f"{dataset} / {model}: " + ", ".join(
                    f"{r['estimator']} exact {r['exact_k']:.2f} ARI {r['ari_k_hat']:.3f}" for r in new)
                    + f" (true k: ARI {new[0]['ari_true_k']:.3f})")
    atomic.write_json(out / "results.json", {"settings": settings, "rows": rows})
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic.write_text(out / "results.csv", text.getvalue())
    table = pooled_table(rows) + "\n\n" + per_dataset_table(rows) + "\n"
    atomic.write_text(out / "table.md", table)
    print(table)


if __name__ == "__main__":
    cli.run(main)
