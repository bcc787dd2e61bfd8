"""MONet's segmentation metrics (`noisegroup.metrics.segmentation_metrics`) against scikit-learn and a NumPy port of
DeepMind's formula. (`ari_jax` and `batch_ari` against scikit-learn: tests/test_lns.py.)"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from noisegroup import metrics


def deepmind_ari(true_labels: np.ndarray, pred_labels: np.ndarray, num_groups: int, foreground: bool) -> float:
    """NumPy port of DeepMind's `segmentation_metrics.adjusted_rand_index` on one image (NaN where it gives NaN)."""
    true_oh = np.eye(num_groups)[true_labels.ravel()]
    if foreground:
        true_oh = true_oh[:, 1:]
    pred_oh = np.eye(num_groups)[pred_labels.ravel()]
    true_ids, pred_ids = true_oh.argmax(-1), pred_labels.ravel()
    n = true_oh.sum()
    nij = pred_oh.T @ true_oh
    a, b = nij.sum(0), nij.sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rindex, aindex, bindex = (nij * (nij - 1)).sum(), (a * (a - 1)).sum(), (b * (b - 1)).sum()
        expected = aindex * bindex / (n * (n - 1))
        ari = (rindex - expected) / ((aindex + bindex) / 2 - expected)
    if np.all(true_ids == true_ids[0]) and np.all(pred_ids == pred_ids[0]):
        return 1.0
    return float(ari)


def test_ari_metrics_equal_sklearn_and_count_deepmind_nans():
    k, side = 3, 6
    rng = np.random.default_rng(5)
    log_masks = rng.normal(size=(12, k, side, side)) * 3
    masks = rng.integers(0, 4, size=(12, side, side))
    # corner cases: one object, predicted by one slot, background by another (DeepMind: NaN; sklearn: 1)
    masks[0] = 0
    masks[0, :3] = 2
    log_masks[0] = -10.0
    log_masks[0, 1, :3] = 0.0
    log_masks[0, 0, 3:] = 0.0
    masks[1] = 0  # no foreground (DeepMind: NaN unless the prediction is constant)
    masks[2], log_masks[2] = 0, np.where(np.arange(k)[:, None, None] == 1, 0.0, -10.0)  # constant prediction: 1.0
    masks[3] = np.where(np.arange(side)[:, None] < 3, 1, 3)  # perfect segmentation, object labels 1 and 3
    log_masks[3] = np.where(np.arange(k)[:, None, None] == np.where(np.arange(side) < 3, 0, 2)[None, :, None], 0., -9.)
    scores = jax.jit(metrics.segmentation_metrics, static_argnums=2)(jnp.asarray(log_masks, jnp.float32),
                                                                     jnp.asarray(masks, jnp.uint8), 4)

    pred = log_masks.argmax(1)
    full = [adjusted_rand_score(t.ravel(), p.ravel()) for t, p in zip(masks, pred)]
    fg = [adjusted_rand_score(t[t != 0], p[t != 0]) for t, p in zip(masks, pred)]
    np.testing.assert_allclose(scores["ari"], np.mean(full), rtol=1e-5)
    np.testing.assert_allclose(scores["fg_ari"], np.mean(fg), rtol=1e-5)
    dm = [deepmind_ari(t, p, 4, foreground=True) for t, p in zip(masks, pred)]
    assert np.isnan(dm[0]) and np.isnan(dm[1]) and dm[2] == 1.0 and dm[3] == pytest.approx(1.0)
    assert float(scores["deepmind_fg_ari_nan"]) == pytest.approx(np.mean(np.isnan(dm)))
    # where DeepMind's score is finite it is sklearn's
    finite = ~np.isnan(dm)
    np.testing.assert_allclose(np.asarray(dm)[finite], np.asarray(fg)[finite], rtol=1e-6, atol=1e-9)


def test_deepmind_nan_rule_matches_the_port_on_small_random_maps():
    rng = np.random.default_rng(6)
    preds = rng.integers(0, 2, size=(400, 2, 2)) * rng.integers(0, 2, size=(400, 1, 1))  # often constant
    trues = rng.integers(0, 3, size=(400, 2, 2)) * rng.integers(0, 2, size=(400, 1, 1))
    got = jax.jit(jax.vmap(lambda p, t: metrics.deepmind_fg_ari_is_nan(p, t, 3)))(preds, trues)
    expected = [np.isnan(deepmind_ari(t, p, 3, foreground=True)) for t, p in zip(trues, preds)]
    np.testing.assert_array_equal(got, expected)
    assert 20 < sum(expected) < 380  # both outcomes exercised


def test_labels_beyond_the_bound_give_nan_not_a_silent_score():
    scores = jax.jit(metrics.segmentation_metrics, static_argnums=2)(jnp.zeros((1, 2, 4, 4)),
                                                                jnp.full((1, 4, 4), 7, jnp.uint8), 4)
    assert np.isnan(scores["ari"]) and np.isnan(scores["fg_ari"])
