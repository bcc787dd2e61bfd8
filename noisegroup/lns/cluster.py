"""The NumPy boundary: pixel features leave the device here and are clustered per image with scikit-learn / SciPy.

    k = num_clusters_from_masks(masks)            # the reference's k: distinct mask labels, background included
    labels = cluster(features, k, method="ward")  # [b, p, f] -> [b, p] int32, images spread over processes

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

METHODS = ("ward", "complete", "kmeans")


def num_clusters_from_masks(masks) -> np.ndarray:
    """k per image: the number of distinct labels in its ground-truth mask `[b, h, w]`, background included."""
    masks = np.asarray(masks)
    return np.array([len(np.unique(m)) for m in masks], np.int32)


def ward_tree(x: np.ndarray) -> np.ndarray:
    """SciPy linkage matrix `[p-1, 4]` of Ward clustering of points `[p, f]` (scikit-learn's exact computation)."""
    from scipy.cluster.hierarchy import linkage  # heavy (SciPy, scikit-learn): imported where a worker clusters
    from scipy.spatial.distance import pdist

    return linkage(pdist(np.asarray(x, np.float64)), method="ward")


def cut_tree_at(merges: np.ndarray, num_clusters: int) -> np.ndarray:
    """Labels `[p]` after the first p-k merges of a linkage matrix, i.e. k clusters, cut as scikit-learn cuts.

    (`scipy.cluster.hierarchy.fcluster(..., "maxclust")` cuts by height instead and can give fewer than k clusters
    when merge heights tie.)
    """
    p = len(merges) + 1
    parent = np.arange(2 * p - 1)
    for i, (a, b) in enumerate(merges[: p - num_clusters, :2].astype(np.int64)):
        parent[a] = parent[b] = p + i
    while True:  # pointer doubling: every node ends up pointing at its top node among the merges made
        jumped = parent[parent]
        if np.array_equal(jumped, parent):
            break
        parent = jumped
    roots = parent[:p]
    return np.unique(roots, return_inverse=True)[1].astype(np.int32)


def _cluster_one(args) -> np.ndarray:
    x, k, method, seed, restarts = args
    if method == "ward":
        return cut_tree_at(ward_tree(x), k)
    if method == "complete":
        from sklearn.cluster import AgglomerativeClustering

        return AgglomerativeClustering(n_clusters=k, metric="euclidean", linkage="complete").fit_predict(x).astype(np.int32)
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, n_init=restarts, random_state=seed).fit_predict(x).astype(np.int32)


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
            progress: bool = False, restarts: int = 1) -> np.ndarray:
    """Clusters each image's pixels.

    Args:
        features: `[b, p, f]` per-pixel features (a JAX or NumPy array; fetched from the device here).
        num_clusters: k, an int or `[b]` ints, each in [1, p].
        method: one of `METHODS`.
        seed: k-means seed (image i uses seed + i); Ward and complete linkage are deterministic.
        workers: processes to spread images over (default: all cores for Ward and complete linkage, 1 for k-means;
            1 clusters in this process).
        progress: show a progress bar over images.
        restarts: k-means initialisations per image (the lowest inertia wins); ignored by the linkages.

    Returns:
        `[b, p]` int32 labels in [0, k_i).

    Raises:
        ValueError: unknown method, k out of range, non-finite features.
    """
    if method not in METHODS:
        raise ValueError(f"unknown clustering method {method!r}; expected one of {METHODS}")
    features = check_features(np.asarray(jax.device_get(features)))
    b, p = features.shape[:2]
    ks = check_num_clusters(num_clusters, b, p)
    if int(restarts) < 1:
        raise ValueError(f"k-means restarts must be >= 1, got {restarts!r}")
    tasks = [(features[i], int(ks[i]), method, seed + i, int(restarts)) for i in range(b)]
    if workers is None:  # k-means takes ~8 ms an image: shipping features to a worker costs more than that
        workers = 1 if method == "kmeans" else os.cpu_count() or 1
    workers = min(int(workers), b) or 1

    results = map(_cluster_one, tasks) if workers == 1 else _pool(workers).map(tasks)
    labels = list(tqdm(results, total=b, desc=f"{method} clustering", unit="img", disable=not progress, leave=False))
    return np.stack(labels) if labels else np.zeros((0, p), np.int32)


if __name__ == "__main__":
    _serve()
