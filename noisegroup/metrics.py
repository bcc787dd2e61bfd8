"""Adjusted Rand index (ARI) in JAX, equal to `sklearn.metrics.adjusted_rand_score`.

    ari(pred, true)                      # all pixels, background included (what the paper reports)
    ari(pred, true, foreground=True)     # pixels with true != 0 only (the reference's ARI_FG)
    batch_ari(preds, masks)              # [b, H, W] label maps -> [b] scores, one jitted program

The formulation is sklearn's pair-confusion form, so its degenerate cases come out the same way: when both
labelings put every pair of pixels together (one cluster each) or every pixel apart, or there are fewer than two
pixels, ARI is 1.0.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


def _contingency(pred: jax.Array, true: jax.Array, weights: jax.Array, num_labels: int) -> jax.Array:
    """`[num_labels, num_labels]` int32 counts of pixels (with weight 1) per (true, predicted) label pair."""
    flat = true.astype(jnp.int32) * num_labels + pred.astype(jnp.int32)
    table = jnp.zeros(num_labels * num_labels, jnp.int32).at[flat.ravel()].add(weights.ravel().astype(jnp.int32))
    return table.reshape(num_labels, num_labels)


def _ari(pred: jax.Array, true: jax.Array, weights: jax.Array, num_labels: int) -> jax.Array:
    """ARI of two integer label maps of one image over the pixels with weight 1 (sklearn's pair-confusion form)."""
    table = _contingency(pred, true, weights, num_labels)
    n = table.sum().astype(jnp.float32)
    # Pair counts divided by n^2, in float32: exact integer sums of squares would overflow int32 at 256 x 256.
    p = table.astype(jnp.float32) / jnp.maximum(n, 1.0)
    sum_nij, sum_a, sum_b = (p**2).sum(), (p.sum(1) ** 2).sum(), (p.sum(0) ** 2).sum()
    tp = sum_nij - 1.0 / jnp.maximum(n, 1.0)
    fp, fn = sum_b - sum_nij, sum_a - sum_nij
    tn = 1.0 - sum_a - sum_b + sum_nij
    # fp == 0 (fn == 0) exactly when no predicted cluster (true class) spans two true classes (clusters): decided on
    # the integer table, so sklearn's degenerate cases give exactly 1.0.
    no_fp = ((table > 0).sum(0) <= 1).all()
    no_fn = ((table > 0).sum(1) <= 1).all()
    denominator = (tp + fn) * (fn + tn) + (tp + fp) * (fp + tn)
    perfect = no_fp & no_fn
    return jnp.where(perfect, 1.0, 2.0 * (tp * tn - fn * fp) / jnp.where(perfect, 1.0, denominator))


def _check_labels(name: str, labels: np.ndarray) -> None:
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name} must hold integer labels, got dtype {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise ValueError(f"{name} labels must be >= 0, got {labels.min()}")


def _num_labels(*label_maps: np.ndarray) -> int:
    return int(max(int(np.max(m)) if np.size(m) else 0 for m in label_maps)) + 1


def ari(pred, true, *, foreground: bool = False) -> float:
    """ARI of one predicted label map against ground truth (any equal shapes, integer labels >= 0).

    Args:
        pred: predicted cluster labels, e.g. `[H, W]`.
        true: ground-truth labels of the same shape; 0 is background.
        foreground: score only the pixels with `true != 0` (the reference's ARI_FG).
    """
    return float(batch_ari(np.asarray(pred)[None], np.asarray(true)[None], foreground=foreground)[0])


def batch_ari(preds, trues, *, foreground: bool = False) -> np.ndarray:
    """ARI per image: `preds`, `trues` integer label maps `[b, ...]` -> float32 `[b]` (one jitted program)."""
    preds, trues = np.asarray(preds), np.asarray(trues)
    if preds.shape != trues.shape or preds.ndim < 1:
        raise ValueError(f"predicted labels {preds.shape} and ground truth {trues.shape} must have equal shapes [b, ...]")
    _check_labels("predicted", preds)
    _check_labels("ground-truth", trues)
    num_labels = _num_labels(preds, trues)
    return np.asarray(_batch_ari(jnp.asarray(preds), jnp.asarray(trues), num_labels, foreground))


@functools.partial(jax.jit, static_argnums=(2, 3))
def _batch_ari(preds: jax.Array, trues: jax.Array, num_labels: int, foreground: bool) -> jax.Array:
    weights = (trues != 0) if foreground else jnp.ones_like(trues, dtype=bool)
    return jax.vmap(functools.partial(_ari, num_labels=num_labels))(preds, trues, weights)
