"""The NumPy boundary: pixel features leave the device here and are clustered per image with scikit-learn / SciPy.

    k = num_clusters_from_masks(masks)            # the reference's k: distinct mask labels, background included
    labels = cluster(features, k, method="ward")  # [b, p, f] -> [b, p] int32, images spread over processes
    labels, ks = cluster_with_counts(features, None, "ward", estimator="ward_gap")   # k estimated per image

Methods:
    "ward"      agglomerative clustering, Euclidean, Ward linkage (the reference's `AgglomerativeClustering`).
                Exact: the same SciPy calls scikit-learn's `ward_tree` makes (float64 `pdist`, then the
                nearest-neighbour-chain Ward linkage), then the tree cut at k clusters as scikit-learn cuts it. The
                O(p^2) linkage bounds it: about 0.4 s per 64 x 64 image per core, plus 0.3-0.5 s of distances.
    "complete"  agglomerative, complete linkage (paper Table 2's Agg').
    "kmeans"    scikit-learn's KMeans, k-means++, seeded per image, with `restarts` initialisations (the best
                inertia wins): 1 is sklearn's "auto" for k-means++ since 1.4; 10 was its default when the paper
                was written.
The on-device alternative, all images in one jitted program, is `noisegroup.lns.kmeans.batch_kmeans`.

Without a mask, k is estimated per image from its features (`noisegroup.lns.num_groups`), in the worker that
clusters it; Ward clustering with the "ward_gap" estimate builds one tree for both.

Images are independent, so they are spread over worker processes (`workers`, default all cores): persistent
`python -m noisegroup.lns.cluster` subprocesses fed over pipes.
"""

from __future__ import annotations

import atexit
import os
import pickle
import queue
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jax
import numpy as np
from tqdm.auto import tqdm

from noisegroup.checks import check_features, check_num_clusters
from noisegroup.lns import num_groups
from noisegroup.lns.linkage import cut_tree_at, ward_tree

METHODS = ("ward", "complete", "kmeans")


def num_clusters_from_masks(masks) -> np.ndarray:
    """k per image: the number of distinct labels in its ground-truth mask `[b, h, w]`, background included."""
    masks = np.asarray(masks)
    return np.array([len(np.unique(m)) for m in masks], np.int32)


def _cluster_one(args) -> tuple[np.ndarray, int]:
    """(labels `[p]`, k) of one image; k None: estimated here, in the worker, with `estimator` up to `k_max`."""
    x, k, method, seed, restarts, estimator, k_max = args
    tree = None
    if k is None and method == "ward" and estimator == "ward_gap":  # one tree gives the estimate and the labels
        tree = ward_tree(x)
        k = num_groups.estimate_from_tree(tree, k_max)
    elif k is None:
        k = num_groups.estimate(x, estimator, k_max, seed=seed)
    if method == "ward":
        return cut_tree_at(ward_tree(x) if tree is None else tree, k), k
    if method == "complete":
        from sklearn.cluster import AgglomerativeClustering

        labels = AgglomerativeClustering(n_clusters=k, metric="euclidean", linkage="complete").fit_predict(x)
        return labels.astype(np.int32), k
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, n_init=restarts, random_state=seed).fit_predict(x).astype(np.int32), k


class _WorkerPool:
    """Persistent `python -m noisegroup.lns.cluster` processes fed over pipes, one thread each.

    Plain subprocesses rather than multiprocessing: forking this (JAX, multithreaded) process can deadlock, and
    multiprocessing's spawn / forkserver re-import the user's main script in every worker.
    """

    def __init__(self, size: int):
        root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]),
                   OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
        self.procs = [subprocess.Popen([sys.executable, "-m", "noisegroup.lns.cluster"], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, env=env) for _ in range(size)]
        self.idle: queue.SimpleQueue = queue.SimpleQueue()
        for proc in self.procs:
            self.idle.put(proc)
        self.threads = ThreadPoolExecutor(size)

    def _run(self, task):
        proc = self.idle.get()
        try:
            pickle.dump(task, proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            proc.stdin.flush()
            ok, result = pickle.load(proc.stdout)
        except (EOFError, BrokenPipeError) as e:
            raise RuntimeError(f"clustering worker {proc.pid} died (exit code {proc.poll()})") from e
        finally:
            self.idle.put(proc)
        if not ok:
            raise RuntimeError(f"clustering worker failed: {result}")
        return result

    def map(self, tasks):
        return self.threads.map(self._run, tasks)

    def close(self) -> None:
        self.threads.shutdown()
        for proc in self.procs:
            proc.stdin.close()
            proc.wait(timeout=10)


_POOLS: dict[int, _WorkerPool] = {}


def _pool(workers: int) -> _WorkerPool:
    if workers not in _POOLS:
        _POOLS[workers] = _WorkerPool(workers)
    return _POOLS[workers]


@atexit.register
def _shutdown_pools() -> None:
    for pool in _POOLS.values():
        pool.close()
    _POOLS.clear()


def _serve() -> None:
    """Worker loop: read pickled tasks from stdin, write (ok, labels or error) to stdout, until stdin closes."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        try:
            task = pickle.load(stdin)
        except EOFError:
            return
        try:
            reply = (True, _cluster_one(task))
        except Exception as e:  # reported to the parent, which raises
            reply = (False, f"{type(e).__name__}: {e}")
        pickle.dump(reply, stdout, protocol=pickle.HIGHEST_PROTOCOL)
        stdout.flush()


def cluster(features, num_clusters, method: str = "ward", *, seed: int = 0, workers: int | None = None,
            progress: bool = False, restarts: int = 1, estimator: str = num_groups.DEFAULT_ESTIMATOR,
            k_max: int = num_groups.DEFAULT_K_MAX) -> np.ndarray:
    """Clusters each image's pixels: the labels of `cluster_with_counts` (which says what each argument means)."""
    return cluster_with_counts(features, num_clusters, method, seed=seed, workers=workers, progress=progress,
                               restarts=restarts, estimator=estimator, k_max=k_max)[0]


def cluster_with_counts(features, num_clusters, method: str = "ward", *, seed: int = 0, workers: int | None = None,
                        progress: bool = False, restarts: int = 1, estimator: str = num_groups.DEFAULT_ESTIMATOR,
                        k_max: int = num_groups.DEFAULT_K_MAX) -> tuple[np.ndarray, np.ndarray]:
    """Clusters each image's pixels into k groups, k given or estimated per image.

    Args:
        features: `[b, p, f]` per-pixel features (a JAX or NumPy array; fetched from the device here).
        num_clusters: k, an int or `[b]` ints, each in [1, p]; or None: each image's k estimated from its features
            by `estimator`, in [2, k_max] (`noisegroup.lns.num_groups`).
        method: one of `METHODS`.
        seed: k-means seed and the estimators' subsample seed (image i uses seed + i); Ward and complete linkage
            are deterministic.
        workers: processes to spread images over (default: all cores, but 1 for k-means with k given; 1 clusters
            in this process).
        progress: show a progress bar over images.
        restarts: k-means initialisations per image (the lowest inertia wins); ignored by the linkages.
        estimator: one of `num_groups.ESTIMATORS`; with method "ward", "ward_gap" reads k off the tree that
            clusters the image. Used only when num_clusters is None.
        k_max: the most groups an estimate may give, in [2, p]. Used only when num_clusters is None.

    Returns:
        (labels `[b, p]` int32 in [0, k_i), ks `[b]` int32: the k of each image, given or estimated).

    Raises:
        ValueError: unknown method or estimator, k or k_max out of range, non-finite features.
    """
    if method not in METHODS:
        raise ValueError(f"unknown clustering method {method!r}; expected one of {METHODS}")
    features = check_features(np.asarray(jax.device_get(features)))
    b, p = features.shape[:2]
    if num_clusters is None:
        num_groups.check_estimator(estimator)
        k_max = num_groups.check_k_max(k_max, p)
        ks = [None] * b
    else:
        ks = [int(k) for k in check_num_clusters(num_clusters, b, p)]
    if int(restarts) < 1:
        raise ValueError(f"k-means restarts must be >= 1, got {restarts!r}")
    tasks = [(features[i], ks[i], method, seed + i, int(restarts), estimator, k_max) for i in range(b)]
    # Default: k-means with k given takes ~8 ms an image, less than shipping its features to a worker; estimating
    # k costs far more than that.
    if workers is None:
        workers = 1 if method == "kmeans" and num_clusters is not None else os.cpu_count() or 1
    workers = min(int(workers), b) or 1

    results = map(_cluster_one, tasks) if workers == 1 else _pool(workers).map(tasks)
    done = list(tqdm(results, total=b, desc=f"{method} clustering", unit="img", disable=not progress, leave=False))
    if not done:
        return np.zeros((0, p), np.int32), np.zeros(0, np.int32)
    return np.stack([labels for labels, _ in done]), np.array([k for _, k in done], np.int32)


if __name__ == "__main__":
    _serve()
