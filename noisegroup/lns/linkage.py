"""Ward trees: built once (SciPy, scikit-learn's exact computation) and cut at any k, for the clustering
(`cluster`) and the estimators of k (`num_groups`), which both read the same tree.

    tree = ward_tree(x)             # x [p, f] -> SciPy linkage matrix [p - 1, 4]
    labels = cut_tree_at(tree, 3)   # [p] int32 in [0, 3)
"""

from __future__ import annotations

import numpy as np


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
