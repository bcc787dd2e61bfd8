"""LNS models: layer shapes, parameter counts, initialisation, and the fast layers against the standard ones."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from noisegroup.models import AutoEncoder, BetaVAE
from noisegroup.models import layers as L

DIMS = ("NHWC", "HWIO", "NHWC")


@pytest.fixture(autouse=True)
def highest_precision():
    """Exact float32 products while this module's tests compare formulations (a fixture: no session-wide state)."""
    with jax.default_matmul_precision("highest"):
        yield


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


@pytest.mark.parametrize("stride, padding, kernel, size", [(1, 1, 3, 9), (2, 1, 4, 8), (1, 0, 4, 4), (2, 1, 4, 5)])
def test_im2col_conv_equals_xla_conv(stride, padding, kernel, size):
    x, w = _normal(0, 2, size, size, 5), _normal(1, kernel, kernel, 5, 7)
    native = lambda x, w: jax.lax.conv_general_dilated(x, w, (stride,) * 2, ((padding,) * 2,) * 2, dimension_numbers=DIMS)  # noqa: E731
    fast = lambda x, w: L.im2col_conv(x, w, stride, padding)  # noqa: E731
    _assert_same_function(native, fast, x, w)


@pytest.mark.parametrize("size", [1, 4, 7])
def test_subpixel_conv_transpose_equals_lax_conv_transpose(size):
    x, w = _normal(0, 2, size, size, 6), _normal(1, 4, 4, 6, 5)
    _assert_same_function(lambda x, w: L.native_conv_transpose(x, w, 2, 1), L.subpixel_conv_transpose, x, w)


@pytest.mark.parametrize("size", [2, 8])
def test_strided_conv_equals_lax_conv(size):
    x, w = _normal(0, 2, size, size, 5), _normal(1, 4, 4, 5, 7)
    native = lambda x, w: jax.lax.conv_general_dilated(x, w, (2, 2), ((1, 1), (1, 1)), dimension_numbers=DIMS)  # noqa: E731
    _assert_same_function(native, L.strided_conv, x, w)


@pytest.mark.parametrize("size", [1, 4, 7])
def test_strided_conv_transpose_equals_lax_conv_transpose(size):
    x, w = _normal(0, 2, size, size, 6), _normal(1, 4, 4, 6, 5)
    _assert_same_function(lambda x, w: L.native_conv_transpose(x, w, 2, 1), L.strided_conv_transpose, x, w)


@pytest.mark.parametrize("c_in, c_out, kernel", [(3, 8, 3), (8, 3, 3), (6, 5, 3), (2, 4, 5), (3, 3, 1)])
def test_same_conv_equals_lax_conv(c_in, c_out, kernel):
    """Every branch: narrow input (im2col forward and weight gradient), narrow output (weight gradient from the
    cotangent's patches, input gradient by im2col), neither (native); and the transposed conv it stands in for."""
    x, w = _normal(0, 2, 7, 9, c_in), _normal(1, kernel, kernel, c_in, c_out)
    padding = (kernel - 1) // 2
    _assert_same_function(lambda x, w: L.native_conv(x, w, 1, padding), L.same_conv, x, w)
    _assert_same_function(lambda x, w: L.native_conv_transpose(x, w, 1, padding), L.same_conv, x, w)


@pytest.mark.parametrize("c_in, c_out, kernel, size", [(5, 7, 3, 9), (18, 4, 3, 6), (3, 2, 2, 5), (4, 3, 5, 7)])
def test_valid_conv_equals_lax_conv(c_in, c_out, kernel, size):
    """The unpadded stride-1 conv (MONet's broadcast decoder): full-and-cropped forward, full-conv input gradient,
    chunked patch-product weight gradient; the forward-mode twin too."""
    x, w = _normal(0, 2, size, size + 1, c_in), _normal(1, kernel, kernel, c_in, c_out)
    native = lambda x, w: L.native_conv(x, w, 1, 0)  # noqa: E731
    _assert_same_function(native, L.valid_conv, x, w)
    _assert_same_function(native, L.valid_conv_jvp, x, w)
    np.testing.assert_allclose(jax.jvp(L.valid_conv_jvp, (x, w), (x, w))[1], jax.jvp(native, (x, w), (x, w))[1],
                               rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("batch, chunk, c_in, c_out, per_image, padding", [
    (6, 4, 5, 6, False, 0), (5, 2, 7, 3, True, 1), (8, 8, 5, 6, True, 2), (3, 16, 7, 3, False, 0),
    (4, None, 7, 3, True, 2), (6, 4, 6, 5, True, 1), (4, 2, 5, 5, True, 0)])
def test_chunked_patch_weight_grad_equals_xla(batch, chunk, c_in, c_out, per_image, padding, monkeypatch):
    """Whatever the chunking (6 images by 3, 5 one at a time (5 is prime), 8 at once, fewer images than a chunk,
    the default), whichever form (x's patches when it is the narrower, else the cotangent's; with one product per
    image, the shifted pair when i + o < 3 min(i, o): 5 -> 6, 6 -> 5, and unpadded 5 -> 5, x's row windows as
    they are), one product per image or per chunk, padding 0 to k - 1."""
    monkeypatch.setattr(L, "PER_IMAGE_PIXELS", 1 if per_image else 10**9)
    x, g = _normal(0, batch, 9, 7, c_in), _normal(1, batch, 7 + 2 * padding, 5 + 2 * padding, c_out)
    want = L.native_weight_grad(x, g, (3, 3, c_in, c_out), 1, padding)
    np.testing.assert_allclose(L.chunked_patch_weight_grad(x, g, 3, padding, chunk), want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("c_in, c_out, kernel, padding", [(3, 4, 3, 0), (4, 3, 3, 1), (2, 5, 5, 2), (3, 2, 2, 1)])
def test_shifted_pair_product_is_the_weight_gradient(c_in, c_out, kernel, padding):
    """x's rows shifted against the cotangent's columns shifted: one product gives every tap of XLA's weight
    gradient (non-square images, kernels 2, 3, 5, padding 0 to k - 1)."""
    x = _normal(0, 2, 8, 6, c_in)
    g = _normal(1, 2, 8 + 2 * padding - kernel + 1, 6 + 2 * padding - kernel + 1, c_out)
    rows, columns = L.shifted_pair(x, g, kernel, padding)
    assert rows.shape[:3] == columns.shape[:3] == (2, g.shape[1], 6 + 2 * padding)
    product = jnp.einsum("byci,byco->io", rows, columns).reshape(kernel, c_in, kernel, c_out).transpose(0, 2, 1, 3)
    want = L.native_weight_grad(x, g, (kernel, kernel, c_in, c_out), 1, padding)
    np.testing.assert_allclose(product, want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("c_in, c_out, kernel, padding", [(5, 7, 3, 1), (9, 4, 3, 1), (4, 6, 5, 2), (3, 5, 3, 2),
                                                          (6, 8, 2, 1)])
def test_padded_stride1_conv_equals_lax_conv(c_in, c_out, kernel, padding):
    """The padded stride-1 conv (MONet's U-Net, and its sub-pixel 2 x 2 form): native forward, input gradient with
    the flipped kernel (unpadded when padding = k - 1: full and cropped), patch weight gradient without a padded
    copy of x; values and gradients equal XLA's, under jit and vmap over seeds."""
    x, w = _normal(0, 3, 8, 9, c_in), _normal(1, kernel, kernel, c_in, c_out)
    native = lambda x, w: L.native_conv(x, w, 1, padding)  # noqa: E731
    fast = lambda x, w: L.stride1_conv(x, w, padding)  # noqa: E731
    _assert_same_function(native, fast, x, w)
    _assert_same_function(jax.jit(native), jax.jit(fast), x, w)
    xs, ws = jnp.stack([x, 2 * x]), jnp.stack([w, -w])
    grads = lambda fn: jax.vmap(jax.grad(lambda x, w: jnp.sum(jnp.sin(fn(x, w))), argnums=(0, 1)))(xs, ws)  # noqa
    chex.assert_trees_all_close(grads(fast), grads(native), atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("height, width, c_in, c_out", [(4, 5, 3, 6), (1, 2, 7, 2)])
def test_upsampled_conv_is_upsample_then_conv(height, width, c_in, c_out):
    """The sub-pixel form of the U-Net's up blocks: nearest x2 upsampling then a padding-1 3 x 3 conv, values and
    gradients, jitted; a 1-row input has every phase touch the zero border."""
    x, w = _normal(0, 2, height, width, c_in), _normal(1, 3, 3, c_in, c_out)
    plain = lambda x, w: L.native_conv(jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2), w, 1, 1)  # noqa: E731
    _assert_same_function(plain, L.upsampled_conv, x, w)
    _assert_same_function(jax.jit(plain), jax.jit(L.upsampled_conv), x, w)
    with pytest.raises(ValueError, match=r"3 x 3 kernel, got \(5, 5\)"):
        L.upsampled_conv(x, _normal(1, 5, 5, c_in, c_out))


def test_strided_layers_under_vmap_over_seeds():
    """The custom gradients batch (seeds vmapped on one device) to the per-seed results."""
    x, w = _normal(0, 3, 2, 8, 8, 4), _normal(1, 3, 4, 4, 4, 6)
    w3 = _normal(2, 3, 3, 3, 3, 6)  # narrow input: same_conv's im2col branches
    cases = ((L.strided_conv, x, w), (L.strided_conv_transpose, x[:, :, :4, :4], w), (L.same_conv, x[..., :3], w3),
             (L.valid_conv, x, w))
    for fn, xs, ws in cases:
        grad = jax.grad(lambda x, w: jnp.sum(fn(x, w) ** 2), argnums=(0, 1))
        batched = jax.vmap(grad)(xs, ws)
        chex.assert_trees_all_close(batched, tuple(jnp.stack(g) for g in zip(*(grad(xs[s], ws[s]) for s in range(3)))),
                                    atol=1e-3, rtol=1e-4)


def test_point_upsampling_equals_lax_conv_transpose():
    x, w = _normal(0, 3, 1, 1, 8), _normal(1, 4, 4, 8, 5)
    _assert_same_function(lambda x, w: L.native_conv_transpose(x, w, 1, 0), L.upsample_from_point, x, w)


def _assert_same_function(f, g, x, w):
    chex.assert_trees_all_close(f(x, w), g(x, w), atol=1e-4, rtol=1e-5)
    cotangent = _normal(3, *f(x, w).shape)
    grads = lambda fn: jax.grad(lambda x, w: jnp.sum(fn(x, w) * cotangent), argnums=(0, 1))(x, w)  # noqa: E731
    chex.assert_trees_all_close(grads(f), grads(g), atol=1e-4, rtol=1e-5)


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
