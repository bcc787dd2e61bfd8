"""Batched k-means on the device: every image of a batch clustered in one jitted program.

    labels = batch_kmeans(features, num_clusters, key)   # [b, p, f], [b] -> [b, p] int32

k-means++ seeding (one candidate per centre, as sklearn's `init="k-means++"` with a single trial) and Lloyd
iterations until no label changes or `max_iter`. Each image may ask for its own k <= `max_clusters`: centres beyond
an image's k are masked out. This is the option that keeps LNS clustering on the accelerator; `noisegroup.lns.cluster`
holds the scikit-learn methods (Ward, the reference's, among them).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from noisegroup.checks import check_features, check_num_clusters


def _squared_distances(x: jax.Array, centres: jax.Array) -> jax.Array:
    """`[p, f]`, `[k, f]` -> `[p, k]` squared Euclidean distances (clamped at 0 against rounding)."""
    d = jnp.sum(x * x, -1, keepdims=True) - 2.0 * x @ centres.T + jnp.sum(centres * centres, -1)
    return jnp.maximum(d, 0.0)


def _plus_plus(x: jax.Array, k: jax.Array, key: jax.Array, max_clusters: int) -> jax.Array:
    """k-means++ centres `[max_clusters, f]` of points `[p, f]` (centres >= k are copies, masked later)."""
    p = x.shape[0]
    first = jax.random.randint(jax.random.fold_in(key, 0), (), 0, p)
    centres = jnp.zeros((max_clusters, x.shape[1]), x.dtype).at[0].set(x[first])
    closest = jnp.sum((x - x[first]) ** 2, -1)

    def add(j, carry):
        centres, closest = carry
        # Sample proportional to the squared distance to the nearest centre; uniform if every point is a centre.
        total = closest.sum()
        logits = jnp.where(total > 0, jnp.log(jnp.maximum(closest, 0.0) / jnp.maximum(total, 1e-30)), 0.0)
        pick = jax.random.categorical(jax.random.fold_in(key, j), logits)
        centres = centres.at[j].set(x[pick])
        closest = jnp.where(j < k, jnp.minimum(closest, jnp.sum((x - x[pick]) ** 2, -1)), closest)
        return centres, closest

    centres, _ = jax.lax.fori_loop(1, max_clusters, add, (centres, closest))
    return centres


def _kmeans_one(x: jax.Array, k: jax.Array, key: jax.Array, max_clusters: int, max_iter: int) -> jax.Array:
    valid = jnp.arange(max_clusters) < k  # [k_max]

    def assign(centres):
        d = _squared_distances(x, centres)
        return jnp.argmin(jnp.where(valid, d, jnp.inf), axis=-1).astype(jnp.int32)

    def update(labels, centres):
        one_hot = jax.nn.one_hot(labels, max_clusters, dtype=x.dtype)  # [p, k]
        counts = one_hot.sum(0)
        sums = one_hot.T @ x
        # An emptied cluster keeps its centre (sklearn relocates it; with k-means++ seeding this is rare).
        return jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts, 1.0)[:, None], centres)

    def cond(carry):
        i, _, _, changed = carry
        return (i < max_iter) & changed

    def body(carry):
        i, centres, labels, _ = carry
        centres = update(labels, centres)
        new = assign(centres)
        return i + 1, centres, new, jnp.any(new != labels)

    centres = _plus_plus(x, k, key, max_clusters)
    labels = assign(centres)
    _, _, labels, _ = jax.lax.while_loop(cond, body, (0, centres, labels, True))
    return labels


@functools.partial(jax.jit, static_argnames=("max_clusters", "max_iter"))
def _batch_kmeans(features, num_clusters, keys, max_clusters, max_iter):
    fn = functools.partial(_kmeans_one, max_clusters=max_clusters, max_iter=max_iter)
    with jax.default_matmul_precision("highest"):
        return jax.vmap(fn)(features, num_clusters, keys)


def batch_kmeans(features: jax.Array, num_clusters, key: jax.Array, *, max_clusters: int | None = None,
                 max_iter: int = 100) -> jax.Array:
    """k-means labels per image, all images at once on the device.

    Args:
        features: `[b, p, f]` points (pixels) per image.
        num_clusters: k per image, an int or `[b]` ints in [1, p].
        key: PRNG key; image i seeds from `fold_in(key, i)`.
        max_clusters: static upper bound on k (default: the largest k; pass it to avoid recompiling per batch).
        max_iter: Lloyd iterations at most.

    Returns:
        `[b, p]` int32 labels in [0, k_i).

    Raises:
        ValueError: features not `[b, p, f]` or holding NaN or inf (naming the image: Lloyd's iterations would
            otherwise return labels without a word), or a k out of range.
    """
    features = jnp.asarray(features)
    if features.ndim != 3 or not bool(jnp.isfinite(features).all()):  # reduced on the device: one bool comes back
        check_features(np.asarray(features))  # raises, naming the shape or the first bad image
    b, p = features.shape[:2]
    k_host = check_num_clusters(np.asarray(jax.device_get(num_clusters)), b, p)
    k = jnp.asarray(k_host, jnp.int32)
    bound = int(max_clusters or (k_host.max() if k_host.size else 1))
    if k_host.size and k_host.max() > bound:
        raise ValueError(f"max_clusters={bound} is smaller than the largest k {int(k_host.max())}")
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(b))
    return _batch_kmeans(features, k, keys, bound, int(max_iter))
