"""LNS models: layer shapes, parameter counts, initialisation, and the fast and native layers as the same function
(the convolution forms one by one: tests/test_conv_forms.py)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from noisegroup.models import AutoEncoder, BetaVAE


pytestmark = pytest.mark.usefixtures("highest_precision")  # exact float32 products (tests/conftest.py)


def _normal(seed, *shape):
    return jax.random.normal(jax.random.key(seed), shape)


def test_parameter_counts_match_the_reference():
    # Measured on the reference's PyTorch models (spec section 2).
    def count(cls):
        model = nnx.eval_shape(lambda: cls(15, rngs=nnx.Rngs(0)))
        return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))

    assert count(AutoEncoder) == 2_104_338
    assert count(BetaVAE) == 2_106_273


@pytest.mark.parametrize("impl", ["fast", "native"])
def test_shapes_at_every_layer(impl):
    def intermediates(x):  # traced only (jax.eval_shape): shapes without computing
        model = AutoEncoder(15, impl=impl, rngs=nnx.Rngs(0))
        encoder = [x := conv(x) for conv in model.encoder.convs]
        z = model.encode(jnp.zeros((2, 64, 64, 3)))["mean"]
        h = model.decoder.project(model.decoder.hidden(z)).reshape(2, 1, 1, 256)
        decoder = [h := deconv(h) for deconv in model.decoder.deconvs]
        return encoder, z, decoder, model.decoder.out(h)

    encoder, z, decoder, logits = jax.eval_shape(intermediates, jax.ShapeDtypeStruct((2, 64, 64, 3), jnp.float32))
    for x, size, channels in zip(encoder, (64, 32, 16, 8, 4, 1), (32, 64, 64, 128, 128, 256)):
        chex.assert_shape(x, (2, size, size, channels))
    chex.assert_shape(z, (2, 15))
    for h, size, channels in zip(decoder, (4, 8, 16, 32, 64), (128, 128, 64, 64, 32)):
        chex.assert_shape(h, (2, size, size, channels))
    chex.assert_shape(logits, (2, 64, 64, 3))


def test_vae_encoding_and_noise():
    graphdef, params = nnx.split(BetaVAE(15, rngs=nnx.Rngs(0)))

    @jax.jit
    def run(params, x, noise):
        model = nnx.merge(graphdef, params)
        encoding = model.encode(x)
        return encoding, model(x)[0], model.decode(encoding["mean"]), model(x, noise)[0]

    encoding, mean_logits, decoded_mean, noisy_logits = run(
        params, jax.random.uniform(jax.random.key(1), (3, 64, 64, 3)), _normal(2, 3, 15)
    )
    chex.assert_shape([encoding["mean"], encoding["logvar"]], (3, 15))
    chex.assert_trees_all_close(mean_logits, decoded_mean)
    assert not np.allclose(noisy_logits, mean_logits)


def test_initialisation_follows_the_reference():
    model = AutoEncoder(15, rngs=nnx.Rngs(0))
    # Kaiming-normal, untruncated: std sqrt(2 / fan_in) and tails beyond 2 std; zero bias.
    w = np.asarray(model.encoder.convs[1].kernel[...])  # 4 x 4 x 32 -> 64: fan_in 512
    std = np.sqrt(2 / 512)
    assert abs(w.std() / std - 1) < 0.05 and np.abs(w).max() > 2.5 * std
    assert not np.any(model.encoder.convs[1].bias[...])
    assert abs(np.asarray(model.encoder.hidden.kernel[...]).std() / np.sqrt(2 / 256) - 1) < 0.05
    assert not np.any(model.decoder.hidden.bias[...])
    # Transposed convs keep PyTorch's default: U(-b, b), b = 1 / sqrt(out * k * k); the bias too.
    deconv = model.decoder.deconvs[0]  # 256 -> 128, k 4: b = 1 / sqrt(2048) = 0.0221
    bound = 1 / np.sqrt(128 * 16)
    for p in (deconv.kernel[...], deconv.bias[...]):
        p = np.asarray(p)
        assert np.abs(p).max() <= bound and np.abs(p).max() > 0.9 * bound
    assert abs(np.asarray(deconv.kernel[...]).std() / (bound / np.sqrt(3)) - 1) < 0.05


@pytest.mark.parametrize("cls", [AutoEncoder, BetaVAE])
def test_fast_and_native_models_are_the_same_function(cls):
    x = jax.random.uniform(jax.random.key(4), (2, 64, 64, 3))

    def loss_and_grad(impl):
        graphdef, params = nnx.split(cls(15, impl=impl, rngs=nnx.Rngs(0)))

        def loss(params):
            logits, _ = nnx.merge(graphdef, params)(x)
            return jnp.sum(jax.nn.sigmoid(logits) ** 2)

        return jax.jit(jax.value_and_grad(loss))(params)

    chex.assert_trees_all_close(loss_and_grad("fast"), loss_and_grad("native"), atol=1e-5, rtol=1e-4)


def test_bad_conv_impl_is_named():
    with pytest.raises(ValueError, match="'cudnn'"):
        AutoEncoder(15, impl="cudnn", rngs=nnx.Rngs(0))(jnp.zeros((1, 64, 64, 3)))
