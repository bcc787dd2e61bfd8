"""The number of groups k of an image, estimated from its pixel features alone (no ground-truth mask).

    k = estimate(x)                               # x: [p, f] one image's features -> k in [2, k_max]
    k = estimate(x, "eigengap", k_max=6, seed=0)
    k = estimate_from_tree(linkage.ward_tree(x))  # = estimate(x, "ward_gap"), from a tree already made

Estimators, each the k in 2..k_max that scores best (the module's functions say exactly how):
    "ward_gap"    the largest relative jump in Ward merge height: stop merging just before the merge that costs the
                  most relative to the one before it. Free given the Ward tree that clustering with Ward builds
                  anyway (`cluster.cluster` reuses it).
    "eigengap"    the largest gap between consecutive eigenvalues of the normalised Laplacian of a Gaussian affinity
                  with local scaling (Zelnik-Manor & Perona 2004), on a fixed-size seeded subsample of pixels.
    "silhouette"  the best mean silhouette (Rousseeuw 1987) of the Ward cuts of a seeded subsample of pixels.

Not here: a Gaussian mixture's BIC (diagonal covariances, on 1,024 pixels). It fits the cost, but on LNS features
of the shipped models it chose k_max, or one less, on nearly every image (the features are not Gaussian blobs: in
57 dimensions every extra component pays for its parameters), and it makes a flat region, a point mass, a group
of its own.

The range is 2..k_max because LNS always splits an image into at least two groups; an image without structure
gets whatever k its estimator scores best (ties go to the smaller k), and an image whose features take at most
k_max distinct values gets exactly that many groups (at least 2), the partition with no spread left inside any group.
Every estimator costs at most about one exact Ward clustering of a 64 x 64 image (`python -m benchmarks.num_groups`
measures both on LNS features of shipped models).
"""

from __future__ import annotations

import numpy as np

from noisegroup.lns.linkage import ward_tree

ESTIMATORS = ("ward_gap", "eigengap", "silhouette")
# Chosen on the six Good Gestalt test sets with the shipped AEs and VAEs (`python -m experiments.lns_num_groups`, 1,200
# images, docs/segment.md): the silhouette's k gives the best ARI (0.503, against 0.497 for ward_gap, paired Wilcoxon
# p = 6e-8, and 0.500 for k = 2 everywhere, p = 3e-12) and finds k best where it is 3 or more (34 % exact against 25 %);
# ward_gap finds k = 2 more often (66 % against 51 %) and is free with Ward clustering: the option when cost matters.
DEFAULT_ESTIMATOR = "silhouette"
DEFAULT_K_MAX = 8

# Subsample sizes: an estimator's cost grows with the square (for the eigendecomposition, the cube) of the pixels
# it looks at; these keep each within about one Ward clustering of all 4096 pixels of a 64 x 64 image.
EIGENGAP_PIXELS = 1024
SILHOUETTE_PIXELS = 2048
EIGENGAP_NEIGHBOURS = 32  # the local scale's neighbour among the drawn pixels (3 %; `_eigengap` says why)


def check_estimator(method: str) -> None:
    """Raises ValueError naming `method` and the known estimators unless it is one of `ESTIMATORS`."""
    if method not in ESTIMATORS:
        raise ValueError(f"unknown estimator of the number of groups {method!r}; expected one of {ESTIMATORS}")


def check_k_max(k_max, num_pixels: int) -> int:
    """`k_max` as an int in [2, num_pixels] (the most groups an estimator may return).

    Raises:
        ValueError: naming the bad k_max and the allowed range.
    """
    integer = isinstance(k_max, (int, np.integer)) and not isinstance(k_max, bool)
    if not (integer and 2 <= k_max <= num_pixels):
        raise ValueError(f"k_max must be an integer in [2, {num_pixels}] (at least 2 groups, at most one per pixel), "
                         f"got {k_max!r}")
    return int(k_max)


def estimate(x: np.ndarray, method: str = DEFAULT_ESTIMATOR, k_max: int = DEFAULT_K_MAX, *, seed: int = 0) -> int:
    """The number of groups of one image's pixel features.

    Args:
        x: `[p, f]` features of the p pixels of one image (NumPy; finite).
        method: one of `ESTIMATORS` (module docstring).
        k_max: the largest k considered, in [2, p]; the smallest is 2.
        seed: picks the subsample of pixels ("eigengap", "silhouette"); "ward_gap" uses every pixel.

    Returns:
        k in [2, k_max], a deterministic function of (x, method, k_max, seed).

    Raises:
        ValueError: an unknown method, k_max out of range, or `x` not a finite `[p, f]` array.
    """
    check_estimator(method)
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"features must be [pixels, features], got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"features contain non-finite values (first at {np.argwhere(~np.isfinite(x))[0].tolist()})")
    k_max = check_k_max(k_max, len(x))
    if method == "ward_gap":
        return estimate_from_tree(ward_tree(x), k_max)
    distinct = num_distinct_rows(x)
    if distinct <= k_max:  # as ward_gap's infinite jump: each distinct value a group, nothing left to split
        return max(distinct, 2)
    rng = np.random.default_rng(seed)
    return _eigengap(x, k_max, rng) if method == "eigengap" else _silhouette(x, k_max, rng)


def num_distinct_rows(x: np.ndarray) -> int:
    """How many distinct rows `[p, f]` holds (flat image regions give many identical pixel features)."""
    x = np.ascontiguousarray(np.asarray(x, np.float64) + 0.0)  # + 0.0 turns -0.0 into 0.0: equal values, equal bytes
    return len(np.unique(x.view(np.dtype((np.void, x.dtype.itemsize * x.shape[1]))).ravel()))


def merge_heights(merges: np.ndarray, k_max: int) -> np.ndarray:
    """Heights `[k_max]` of the Ward merges that take k clusters to k - 1, for k = 2..k_max + 1.

    Args:
        merges: SciPy linkage matrix `[p - 1, 4]` (heights ascending in column 2, as Ward's are).
        k_max: the largest k asked about, in [2, p].

    Returns:
        `h[k - 2]` = the height of merge p - k (0-based); 0 for k = p + 1 (p singletons: nothing merged yet).
    """
    heights = np.asarray(merges, np.float64)[::-1, 2]  # heights[j]: the merge from j + 2 clusters to j + 1
    return np.concatenate([heights, [0.0]])[:k_max]


def estimate_from_tree(merges: np.ndarray, k_max: int = DEFAULT_K_MAX) -> int:
    """k in [2, k_max] from a Ward tree: the cut below the largest relative jump in merge height.

    With h_k the height of the merge that takes k clusters to k - 1, k = argmax_k h_k / h_{k+1}: cut the tree
    where the next merge would cost the most compared with the one before it. The ratio, not the difference:
    Ward heights grow towards the root (a merge's height scales with sqrt(n_u n_v / (n_u + n_v)), the sizes of
    what it joins), so the largest difference is nearly always the last merge's (k = 2), and a small group (300 of
    4096 pixels) merges far lower than a large one; a ratio is scale-free. Zero heights come from identical rows:
    h_k > 0 = h_{k+1} is an infinite jump (exactly k distinct values: k groups), h_k = 0 no jump at all (the k-th
    group would be a copy of another), so all-identical rows give the smallest k, 2.

    Args:
        merges: SciPy linkage matrix `[p - 1, 4]` of Ward clustering (`linkage.ward_tree`).
        k_max: the largest k considered, in [2, p].

    Returns:
        k, equal to `estimate(x, "ward_gap", k_max)` for the tree of x.
    """
    k_max = check_k_max(k_max, len(merges) + 1)
    h = merge_heights(merges, k_max)  # h_2 .. h_{k_max + 1}: numerators and denominators
    upper, lower = h[:-1], h[1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        jump = np.where(upper > 0, upper / lower, 0.0)  # upper > 0 = lower: inf, the perfect cut
    return int(np.argmax(jump)) + 2  # first maximum: ties go to the smaller k


def _subsample_distinct(x: np.ndarray, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(distinct rows `[m, f]` float64, their counts `[m]`) of `size` pixels drawn without replacement (every pixel
    if there are at most `size`): a uniform draw keeps the groups' proportions, and identical rows weigh as often
    as they were drawn but cost one row."""
    if len(x) > size:
        x = x[np.sort(rng.choice(len(x), size, replace=False))]
    return np.unique(np.asarray(x, np.float64) + 0.0, axis=0, return_counts=True)


def local_scales(squared_distances: np.ndarray, counts: np.ndarray, neighbours: int) -> np.ndarray:
    """Each distinct row's distance `[m]` to its `neighbours`-th nearest other pixel, copies counted.

    Args:
        squared_distances: `[m, m]` between distinct rows (0 only on the diagonal).
        counts: `[m]` pixels that each row stands for.
        neighbours: which neighbour sets the scale (Zelnik-Manor & Perona's K).

    Returns:
        `[m]` scales > 0. A row's own copies are not its neighbours: they are at distance 0, and a scale of 0 would
        cut a flat region off from everything else. The farthest row when there are fewer other pixels than that.
    """
    m = len(squared_distances)
    order = np.argsort(squared_distances, axis=1)  # [m, m] nearest first: the row itself, then the others
    others = np.where(order == np.arange(m)[:, None], 0, counts[order])  # a row's own copies count for nothing
    reached = np.cumsum(others, axis=1)  # [m, m] pixels within each successive distance
    column = np.minimum((reached < neighbours).sum(axis=1), m - 1)  # the first distance reaching `neighbours`
    return np.sqrt(squared_distances[np.arange(m), order[np.arange(m), column]])


def _eigengap(x: np.ndarray, k_max: int, rng: np.random.Generator) -> int:
    """The eigengap of the normalised Laplacian of a locally scaled Gaussian affinity (spectral clustering's rule).

    On EIGENGAP_PIXELS pixels drawn with `rng`, deduplicated with counts: the affinity of distinct rows i and j is
    A_ij = exp(-d_ij^2 / (s_i s_j)) with s_i the distance from row i to its EIGENGAP_NEIGHBOURS-th nearest other
    pixel (`local_scales`; Zelnik-Manor & Perona 2004). A local scale, not one global bandwidth: the median
    distance is set by the largest group (the background) and splits everything else finely. The neighbour is
    further than Zelnik-Manor & Perona's 7th: a region's LNS features vary smoothly across it, and at the scale of
    a pixel's nearest neighbours that variation's own slow modes look like groups.

    The graph is the drawn pixels', copies included, without self-loops: row i stands for c_i pixels, joined to
    each other with affinity 1, so on the functions constant over copies (where the small end of the spectrum is:
    functions that sum to zero over a row's copies have Laplacian eigenvalue 1 + 1/d_i > 1) the weights are
    W = A C - I. With degrees d = W 1, S = diag(sqrt(c/d)) (A - C^-1) diag(sqrt(c/d)) is symmetric with
    eigenvalues mu = 1 - lambda of the normalised Laplacian, and k = argmax_k lambda_{k+1} - lambda_k =
    mu_k - mu_{k+1}, the classic eigengap (von Luxburg 2007, sec. 8.3).
    """
    from scipy.spatial.distance import pdist, squareform  # heavy (SciPy): imported where a worker estimates

    rows, counts = _subsample_distinct(x, EIGENGAP_PIXELS, rng)
    if len(rows) <= k_max:  # the draw missed the rarer values: each drawn value a group (as `estimate` does)
        return max(len(rows), 2)
    d2 = squareform(pdist(rows, "sqeuclidean"))  # exact differences: distinct rows are > 0 apart
    scale = local_scales(d2, counts, EIGENGAP_NEIGHBOURS)
    counts = counts.astype(np.float64)
    b = np.exp(-d2 / np.outer(scale, scale))
    b[np.diag_indices_from(b)] = 1.0 - 1.0 / counts  # a row's copies are joined to each other, not to themselves
    degree = np.maximum(b @ counts, np.finfo(np.float64).tiny)  # = W 1; 0 only for a single far-off pixel
    weight = np.sqrt(counts / degree)
    s = weight[:, None] * b * weight[None, :]  # |s_ij| <= 1: d_i >= b_ij c_j and d_j >= b_ij c_i
    mu = np.linalg.eigvalsh(s)[::-1][: k_max + 1]  # mu_1 >= ... >= mu_{k_max+1}
    return int(np.argmax(mu[1:-1] - mu[2:])) + 2  # gaps mu_k - mu_{k+1} for k = 2..k_max; ties: the smaller k


def mean_silhouette(distances: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette of a partition (Rousseeuw 1987), what `sklearn.metrics.silhouette_score` computes.

    Silhouette of point i: (b_i - a_i) / max(a_i, b_i), a_i its mean distance to the rest of its group, b_i the
    smallest mean distance to another group; 0 for a point alone in its group (and for a_i = b_i = 0). One matrix
    product gives every point's mean distance to every group (scikit-learn reduces the matrix chunk by chunk).

    Args:
        distances: `[n, n]` symmetric, zero diagonal.
        labels: `[n]` ints, at least 2 distinct values.
    """
    groups, labels = np.unique(labels, return_inverse=True)
    n, k = len(labels), len(groups)
    if k < 2:
        raise ValueError(f"a silhouette needs at least 2 groups, got {k}")
    onehot = np.zeros((n, k))
    onehot[np.arange(n), labels] = 1.0
    sizes = onehot.sum(axis=0)  # [k]
    means = (distances @ onehot) / sizes  # [n, k] mean distance from each point to each group (itself included)
    own = sizes[labels]
    a = means[np.arange(n), labels] * own / np.maximum(own - 1, 1)  # the point's own 0 distance left out
    means[np.arange(n), labels] = np.inf
    b = means.min(axis=1)
    peak = np.maximum(a, b)
    silhouette = np.where((own > 1) & (peak > 0), (b - a) / np.where(peak > 0, peak, 1.0), 0.0)
    return float(silhouette.mean())


def _silhouette(x: np.ndarray, k_max: int, rng: np.random.Generator) -> int:
    """The k whose Ward cut has the best mean silhouette (`mean_silhouette`), on SILHOUETTE_PIXELS pixels drawn
    with `rng` (copies kept: identical pixels count as often as they occur).

    The Ward cuts of one tree give every k at once and are the partitions LNS's Ward clustering makes (of the
    drawn pixels); k-means with one start per k scored about the same on LNS features and costs more.
    """
    from scipy.cluster.hierarchy import cut_tree, linkage  # heavy (SciPy): imported where a worker estimates
    from scipy.spatial.distance import pdist, squareform

    if len(x) > SILHOUETTE_PIXELS:
        x = x[np.sort(rng.choice(len(x), SILHOUETTE_PIXELS, replace=False))]
    condensed = pdist(np.asarray(x, np.float64))
    # k <= the drawn pixels - 1 (a silhouette needs a second point in some group); `estimate` ensures it for k_max.
    ks = np.arange(2, min(k_max, len(x) - 1) + 1)
    # SciPy's cut_tree cuts after the first p - k merges, as `linkage.cut_tree_at` does (its known wrong cuts are
    # of trees with inversions, which Ward's never has), every k in one pass: labels [p, len(ks)].
    cuts = cut_tree(linkage(condensed, method="ward"), n_clusters=ks)
    distances = squareform(condensed)
    scores = [mean_silhouette(distances, cuts[:, i]) for i in range(len(ks))]
    return int(np.argmax(scores)) + 2  # first maximum: ties go to the smaller k
