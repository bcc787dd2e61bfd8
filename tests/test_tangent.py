"""Tangent-limit LNS: the layers' impl switch, the Jacobian against finite differences, the finite-N
theory against Monte Carlo, the LNS Gram matrix converging to the tangent one, bad input, the pipeline end to end."""

import dataclasses
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from noisegroup.lns import pipeline, results, tangent
from noisegroup.models import layers as L


class TinyAE(nnx.Module):
    """An 8 x 8 x 3 autoencoder through every fast conv form: a strided conv, a strided transposed conv and a
    'same' conv with an RGB side. tanh, not ReLU, so that finite differences see a smooth function."""

    def __init__(self, latent_dim: int = 4, *, impl: str = "fast", rngs: nnx.Rngs):
        self.latent_dim = latent_dim
        self.enc_conv = L.Conv(3, 6, 3, 1, 1, impl=impl, rngs=rngs)  # 'same', narrow input
        self.enc_down = L.Conv(6, 8, 4, 2, 1, impl=impl, rngs=rngs)  # 8 -> 4
        self.enc_out = L.Linear(4 * 4 * 8, latent_dim, rngs=rngs)
        self.dec_in = L.Linear(latent_dim, 4 * 4 * 8, rngs=rngs)
        self.dec_up = L.ConvTranspose(8, 6, 4, 2, 1, impl=impl, rngs=rngs)  # 4 -> 8
        self.dec_down = L.Conv(6, 6, 4, 2, 1, impl=impl, rngs=rngs)  # 8 -> 4
        self.dec_up2 = L.ConvTranspose(6, 6, 4, 2, 1, impl=impl, rngs=rngs)  # 4 -> 8
        self.dec_out = L.ConvTranspose(6, 3, 3, 1, 1, impl=impl, rngs=rngs)  # 'same', narrow output

    def encode(self, images):
        x = jnp.tanh(self.enc_down(jnp.tanh(self.enc_conv(images))))
        return {"mean": self.enc_out(x.reshape(x.shape[0], -1))}

    def decode(self, latents):
        x = jnp.tanh(self.dec_in(latents)).reshape(latents.shape[0], 4, 4, 8)
        x = jnp.tanh(self.dec_up2(jnp.tanh(self.dec_down(jnp.tanh(self.dec_up(x))))))
        return self.dec_out(x)


def _normal(seed, *shape):
    """Standard normal float32 from NumPy (a new shape of `jax.random.normal` costs a compilation)."""
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


@pytest.fixture(scope="module")
def tiny():
    """(graphdef, params): shapes from `nnx.eval_shape`, values drawn with NumPy at fan-in scale (no compilation)."""
    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: TinyAE(rngs=nnx.Rngs(params=0))), nnx.Param)
    rng = np.random.default_rng(0)

    def draw(leaf):
        scale = 0.1 if len(leaf.shape) == 1 else 1.5 / math.sqrt(math.prod(leaf.shape[:-1]))
        return jnp.asarray(scale * rng.normal(size=leaf.shape), jnp.float32)

    return graphdef, jax.tree.map(draw, abstract)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(1).uniform(size=(3, 8, 8, 3)).astype(np.float32)


# --- the layers' impl switch ----------------------------------------------------------------------------------------


def test_with_conv_impl_switches_every_layer(tiny):
    graphdef, params = tiny
    model = L.with_conv_impl(nnx.merge(graphdef, params), "fast_jvp")
    impls = {m.impl for _, m in nnx.iter_modules(model) if isinstance(m, (L.Conv, L.ConvTranspose))}
    assert impls == {"fast_jvp"}
    with pytest.raises(ValueError, match="'slow'"):
        L.with_conv_impl(model, "slow")


# --- the Jacobian and the features ---------------------------------------------------------------------------------


def test_jacobian_equals_finite_differences_and_native_layers(tiny, images):
    graphdef, params = tiny
    jac, recon = tangent.jacobians(graphdef, params, images)
    chex.assert_shape(jac, (3, 4, 8, 8, 3))
    model = nnx.merge(graphdef, params)
    means = model.encode(jnp.asarray(images))["mean"]
    np.testing.assert_allclose(recon, jax.nn.sigmoid(model.decode(means)), atol=1e-6)
    h = 1e-2  # central differences: O(h^2) error, float32 rounding ~1e-7 / h
    for k in range(4):
        e = jnp.zeros(4).at[k].set(h)
        fd = (jax.nn.sigmoid(model.decode(means + e)) - jax.nn.sigmoid(model.decode(means - e))) / (2 * h)
        np.testing.assert_allclose(jac[:, k], fd, atol=2e-4 * float(jnp.abs(jac).max()) + 1e-6)
    native, _ = tangent.jacobians(graphdef, params, images, conv_impl="native")
    np.testing.assert_allclose(jac, native, atol=1e-5 * float(jnp.abs(jac).max()))


@pytest.mark.parametrize("normalisation", ["channel", "pixel"])
def test_tangent_features_layout_and_norms(tiny, images, normalisation):
    graphdef, params = tiny
    feats = np.asarray(tangent.tangent_features(graphdef, params, images, normalisation))
    chex.assert_shape(feats, (3, 64, 12))
    jac, _ = tangent.jacobians(graphdef, params, images)
    # Index = latent direction * 3 + channel, pixels row-major: the layout of `difference_features`.
    j = np.asarray(jac)[1]  # [z, h, w, c]
    pixel = 2 * 8 + 5
    row = j[:, 2, 5, :]  # [z, c]
    expected = row / np.linalg.norm(row, axis=0 if normalisation == "channel" else None, keepdims=True)
    np.testing.assert_allclose(feats[1, pixel].reshape(4, 3), expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=-1), math.sqrt(3) if normalisation == "channel" else 1.0,
                               rtol=1e-4)


def test_saturated_decoder_gives_zero_rows_not_nan(tiny, images):
    graphdef, params = tiny
    model = nnx.merge(graphdef, params)
    model.dec_out.bias[...] = jnp.array([0.0, 1e3, 0.0])  # channel 1 saturated: sigmoid'(1e3) = 0 in float32
    _, saturated = nnx.split(model, nnx.Param)
    feats = np.asarray(tangent.tangent_features(graphdef, saturated, images)).reshape(3, 64, 4, 3)
    assert np.isfinite(feats).all()
    assert not feats[..., 1].any() and np.abs(feats[..., 0]).sum() > 0


# --- the finite-N, finite-sigma bridge ------------------------------------------------------------------------------


def test_finite_n_second_moments_by_monte_carlo():
    """Cov(delta_n, delta_m) = C_nm I, E[D D^T] = 2(N-1) sigma^2 J J^T, E||W||^2 = z(z+1)(6N-8)/(4(N-1)^2)."""
    z, n, draws, sigma = 3, 6, 40_000, 0.1
    eps = np.asarray(_normal(0, draws, n, z), np.float64)
    delta = eps[:, :-1] - eps[:, 1:]  # [draws, n-1, z]
    cov = np.einsum("dtz,duz->tu", delta, delta) / (draws * z)
    np.testing.assert_allclose(cov, tangent.difference_covariance(n), atol=0.03)
    np.testing.assert_allclose(tangent.difference_covariance(n), 2 * np.eye(n - 1) - np.eye(n - 1, k=1)
                               - np.eye(n - 1, k=-1))
    jac = np.asarray(_normal(1, z, 2, 3, 3), np.float64)  # [z, h, w, c]: 6 pixels
    rows = jac.reshape(z, 6, 3).transpose(2, 1, 0)  # [c, p, z]
    d = sigma * np.einsum("cpz,dtz->dcpt", rows, delta)  # [draws, c, p, n-1]
    empirical = np.einsum("dcpt,dcqt->cpq", d, d) / draws
    expected = np.asarray(tangent.expected_difference_gram(jnp.asarray(jac, jnp.float32), sigma, n))
    scale = np.abs(expected).max()
    np.testing.assert_allclose(empirical, expected, atol=0.03 * scale)  # MC error ~ sqrt(1.5 / draws) x a few
    w = np.einsum("dtz,dty->dzy", delta, delta) / (2 * (n - 1)) - np.eye(z)
    fluctuation = (w**2).sum(axis=(1, 2)).mean()
    assert fluctuation == pytest.approx(tangent.gram_fluctuation(z, n), rel=0.05)
    # Independent differences would give z (z + 1) 4 (N - 1) / (4 (N - 1)^2): the correlation costs 1.5x here.
    assert tangent.gram_fluctuation(z, n) / (z * (z + 1) / (n - 1)) == pytest.approx((6 * n - 8) / (4 * (n - 1)))


def test_gram_distance_equals_explicit_gram():
    a, b = _normal(0, 2, 50, 6), _normal(1, 2, 50, 9)
    explicit = jnp.linalg.norm(tangent.gram(a) - tangent.gram(b), axis=(-2, -1)) / jnp.linalg.norm(
        tangent.gram(b), axis=(-2, -1))
    np.testing.assert_allclose(tangent.gram_distance(a, b), explicit, rtol=1e-4)
    np.testing.assert_allclose(tangent.gram_distance(b, b), 0.0, atol=1e-3)


def test_lns_gram_approaches_the_tangent_gram(tiny, images):
    """Distance = curvature O(sigma) + finite-N floor O(1/sqrt(N)): the floor is the sigma -> 0 limit with the same
    draws, it shrinks like 1/sqrt(N), and at small sigma the decoded LNS Gram sits on it."""
    graphdef, params = tiny
    sigmas, counts = (0.3, 0.03, 0.003), (5, 50, 500)
    out = tangent.bridge(graphdef, params, images[:2], jax.random.key(3), sigmas, counts)
    distance, floor = out["distance"].mean(-1), out["linear_limit"].mean(-1)  # [s, n], [n]
    chex.assert_shape(out["distance"], (3, 3, 2))
    # The floor shrinks as 1/sqrt(N) (within a factor 2 of the theory's scale), so N=500 is ~10x under N=5.
    ratio = floor / out["expected_fluctuation"]
    assert ratio.max() / ratio.min() < 2.0, (floor, out["expected_fluctuation"])
    assert floor[2] < 0.2 * floor[0]
    # At each N, the LNS distance approaches the floor as sigma shrinks, the gap about linear in sigma.
    gap = np.abs(distance - floor[None])  # [s, n]
    assert np.all(gap[2] < 0.1 * floor), (distance, floor)
    assert np.all(gap[2] <= gap[1] + 1e-3) and gap[0, 2] > gap[2, 2]
    # Small sigma, large N: the LNS Gram is the tangent Gram to within the 1/sqrt(500) floor.
    assert distance[2, 2] < 2.5 * out["expected_fluctuation"][2]


# --- bad input --------------------------------------------------------------------------------------------------------


def test_bad_input_is_named(tiny, images):
    graphdef, params = tiny
    with pytest.raises(ValueError, match=r"\[n, h, w, c\]"):
        tangent.tangent_features(graphdef, params, images[0])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        tangent.tangent_features(graphdef, params, images * 2)
    with pytest.raises(ValueError, match="float32"):
        tangent.tangent_features(graphdef, params, images.astype(np.float64))
    with pytest.raises(ValueError, match="'time'"):
        tangent.tangent_features(graphdef, params, images, "time")
    with pytest.raises(ValueError, match="'slow'"):
        tangent.tangent_features(graphdef, params, images, conv_impl="slow")
    with pytest.raises(ValueError, match="'jacobian'"):
        tangent.check_features_kind("jacobian")
    with pytest.raises(ValueError, match="'jacobian'"):  # before any work: the datasets are never looked at
        pipeline.LNSConfig.from_mapping({"features": "jacobian", "datasets": ("no_such_dataset",)})
    with pytest.raises(ValueError, match="masks"):
        tangent.evaluate(graphdef, jax.tree.map(lambda x: x[None], params), images, np.zeros((3, 4, 4), int),
                         jax.random.key(0))


# --- the pipeline --------------------------------------------------------------------------------------------------


def test_tangent_pipeline_end_to_end(tmp_path):
    """The default config (shipped AE weights) with features=tangent on 4 Kanizsa test images: table, caches,
    figures; a second run loads the cache."""
    from experiments.configs import lns as lns_configs

    config = lns_configs.get_config("default").to_dict()
    config.update(datasets=("kanizsa",), models=("ae",), features="tangent", test_limit=4, noise_stds=(1e-2, 0.5),
                  num_noise_samples=(2, 5), umap_images=0, cluster_workers=1, progress=False)
    rows = pipeline.run(config, tmp_path)
    assert {(r["model"], r["protocol"]) for r in rows} == {("ae_tangent", "paper"), ("ae_tangent", "fair")}
    assert all(r["selection"] == "none" and r["noise_std"] is None and -1 <= r["ari"] <= 1 for r in rows)
    table = results.format_table(rows)
    assert "ae_tangent (paper)" in table and "*" in table and "no (sigma, N) setting" in table
    seg = np.load(results.segmentation_path(tmp_path, "ae", "kanizsa", "tangent"))
    assert seg["test_ari"].shape == (1, 4) and seg["labels"].shape == (4, 64, 64)
    assert seg["bridge_distance"].shape == (2, 2, pipeline.BRIDGE_IMAGES)
    assert not (tmp_path / "segmentation" / "ae_kanizsa.npz").exists()  # LNS's cache untouched
    for figure in ("segmentations_tangent.png", "reconstructions.png", "jacobian_rows.png", "gram_bridge.png"):
        assert (tmp_path / figure).stat().st_size > 10_000
    assert pipeline.run(config, tmp_path) == rows
    # The fingerprint includes `features`.
    c = pipeline.LNSConfig.from_mapping(config)
    assert c.fingerprint({}) != dataclasses.replace(c, features="lns").fingerprint({})


def test_vae_jacobian_is_taken_at_the_posterior_mean():
    """The library's beta-VAE (quick widths, random weights): J at mu (the log-variance and sampling play no part),
    against `jax.jvp` of sigmoid(decode(.)) at mu through XLA's native layers along a random direction. (Central
    differences are no oracle here: the ReLU decoder's kinks give O(h) errors, 20 % at h = 0.03, and float32 cannot
    resolve a smaller h.)"""
    from experiments.configs import train as train_configs
    from noisegroup.engine import loop

    config = {**train_configs.get_config("quick").to_dict(), "model": "vae"}
    _, trainer, _ = loop.build(config, (64, 64, 3))
    abstract = jax.eval_shape(lambda: trainer.init(jax.random.key(0)).params)  # shapes only: no compilation
    rng = np.random.default_rng(1)
    params = jax.tree.map(lambda leaf: jnp.asarray(
        (0.1 if len(leaf.shape) == 1 else 1.0 / math.sqrt(math.prod(leaf.shape[:-1]))) * rng.normal(size=leaf.shape),
        jnp.float32), abstract)
    image = jnp.asarray(rng.random((1, 64, 64, 3)), jnp.float32)
    jac, _ = tangent.jacobians(trainer.graphdef, params, image)
    model = L.with_conv_impl(nnx.merge(trainer.graphdef, params), "native")
    encoded = model.encode(image)
    assert "logvar" in encoded  # a VAE: the point is mu, not a sample
    v = jnp.asarray(rng.normal(size=encoded["mean"].shape[-1]), jnp.float32)
    _, want = jax.jvp(lambda z: jax.nn.sigmoid(model.decode(z)), (encoded["mean"],), (v[None],))
    got = jnp.einsum("bkhwc,k->bhwc", jac, v)
    assert float(jnp.linalg.norm(got - want) / jnp.linalg.norm(want)) < 1e-4
