"""LNS: features against a re-statement of the reference, ARI against sklearn, clustering, sweeps, protocols."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from flax import nnx
from sklearn.cluster import AgglomerativeClustering
from sklearn.metrics import adjusted_rand_score

from noisegroup import metrics, stats
from noisegroup.engine import pretrained
from noisegroup.lns import cluster, kmeans, sweep
from noisegroup.lns import features as lns
from noisegroup.models import AutoEncoder

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def model():
    """An untrained AE (any decoder will do for feature plumbing) as (graphdef, params)."""
    return nnx.split(AutoEncoder(15, rngs=nnx.Rngs(params=jax.random.key(0))), nnx.Param)


@pytest.fixture(scope="module")
def test_data():
    from datasets import good_gestalt as gg

    data = gg.generate("proximity", "test", limit=6)
    return data.images, data.masks


def reference_features(outputs: np.ndarray) -> np.ndarray:
    """The reference's steps restated literally in NCHW: D_{n-1} = y_{n-1} - y_n, F.normalize(D, dim=0), reshape to
    ((N-1)*3, H, W), then one row per pixel in row-major order. `outputs`: `[N, H, W, 3]` -> `[H*W, 3(N-1)]`."""
    y = np.transpose(outputs, (0, 3, 1, 2)).astype(np.float64)  # [N, 3, H, W]
    d = np.stack([y[n - 1] - y[n] for n in range(1, len(y))])  # [N-1, 3, H, W]
    d = d / np.maximum(np.sqrt((d**2).sum(axis=0, keepdims=True)), 1e-12)
    x = d.reshape(-1, *d.shape[2:])  # [(N-1)*3, H, W], index step * 3 + channel
    return x.reshape(x.shape[0], -1).T


# --- features ---------------------------------------------------------------------------------------------------


def test_difference_features_equal_the_reference_restatement():
    outputs = jax.random.uniform(jax.random.key(1), (7, 8, 6, 3))
    ours = np.asarray(lns.difference_features(outputs, "channel"))
    chex.assert_shape(ours, (48, 18))
    np.testing.assert_allclose(ours, reference_features(np.asarray(outputs)), atol=1e-6)


@pytest.mark.parametrize("normalisation, norm", [("channel", np.sqrt(3.0)), ("pixel", 1.0)])
def test_feature_norms(normalisation, norm):
    outputs = jax.random.uniform(jax.random.key(2), (2, 5, 4, 4, 3))  # a leading batch axis too
    feats = lns.difference_features(outputs, normalisation)
    chex.assert_shape(feats, (2, 16, 12))
    np.testing.assert_allclose(np.linalg.norm(feats, axis=-1), norm, rtol=1e-5)
    if normalisation == "channel":  # every channel's time block alone has unit norm
        blocks = np.asarray(feats).reshape(2, 16, 4, 3)
        np.testing.assert_allclose(np.linalg.norm(blocks, axis=2), 1.0, rtol=1e-5)


def test_differences_are_sign_invariant_for_clustering():
    outputs = jax.random.uniform(jax.random.key(3), (6, 8, 8, 3))
    forward = np.asarray(lns.difference_features(outputs))
    flipped = np.asarray(lns.normalise(outputs[1:] - outputs[:-1]))  # the paper's y_n - y_{n-1}
    np.testing.assert_allclose(flipped, -forward, atol=1e-6)
    labels = cluster.cluster(np.stack([forward, flipped]), 3, "ward", workers=1)
    assert adjusted_rand_score(labels[0], labels[1]) == 1.0


def test_saturated_outputs_give_zero_features_not_nan():
    outputs = jnp.ones((5, 4, 4, 3)).at[:, 0, 0, 1].set(jnp.arange(5.0))  # one pixel channel varies
    feats = np.asarray(lns.difference_features(outputs))
    assert np.isfinite(feats).all()
    assert np.count_nonzero(feats) == 4  # only that (pixel, channel) block: its 4 normalised differences


def test_noisy_decodes_perturb_the_mean_with_shared_draws(model):
    graphdef, params = model
    images = jax.random.uniform(jax.random.key(4), (3, 64, 64, 3))
    keys = lns.image_keys(jax.random.key(5), jnp.arange(3))
    outputs, recon = lns.noisy_decodes(graphdef, params, images, keys, (1e-2, 0.3), 4)
    chex.assert_shape(outputs, (2, 3, 4, 64, 64, 3))
    ae = nnx.merge(graphdef, params)
    mean = ae.encode(images)["mean"]
    eps = lns.standard_noise(keys, 4, 15)
    for s, sigma in enumerate((1e-2, 0.3)):  # both noise levels scale the same standard-normal draws
        expected = jax.nn.sigmoid(ae.decode((mean[:, None] + sigma * eps).reshape(12, 15))).reshape(3, 4, 64, 64, 3)
        np.testing.assert_allclose(outputs[s], expected, atol=2e-6)
    np.testing.assert_allclose(recon, jax.nn.sigmoid(ae.decode(mean)), atol=2e-6)


def test_features_are_deterministic_and_independent_of_batching(model, test_data):
    graphdef, params = model
    images = test_data[0]
    key = jax.random.key(6)
    full = sweep.setting_features(graphdef, params, images, key, 0.1, 5)
    again = sweep.setting_features(graphdef, params, images, key, 0.1, 5)
    np.testing.assert_array_equal(full, again)
    other = sweep.setting_features(graphdef, params, images, jax.random.key(7), 0.1, 5)
    assert not np.allclose(full, other)
    # Image i's noise depends on (key, i) only, so the same image in a smaller batch gets the same decodes. (Compared
    # before normalisation: this untrained decoder's differences are ~1e-5, so normalising them amplifies the float
    # rounding of another batch shape.)
    whole, _ = lns.noisy_decodes(graphdef, params, jnp.asarray(images), lns.image_keys(key, jnp.arange(6)), 0.1, 5)
    part, _ = lns.noisy_decodes(graphdef, params, jnp.asarray(images[2:4]), lns.image_keys(key, jnp.arange(2, 4)), 0.1, 5)
    np.testing.assert_allclose(part[0], whole[0, 2:4], rtol=0, atol=1e-6)
    spread = np.median(np.abs(np.diff(np.asarray(part[0]), axis=1)))
    assert spread > 5e-6  # other noise draws would differ by about this much: the comparison above can see them


def test_control_features():
    recon = jax.random.uniform(jax.random.key(8), (2, 8, 8, 3))
    keys = lns.image_keys(jax.random.key(9), jnp.arange(2))
    feats = lns.control_features(recon, keys, 6)  # the default reading: r + eps_n stacked, raw
    chex.assert_shape(feats, (2, 64, 18))  # N noisy reconstructions stacked, no differencing
    noise = feats - np.tile(np.asarray(recon).reshape(2, 64, 3), 6)  # feature index = step * 3 + channel
    assert abs(noise.std() - lns.CONTROL_NOISE_STD) < 0.03 and abs(noise.mean()) < 0.03
    normalised = lns.control_features(recon, keys, 6, reading=lns.ControlReading(normalisation="lns"))
    np.testing.assert_allclose(np.linalg.norm(normalised, axis=-1), np.sqrt(3.0), rtol=1e-5)
    noise_free = lns.control_features(recon, keys, 6, noise_std=1e-9, reading=lns.ControlReading(normalisation="lns"))
    # Without noise every sample equals r, so a channel's block is r * ones / (|r| sqrt(N)) = 1 / sqrt(N): the colour
    # is gone, which is why the default reading does not normalise.
    np.testing.assert_allclose(noise_free, 1 / np.sqrt(6), rtol=1e-4)


def two_colour_reconstructions() -> np.ndarray:
    """`[2, 8, 8, 3]`: left half one colour, right half another (the known answer: two regions)."""
    recon = np.empty((2, 8, 8, 3), np.float32)
    recon[:, :, :4], recon[:, :, 4:] = [0.2, 0.5, 0.7], [0.8, 0.4, 0.1]
    return recon


@pytest.mark.parametrize("space", ["pixel", "logit"])
@pytest.mark.parametrize("normalisation", ["channel", "pixel", "none"])
def test_control_readings_on_two_colours(space, normalisation):
    """Shared noise keeps every pixel of one colour identical: stacked samples separate the two colours exactly,
    differences of shared pixel-space noise are the same at every pixel; i.i.d. noise on the stack separates the
    colours when small and unnormalised, and its differences do not see the colours at all."""
    recon = jnp.asarray(two_colour_reconstructions())
    keys = lns.image_keys(jax.random.key(9), jnp.arange(2))
    truth = np.repeat(np.repeat([[0, 1]], 8, axis=0), 4, axis=1)[None].repeat(2, 0)  # [2, 8, 8]

    def feats(noise, difference, std=0.3235):
        reading = lns.ControlReading(space, noise, difference, normalisation)
        f = np.asarray(lns.control_features(recon, keys, 6, std, "channel", reading))
        chex.assert_shape(f, (2, 64, (5 if difference else 6) * 3))
        return f.reshape(2, 8, 8, -1)

    def ari(f):
        labels = cluster.cluster(f.reshape(2, 64, -1), 2, "kmeans").reshape(2, 8, 8)
        return metrics.batch_ari(labels, truth)

    shared = feats("shared", False)
    for f in (shared, feats("shared", True) if space == "logit" else None):
        if f is None:
            continue
        np.testing.assert_allclose(f[:, :, :4], f[:, :1, :1].repeat(8, 1).repeat(4, 2), atol=1e-6)
        assert np.abs(f[:, 0, 0] - f[:, 0, 7]).max() > 1e-3  # the two colours differ
        np.testing.assert_allclose(ari(f), 1.0)
    if space == "pixel":  # pixel-space differences of shared noise: the colour cancels, every pixel the same
        diff = feats("shared", True)
        np.testing.assert_allclose(diff, diff[:, :1, :1].repeat(8, 1).repeat(8, 2), atol=1e-6)
        # i.i.d. pixel noise: the colour cancels from the differences (features independent of r)
        np.testing.assert_allclose(ari(feats("iid", True)), 0.0, atol=0.2)
    if normalisation == "none":
        np.testing.assert_allclose(ari(feats("iid", False, std=0.05)), 1.0)
        if space == "pixel":  # raw stacked samples are r + noise
            np.testing.assert_allclose(shared[:, :, :, 0::3] - shared[:, :1, :1, 0::3], np.broadcast_to(
                (recon[..., :1] - recon[:, :1, :1, :1]), shared[..., 0::3].shape), atol=1e-6)


def test_a_bad_control_reading_is_named():
    for kwargs, name in ((dict(space="rgb"), "control_space"), (dict(noise="pink"), "control_noise"),
                         (dict(normalisation="l1"), "control_normalisation"), (dict(difference="yes"),
                                                                                "control_difference")):
        with pytest.raises(ValueError, match=name):
            lns.ControlReading(**kwargs)


@pytest.mark.parametrize("kwargs, message", [
    (dict(noise_std=0.0), "noise_std"), (dict(noise_std=-1.0), "noise_std"), (dict(noise_std=float("nan")), "noise_std"),
    (dict(num_noise_samples=1), "num_noise_samples"), (dict(num_noise_samples=2.5), "num_noise_samples"),
    (dict(normalisation="time"), "normalisation"),
])
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        lns.check_settings(**kwargs)


# --- ARI ------------------------------------------------------------------------------------------------------


def test_ari_equals_sklearn_on_random_label_maps():
    rng = np.random.default_rng(0)
    preds, trues = rng.integers(0, 4, (30, 16, 16)), rng.integers(0, 3, (30, 16, 16))
    preds[:10] = trues[:10] * 2 + 1  # relabelled copies: ARI 1
    preds[10:15] = np.where(rng.random((5, 16, 16)) < 0.8, trues[10:15], preds[10:15])  # mostly right
    ours = metrics.batch_ari(preds, trues)
    expected = [adjusted_rand_score(t.ravel(), p.ravel()) for p, t in zip(preds, trues)]
    np.testing.assert_allclose(ours, expected, atol=1e-5)
    ours_fg = metrics.batch_ari(preds, trues, foreground=True)
    expected_fg = [adjusted_rand_score(t[t != 0], p[t != 0]) for p, t in zip(preds, trues)]
    np.testing.assert_allclose(ours_fg, expected_fg, atol=1e-5)


@pytest.mark.parametrize("pred, true", [
    (np.zeros(9, int), np.zeros(9, int)),          # one cluster each
    (np.arange(9), np.arange(9) + 3),              # every pixel alone in both
    (np.zeros(1, int), np.zeros(1, int)),          # a single pixel
    (np.arange(9), np.zeros(9, int)),              # all apart vs all together
    (np.zeros(9, int), np.arange(9) % 2),          # one cluster vs two classes
    (np.array([0, 0, 1, 1]), np.array([1, 1, 0, 0])),
])
def test_ari_degenerate_cases_match_sklearn(pred, true):
    assert metrics.ari(pred, true) == pytest.approx(adjusted_rand_score(true, pred), abs=1e-6)


def test_foreground_ari_of_an_all_background_mask_is_one_like_sklearn():
    pred, true = np.arange(16).reshape(4, 4) % 3, np.zeros((4, 4), int)
    assert metrics.ari(pred, true, foreground=True) == adjusted_rand_score([], []) == 1.0


def test_ari_rejects_bad_labels():
    with pytest.raises(ValueError, match="equal shapes"):
        metrics.batch_ari(np.zeros((2, 4, 4), int), np.zeros((2, 4, 5), int))
    with pytest.raises(ValueError, match="integer"):
        metrics.ari(np.zeros(4), np.zeros(4, int))
    with pytest.raises(ValueError, match=">= 0"):
        metrics.ari(np.array([0, -1]), np.array([0, 1]))


# --- clustering -----------------------------------------------------------------------------------------------


def blobs(num_images=3, k=4, per=40, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_images, k, 6)) * 10
    truth = np.repeat(np.arange(k), per)
    x = centres[:, truth] + rng.normal(size=(num_images, k * per, 6))
    return x.astype(np.float32), truth


@pytest.mark.parametrize("method", cluster.METHODS)
def test_each_method_returns_k_labels_and_finds_separated_blobs(method):
    x, truth = blobs()
    labels = cluster.cluster(x, [4, 4, 2], method, workers=2)
    chex.assert_shape(labels, (3, 160))
    assert [len(np.unique(l)) for l in labels] == [4, 4, 2]
    assert adjusted_rand_score(truth, labels[0]) == 1.0


@pytest.mark.parametrize("k", [1, 2, 5, 23])
def test_ward_is_sklearns_partition(k):
    rng = np.random.default_rng(k)
    x = rng.normal(size=(1, 300, 9)).astype(np.float32)
    ours = cluster.cluster(x, k, "ward", workers=1)[0]
    expected = AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(x[0])
    assert adjusted_rand_score(expected, ours) == 1.0


def test_jax_kmeans_finds_blobs_with_per_image_k():
    x, truth = blobs(num_images=4)
    labels = np.asarray(kmeans.batch_kmeans(jnp.asarray(x), jnp.array([4, 4, 4, 3]), jax.random.key(0)))
    assert [len(np.unique(l)) for l in labels] == [4, 4, 4, 3]
    assert all(adjusted_rand_score(truth, l) == 1.0 for l in labels[:3])
    again = np.asarray(kmeans.batch_kmeans(jnp.asarray(x), jnp.array([4, 4, 4, 3]), jax.random.key(0)))
    np.testing.assert_array_equal(labels, again)


def test_kmeans_restarts_keep_the_lowest_inertia():
    """On overlapping blobs one k-means++ start often lands in a worse local optimum; ten starts (sklearn's default
    when the paper was written) keep the best of them, never a worse inertia than the first start alone."""
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(3)
    x = (rng.normal(size=(6, 200, 2)) + rng.integers(0, 3, size=(6, 200, 1)) * 1.5).astype(np.float32)

    def inertia(labels, xi):
        return sum(((xi[labels == c] - xi[labels == c].mean(0)) ** 2).sum() for c in np.unique(labels))

    one = cluster.cluster(x, 5, "kmeans", workers=1, seed=10)
    ten = cluster.cluster(x, 5, "kmeans", workers=1, seed=10, restarts=10)
    for i in range(6):
        np.testing.assert_array_equal(ten[i], KMeans(5, n_init=10, random_state=10 + i).fit_predict(x[i]))
        assert inertia(ten[i], x[i]) <= inertia(one[i], x[i]) * (1 + 1e-6)
    with pytest.raises(ValueError, match="restarts must be >= 1, got 0"):
        cluster.cluster(x, 5, "kmeans", restarts=0)
    with pytest.raises(ValueError, match="kmeans_restarts.*kmeans_jax"):
        sweep.SweepSettings(method="kmeans_jax", kmeans_restarts=10)


def test_k_from_masks_counts_background():
    masks = np.zeros((2, 4, 4), np.uint8)
    masks[0, :2] = 3
    assert cluster.num_clusters_from_masks(masks).tolist() == [2, 1]


@pytest.mark.parametrize("k", [0, 161])
def test_bad_k_is_named(k):
    x, _ = blobs(num_images=1)
    with pytest.raises(ValueError, match=f"got {k}"):
        cluster.cluster(x, k, "kmeans", workers=1)
    with pytest.raises(ValueError, match="number of clusters"):
        kmeans.batch_kmeans(jnp.asarray(x), k, jax.random.key(0))


def test_nan_features_name_the_image():
    x, _ = blobs()
    x[1, 5, 2] = np.nan
    with pytest.raises(ValueError, match="image 1"):
        cluster.cluster(x, 4, "ward", workers=1)


def test_unknown_method_is_named():
    with pytest.raises(ValueError, match="'dbscan'"):
        cluster.cluster(blobs()[0], 4, "dbscan")


# --- sweeps and protocols -------------------------------------------------------------------------------------


def test_sweep_matches_direct_computation(model, test_data):
    graphdef, params = model
    images, masks = test_data
    stacked = jax.tree.map(lambda x: jnp.stack([x, x * 1.01]), params)  # two "seeds"
    key = jax.random.key(10)
    settings = sweep.SweepSettings(noise_stds=(1e-2, 0.3), num_noise_samples=(2, 5), method="kmeans", image_chunk=4,
                                   workers=1)
    result = sweep.evaluate(graphdef, stacked, images, masks, key, settings, keep_labels=True)
    chex.assert_shape(result.ari, (2, 2, 2, 6))
    chex.assert_shape(result.labels, (2, 2, 2, 6, 64, 64))
    # Seed 1, sigma 0.3, N 5 by hand: features, scikit-learn's k-means labels -> the same ARI as the sweep's.
    feats = sweep.setting_features(graphdef, jax.tree.map(lambda x: x[1], stacked), images, jax.random.fold_in(key, 1), 0.3, 5)
    labels = result.labels[1, 1, 1].reshape(6, -1)
    k = cluster.num_clusters_from_masks(masks)
    assert [len(np.unique(l)) for l in labels] == k.tolist()
    expected = [adjusted_rand_score(m.ravel(), l) for m, l in zip(masks, labels)]
    np.testing.assert_allclose(result.ari[1, 1, 1], expected, atol=1e-5)
    # The labels are a clustering of exactly these features: each cluster's centroid is nearest to its own points
    # (Lloyd's fixed point), which would fail for labels of other features.
    f = np.asarray(feats[0])
    centroids = np.stack([f[labels[0] == c].mean(0) for c in range(k[0])])
    assert (np.argmin(((f[:, None] - centroids[None]) ** 2).sum(-1), axis=1) == labels[0]).mean() > 0.99


def test_sweep_rejects_bad_images(model, test_data):
    graphdef, params = model
    images, masks = test_data
    stacked = jax.tree.map(lambda x: x[None], params)
    common = dict(noise_stds=0.1, num_noise_samples=3, method="kmeans", workers=1)
    settings = sweep.SweepSettings(**common)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        sweep.evaluate(graphdef, stacked, images * 2, masks, jax.random.key(0), settings)
    with pytest.raises(ValueError, match="float32"):
        sweep.evaluate(graphdef, stacked, (images * 255).astype(np.uint8), masks, jax.random.key(0), settings)
    with pytest.raises(ValueError, match="masks"):
        sweep.evaluate(graphdef, stacked, images, masks[:, :32], jax.random.key(0), settings)
    with pytest.raises(ValueError, match="num_noise_samples"):
        sweep.SweepSettings(**{**common, "num_noise_samples": 1})
    with pytest.raises(ValueError, match="clustering method"):
        sweep.SweepSettings(**{**common, "method": "spectral"})
    with pytest.raises(ValueError, match="noise_std"):
        sweep.SweepSettings(**{**common, "noise_stds": (float("nan"),)})


def test_protocols_select_and_summarise():
    ari = np.zeros((2, 3, 2, 4))
    ari[:, 2, 1] = 0.9
    ari[0, 1, 0] = 1.0
    ari[1, 1, 0] = 0.9  # mean 0.95 over seeds: the best setting
    assert stats.select_setting(ari) == (1, 0)
    ari[:, 1, 0] = 0.5
    assert stats.select_setting(ari) == (2, 1)
    ari[1, 2, 1] = 0.7
    s = stats.summarise(ari, (2, 1))
    assert s["mean"] == pytest.approx(0.8) and s["sem"] == pytest.approx(0.1) and s["sem_over"] == "seeds"
    one = stats.mean_sem(np.array([[0.2, 0.4, 0.6]]))
    assert one["sem_over"] == "images" and one["sem"] == pytest.approx(0.2 / np.sqrt(3))


# --- end to end -----------------------------------------------------------------------------------------------


def test_quick_lns_experiment_end_to_end(tmp_path):
    command = [sys.executable, "-m", "experiments.lns", "--config=experiments/configs/lns.py:quick",
               f"--workdir={tmp_path}"]
    first = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "proximity" in first.stdout and "(paper's value)" in first.stdout
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert {(r["dataset"], r["model"], r["protocol"]) for r in rows} == {
        (d, m, p) for d in ("proximity", "gradient_occlusion") for m, p in
        (("ae", "paper"), ("ae", "fair"), ("ae_control", "paper"))}
    for r in rows:
        assert -1.0 <= float(r["ari"]) <= 1.0
        assert float(r["noise_std"]) in (0.01, 0.5, 0.3235) and int(r["num_noise_samples"]) in (2, 5)
    results = json.loads((tmp_path / "results.json").read_text())
    assert len(results["rows"]) == 6
    seg = np.load(tmp_path / "segmentation" / "ae_proximity.npz")
    assert seg["test_ari"].shape == (1, 2, 2, 8) and seg["labels"].shape == (8, 64, 64)
    for figure in ("segmentations.png", "reconstructions.png", "sweep.png"):
        assert (tmp_path / figure).stat().st_size > 10_000
    # A second run resumes: models are trained and segmentations cached, so it reproduces the same table.
    second = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert list(csv.DictReader(open(tmp_path / "results.csv"))) == rows
    # Export the trained models as shipped weights, then segment with them: nothing is trained.
    quick = [command[3]]  # the quick config
    export = subprocess.run([sys.executable, "-m", "experiments.export_pretrained", *quick, f"--workdir={tmp_path}",
                             f"--out={tmp_path / 'weights'}"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert export.returncode == 0, export.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "weights").iterdir()) == ["ae_gradient_occlusion.npz",
                                                                         "ae_proximity.npz"]
    assert pretrained.read_meta(tmp_path / "weights" / "ae_proximity.npz")["steps"] == 12
    # ... choosing the fair setting on 3 test_iid images and running the control on 2 of the 8 test images.
    shipped = subprocess.run([sys.executable, "-m", "experiments.lns", *quick, "--config.figures=False",
                              "--config.datasets=('proximity',)", f"--config.pretrained={tmp_path / 'weights'}",
                              "--config.fair_limit=3", "--config.control_limit=2",
                              f"--workdir={tmp_path / 'shipped'}"], cwd=ROOT, capture_output=True, text=True,
                             timeout=600)
    assert shipped.returncode == 0, shipped.stderr[-3000:]
    assert not (tmp_path / "shipped" / "models").exists()  # nothing was trained
    shipped_rows = list(csv.DictReader(open(tmp_path / "shipped" / "results.csv")))
    assert len(shipped_rows) == 3 and all(-1.0 <= float(r["ari"]) <= 1.0 for r in shipped_rows)  # paper, fair, control
    limited = np.load(tmp_path / "shipped" / "segmentation" / "ae_proximity.npz")
    assert limited["test_ari"].shape == (1, 2, 2, 8)
    assert limited["test_iid_ari"].shape == (1, 2, 2, 3) and limited["control_ari"].shape == (1, 2)


def test_the_default_prints_four_rows_from_shipped_weights(tmp_path):
    """The default (shipped AE and VAE weights, no training) on a sliver of one dataset: the table has the AE, VAE,
    AE-control and VAE-control rows, each against the paper's value."""
    result = subprocess.run([sys.executable, "-m", "experiments.lns", "--config.datasets=('closure',)",
                             "--config.test_limit=2", "--config.noise_stds=(0.1,)", "--config.num_noise_samples=(5,)",
                             "--config.figures=False", "--config.umap_images=0", f"--workdir={tmp_path}"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (tmp_path / "models").exists()  # nothing was trained
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    paper_rows = {r["model"] for r in rows if r["protocol"] == "paper"}
    assert paper_rows == {"ae", "vae", "ae_control", "vae_control"}
    assert all(-1.0 <= float(r["ari"]) <= 1.0 and r["paper_ari"] for r in rows)
    header = next(line for line in result.stdout.splitlines() if line.startswith("dataset"))
    assert sorted(header.split()) == sorted(["dataset", "ae", "vae", "ae_control", "vae_control"] + ["(paper)"] * 4
                                            + ["ae", "vs", "vae", "p"])
    # The coherence of the true groups at the settings this run chose, for both models.
    coherence = subprocess.run([sys.executable, "-m", "experiments.lns_coherence", f"--workdir={tmp_path}",
                                "--test_limit=2"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert coherence.returncode == 0, coherence.stderr[-3000:]
    table = json.loads((tmp_path / "coherence.json").read_text())["rows"]
    assert [(r["dataset"], r["model"]) for r in table] == [("closure", "ae"), ("closure", "vae")]
    assert all(0.0 <= r["background_spread"] <= 6.0 and r["ratio"] >= 0.0 for r in table)


def test_a_finished_dataset_is_summarised_in_one_line():
    from noisegroup.lns.results import summary_line

    rows = [dict(protocol="paper", model="ae", ari=0.6871, paper_ari=0.854, noise_std=0.5, num_noise_samples=40),
            dict(protocol="fair", model="ae", ari=0.6, paper_ari=0.8, noise_std=0.1, num_noise_samples=5),
            dict(protocol="paper", model="ae_control", ari=0.2, paper_ari=0.246, noise_std=0.3235,
                 num_noise_samples=40)]
    assert summary_line("kanizsa", "ae", rows, 190.0) == (
        "kanizsa / ae: ARI 0.687 (paper 0.854) at sigma 0.5, N 40; control 0.200 (paper 0.246); 3.2 min")


def test_ae_vae_comparison_over_seeds_or_images_with_bonferroni_stars():
    from noisegroup.lns.results import format_table, model_comparisons

    rng = np.random.default_rng(1)

    def row(dataset, model, per_seed, per_image, protocol="paper"):
        return dict(dataset=dataset, model=model, protocol=protocol, ari=float(np.mean(per_image)), ari_sem=0.01,
                    per_seed=list(per_seed), per_image=list(per_image), paper_ari=0.9)

    far = rng.normal(0.9, 0.01, 100), rng.normal(0.5, 0.01, 100)  # clearly different images
    rows = [row("kanizsa", "ae", [0.80, 0.82, 0.79, 0.81, 0.80], far[0]),
            row("kanizsa", "vae", [0.70, 0.71, 0.69, 0.72, 0.70], far[1]),  # 5 seeds: tested over seeds
            row("closure", "ae", [0.5], far[0]), row("closure", "vae", [0.5], far[0]),  # one seed: over images
            row("proximity", "ae", [0.4], far[0])]  # no VAE: not compared
    comparisons = model_comparisons(rows)
    assert [(c["dataset"], c["over"], c["n_a"]) for c in comparisons] == [("kanizsa", "seeds", 5),
                                                                         ("closure", "images", 100)]
    seeds = scipy.stats.ttest_ind([0.80, 0.82, 0.79, 0.81, 0.80], [0.70, 0.71, 0.69, 0.72, 0.70])
    assert comparisons[0]["p"] == pytest.approx(seeds.pvalue)
    assert comparisons[0]["p_bonferroni"] == pytest.approx(min(1.0, 2 * seeds.pvalue))
    assert comparisons[0]["star"] and not comparisons[1]["star"] and comparisons[1]["p"] == pytest.approx(1.0)
    table = format_table(rows).splitlines()
    assert table[0].rstrip().endswith("ae vs vae p")
    assert table[2].rstrip().endswith(" *") and table[3].rstrip().endswith("1") and table[4].rstrip().endswith("-")
    assert "Bonferroni-adjusted over 2 datasets" in table[-1]


def test_coherence_in_closed_form():
    """Background pixels at a +- e (2 dims), the object's at b exactly: spreads e^2 and 0, separation ||b - a||^2."""
    from noisegroup.lns.coherence import coherence, summary

    masks = np.zeros((2, 4, 4), np.int32)
    masks[:, :2, :2] = 1  # a 4-pixel object
    masks[1, 3, 2:] = 2  # a second, 2-pixel object in image 1
    a, b, c, e = np.array([1.0, 0.0]), np.array([0.0, 2.0]), np.array([3.0, 0.0]), 0.5
    features = np.zeros((2, 16, 2))
    for i in range(2):
        m = masks[i].ravel()
        background = np.flatnonzero(m == 0)
        features[i, background] = a + e * np.where(np.arange(len(background))[:, None] % 2, 1.0, -1.0) * [1, 0]
        features[i, m == 1], features[i, m == 2] = b, c
    out = coherence(features, masks)
    np.testing.assert_allclose(out["background_spread"], [e**2, e**2])
    np.testing.assert_allclose(out["object_spread"], [0.0, 0.0])
    np.testing.assert_allclose(out["separation"], [5.0, (5.0 + 4.0) / 2])
    np.testing.assert_allclose(out["ratio"], [e**2 / 5.0, e**2 / 4.5])
    assert summary(features, masks)["separation"] == pytest.approx(4.75)
    only_background = coherence(features[:1], np.zeros((1, 4, 4), np.int32))
    assert only_background["background_spread"][0] == pytest.approx(features[0].var(axis=0).sum())
    assert np.isnan(only_background["ratio"][0]) and np.isnan(only_background["object_spread"][0])
    with pytest.raises(ValueError, match=r"must match, got \(2, 16, 2\) and \(2, 3, 3\)"):
        coherence(features, np.zeros((2, 3, 3), np.int32))


def test_lns_curve_segments_every_kept_checkpoint(tmp_path):
    run = tmp_path / "run"
    train = subprocess.run([sys.executable, "-m", "experiments.train", "--config=experiments/configs/train.py:quick",
                            "--config.dataset=proximity", "--config.keep_checkpoints=10", f"--workdir={run}"],
                           cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert train.returncode == 0, train.stderr[-3000:]
    command = [sys.executable, "-m", "experiments.lns_curve", f"--runs={run}", "--test_limit=4", "--noise_stds=0.1",
               "--num_noise_samples=3"]
    curve = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert curve.returncode == 0, curve.stderr[-3000:]
    points = json.loads((run / "curve.json").read_text())["points"]
    assert [p["step"] for p in points] == [4, 8, 12]  # the quick config checkpoints every 4 steps
    for p in points:
        assert -1.0 <= p["ari"] <= 1.0 and p["setting"] == [0.1, 3] and p["mse"] > 0
        assert set(p["coherence"]) == {"background_spread", "object_spread", "separation", "ratio"}
        assert 0.0 <= p["coherence"]["background_spread"] <= 6.0 and p["coherence"]["ratio"] >= 0.0
    assert (run / "curve.png").stat().st_size > 5_000
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)  # nothing left to do
    assert again.returncode == 0 and json.loads((run / "curve.json").read_text())["points"] == points
