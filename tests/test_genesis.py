"""GENESIS and GENESIS-v2 (spec `genesis_reference.md`): parameter counts (spec A.12 / B.10, by `nnx.eval_shape`, so
nothing is computed), the masks' invariants (spec E.4-E.7), the losses against closed forms and Monte-Carlo limits
(E.8, E.9, E.11, E.12; the learned prior's KL and causality; the per-channel and per-pixel mixtures), the IC-SBP
against a NumPy statement (both seed rules), GECO against its recurrence (E.13), the transposed convolution's fast
forms against the dilated convolution and PyTorch's scatter definition (values and gradients), GroupNorm /
LayerNorm / BatchNorm against NumPy, the BatchNorm statistics GENESIS records and takes, and the errors of bad
configurations.

Small and few programs: one GENESIS program (32 x 32, K = 3, batch 2: initialisation, a forward with the batch's
statistics and one with given statistics) and one GENESIS-v2 program (16 x 16, K = 3, batch 2), each compiled once in
a module-scoped fixture that makes every call its tests look at."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from noisegroup.engine import config as engine_config
from noisegroup.engine.geco import Geco
from noisegroup.models import FAMILIES, GenesisFamily, GenesisV2Family
from noisegroup.models import genesis as G
from noisegroup.models import genesis_parts as P
from noisegroup.models import genesis_v2 as V2
from noisegroup.models.blocks import ConvTranspose, GroupNorm, LayerNorm
from noisegroup.models.genesis_parts import (
    AutoregressivePrior,
    clamp_preserve_gradients,
    gaussian_log_density,
    mixture_nll,
    monte_carlo_kl,
    parameter_count,
    prior_parameters,
    stick_breaking,
    to_sigma,
)

pytestmark = pytest.mark.usefixtures("highest_precision")  # exact float32 products (tests/conftest.py)

K = 3
SHAPE = (32, 32, 3)  # GENESIS
SHAPE_V2 = (16, 16, 3)  # GENESIS-v2
BATCH = 2
LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def _rng(seed):
    return np.random.default_rng(seed)


def _images_and_noise(family, shape, seed):
    """Images in [0, 1) `[BATCH, *shape]` and the family's noise for them, by jitted draws (NumPy's where eager)."""
    images = jnp.asarray(_rng(seed).uniform(size=(BATCH, *shape)), jnp.float32)
    noise = jax.jit(lambda key: family.sample_noise(key, {"images": images}))(jax.random.key(seed))
    return images, noise


def _arrays(family, outputs):
    """The family's outputs that are arrays (what a jitted function can return), and every loss term of them under
    "terms" (terms may read non-array outputs, e.g. a static switch)."""
    arrays = {k: v for k, v in outputs.items() if not isinstance(v, (str, bool, int, float))}
    return dict(arrays, terms={name: term(outputs) for name, term in family.loss_terms.items()})


def _abstract(family, shape=(64, 64, 3)):
    return nnx.eval_shape(lambda: family.build(shape, nnx.Rngs(params=jax.random.key(0))))


# The BatchNorm pairs GENESIS records, in call order (spec A.3, A.5): per gated layer with a norm (h, g). At 32 x 32
# the encoder E1..E5 (channels 32, 32, 64, 64, 64; sides 32, 16, 16, 8, 8 over b images), then the decoder D1..D5
# (64, 32, 32, 32, 32; sides 8, 16, 16, 32, 32 over K b slot images).
ENCODER_NORMS = [(32, 32), (32, 16), (64, 16), (64, 8), (64, 8)]
DECODER_NORMS = [(64, 8), (32, 16), (32, 16), (32, 32), (32, 32)]
NORM_LAYERS = [(c, BATCH * s * s) for c, s in ENCODER_NORMS for _ in "hg"] + \
              [(c, K * BATCH * s * s) for c, s in DECODER_NORMS for _ in "hg"]


@pytest.fixture(scope="module")
def genesis_runs():
    """Every GENESIS call the tests read, from one compiled program: outputs with the batch's statistics and with
    given statistics, for (a) constant statistics, (b) the recorded ones with the biased variance, and a repeat."""
    with jax.default_matmul_precision("highest"):
        family = GenesisFamily(num_slots=K)
        images, noise = _images_and_noise(family, SHAPE, 2)

        @jax.jit
        def run(images, noise, given):  # the model is built inside: one program, initialisation included
            model = family.build(SHAPE, nnx.Rngs(params=jax.random.key(0)))
            batch = {"images": images}
            return (_arrays(family, family.outputs(model, batch, noise)),
                    _arrays(family, family.outputs(model, batch, noise, norm_statistics=given)))

        # float32, not weakly typed: the biased pairs below must hit the same compiled program
        constant = tuple((jnp.full((c,), 0.5, jnp.float32), jnp.full((c,), 2.0, jnp.float32)) for c, _ in NORM_LAYERS)
        batch_out, constant_out = run(images, noise, constant)
        recorded = batch_out["norm_statistics"]
        biased = tuple((mean, var * (n - 1) / n) for (mean, var), (_, n) in zip(recorded, NORM_LAYERS))
        repeat, given_out = run(images, noise, biased)
        assert getattr(run, "_cache_size", lambda: 1)() == 1  # one compilation
        return {"family": family, "out": batch_out, "constant": constant_out, "given": given_out, "repeat": repeat,
                "biased": biased, "noise": noise}


@pytest.fixture(scope="module")
def v2_runs():
    """GENESIS-v2's outputs at initialisation (gate 0), a repeat, and a run with other seed scores (same latents)."""
    with jax.default_matmul_precision("highest"):
        family = GenesisV2Family(num_slots=K)
        images, noise = _images_and_noise(family, SHAPE_V2, 3)
        other = dict(noise, seed_scores=jnp.asarray(_rng(4).uniform(size=noise["seed_scores"].shape), jnp.float32))

        @jax.jit
        def run(noise):  # the model is built inside: one program, initialisation included
            model = family.build(SHAPE_V2, nnx.Rngs(params=jax.random.key(0)))
            return _arrays(family, family.outputs(model, {"images": images}, noise)), model.log_bandwidth[...]

        (out, log_bandwidth), (repeat, _), (reseeded, _) = run(noise), run(noise), run(other)
        assert getattr(run, "_cache_size", lambda: 1)() == 1
        return {"family": family, "out": out, "repeat": repeat, "reseeded": reseeded, "noise": noise, "other": other,
                "log_bandwidth": float(log_bandwidth)}


# --- parameter counts (spec A.12, B.10) -----------------------------------------------------------------------------


def test_genesis_parameter_counts_match_the_spec_table():
    model = _abstract(GenesisFamily())
    assert parameter_count(model) == 12_620_548
    assert parameter_count(model.encoder) == 8_958_656
    assert [parameter_count(layer) for layer in model.encoder] == [4_992, 51_392, 102_784, 205_184, 205_184,
                                                                    8_389_120]
    assert parameter_count(model.head_mean) == parameter_count(model.head_scale) == 16_448
    assert parameter_count(model.posterior_lstm) == 230_400
    assert parameter_count(model.posterior_out) == 16_512
    assert [parameter_count(layer) for layer in model.decoder] == [2_097_280, 205_184, 102_592, 51_392, 51_392,
                                                                    51_392]
    assert parameter_count(model.decoder) == 2_559_232
    assert parameter_count(model.decoder_out) == 33
    assert parameter_count(model.component_encoder) == 336_480
    assert parameter_count(model.component_decoder) == 33_059
    assert parameter_count(model.mask_prior.lstm) == 329_728
    assert parameter_count(model.mask_prior.out) == 32_896
    assert parameter_count(model.component_prior) == 90_656
    assert [parameter_count(layer) for layer in model.component_prior] == [16_640, 65_792, 8_224]


def test_genesis_v2_parameter_counts_match_the_spec_table():
    model = _abstract(GenesisV2Family())
    assert parameter_count(model) == 2_729_422
    assert parameter_count(model.encoder) == 1_836_864
    assert [parameter_count(block) for block in model.encoder.down] == [1_856, 36_992, 73_984, 147_712, 147_712]
    assert parameter_count(model.encoder.mlp) == 542_976
    assert [parameter_count(block) for block in model.encoder.up] == [295_168, 295_168, 147_584, 73_856, 73_856]
    assert parameter_count(model.seg_head) == 36_992
    assert parameter_count(model.colour_head) + int(model.gate.size) == 521
    assert int(model.log_bandwidth.size) == 1
    assert parameter_count(model.feat_head) + parameter_count(model.feat_out) == 45_312
    assert parameter_count(model.z_norm) + parameter_count(model.z_hidden) + parameter_count(model.z_out) == 33_280
    decoder = parameter_count(model.decoder) + parameter_count(model.decoder_norms) + parameter_count(model.decoder_out)
    assert decoder == 413_828
    assert parameter_count(model.decoder[0]) + parameter_count(model.decoder_norms[0]) == 105_792
    assert parameter_count(model.decoder_out) == 260
    assert parameter_count(model.prior.lstm) == 329_728
    assert parameter_count(model.prior.out) == 32_896


def test_parameter_counts_do_not_depend_on_the_number_of_slots():
    assert parameter_count(_abstract(GenesisFamily(num_slots=2))) == 12_620_548
    assert parameter_count(_abstract(GenesisFamily(num_slots=9))) == 12_620_548
    assert parameter_count(_abstract(GenesisV2Family(num_slots=2))) == 2_729_422
    assert parameter_count(_abstract(GenesisV2Family(num_slots=9))) == 2_729_422


def test_families_are_registered():
    assert FAMILIES["genesis"] is GenesisFamily
    assert FAMILIES["genesis_v2"] is GenesisV2Family


# --- GENESIS: outputs and masks (spec E.1, E.4, E.5, E.7) -----------------------------------------------------------


def test_genesis_outputs_have_the_documented_shapes(genesis_runs):
    out = genesis_runs["out"]
    b, (s, _, c) = BATCH, SHAPE
    shapes = {name: out[name].shape for name in ("images", "log_masks", "mask_logits", "means", "reconstruction",
                                                  "mask_kl", "component_kl", "pixel_std")}
    assert shapes == {"images": (b, s, s, c), "log_masks": (b, K, s, s), "mask_logits": (b, K, s, s),
                      "means": (b, K, s, s, c), "reconstruction": (b, s, s, c), "mask_kl": (b, K),
                      "component_kl": (b, K), "pixel_std": (K,)}
    for name in ("log_masks", "means", "mask_kl", "component_kl"):
        assert np.all(np.isfinite(out[name])), name
    np.testing.assert_allclose(out["pixel_std"], 0.7, rtol=1e-7)
    means = np.asarray(out["means"])
    assert means.min() > 0 and means.max() < 1  # sigmoid RGB


def test_genesis_masks_sum_to_one_and_follow_the_stick_breaking_of_the_logits(genesis_runs):
    out = genesis_runs["out"]
    log_masks, logits = np.asarray(out["log_masks"], np.float64), np.asarray(out["mask_logits"], np.float64)
    np.testing.assert_allclose(np.exp(log_masks).sum(axis=1), 1.0, atol=1e-5)
    log_sigmoid = lambda a: -np.logaddexp(0.0, -a)
    np.testing.assert_allclose(log_masks[:, 0], log_sigmoid(logits[:, 0]), atol=1e-5)  # m_1 = sigmoid(a_1)
    for k in range(1, K - 1):  # m_k = sigmoid(a_k) prod_{j<k} sigmoid(-a_j)
        expected = log_sigmoid(logits[:, k]) + log_sigmoid(-logits[:, :k]).sum(axis=1)
        np.testing.assert_allclose(log_masks[:, k], expected, atol=1e-5)
    # log m_K = sum_{j<K} log sigmoid(-a_j): the K-th logit is unused
    np.testing.assert_allclose(log_masks[:, K - 1], log_sigmoid(-logits[:, :K - 1]).sum(axis=1), atol=1e-5)
    recon = (np.exp(log_masks)[..., None] * np.asarray(out["means"], np.float64)).sum(axis=1)
    np.testing.assert_allclose(out["reconstruction"], recon, atol=1e-5)


def test_stick_breaking_ignores_the_last_logit():
    logits = jnp.asarray(_rng(0).normal(size=(2, 4, 3, 3)) * 3, jnp.float32)

    def masks(a):  # GENESIS's use: the first K - 1 logits make K masks
        steps = a[:, :-1]
        return jnp.exp(stick_breaking(jax.nn.log_sigmoid(steps), jax.nn.log_sigmoid(-steps)))

    out = jax.jit(masks)(logits)
    assert out.shape == logits.shape
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-6)
    cotangent = jnp.asarray(_rng(1).normal(size=logits.shape), jnp.float32)
    grad = jax.jit(jax.grad(lambda a: jnp.sum(masks(a) * cotangent)))(logits)
    np.testing.assert_array_equal(grad[:, -1], 0.0)
    assert np.all(np.abs(np.asarray(grad[:, :-1])).max(axis=(2, 3)) > 0)  # the others matter


def _mixture_nlls(images, log_masks, means, sigma):
    """(per-channel, per-pixel) mixture NLLs `[b]` in NumPy float64: -sum_{i,c} log sum_k m_k N(x_ic) and
    -sum_i log sum_k m_k prod_c N(x_ic)."""
    x = np.asarray(images, np.float64)[:, None]
    mu = np.asarray(means, np.float64)
    sigma = np.asarray(sigma, np.float64)[None, :, None, None, None]
    density = np.exp(-((x - mu) ** 2) / (2 * sigma**2)) / (sigma * np.sqrt(2 * np.pi))
    masks = np.exp(np.asarray(log_masks, np.float64))
    return (-np.log((masks[..., None] * density).sum(axis=1)).sum(axis=(1, 2, 3)),
            -np.log((masks * density.prod(axis=-1)).sum(axis=1)).sum(axis=(1, 2)))


def test_genesis_nll_term_is_the_per_channel_mixture(genesis_runs):
    out = genesis_runs["out"]
    per_channel, _ = _mixture_nlls(out["images"], out["log_masks"], out["means"], out["pixel_std"])
    np.testing.assert_allclose(out["terms"]["nll"], per_channel, rtol=1e-5)
    np.testing.assert_allclose(out["terms"]["kl"], np.sum(out["mask_kl"] + out["component_kl"], axis=1), rtol=1e-6)


def _stub_model(log_masks, means, decoder_log_masks=None):
    """A stand-in for the network in `family.outputs(model, batch, noise)`: returns the given masks and means."""
    def model(images, noise, *statistics):
        del images, noise, statistics
        out = {"log_masks": log_masks, "means": means, "mask_kl": jnp.zeros(log_masks.shape[:2]),
               "component_kl": jnp.zeros(log_masks.shape[:2]), "latent_kl": jnp.zeros(log_masks.shape[:2])}
        if decoder_log_masks is not None:
            out["decoder_log_masks"] = decoder_log_masks
        return out
    return model


@pytest.mark.parametrize("family_cls", [GenesisFamily, GenesisV2Family])
def test_family_nll_is_the_configured_mixture_of_the_right_masks(family_cls):
    """With far-apart slot means (the models' means nearly agree at initialisation) the per-channel mixture (the
    official default, spec D.18) and the per-pixel one differ; GENESIS-v2 mixes with the decoder masks."""
    rng = _rng(21)
    b, s = 2, 4
    images = jnp.asarray(rng.uniform(size=(b, s, s, 3)), jnp.float32)
    means = jnp.asarray(np.broadcast_to(np.asarray([0.1, 0.5, 0.9])[None, :, None, None, None], (b, K, s, s, 3)),
                        jnp.float32)
    masks = [jax.nn.log_softmax(jnp.asarray(rng.normal(size=(b, K, s, s)) * 2, jnp.float32), axis=1) for _ in "ab"]
    v2 = family_cls is GenesisV2Family
    model = _stub_model(masks[1], means, masks[0]) if v2 else _stub_model(masks[0], means)
    sigma = np.full(K, 0.7)
    per_channel, per_pixel = _mixture_nlls(images, masks[0], means, sigma)
    assert np.all(np.abs(per_pixel - per_channel) > 1e-3 * np.abs(per_channel))  # 100 x the tolerance
    other_masks, _ = _mixture_nlls(images, masks[1], means, sigma)
    assert np.all(np.abs(other_masks - per_channel) > 1e-3 * np.abs(per_channel))
    for mixture, expected in ((None, per_channel), ("per_channel", per_channel), ("per_pixel", per_pixel)):
        family = family_cls(num_slots=K) if mixture is None else family_cls(num_slots=K, mixture=mixture)
        outputs = family.outputs(model, {"images": images}, None)
        np.testing.assert_allclose(family.loss_terms["nll"](outputs), expected, rtol=1e-5, err_msg=str(mixture))


def test_genesis_forward_is_deterministic_with_fixed_noise(genesis_runs):
    out, repeat = genesis_runs["out"], genesis_runs["repeat"]
    for name in ("log_masks", "means", "mask_kl", "component_kl", "reconstruction"):
        np.testing.assert_array_equal(out[name], repeat[name], err_msg=name)


# --- GENESIS: BatchNorm statistics ----------------------------------------------------------------------------------


def test_genesis_records_twenty_norm_statistics_in_layer_order(genesis_runs):
    recorded = genesis_runs["out"]["norm_statistics"]
    assert len(recorded) == 20  # 10 gated layers with a norm, h and g each (spec A.12)
    assert [(m.shape, v.shape) for m, v in recorded] == [((c,), (c,)) for c, _ in NORM_LAYERS]
    assert all(np.all(np.asarray(v) > 0) for _, v in recorded)


def test_genesis_normalises_with_given_statistics(genesis_runs):
    out, constant, given = genesis_runs["out"], genesis_runs["constant"], genesis_runs["given"]
    # the given pairs are what the pass normalised with
    assert len(constant["norm_statistics"]) == 20
    np.testing.assert_array_equal(constant["norm_statistics"][0][1], 2.0)
    # constant statistics change the masks
    assert float(jnp.max(jnp.abs(constant["log_masks"] - out["log_masks"]))) > 1e-2
    np.testing.assert_allclose(jnp.exp(constant["log_masks"]).sum(axis=1), 1.0, atol=1e-5)
    # the recorded statistics with the variance made biased again normalise as the batch did: each recorded pair
    # is its layer's (mean, n / (n - 1) biased variance)
    np.testing.assert_allclose(given["log_masks"], out["log_masks"], atol=2e-3)
    np.testing.assert_allclose(given["means"], out["means"], atol=2e-4)
    for (mean, var), (b_mean, b_var) in zip(given["norm_statistics"], genesis_runs["biased"]):
        np.testing.assert_array_equal(mean, b_mean)
        np.testing.assert_array_equal(var, b_var)


def test_batchnorm_records_the_unbiased_variance_and_normalises_with_the_biased_one():
    x = _rng(3).normal(size=(2, 3, 3, 4)) * np.array([1.0, 2.0, 0.5, 3.0]) + np.array([0.0, 1.0, -2.0, 5.0])
    norm = G.BatchNorm(4)
    scale, bias = _rng(4).normal(size=4), _rng(5).normal(size=4)
    norm.scale[...] = jnp.asarray(scale, jnp.float32)
    norm.bias[...] = jnp.asarray(bias, jnp.float32)
    statistics = G.NormStatistics()
    y = norm(jnp.asarray(x, jnp.float32), statistics)
    flat = x.reshape(-1, 4)
    assert len(statistics.seen) == 1
    mean, var = statistics.seen[0]
    np.testing.assert_allclose(mean, flat.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(var, flat.var(axis=0, ddof=1), rtol=1e-5)  # n / (n - 1) times the biased one
    expected = (x - flat.mean(axis=0)) / np.sqrt(flat.var(axis=0) + 1e-5) * scale + bias
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    # given statistics are used as they are (the variance as a variance)
    given = [(jnp.asarray([0.5, -1.0, 0.0, 2.0]), jnp.asarray([4.0, 1.0, 0.25, 9.0]))]
    statistics = G.NormStatistics(given)
    y = norm(jnp.asarray(x, jnp.float32), statistics)
    expected = (x - np.asarray(given[0][0])) / np.sqrt(np.asarray(given[0][1]) + 1e-5) * scale + bias
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    assert len(statistics.seen) == 1


# --- GENESIS-v2: masks, embeddings, seeds (spec E.2, E.4, E.6, E.7) -------------------------------------------------


def _alphas(log_masks):
    """alpha_k = m_k / s_{k-1} with s_{k-1} = sum_{j>=k} m_j, k = 1 .. K - 1: `[b, K - 1, ...]` (float64)."""
    log_masks = np.asarray(log_masks, np.float64)
    scopes = np.logaddexp.accumulate(log_masks[:, ::-1], axis=1)[:, ::-1]  # log s_{k-1}
    return np.exp(log_masks[:, :-1] - scopes[:, :-1])


def _icsbp_numpy(embeddings, scores, num_slots, log_bandwidth, categorical=False):
    """The IC-SBP of spec B.5 (Gaussian kernel) in float64: log masks `[b, K, h w]`. Seeds argmax_i r_i s(i) (the
    official rule), or with `categorical` argmax_i log s(i) - log(-log r_i) (Gumbel-max: a draw from s / sum s)."""
    u = np.asarray(embeddings, np.float64)
    b = u.shape[0]
    u = u.reshape(b, -1, u.shape[-1])
    scores = np.asarray(scores, np.float64)
    out = []
    for i in range(b):
        log_scope, log_masks = np.zeros(u.shape[1]), []
        for _ in range(num_slots - 1):
            if categorical:
                seed = np.argmax(log_scope - np.log(-np.log(scores[i])))
            else:
                seed = np.argmax(scores[i] * np.exp(log_scope))
            alpha = np.clip(np.exp(-((u[i] - u[i, seed]) ** 2).sum(-1) / np.exp(log_bandwidth)), 0.01, 0.99)
            log_masks.append(log_scope + np.log(alpha))
            log_scope = log_scope + np.log1p(-alpha)
        out.append(np.stack(log_masks + [log_scope]))
    return np.stack(out)


def test_v2_outputs_have_the_documented_shapes(v2_runs):
    out = v2_runs["out"]
    b, (s, _, c) = BATCH, SHAPE_V2
    shapes = {name: out[name].shape for name in ("log_masks", "decoder_log_masks", "means", "reconstruction",
                                                  "latent_kl", "embeddings")}
    assert shapes == {"log_masks": (b, K, s, s), "decoder_log_masks": (b, K, s, s), "means": (b, K, s, s, c),
                      "reconstruction": (b, s, s, c), "latent_kl": (b, K), "embeddings": (b, s, s, 8)}
    for name in shapes:
        assert np.all(np.isfinite(out[name])), name


def test_v2_masks_sum_to_one(v2_runs):
    for run in ("out", "reseeded"):
        out = v2_runs[run]
        np.testing.assert_allclose(jnp.exp(out["log_masks"]).sum(axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(jnp.exp(out["decoder_log_masks"]).sum(axis=1), 1.0, atol=1e-5)
    out = v2_runs["out"]
    recon = (jnp.exp(out["decoder_log_masks"])[..., None] * out["means"]).sum(axis=1)
    np.testing.assert_allclose(out["reconstruction"], recon, atol=1e-5)


def test_v2_embeddings_at_initialisation_are_the_pixel_coordinates(v2_runs):
    s = SHAPE_V2[0]
    grid = np.linspace(-1, 1, s)
    expected = np.zeros((s, s, 8))
    expected[..., 6] = grid[:, None]  # row, down the image
    expected[..., 7] = grid[None, :]  # column
    np.testing.assert_allclose(v2_runs["out"]["embeddings"], np.broadcast_to(expected, (BATCH, s, s, 8)), atol=1e-7)
    # the bandwidth starts at 1 / (K ln 2) (Gaussian kernel)
    np.testing.assert_allclose(v2_runs["log_bandwidth"], math.log(1 / (K * math.log(2))), rtol=1e-6)


def test_v2_icsbp_masks_clamp_alpha_and_seed_at_the_highest_score(v2_runs):
    for run, noise in (("out", "noise"), ("reseeded", "other")):
        log_masks, scores = v2_runs[run]["log_masks"], v2_runs[noise]["seed_scores"]
        alphas = _alphas(log_masks)
        assert alphas.min() >= 0.01 - 1e-5 and alphas.max() <= 0.99 + 1e-5
        # both clamps act at initialisation (far pixels: alpha ~ 0; the seed: alpha = 1)
        np.testing.assert_allclose([alphas.min(), alphas.max()], [0.01, 0.99], rtol=1e-4)
        masks = np.exp(np.asarray(log_masks, np.float64))
        assert masks.min() > 0
        assert masks[:, -1].min() >= 0.01 ** (K - 1) * (1 - 1e-4)
        # the first seed is the pixel of the highest score (the scope is 1 everywhere): its first mask is 0.99
        seeds = np.argmax(np.asarray(scores), axis=1)
        first = masks[:, 0].reshape(BATCH, -1)
        np.testing.assert_allclose(first[np.arange(BATCH), seeds], 0.99, rtol=1e-5)
        # and the masks are the IC-SBP of the model's embeddings (NumPy statement of spec B.5)
        expected = _icsbp_numpy(v2_runs[run]["embeddings"], scores, K, v2_runs["log_bandwidth"])
        np.testing.assert_allclose(np.asarray(log_masks).reshape(BATCH, K, -1), expected, atol=1e-4)


def test_v2_seed_scores_change_the_icsbp_masks(v2_runs):
    out, reseeded = v2_runs["out"], v2_runs["reseeded"]
    first_seeds = [np.argmax(v2_runs[name]["seed_scores"], axis=1) for name in ("noise", "other")]
    assert not np.array_equal(*first_seeds)
    assert float(jnp.max(jnp.abs(out["log_masks"] - reseeded["log_masks"]))) > 1.0
    np.testing.assert_array_equal(out["embeddings"], reseeded["embeddings"])  # the embeddings do not see r


def test_v2_forward_is_deterministic_with_fixed_noise(v2_runs):
    out, repeat = v2_runs["out"], v2_runs["repeat"]
    for name in ("log_masks", "decoder_log_masks", "means", "latent_kl", "embeddings"):
        np.testing.assert_array_equal(out[name], repeat[name], err_msg=name)


def test_v2_nll_reads_the_decoder_masks(v2_runs):
    out = v2_runs["out"]
    per_channel, _ = _mixture_nlls(out["images"], out["decoder_log_masks"], out["means"], out["pixel_std"])
    np.testing.assert_allclose(out["terms"]["nll"], per_channel, rtol=1e-5)
    # what would fail the check: the IC-SBP masks
    assert np.all(np.abs(_mixture_nlls(out["images"], out["log_masks"], out["means"], out["pixel_std"])[0]
                         - per_channel) > 1e-4 * np.abs(per_channel))
    np.testing.assert_allclose(out["terms"]["kl"], np.sum(out["latent_kl"], axis=1), rtol=1e-6)


@pytest.mark.parametrize("kernel", sorted(V2.KERNELS))
def test_icsbp_of_random_embeddings(kernel):
    rng = _rng(7)
    b, h, w, num_slots = 2, 6, 6, 4
    embeddings = jnp.asarray(rng.normal(size=(b, h, w, 8)) * 0.3, jnp.float32)
    scores = jnp.asarray(rng.uniform(size=(b, h * w)), jnp.float32)
    log_bandwidth = jnp.float32(math.log(V2.KERNELS[kernel][1](num_slots)))
    log_masks = jax.jit(V2.instance_colouring, static_argnums=(2, 4))(embeddings, scores, num_slots, log_bandwidth,
                                                                     kernel)
    assert log_masks.shape == (b, num_slots, h, w)
    np.testing.assert_allclose(jnp.exp(log_masks).sum(axis=1), 1.0, atol=1e-5)
    alphas = _alphas(log_masks)
    assert alphas.min() >= 0.01 - 1e-5 and alphas.max() <= 0.99 + 1e-5
    masks = np.exp(np.asarray(log_masks, np.float64)).reshape(b, num_slots, -1)
    seeds = np.argmax(np.asarray(scores), axis=1)
    np.testing.assert_allclose(masks[np.arange(b), 0, seeds], 0.99, rtol=1e-5)
    if kernel == "gaussian":
        np.testing.assert_allclose(log_masks.reshape(b, num_slots, -1),
                                   _icsbp_numpy(embeddings, scores, num_slots, float(log_bandwidth)), atol=1e-4)


def test_icsbp_categorical_seed_selection():
    rng = _rng(20)
    b, h, w, num_slots = 2, 6, 6, 4
    embeddings = jnp.asarray(rng.normal(size=(b, h, w, 8)) * 0.15, jnp.float32)  # broad masks: the rules differ
    scores = jnp.asarray(rng.uniform(0.001, 0.999, size=(b, h * w)), jnp.float32)
    log_bandwidth = jnp.float32(math.log(V2.KERNELS["gaussian"][1](num_slots)))
    colour = jax.jit(lambda u, r, l: (V2.instance_colouring(u, r, num_slots, l, "gaussian", "categorical"),
                                      V2.instance_colouring(u, r, num_slots, l, "gaussian")))
    categorical, official = colour(embeddings, scores, log_bandwidth)
    np.testing.assert_allclose(jnp.exp(categorical).sum(axis=1), 1.0, atol=1e-5)
    expected = _icsbp_numpy(embeddings, scores, num_slots, float(log_bandwidth), categorical=True)
    np.testing.assert_allclose(categorical.reshape(b, num_slots, -1), expected, atol=1e-4)
    # the first seed is the same (the scope is 1 everywhere and -log(-log r) increases with r); later ones differ
    np.testing.assert_allclose(categorical[:, 0], official[:, 0], atol=1e-6)
    assert float(jnp.max(jnp.abs(categorical - official))) > 1e-2


@pytest.mark.parametrize("kernel", sorted(V2.KERNELS))
def test_kernels_are_one_half_at_squared_distance_one_over_k(kernel):
    psi, sigma0 = V2.KERNELS[kernel]
    for k in (3, 5, 7):
        np.testing.assert_allclose(psi(jnp.float32(1.0 / k), jnp.float32(sigma0(k))), 0.5, rtol=1e-5)
    np.testing.assert_allclose(V2.KERNELS["gaussian"][1](5), 0.288539, rtol=1e-5)


def test_coordinate_grid():
    grid = np.asarray(V2.coordinate_grid(4))
    np.testing.assert_allclose(grid[:, 0, 0], [-1, -1 / 3, 1 / 3, 1], rtol=1e-6)  # rows first
    np.testing.assert_allclose(grid[0, :, 1], [-1, -1 / 3, 1 / 3, 1], rtol=1e-6)
    np.testing.assert_array_equal(grid[:, :, 0], grid[:, :1, 0].repeat(4, 1))
    # GENESIS's broadcast decoder: 72 x 72 at 64 x 64 (4 valid 3 x 3 convs), channel 16 the row, 17 the column
    decoder = _abstract(GenesisFamily()).component_decoder
    coordinates = np.asarray(decoder.coordinates())[0]
    assert coordinates.shape == (72, 72, 2)
    np.testing.assert_allclose(coordinates[:, 5, 0], np.linspace(-1, 1, 72), atol=1e-6)
    np.testing.assert_allclose(coordinates[5, :, 1], np.linspace(-1, 1, 72), atol=1e-6)


def test_clamp_preserve_gradients_clips_forward_and_passes_gradients():
    x = jnp.asarray([-1.0, 0.0, 0.005, 0.3, 0.99, 1.0, 2.0])
    # x + (clip(x) - x): exact up to float32 rounding of the sum (|x| ~ 1: ~1e-8)
    np.testing.assert_allclose(clamp_preserve_gradients(x, 0.01, 0.99), np.clip(np.asarray(x), 0.01, 0.99),
                               rtol=1e-6, atol=5e-8)
    weights = jnp.arange(1.0, 8.0)
    grad = jax.grad(lambda x: jnp.sum(weights * clamp_preserve_gradients(x, 0.01, 0.99)))(x)
    np.testing.assert_array_equal(grad, weights)  # 1 per element even where clamped


# --- closed forms (spec E.8, E.9, E.11, E.12) -----------------------------------------------------------------------


def test_mixture_nll_with_equal_means_is_independent_of_the_masks():
    rng = _rng(8)
    b, k, s = 2, 4, 64
    x = rng.uniform(size=(b, s, s, 3))
    mu = rng.uniform(size=(b, s, s, 3))
    means = jnp.asarray(np.broadcast_to(mu[:, None], (b, k, s, s, 3)), jnp.float32)
    sigma = jnp.full((k,), 0.7)
    n = s * s * 3
    expected = ((x - mu) ** 2).sum(axis=(1, 2, 3)) / (2 * 0.49) + n * (math.log(0.7) + LOG_SQRT_2PI)
    nll = jax.jit(mixture_nll)
    for seed in (0, 1):
        log_masks = jax.nn.log_softmax(jnp.asarray(_rng(seed).normal(size=(b, k, s, s)) * 4, jnp.float32), axis=1)
        np.testing.assert_allclose(nll(jnp.asarray(x, jnp.float32), log_masks, means, sigma), expected, rtol=1e-5)
    # x = mu: the constant 6,909.095 nats at sigma 0.7, N = 12,288
    log_masks = jax.nn.log_softmax(jnp.asarray(rng.normal(size=(1, k, s, s)), jnp.float32), axis=1)
    constant = nll(means[:1, 0], log_masks, means[:1], sigma)
    np.testing.assert_allclose(constant, [6909.095], rtol=1e-6)
    np.testing.assert_allclose(n * (math.log(0.7) + LOG_SQRT_2PI), 6909.095, atol=5e-4)


def test_mixture_nll_with_one_hot_masks_is_the_chosen_slots_gaussian():
    rng = _rng(9)
    b, k, s = 2, 3, 8
    x = rng.uniform(size=(b, s, s, 3))
    mu = rng.uniform(size=(b, k, s, s, 3))
    sigma = np.array([0.5, 0.7, 0.9])
    for j in range(k):
        log_masks = np.full((b, k, s, s), -np.inf)
        log_masks[:, j] = 0.0
        got = jax.jit(mixture_nll)(*(jnp.asarray(a, jnp.float32) for a in (x, log_masks, mu, sigma)))
        expected = (((x - mu[:, j]) ** 2) / (2 * sigma[j] ** 2) + math.log(sigma[j]) + LOG_SQRT_2PI).sum((1, 2, 3))
        np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_mixture_nll_per_pixel_mixes_rgb_vectors():
    rng = _rng(18)
    b, k, s = 2, 3, 5
    x, mu = rng.uniform(size=(b, s, s, 3)), rng.uniform(size=(b, k, s, s, 3))
    masks = rng.dirichlet(np.ones(k), size=(b, s, s)).transpose(0, 3, 1, 2)  # [b, k, h, w]
    sigma = np.array([0.5, 0.7, 0.9])[None, :, None, None, None]
    density = np.exp(-((x[:, None] - mu) ** 2) / (2 * sigma**2)) / (sigma * np.sqrt(2 * np.pi))
    args = [jnp.asarray(a, jnp.float32) for a in (x, np.log(masks), mu, sigma.ravel())]
    per_pixel = -np.log((masks * density.prod(axis=-1)).sum(axis=1)).sum(axis=(1, 2))
    got = jax.jit(lambda *a: (P.mixture_nll(*a, "per_pixel"), P.mixture_nll(*a, "per_channel"), P.mixture_nll(*a)))
    got_pixel, got_channel, got_default = got(*args)
    np.testing.assert_allclose(got_pixel, per_pixel, rtol=1e-5)
    per_channel = -np.log((masks[..., None] * density).sum(axis=1)).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(got_channel, per_channel, rtol=1e-5)
    np.testing.assert_allclose(got_default, per_channel, rtol=1e-5)  # the official default
    assert np.all(np.abs(per_pixel - per_channel) > 1e-2)  # the two differ for soft masks


def _gaussian_kl(q_mean, q_sigma, p_mean, p_sigma):
    return np.sum(np.log(p_sigma / q_sigma) + (q_sigma**2 + (q_mean - p_mean) ** 2) / (2 * p_sigma**2) - 0.5, -1)


def test_monte_carlo_kl_against_a_standard_normal():
    rng = _rng(10)
    d, n = 4, 200_000
    mu, sigma = rng.normal(size=d), rng.uniform(0.3, 1.5, size=d)
    eps = rng.normal(size=(n, d))
    z = mu + sigma * eps
    args = [jnp.asarray(a, jnp.float32) for a in (z, mu, sigma, np.zeros(d), np.ones(d))]
    kl = np.asarray(jax.jit(monte_carlo_kl)(*args), np.float64)
    # the per-sample identity (spec E.11)
    np.testing.assert_allclose(kl, np.sum(-np.log(sigma) - eps**2 / 2 + z**2 / 2, axis=-1), rtol=1e-4, atol=1e-4)
    analytic = 0.5 * np.sum(mu**2 + sigma**2 - 1 - np.log(sigma**2))
    assert abs(kl.mean() - analytic) < 4 * kl.std() / math.sqrt(n)
    # q = p: zero in expectation
    args = [jnp.asarray(a, jnp.float32) for a in (eps, np.zeros(d), np.ones(d), np.zeros(d), np.ones(d))]
    np.testing.assert_allclose(jax.jit(monte_carlo_kl)(*args), 0.0, atol=1e-6)


@pytest.fixture(scope="module")
def learned_prior():
    """An `AutoregressivePrior` (d = 4) at fixed z `[1, 3, 4]`: its (means, scales) and their Jacobian w.r.t. z, from
    one program."""
    with jax.default_matmul_precision("highest"):
        d, num_slots = 4, 3
        make = lambda key: AutoregressivePrior(d, rngs=nnx.Rngs(params=key))
        graphdef = nnx.split(nnx.eval_shape(lambda: make(jax.random.key(0))))[0]
        params = jax.jit(lambda key: nnx.state(make(key)))(jax.random.key(5))
        z = jnp.asarray(_rng(11).normal(size=(1, num_slots, d)), jnp.float32)

        @jax.jit
        def run(params, z):
            prior = lambda z: jnp.concatenate(nnx.merge(graphdef, params)(z), axis=-1)
            return prior(z), jax.jacobian(prior)(z)

        both, jacobian = run(params, z)
        mean, scale = np.split(np.asarray(both[0], np.float64), 2, axis=-1)
        return {"mean": mean, "scale": scale, "jacobian": np.asarray(jacobian)[0, :, :, 0], "d": d,
                "num_slots": num_slots}


def test_learned_prior_parameters(learned_prior):
    mean, scale = learned_prior["mean"], learned_prior["scale"]
    np.testing.assert_array_equal(mean[0], 0.0)  # p(z_1) = N(0, I)
    np.testing.assert_array_equal(scale[0], 1.0)
    assert np.abs(mean[1:]).max() < 1 and scale[1:].min() > 1e-4 and scale[1:].max() < 1.0001
    assert np.abs(mean[2] - mean[1]).max() > 1e-3  # the conditioning matters


def test_learned_prior_is_causal(learned_prior):
    # d (prior mean and scale of slot k) / d z_j is zero for j >= k, not for j < k
    jacobian = learned_prior["jacobian"]  # [K, 2d, K, d]
    for k in range(learned_prior["num_slots"]):
        for j in range(learned_prior["num_slots"]):
            block = np.abs(jacobian[k, :, j]).max()
            assert (block == 0) if j >= k else (block > 0), (k, j)


def test_monte_carlo_kl_against_the_learned_prior(learned_prior):
    """For fixed z_<k the prior of slot k is one Gaussian: the mean of log q(z) - log p(z) over z ~ q is the analytic
    KL(q || p) of that Gaussian."""
    d, n = learned_prior["d"], 100_000
    rng = _rng(12)
    kl_mc = jax.jit(monte_carlo_kl)
    for k in range(learned_prior["num_slots"]):
        p_mean, p_sigma = learned_prior["mean"][k], learned_prior["scale"][k]
        q_mean, q_sigma = rng.normal(size=d) * 0.5, rng.uniform(0.2, 1.0, size=d)
        samples = q_mean + q_sigma * rng.normal(size=(n, d))
        kl = np.asarray(kl_mc(*(jnp.asarray(a, jnp.float32) for a in (samples, q_mean, q_sigma, p_mean, p_sigma))),
                        np.float64)
        analytic = _gaussian_kl(q_mean, q_sigma, p_mean, p_sigma)
        assert analytic > 0.05
        assert abs(kl.mean() - analytic) < 4 * kl.std() / math.sqrt(n), (k, kl.mean(), analytic)


def test_analytic_gaussian_kl():
    rng = _rng(19)
    q_mean, p_mean = rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
    q_sigma, p_sigma = rng.uniform(0.2, 2, size=(3, 5)), rng.uniform(0.2, 2, size=(3, 5))
    args = [jnp.asarray(a, jnp.float32) for a in (q_mean, q_sigma, p_mean, p_sigma)]
    np.testing.assert_allclose(P.gaussian_kl(*args), _gaussian_kl(q_mean, q_sigma, p_mean, p_sigma), rtol=1e-5)
    np.testing.assert_allclose(P.gaussian_kl(args[0], args[1], args[0], args[1]), 0.0, atol=1e-6)
    z = jnp.zeros_like(args[0])
    np.testing.assert_array_equal(P.latent_kl("analytic", z, *args), P.gaussian_kl(*args))
    np.testing.assert_array_equal(P.latent_kl("monte_carlo", z, *args), monte_carlo_kl(z, *args))


def test_sigma_parameterisations():
    raw = jnp.asarray(_rng(14).uniform(-4, 4, size=(1000, 2)), jnp.float32)  # float32 tanh is 1 from ~9
    saturated = jnp.asarray([[-50.0, -50.0], [50.0, 50.0]])

    @jax.jit
    def run(raw, saturated):
        return (to_sigma(jnp.float32(0.0)), prior_parameters(jnp.zeros((2,))), prior_parameters(raw),
                prior_parameters(saturated), to_sigma(raw), gaussian_log_density(jnp.float32(1.0), 0.0, 2.0))

    sigma0, (mean0, prior_sigma0), (mean, sigma), (mean_sat, sigma_sat), sigmas, log_density = run(raw, saturated)
    np.testing.assert_allclose(sigma0, 0.974077, rtol=1e-6)
    np.testing.assert_allclose([mean0[0], prior_sigma0[0]], [0.0, 0.982114], atol=1e-6)
    assert float(sigma.min()) > 1e-4 and float(sigma.max()) < 1.0001
    assert float(jnp.abs(mean).max()) < 1
    # saturated raw values reach the bounds only by float32 rounding
    assert np.float32(1e-4) <= float(sigma_sat.min()) and float(sigma_sat.max()) <= np.float32(1.0) + np.float32(1e-4)
    assert float(jnp.abs(mean_sat).max()) <= 1
    raw = np.asarray(raw, np.float64)
    np.testing.assert_allclose(mean[:, 0], np.tanh(raw[:, 0]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sigma[:, 0], 1 / (1 + np.exp(-(raw[:, 1] + 4))) + 1e-4, rtol=1e-5)
    np.testing.assert_allclose(sigmas, np.log1p(np.exp(raw + 0.5)) + 1e-8, rtol=1e-5)
    np.testing.assert_allclose(log_density, -1 / 8 - math.log(2) - LOG_SQRT_2PI, rtol=1e-6)


# --- GECO (spec C.1, E.13) ------------------------------------------------------------------------------------------


def test_geco_constants_at_64_and_32():
    geco = Geco.for_images((64, 64, 3), goal_per_value=0.5655, step_size_64=1e-5)
    np.testing.assert_allclose(geco.goal, 6948.864, rtol=1e-12)
    np.testing.assert_allclose(geco.step_size, 1e-5, rtol=1e-12)
    assert (geco.alpha, geco.speedup, geco.beta_init, geco.beta_min, geco.beta_max) == (0.99, 10.0, 1.0, 1e-10, 1e10)
    small = Geco.for_images((32, 32, 3), goal_per_value=0.5655, step_size_64=1e-5)
    np.testing.assert_allclose([small.goal, small.step_size], [6948.864 / 4, 4e-5], rtol=1e-12)


def test_geco_follows_its_recurrence():
    geco = Geco.for_images((64, 64, 3), goal_per_value=0.5655, step_size_64=1e-5)
    update = jax.jit(geco.update)
    errs = [7948.864, 6848.864, 5000.0, 9000.0, 6948.864, 6000.0]
    state = geco.init()
    beta, ema = 1.0, None
    for i, err in enumerate(errs):
        state = update(state, jnp.float32(err))
        ema = err if ema is None else 0.01 * err + 0.99 * ema
        c = 6948.864 - ema
        beta = beta * math.exp((10 * 1e-5 if c > 0 else 1e-5) * c)
        np.testing.assert_allclose(state.ema, ema, rtol=1e-6, err_msg=str(i))
        np.testing.assert_allclose(state.beta, beta, rtol=1e-5, err_msg=str(i))
        if i == 0:  # the first update sets ema = err: 1000 above the goal -> beta exp(-1e-2)
            np.testing.assert_allclose(state.beta, math.exp(-1e-2), rtol=1e-6)
        assert bool(state.initialized)
    # ema = goal: beta unchanged; goal -+ 100: beta exp(+-rate 100), rate 1e-4 upwards, 1e-5 downwards
    for err, factor in ((6948.864, 1.0), (6848.864, math.exp(1e-2)), (7048.864, math.exp(-1e-3))):
        np.testing.assert_allclose(update(geco.init(), jnp.float32(err)).beta, factor, rtol=1e-6)
    # frozen: the ema moves, beta does not
    frozen = jax.jit(lambda s, e: geco.update(s, e, freeze_beta=True))(state, jnp.float32(0.0))
    np.testing.assert_allclose(frozen.beta, state.beta, rtol=0)
    np.testing.assert_allclose(frozen.ema, 0.99 * float(state.ema), rtol=1e-6)


def test_geco_clamps_beta():
    geco = Geco(goal=0.0, step_size=1.0)
    update = jax.jit(geco.update)
    low = update(geco.init(), jnp.float32(1000.0))  # beta exp(-1000) -> 1e-10
    np.testing.assert_allclose(low.beta, 1e-10, rtol=1e-6)
    np.testing.assert_allclose(update(low, jnp.float32(1000.0)).beta, 1e-10, rtol=1e-6)
    high = update(geco.init(), jnp.float32(-1000.0))  # beta exp(10^4) -> 1e10
    np.testing.assert_allclose(high.beta, 1e10, rtol=1e-6)
    assert np.isfinite(float(high.beta))
    slow = Geco(goal=0.0, step_size=1.0, beta_init=1e10)
    np.testing.assert_allclose(jax.jit(slow.update)(slow.init(), jnp.float32(-1.0)).beta, 1e10, rtol=1e-6)


# --- blocks: ConvTranspose, GroupNorm, LayerNorm --------------------------------------------------------------------


def _dilated(x, kernel, bias, stride, padding, output_padding):
    low = kernel.shape[0] - 1 - padding
    y = jax.lax.conv_general_dilated(x, kernel, (1, 1), ((low, low + output_padding),) * 2,
                                     lhs_dilation=(stride, stride), dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + bias


def _conv_transpose_numpy(x, kernel, bias, stride, padding, output_padding):
    """PyTorch's ConvTranspose2d by its scatter definition, the library's HWIO kernel flipped (spec section 0)."""
    b, n, _, _ = x.shape
    k, c_out = kernel.shape[0], kernel.shape[-1]
    out = (n - 1) * stride - 2 * padding + k + output_padding
    full = np.zeros((b, (n - 1) * stride + k + output_padding, (n - 1) * stride + k + output_padding, c_out))
    w = kernel[::-1, ::-1]
    for i in range(n):
        for j in range(n):
            full[:, i * stride:i * stride + k, j * stride:j * stride + k] += np.einsum("bc,hwco->bhwo", x[:, i, j], w)
    return full[:, padding:padding + out, padding:padding + out] + bias


@pytest.mark.parametrize("kernel_size,stride,padding,output_padding,side,out_side", [
    (5, 2, 2, 1, 4, 8),  # GENESIS-v2's decoder and GENESIS's s2 layers: n -> 2n (the sub-pixel form)
    (4, 2, 1, 0, 3, 6),  # k4 s2 p1 (the sub-pixel form too)
    (16, 1, 0, 0, 1, 16),  # GENESIS's first decoder layer: 1 x 1 -> 16 x 16 (a matrix product)
    (5, 1, 2, 0, 5, 5),  # the stride-1 layers
])
def test_conv_transpose_equals_the_dilated_convolution(kernel_size, stride, padding, output_padding, side, out_side):
    rng = _rng(15)
    c_in, c_out = 3, 4
    x = jnp.asarray(rng.normal(size=(2, side, side, c_in)), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(kernel_size, kernel_size, c_in, c_out)), jnp.float32)
    bias = jnp.asarray(rng.normal(size=c_out), jnp.float32)
    cotangent = jnp.asarray(rng.normal(size=(2, out_side, out_side, c_out)), jnp.float32)

    def layer(x, kernel, bias):
        conv = ConvTranspose(c_in, c_out, kernel_size, stride=stride, padding=padding, output_padding=output_padding)
        conv.kernel[...] = kernel
        conv.bias[...] = bias
        return conv(x)

    def oracle(x, kernel, bias):
        return _dilated(x, kernel, bias, stride, padding, output_padding)

    got, expected = jax.jit(layer)(x, kernel, bias), jax.jit(oracle)(x, kernel, bias)
    assert got.shape == (2, out_side, out_side, c_out)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got, _conv_transpose_numpy(np.asarray(x, np.float64), np.asarray(kernel, np.float64),
                                                          np.asarray(bias, np.float64), stride, padding,
                                                          output_padding), rtol=1e-4, atol=1e-4)
    grads = [jax.jit(jax.grad(lambda *a, f=f: jnp.sum(f(*a) * cotangent), argnums=(0, 1, 2)))(x, kernel, bias)
             for f in (layer, oracle)]
    for g, e in zip(*grads):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-4)


def test_group_norm_against_numpy():
    rng = _rng(16)
    b, h, w, c, groups = 2, 3, 4, 16, 8
    x = rng.normal(size=(b, h, w, c)) * rng.uniform(0.5, 3, size=c) + rng.normal(size=c)
    scale, bias = rng.normal(size=c), rng.normal(size=c)
    norm = GroupNorm(c, groups)
    norm.scale[...] = jnp.asarray(scale, jnp.float32)
    norm.bias[...] = jnp.asarray(bias, jnp.float32)
    g = x.reshape(b, h, w, groups, c // groups)  # contiguous channels form a group (PyTorch)
    mean = g.mean(axis=(1, 2, 4), keepdims=True)
    var = g.var(axis=(1, 2, 4), keepdims=True)
    expected = ((g - mean) / np.sqrt(var + 1e-5)).reshape(x.shape) * scale + bias
    np.testing.assert_allclose(norm(jnp.asarray(x, jnp.float32)), expected, rtol=1e-5, atol=1e-5)
    # eps 1e-5 (not Flax's 1e-6) shows on a near-constant input
    tiny = np.zeros((1, 2, 2, c))
    tiny[0, 0, 0] = 1e-3
    g = tiny.reshape(1, 2, 2, groups, c // groups)
    expected = ((g - g.mean(axis=(1, 2, 4), keepdims=True)) /
                np.sqrt(g.var(axis=(1, 2, 4), keepdims=True) + 1e-5)).reshape(tiny.shape) * scale + bias
    np.testing.assert_allclose(norm(jnp.asarray(tiny, jnp.float32)), expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="8 groups must divide 12"):
        GroupNorm(12, 8)


def test_layer_norm_against_numpy():
    rng = _rng(17)
    x = rng.normal(size=(3, 5, 16)) * 2 + 1
    tiny = np.zeros((1, 16))
    tiny[0, 0] = 1e-3
    scale, bias = rng.normal(size=16), rng.normal(size=16)
    norm = LayerNorm(16)
    norm.scale[...] = jnp.asarray(scale, jnp.float32)
    norm.bias[...] = jnp.asarray(bias, jnp.float32)
    for inputs in (x, tiny):
        expected = (inputs - inputs.mean(-1, keepdims=True)) / np.sqrt(inputs.var(-1, keepdims=True) + 1e-5)
        np.testing.assert_allclose(norm(jnp.asarray(inputs, jnp.float32)), expected * scale + bias, rtol=1e-4,
                                   atol=1e-5)


# --- bad configurations ---------------------------------------------------------------------------------------------


def test_genesis_rejects_an_unsupported_image_size():
    with pytest.raises(ValueError, match=r"32 or 64.*\(48, 48, 3\)"):
        GenesisFamily().build((48, 48, 3), nnx.Rngs(params=jax.random.key(0)))
    with pytest.raises(ValueError, match=r"\(64, 32, 3\)"):
        GenesisFamily().build((64, 32, 3), nnx.Rngs(params=jax.random.key(0)))
    with pytest.raises(ValueError, match=r"\(48, 48, 3\)"):
        GenesisV2Family().build((48, 48, 3), nnx.Rngs(params=jax.random.key(0)))


@pytest.mark.parametrize("family,kwargs,match", [
    (GenesisFamily, {"num_slots": 1}, "num_slots=1"),
    (GenesisV2Family, {"num_slots": 1}, "num_slots=1"),
    (GenesisV2Family, {"kernel": "cosine"}, "kernel.*'cosine'"),
    (GenesisFamily, {"eval_norm": "running"}, "eval_norm.*'running'"),
    (GenesisFamily, {"mixture": "per_slot"}, "mixture.*'per_slot'"),
    (GenesisFamily, {"kl_estimator": "exact"}, "kl_estimator.*'exact'"),
    (GenesisV2Family, {"seed_selection": "uniform"}, "seed_selection.*'uniform'"),
    (GenesisV2Family, {"mixture": "per_slot"}, "mixture.*'per_slot'"),
    (GenesisFamily, {"pixel_std": 0.0}, "pixel_std.*0.0"),
    (GenesisFamily, {"pixel_std": -0.7}, "pixel_std.*-0.7"),
    (GenesisFamily, {"pixel_std_first": 0}, "pixel_std_first.*0"),
    (GenesisFamily, {"pixel_std": float("nan")}, "pixel_std.*nan"),
    (GenesisV2Family, {"pixel_std": 0.0}, "pixel_std.*0.0"),
])
def test_bad_family_fields_name_the_value(family, kwargs, match):
    with pytest.raises(ValueError, match=match):
        family(**kwargs)


def test_config_rejects_a_non_positive_geco_goal():
    with pytest.raises(ValueError, match="geco_goal.*0.0"):
        engine_config.parse({"model": "genesis", "geco_goal": 0.0})
    with pytest.raises(ValueError, match="eval_norm"):
        engine_config.parse({"model": "genesis", "eval_norm": "running"})
    run = engine_config.parse({"model": "genesis", "num_slots": 4})
    assert isinstance(run.family, GenesisFamily) and run.family.num_slots == 4
