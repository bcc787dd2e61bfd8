"""Adjusted Rand index (ARI) in JAX, equal to `sklearn.metrics.adjusted_rand_score`, and MONet's segmentation metrics.

    ari(pred, true)                      # all pixels, background included (what the paper reports)
    ari(pred, true, foreground=True)     # pixels with true != 0 only (the reference's ARI_FG)
    batch_ari(preds, masks)              # [b, H, W] label maps -> [b] scores: host-side, validated
    jax.jit(jax.vmap(partial(ari_jax, num_labels=8)))(preds, masks)   # inside jit/vmap (MONet's training program)
    segmentation_metrics(log_masks, masks, num_labels=8)   # MONet's attention masks: ARI, FG-ARI, DeepMind's NaNs

`ari_jax` is pure `jnp` with a static upper bound on the number of labels (labels must lie in [0, num_labels)),
so it runs inside `jit` and `vmap` on the device and compiles once. `batch_ari` checks its inputs on the host,
relabels each map to consecutive integers (memory grows with the number of labels present, not the largest label)
and calls the same computation. `segmentation_metrics` scores MONet's attention masks inside its training program
(ARI, FG-ARI, and how often DeepMind's FG-ARI would be NaN: `deepmind_fg_ari_is_nan`).

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


def ari_jax(pred: jax.Array, true: jax.Array, weights: jax.Array | None = None, *, num_labels: int) -> jax.Array:
    """ARI of two integer label maps of one image, over the pixels with weight 1 (sklearn's pair-confusion form).

    Args:
        pred, true: integer labels in [0, num_labels), any equal shapes (e.g. `[h, w]`).
        weights: 0/1 per pixel (e.g. `true != 0` for the foreground ARI); None: every pixel.
        num_labels: static bound on the labels (the contingency table is `[num_labels, num_labels]`).

    Returns:
        float32 scalar; 1.0 in sklearn's degenerate cases.
    """
    if weights is None:
        weights = jnp.ones(true.shape, bool)
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
    if labels.dtype == bool:
        raise ValueError(f"{name} must hold integer labels, got dtype bool")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name} must hold integer labels, got dtype {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise ValueError(f"{name} labels must be >= 0, got {labels.min()}")


def _consecutive(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Each map `[b, ...]` relabelled to 0..(its number of labels - 1), keeping their order; and the largest count.
    Maps already numbered 0..k-1 are unchanged."""
    flat = labels.reshape(len(labels), -1)
    out, most = np.empty(flat.shape, np.int32), 1
    for i, row in enumerate(flat):
        values, inverse = np.unique(row, return_inverse=True)
        out[i], most = inverse.reshape(-1), max(most, len(values))
    return out.reshape(labels.shape), most


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
    if not preds.size:
        return np.ones(len(preds), np.float32)
    weights = trues != 0 if foreground else np.ones(trues.shape, bool)
    preds, most_pred = _consecutive(preds)
    trues, most_true = _consecutive(trues)
    num_labels = max(most_pred, most_true)
    return np.asarray(_batch_ari(jnp.asarray(preds), jnp.asarray(trues), jnp.asarray(weights), num_labels))


@functools.partial(jax.jit, static_argnums=3)
def _batch_ari(preds: jax.Array, trues: jax.Array, weights: jax.Array, num_labels: int) -> jax.Array:
    return jax.vmap(functools.partial(ari_jax, num_labels=num_labels))(preds, trues, weights)


# --- MONet's segmentation metrics -----------------------------------------------------------------------------------


def deepmind_fg_ari_is_nan(pred: jax.Array, true: jax.Array, num_labels: int) -> jax.Array:
    """Whether DeepMind's `segmentation_metrics.adjusted_rand_index` gives NaN for the FG-ARI of one image (spec 4.1).

    DeepMind slices the background column off the one-hot ground truth, counts only pixels with a foreground label
    (n of them) and returns 1 only when every true id (argmax of the sliced one-hot over all pixels: background
    reads 0, like object 1) and every predicted id are equal. Otherwise its (RI - E) / (max - E) is 0/0 when
    n (n - 1) = 0, or when max = E, i.e. both labelings of the n pixels are one cluster or both all singletons.

    Args:
        pred, true: integer label maps `[h, w]`, values in [0, num_labels); true 0 = background.

    Returns:
        bool scalar.
    """
    fg = true != 0
    n = jnp.sum(fg)
    ids = jnp.where(fg, true.astype(jnp.int32) - 1, 0)
    special = jnp.all(ids == ids.ravel()[0]) & jnp.all(pred == pred.ravel()[0])
    onehot = lambda x: jax.nn.one_hot(x.ravel(), num_labels, dtype=jnp.int32) * fg.ravel()[:, None]  # noqa: E731
    true_counts, pred_counts = jnp.sum(onehot(true), 0), jnp.sum(onehot(pred), 0)  # [num_labels] over fg pixels
    single = (jnp.sum(true_counts > 0) == 1) & (jnp.sum(pred_counts > 0) == 1)
    singletons = (jnp.max(true_counts) <= 1) & (jnp.max(pred_counts) <= 1)
    return ~special & ((n < 2) | single | singletons)


def segmentation_metrics(log_masks: jax.Array, masks: jax.Array, num_labels: int) -> dict[str, jax.Array]:
    """ARI and FG-ARI of the attention masks against ground truth, batch means (jittable).

    The prediction is argmax_k m_k per pixel. sklearn semantics (`ari_jax`: 1.0 when degenerate); FG-ARI scores only
    pixels with mask != 0. An image with a ground-truth label >= `num_labels` scores NaN (the static bound of the
    contingency table would drop its pixels silently).

    Args:
        log_masks: `[b, k, h, w]`.
        masks: integer labels `[b, h, w]`, 0 = background.
        num_labels: static bound on the labels of both maps (>= k).

    Returns:
        {"ari", "fg_ari", "deepmind_fg_ari_nan": the fraction of images whose FG-ARI DeepMind's code gives NaN}.

    Raises:
        ValueError: masks that are not label maps `[b, h, w]` matching `log_masks`, or num_labels < k.
    """
    b, k, h, w = log_masks.shape
    if masks.shape != (b, h, w):
        raise ValueError(f"ground-truth masks must be integer label maps [b, h, w] = {[b, h, w]}, got {masks.shape}")
    if num_labels < k:
        raise ValueError(f"num_labels={num_labels} must be >= the number of slots {k}")
    pred = jnp.argmax(log_masks, axis=1).astype(jnp.int32)
    true = masks.astype(jnp.int32)
    in_range = jnp.all(true < num_labels, axis=(1, 2))
    ari = jax.vmap(lambda p, t: ari_jax(p, t, num_labels=num_labels))(pred, true)
    fg_ari = jax.vmap(lambda p, t: ari_jax(p, t, t != 0, num_labels=num_labels))(pred, true)
    nan = jax.vmap(lambda p, t: deepmind_fg_ari_is_nan(p, t, num_labels))(pred, true)
    return {"ari": jnp.mean(jnp.where(in_range, ari, jnp.nan)),
            "fg_ari": jnp.mean(jnp.where(in_range, fg_ari, jnp.nan)),
            "deepmind_fg_ari_nan": jnp.mean(nan.astype(jnp.float32))}
