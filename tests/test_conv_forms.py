"""The custom-gradient convolution forms (`noisegroup.models.conv_forms`) against XLA's convolutions: values,
gradients, jit, vmap over seeds, and the forward-mode twins' jvps."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from noisegroup.models import conv_forms as F

DIMS = ("NHWC", "HWIO", "NHWC")


pytestmark = pytest.mark.usefixtures("highest_precision")  # exact float32 products (tests/conftest.py)


def _normal(seed, *shape):
    return jax.random.normal(jax.random.key(seed), shape)


@pytest.mark.parametrize("stride, padding, kernel, size", [(1, 1, 3, 9), (2, 1, 4, 8), (1, 0, 4, 4), (2, 1, 4, 5)])
def test_im2col_conv_equals_xla_conv(stride, padding, kernel, size):
    x, w = _normal(0, 2, size, size, 5), _normal(1, kernel, kernel, 5, 7)
    native = lambda x, w: jax.lax.conv_general_dilated(x, w, (stride,) * 2, ((padding,) * 2,) * 2, dimension_numbers=DIMS)  # noqa: E731
    fast = lambda x, w: F.im2col_conv(x, w, stride, padding)  # noqa: E731
    _assert_same_function(native, fast, x, w)


@pytest.mark.parametrize("size", [1, 4, 7])
def test_subpixel_conv_transpose_equals_lax_conv_transpose(size):
    x, w = _normal(0, 2, size, size, 6), _normal(1, 4, 4, 6, 5)
    _assert_same_function(lambda x, w: F.native_conv_transpose(x, w, 2, 1), F.subpixel_conv_transpose, x, w)


@pytest.mark.parametrize("size", [2, 8])
def test_strided_conv_equals_lax_conv(size):
    x, w = _normal(0, 2, size, size, 5), _normal(1, 4, 4, 5, 7)
    native = lambda x, w: jax.lax.conv_general_dilated(x, w, (2, 2), ((1, 1), (1, 1)), dimension_numbers=DIMS)  # noqa: E731
    _assert_same_function(native, F.strided_conv, x, w)


@pytest.mark.parametrize("size", [1, 4, 7])
def test_strided_conv_transpose_equals_lax_conv_transpose(size):
    x, w = _normal(0, 2, size, size, 6), _normal(1, 4, 4, 6, 5)
    _assert_same_function(lambda x, w: F.native_conv_transpose(x, w, 2, 1), F.strided_conv_transpose, x, w)


@pytest.mark.parametrize("c_in, c_out, kernel", [(3, 8, 3), (8, 3, 3), (6, 5, 3), (2, 4, 5), (3, 3, 1)])
def test_same_conv_equals_lax_conv(c_in, c_out, kernel):
    """Every branch: narrow input (im2col forward and weight gradient), narrow output (weight gradient from the
    cotangent's patches, input gradient by im2col), neither (native); and the transposed conv it stands in for."""
    x, w = _normal(0, 2, 7, 9, c_in), _normal(1, kernel, kernel, c_in, c_out)
    padding = (kernel - 1) // 2
    _assert_same_function(lambda x, w: F.native_conv(x, w, 1, padding), F.same_conv, x, w)
    _assert_same_function(lambda x, w: F.native_conv_transpose(x, w, 1, padding), F.same_conv, x, w)


@pytest.mark.parametrize("c_in, c_out, kernel, size", [(5, 7, 3, 9), (18, 4, 3, 6), (3, 2, 2, 5), (4, 3, 5, 7)])
def test_valid_conv_equals_lax_conv(c_in, c_out, kernel, size):
    """The unpadded stride-1 conv (MONet's broadcast decoder): full-and-cropped forward, full-conv input gradient,
    chunked patch-product weight gradient; the forward-mode twin too."""
    x, w = _normal(0, 2, size, size + 1, c_in), _normal(1, kernel, kernel, c_in, c_out)
    native = lambda x, w: F.native_conv(x, w, 1, 0)  # noqa: E731
    _assert_same_function(native, F.valid_conv, x, w)
    _assert_same_function(native, F.valid_conv_jvp, x, w)
    np.testing.assert_allclose(jax.jvp(F.valid_conv_jvp, (x, w), (x, w))[1], jax.jvp(native, (x, w), (x, w))[1],
                               rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("batch, chunk, c_in, c_out, per_image, padding", [
    (6, 4, 5, 6, False, 0), (5, 2, 7, 3, True, 1), (8, 8, 5, 6, True, 2), (3, 16, 7, 3, False, 0),
    (4, None, 7, 3, True, 2), (6, 4, 6, 5, True, 1), (4, 2, 5, 5, True, 0)])
def test_chunked_patch_weight_grad_equals_xla(batch, chunk, c_in, c_out, per_image, padding, monkeypatch):
    """Whatever the chunking (6 images by 3, 5 one at a time (5 is prime), 8 at once, fewer images than a chunk,
    the default), whichever form (x's patches when it is the narrower, else the cotangent's; with one product per
    image, the shifted pair when i + o < 3 min(i, o): 5 -> 6, 6 -> 5, and unpadded 5 -> 5, x's row windows as
    they are), one product per image or per chunk, padding 0 to k - 1."""
    monkeypatch.setattr(F, "PER_IMAGE_PIXELS", 1 if per_image else 10**9)
    x, g = _normal(0, batch, 9, 7, c_in), _normal(1, batch, 7 + 2 * padding, 5 + 2 * padding, c_out)
    want = F.native_weight_grad(x, g, (3, 3, c_in, c_out), 1, padding)
    np.testing.assert_allclose(F.chunked_patch_weight_grad(x, g, 3, padding, chunk), want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("c_in, c_out, kernel, padding", [(3, 4, 3, 0), (4, 3, 3, 1), (2, 5, 5, 2), (3, 2, 2, 1)])
def test_shifted_pair_product_is_the_weight_gradient(c_in, c_out, kernel, padding):
    """x's rows shifted against the cotangent's columns shifted: one product gives every tap of XLA's weight
    gradient (non-square images, kernels 2, 3, 5, padding 0 to k - 1)."""
    x = _normal(0, 2, 8, 6, c_in)
    g = _normal(1, 2, 8 + 2 * padding - kernel + 1, 6 + 2 * padding - kernel + 1, c_out)
    rows, columns = F.shifted_pair(x, g, kernel, padding)
    assert rows.shape[:3] == columns.shape[:3] == (2, g.shape[1], 6 + 2 * padding)
    product = jnp.einsum("byci,byco->io", rows, columns).reshape(kernel, c_in, kernel, c_out).transpose(0, 2, 1, 3)
    want = F.native_weight_grad(x, g, (kernel, kernel, c_in, c_out), 1, padding)
    np.testing.assert_allclose(product, want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("c_in, c_out, kernel, padding", [(5, 7, 3, 1), (9, 4, 3, 1), (4, 6, 5, 2), (3, 5, 3, 2),
                                                          (6, 8, 2, 1)])
def test_padded_stride1_conv_equals_lax_conv(c_in, c_out, kernel, padding):
    """The padded stride-1 conv (MONet's U-Net, and its sub-pixel 2 x 2 form): native forward, input gradient with
    the flipped kernel (unpadded when padding = k - 1: full and cropped), patch weight gradient without a padded
    copy of x; values and gradients equal XLA's, under jit and vmap over seeds."""
    x, w = _normal(0, 3, 8, 9, c_in), _normal(1, kernel, kernel, c_in, c_out)
    native = lambda x, w: F.native_conv(x, w, 1, padding)  # noqa: E731
    fast = lambda x, w: F.stride1_conv(x, w, padding)  # noqa: E731
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
    plain = lambda x, w: F.native_conv(jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2), w, 1, 1)  # noqa: E731
    _assert_same_function(plain, F.upsampled_conv, x, w)
    _assert_same_function(jax.jit(plain), jax.jit(F.upsampled_conv), x, w)
    with pytest.raises(ValueError, match=r"3 x 3 kernel, got \(5, 5\)"):
        F.upsampled_conv(x, _normal(1, 5, 5, c_in, c_out))


def test_strided_layers_under_vmap_over_seeds():
    """The custom gradients batch (seeds vmapped on one device) to the per-seed results."""
    x, w = _normal(0, 3, 2, 8, 8, 4), _normal(1, 3, 4, 4, 4, 6)
    w3 = _normal(2, 3, 3, 3, 3, 6)  # narrow input: same_conv's im2col branches
    cases = ((F.strided_conv, x, w), (F.strided_conv_transpose, x[:, :, :4, :4], w), (F.same_conv, x[..., :3], w3),
             (F.valid_conv, x, w))
    for fn, xs, ws in cases:
        grad = jax.grad(lambda x, w: jnp.sum(fn(x, w) ** 2), argnums=(0, 1))
        batched = jax.vmap(grad)(xs, ws)
        chex.assert_trees_all_close(batched, tuple(jnp.stack(g) for g in zip(*(grad(xs[s], ws[s]) for s in range(3)))),
                                    atol=1e-3, rtol=1e-4)


def test_point_upsampling_equals_lax_conv_transpose():
    x, w = _normal(0, 3, 1, 1, 8), _normal(1, 4, 4, 8, 5)
    _assert_same_function(lambda x, w: F.native_conv_transpose(x, w, 1, 0), F.upsample_from_point, x, w)


def _assert_same_function(f, g, x, w):
    chex.assert_trees_all_close(f(x, w), g(x, w), atol=1e-4, rtol=1e-5)
    cotangent = _normal(3, *f(x, w).shape)
    grads = lambda fn: jax.grad(lambda x, w: jnp.sum(fn(x, w) * cotangent), argnums=(0, 1))(x, w)  # noqa: E731
    chex.assert_trees_all_close(grads(f), grads(g), atol=1e-4, rtol=1e-5)


# --- forward-mode twins ---------------------------------------------------------------------------------------------


FORMS = {  # name: (forward-mode fast form, native reference, x shape, w shape)
    "strided_conv": (F.strided_conv_jvp, lambda x, w: F.native_conv(x, w, 2, 1), (2, 8, 6, 5), (4, 4, 5, 7)),
    "strided_conv_transpose": (F.strided_conv_transpose_jvp, lambda x, w: F.native_conv_transpose(x, w, 2, 1),
                               (2, 5, 4, 6), (4, 4, 6, 5)),
    "same_conv_narrow_in": (F.same_conv_jvp, lambda x, w: F.native_conv(x, w, 1, 1), (2, 7, 9, 3), (3, 3, 3, 8)),
    "same_conv_wide": (F.same_conv_jvp, lambda x, w: F.native_conv(x, w, 1, 1), (2, 7, 9, 6), (3, 3, 6, 3)),
    "same_conv_as_transpose": (F.same_conv_jvp, lambda x, w: F.native_conv_transpose(x, w, 1, 1), (2, 5, 5, 3),
                               (3, 3, 3, 4)),
}


@functools.partial(jax.jit, static_argnums=0)
def _derivatives(f, x, w, dx, dw, cotangent):
    """(jvp in both arguments, jvps by the input only vmapped over two tangents, gradient) of `f` at (x, w)."""
    both = jax.jvp(f, (x, w), (dx, dw))
    # By the input only: the weights' tangent is a symbolic zero, as in a latent Jacobian.
    by_x = jax.vmap(lambda t: jax.jvp(lambda x: f(x, w), (x,), (t,))[1])(jnp.stack([dx, -2 * dx]))
    grads = jax.grad(lambda x, w: jnp.sum(f(x, w) * cotangent), argnums=(0, 1))(x, w)
    return both, by_x, grads


@pytest.mark.parametrize("name", FORMS)
def test_forward_mode_rules_equal_native_jvp(name):
    """jvp, jvp by the input under vmap, and reverse mode (JAX transposes the rule) all equal the native layer's."""
    fast, native, x_shape, w_shape = FORMS[name]
    x, w, dx, dw = _normal(0, *x_shape), _normal(1, *w_shape), _normal(2, *x_shape), _normal(3, *w_shape)
    cotangent = _normal(4, *jax.eval_shape(native, x, w).shape)
    chex.assert_trees_all_close(_derivatives(fast, x, w, dx, dw, cotangent),
                                _derivatives(native, x, w, dx, dw, cotangent), atol=1e-4, rtol=1e-5)


def test_training_forms_refuse_forward_mode_which_is_why_the_twins_exist():
    x, w = _normal(0, 1, 4, 4, 2), _normal(1, 4, 4, 2, 3)
    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jvp(F.strided_conv, (x, w), (x, w))
