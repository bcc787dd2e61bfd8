"""Convolutions in the forms that train fast on XLA:CPU, each the same function as XLA's plain convolution.

XLA:CPU (Eigen) is fast at some convolutions and several times slower at others. For a stride-2 layer, its forward
and weight gradient are fast natively (faster than im2col products); its input gradient (a transposed convolution,
input-dilated) is the slow one, several times slower than the sub-pixel form below. `python -m benchmarks.train_step
--layers` times each AE layer both ways, `python -m benchmarks.monet_layers` MONet's layers against PyTorch;
`docs/performance.md` keeps the figures. So the forms below are `jax.custom_vjp` functions that send each of their
three computations to the fast form (the layer modules pick them by their `impl`: `noisegroup.models.layers` for the
LNS networks, `noisegroup.models.blocks` for MONet's):

* stride-2 convolution, kernel 4, padding 1 (`strided_conv`): forward and weight gradient native; input
  gradient as a sub-pixel transposed convolution.
* stride-2 transposed convolution, kernel 4, padding 1 (`strided_conv_transpose`, ``2H`` out of ``H``): it is the
  adjoint of a stride-2 convolution with the flipped, in/out-swapped kernel, so its input gradient is that native
  convolution, its weight gradient that convolution's native weight gradient (flipped back), and its forward the
  sub-pixel form.
* sub-pixel form (`subpixel_conv_transpose`): every output pixel ``(2m + a, 2n + b)`` sees a 2 x 2 input window.
  One native stride-1 2 x 2 convolution with ``4 * out`` channels (one block per phase ``(a, b)``) over the input
  padded by 1, then a depth-to-space interleave. Derivation with ``lax.conv_transpose``'s convention (correlate
  the zero-dilated input, padded by 2, with ``W``): output row ``2m + a`` takes input rows ``m - 1 + a + d`` with
  kernel row ``2d + a``, d in {0, 1}. So the phase kernel is ``K[d, e, i, (a, b, o)] = W[2d + a, 2e + b, i, o]``.
* a k x k map to 1 x 1 (the encoder's last conv) and a 1 x 1 map to k x k (the decoder's first transposed conv):
  dense layers, one matrix product each (`im2col_conv`, `upsample_from_point`).
* the 3 x 3 stride-1 layers with an RGB side (the encoder's first, 3 -> 32; the decoder's output, 32 -> 3,
  whose transposed conv with stride 1 is a 'same' conv with ``W`` as it is): `same_conv`, a custom VJP that takes
  each computation as a matrix product over the patches of the 3-channel tensor (Eigen's convolution is slow with
  so few channels), else native.
* stride-1 convolutions with any padding 0 <= p <= k - 1 (`stride1_conv`; `valid_conv` for p = 0; MONet's U-Net
  and broadcast decoder): forward native (unpadded: the full convolution, cropped), input gradient native (the
  flipped, swapped kernel; unpadded again when p = k - 1), weight gradient as products of the narrower operand's
  patches over chunks of images (`chunked_patch_weight_grad`), several times faster than XLA's at the MONet
  step's sizes.
* a padding-1 3 x 3 convolution of a nearest x2 upsampling (`upsampled_conv`; the MONet U-Net's up blocks): the
  sub-pixel form, one 2 x 2 `stride1_conv` of the low-resolution input with a phase kernel per output phase.

Each fast form computes exactly the function of the standard convolution with the same parameters (tests compare
forward passes and gradients with ``lax.conv_transpose`` / ``lax.conv_general_dilated``: `tests/test_conv_forms.py`).

Forward mode (`jax.jvp`, `jax.linearize`, `jax.jacfwd`) cannot pass through a `jax.custom_vjp` function, and a
`jax.custom_jvp` one would leave reverse mode to JAX's transposes of its rule (here the native transposed
convolutions, the slow ones this module avoids; JAX has no public custom transpose). So the fast forms come twice:
the custom VJPs (impl "fast": training) and forward-mode twins (impl "fast_jvp": `strided_conv_jvp`,
`strided_conv_transpose_jvp`, `same_conv_jvp`, `valid_conv_jvp`: the same fast forwards, as `jax.custom_jvp`
functions whose rule is the bilinear one, ``f(dx, w) + f(x, dw)`` through the same fast forward, a symbolically zero
tangent skipped; `bilinear_jvp`). Reverse mode still works through the twins (JAX transposes the rule), but slowly
on CPU: they are for forward-mode programs such as `noisegroup.lns.tangent`.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

_DIMS = ("NHWC", "HWIO", "NHWC")


def native_conv(x: jax.Array, w: jax.Array, stride: int, padding: int) -> jax.Array:
    """XLA's convolution (cross-correlation) with symmetric zero padding: `[b, h, w, i]`, `[k, k, i, o]` ->
    `[b, h', w', o]`."""
    return jax.lax.conv_general_dilated(x, w, (stride, stride), ((padding, padding),) * 2, dimension_numbers=_DIMS)


def patches(x: jax.Array, k: int, stride: int, padding: int) -> jax.Array:
    """The k x k windows of `x` `[b, h, w, i]` (symmetric zero padding) as rows: `[b, h', w', (ky, kx, i)]`."""
    b, h, wd, _ = x.shape
    padded = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0))) if padding else x
    h_out, w_out = (h + 2 * padding - k) // stride + 1, (wd + 2 * padding - k) // stride + 1
    span_h, span_w = stride * (h_out - 1) + 1, stride * (w_out - 1) + 1
    views = [padded[:, y : y + span_h : stride, x_ : x_ + span_w : stride] for y in range(k) for x_ in range(k)]
    return jnp.concatenate(views, axis=-1)


def im2col_conv(x: jax.Array, w: jax.Array, stride: int, padding: int) -> jax.Array:
    """Convolution (cross-correlation, symmetric zero padding) as one matrix product.

    Args:
        x: `[b, h, w, i]`.
        w: `[k, k, i, o]` HWIO kernel.

    Returns:
        `[b, h', w', o]` with h' = (h + 2 padding - k) // stride + 1 (a k x k map with padding 0 gives 1 x 1:
        a dense layer).
    """
    k, _, c_in, c_out = w.shape
    rows = patches(x, k, stride, padding)  # [b, h', w', (ky, kx, i)]
    return (rows.reshape(-1, k * k * c_in) @ w.reshape(k * k * c_in, c_out)).reshape(*rows.shape[:3], c_out)


def native_conv_transpose(x: jax.Array, w: jax.Array, stride: int, padding: int) -> jax.Array:
    k = w.shape[0]
    pad = ((k - 1 - padding, k - 1 - padding),) * 2
    return jax.lax.conv_transpose(x, w, (stride, stride), pad, dimension_numbers=_DIMS)


def upsample_from_point(x: jax.Array, w: jax.Array) -> jax.Array:
    """Transposed conv (stride 1, padding 0) of a 1 x 1 map: `[b, 1, 1, i]` -> `[b, k, k, o]` as one matmul."""
    k, _, c_in, c_out = w.shape
    flipped = w[::-1, ::-1].transpose(2, 0, 1, 3).reshape(c_in, k * k * c_out)  # [i, (y, x, o)]
    return (x.reshape(x.shape[0], c_in) @ flipped).reshape(x.shape[0], k, k, c_out)


def subpixel_conv_transpose(x: jax.Array, w: jax.Array) -> jax.Array:
    """Transposed conv (kernel 4, stride 2, padding 1) as a stride-1 2 x 2 conv and a depth-to-space interleave.

    Args:
        x: `[b, h, w, i]`.
        w: `[4, 4, i, o]` HWIO kernel in `lax.conv_transpose`'s convention.

    Returns:
        `[b, 2h, 2w, o]`.
    """
    b, h, wd, c_in = x.shape
    c_out = w.shape[-1]
    # K[d, e, i, (a, b, o)] = W[2d + a, 2e + b, i, o]
    phase_kernel = w.reshape(2, 2, 2, 2, c_in, c_out).transpose(0, 2, 4, 1, 3, 5).reshape(2, 2, c_in, 4 * c_out)
    return interleave_phases(native_conv(x, phase_kernel, 1, 1))


def interleave_phases(grid: jax.Array) -> jax.Array:
    """Depth-to-space of a sub-pixel convolution's output: `[b, h + 1, w + 1, 4 o]` (channels (a, b, o)) ->
    `[b, 2h, 2w, o]`, where output pixel (2m + a, 2n + b) is phase (a, b)'s value at grid window (m + a, n + b)."""
    b, h, wd = grid.shape[0], grid.shape[1] - 1, grid.shape[2] - 1
    c_out = grid.shape[-1] // 4
    y = grid.reshape(b, h + 1, wd + 1, 2, 2, c_out)
    phases = jnp.stack([y[:, a : a + h, q : q + wd, a, q] for a in (0, 1) for q in (0, 1)], axis=3)
    return phases.reshape(b, h, wd, 2, 2, c_out).transpose(0, 1, 3, 2, 4, 5).reshape(b, 2 * h, 2 * wd, c_out)


def flip_swap(w: jax.Array) -> jax.Array:
    """`[k, k, i, o]` -> `[k, k, o, i]` flipped in space: the kernel of a convolution's adjoint as a transposed
    convolution and back (an involution)."""
    return w[::-1, ::-1].transpose(0, 1, 3, 2)


def native_weight_grad(x: jax.Array, cotangent: jax.Array, kernel_shape: tuple, stride: int, padding: int):
    """Gradient of ``<native_conv(x, w, stride, padding), cotangent>`` with respect to `w` `kernel_shape` (XLA's
    native weight gradient)."""
    conv = lambda w: native_conv(x, w, stride, padding)  # noqa: E731  (linear in w)
    (grad,) = jax.linear_transpose(conv, jax.ShapeDtypeStruct(kernel_shape, x.dtype))(cotangent)
    return grad


@jax.custom_vjp
def strided_conv(x: jax.Array, w: jax.Array) -> jax.Array:
    """Convolution with kernel 4, stride 2, padding 1 (`native_conv(x, w, 2, 1)`), with fast gradients on CPU.

    Args:
        x: `[b, 2h, 2w, i]` (even sizes).
        w: `[4, 4, i, o]` HWIO kernel.

    Returns:
        `[b, h, w, o]`.
    """
    return native_conv(x, w, 2, 1)


def _strided_conv_fwd(x, w):
    return native_conv(x, w, 2, 1), (x, w)


def _strided_conv_bwd(residuals, cotangent):
    x, w = residuals
    # The input gradient is the transposed convolution with the flipped, swapped kernel: its sub-pixel form.
    return subpixel_conv_transpose(cotangent, flip_swap(w)), native_weight_grad(x, cotangent, w.shape, 2, 1)


strided_conv.defvjp(_strided_conv_fwd, _strided_conv_bwd)


@jax.custom_vjp
def strided_conv_transpose(x: jax.Array, w: jax.Array) -> jax.Array:
    """Transposed convolution with kernel 4, stride 2, padding 1 (`native_conv_transpose(x, w, 2, 1)`), with fast
    forward and gradients on CPU.

    It is the adjoint of ``native_conv(., flip_swap(w), 2, 1)``: the forward is the sub-pixel form, the input
    gradient that convolution, the weight gradient that convolution's weight gradient, flipped and swapped back.

    Args:
        x: `[b, h, w, i]`.
        w: `[4, 4, i, o]` HWIO kernel in `lax.conv_transpose`'s convention.

    Returns:
        `[b, 2h, 2w, o]`.
    """
    return subpixel_conv_transpose(x, w)


def _strided_conv_transpose_fwd(x, w):
    return subpixel_conv_transpose(x, w), (x, w)


def _strided_conv_transpose_bwd(residuals, cotangent):
    x, w = residuals
    adjoint = flip_swap(w)  # [4, 4, o, i]: y = adjoint-conv^T(x), so <cotangent, y> = <conv(cotangent), x>
    grad_x = native_conv(cotangent, adjoint, 2, 1)
    grad_w = flip_swap(native_weight_grad(cotangent, x, adjoint.shape, 2, 1))
    return grad_x, grad_w


strided_conv_transpose.defvjp(_strided_conv_transpose_fwd, _strided_conv_transpose_bwd)


NARROW_CHANNELS = 4  # at most this many channels (RGB): im2col's patch rows are short, Eigen's conv is slow


def _same_conv_forward(x: jax.Array, w: jax.Array) -> jax.Array:
    """Stride-1 'same' convolution: im2col when the input is narrow (`NARROW_CHANNELS`), else native."""
    padding = (w.shape[0] - 1) // 2
    return im2col_conv(x, w, 1, padding) if x.shape[-1] <= NARROW_CHANNELS else native_conv(x, w, 1, padding)


@jax.custom_vjp
def same_conv(x: jax.Array, w: jax.Array) -> jax.Array:
    """Stride-1 convolution with an odd kernel and 'same' padding (`native_conv(x, w, 1, (k - 1) // 2)`), fast on
    CPU when one side is RGB (the encoder's first layer, the decoder's output layer).

    Where a computation has a narrow (at most `NARROW_CHANNELS`) operand it is a matrix product over that
    operand's patches: the forward over the patches of a narrow `x`, the input gradient (the same convolution of
    the cotangent with the flipped, swapped kernel) over the patches of a narrow cotangent, and the weight gradient
    over the patches of a narrow cotangent. Everything else is XLA's native convolution: wide patch rows
    (32 channels x 9) are slow to gather, and for a narrow `x` the native weight gradient measured faster in the
    train step.

    Args:
        x: `[b, h, w, i]`.
        w: `[k, k, i, o]` HWIO kernel, k odd.

    Returns:
        `[b, h, w, o]`.
    """
    return _same_conv_forward(x, w)


def _same_conv_fwd(x, w):
    return _same_conv_forward(x, w), (x, w)


def _same_conv_bwd(residuals, cotangent):
    x, w = residuals
    k, _, c_in, c_out = w.shape
    padding = (k - 1) // 2
    grad_x = _same_conv_forward(cotangent, flip_swap(w))
    if c_out <= NARROW_CHANNELS:  # dW[ky, kx, i, o] = sum_q x[q, i] g_padded[q + (k-1-ky, k-1-kx), o]
        rows = patches(cotangent, k, 1, padding).reshape(-1, k * k * c_out)
        grad_w = flip_swap((rows.T @ x.reshape(-1, c_in)).reshape(k, k, c_out, c_in))
    else:  # a narrow x too would allow x's patches, but XLA's native weight gradient measures faster in the step
        grad_w = native_weight_grad(x, cotangent, w.shape, 1, padding)
    return grad_x, grad_w


same_conv.defvjp(_same_conv_fwd, _same_conv_bwd)


def _valid_conv_forward(x: jax.Array, w: jax.Array) -> jax.Array:
    """Stride-1 convolution without padding as XLA:CPU runs it fastest: the 'full' convolution (padding k - 1),
    cropped to the valid part. Eigen's unpadded path is the slow one: ~3x slower at the MONet broadcast decoder's
    layers than the full one, which does ~12% more products (`benchmarks.monet_layers`, column "xla")."""
    k = w.shape[0]
    y = native_conv(x, w, 1, k - 1)
    return y[:, k - 1 : y.shape[1] - (k - 1), k - 1 : y.shape[2] - (k - 1)]


# Chunks of `chunked_patch_weight_grad`'s scan: about PATCH_ROWS patch rows, at least MIN_CHUNK_IMAGES images, so that a
# chunk's gathered columns stay near the cache (2 cores, 4 MB of L2): 2 images of 64 x 64 or of the decoder's 68 x 68,
# 2-8 of 32 x 32, 4-16 of 16 x 16 measured best; a whole batch of 64 small images took 2-2.5x as long.
PATCH_ROWS = 8192
MIN_CHUNK_IMAGES = 2
PER_IMAGE_PIXELS = 1024  # images of at least this many pixels: one product per image, then a sum (see below)


def shifted_pair(x: jax.Array, cotangent: jax.Array, k: int, padding: int) -> tuple[jax.Array, jax.Array]:
    """The weight gradient's k x k taps split between its two operands: x's rows shifted (ky) and the cotangent's
    columns shifted (kx), so that one product of the two gives every tap:

        dW[ky, kx, i, o] = sum_{b, y, c} X[b, y, c, (ky, i)] G[b, y, c, (kx, o)]
        X[b, y, c, (ky, i)] = x_p[b, y + ky, c, i]          (x_p: x padded by p; c < w + 2p)
        G[b, y, c, (kx, o)] = g[b, y, c - kx, o]            (zero where c - kx is outside g)

    k (i + o) columns gathered, against k^2 min(i, o) for the patches of the narrower operand: fewer when
    i + o < k min(i, o) (equal widths at k = 3: 6 copies of a channel block, not 9). X's blocks are windows of
    whole rows: without padding, slices of x itself (`chunked_patch_weight_grad` then takes k products of those
    slices with G rather than gathering X).

    Args:
        x: `[b, h, w, i]`.
        cotangent: `[b, h + 2p - k + 1, w + 2p - k + 1, o]`.
        k: the kernel size.
        padding: p, 0 <= p <= k - 1.

    Returns:
        (X `[b, h', w + 2p, k i]`, G `[b, h', w + 2p, k o]`), h' the cotangent's height.
    """
    x_p = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    rows = jnp.concatenate(row_windows(x_p, k, cotangent.shape[1]), axis=-1)
    return rows, shifted_columns(cotangent, k, x_p.shape[2])


def row_windows(x_p: jax.Array, k: int, height: int) -> list[jax.Array]:
    """X's blocks of `shifted_pair`: the k windows `x_p[:, ky : ky + height]` of the padded `[b, h + 2p, w + 2p, i]`."""
    return [x_p[:, ky : ky + height] for ky in range(k)]


def shifted_columns(cotangent: jax.Array, k: int, width: int) -> jax.Array:
    """G of `shifted_pair`: `[b, h', w', o]` -> `[b, h', width, (kx, o)]`, G[..., c, kx, o] = g[..., c - kx, o]
    (zero outside g; width = w' + k - 1)."""
    g_p = jnp.pad(cotangent, ((0, 0), (0, 0), (k - 1, k - 1), (0, 0)))
    return jnp.concatenate([g_p[:, :, k - 1 - kx : k - 1 - kx + width] for kx in range(k)], axis=-1)


def chunked_patch_weight_grad(x: jax.Array, cotangent: jax.Array, k: int, padding: int = 0,
                              chunk: int | None = None) -> jax.Array:
    """Weight gradient of a stride-1 convolution with symmetric zero padding p = `padding` as patch products summed
    over chunks of images (x_p: x padded by p; g: the cotangent):

        dW[ky, kx, i, o] = sum_{b, y, x} x_p[b, y + ky, x + kx, i] g[b, y, x, o]
                         = (patches of x, padded by p)^T @ g                          (x the narrower, i <= o)
                         = flip_swap((patches of g, padded by k - 1 - p)^T @ x)        (g narrower; x unpadded)
                         = (x's rows shifted)^T @ (g's columns shifted)               (`shifted_pair`)

    one chunk of images at a time (a `lax.scan`), so the k * k-fold patch copy never exists for the whole batch
    (1.7 GB for the MONet decoder's 320 images), and each chunk pads its own slice (no padded copy of x). Of the
    patch forms, the narrower operand's (fewer columns to gather: half the time of x's for the U-Net's 64 -> 32
    layer at 64 x 64). Large images (`PER_IMAGE_PIXELS`) take one product per image and a sum, which XLA:CPU runs
    faster than one product over the chunk's rows at 64 x 64 and slower at 16 x 16 and below; there the shifted pair
    replaces the patches when it gathers fewer columns (i + o < k min(i, o)), since XLA:CPU copies each tap's window
    and then the concatenation: the gathered columns, not the products, were the cost. Unpadded (the decoder), x's
    row windows are slices of x, and k products of them with G, without gathering X, beat the one product of the
    pair. The commits that made each choice give its paired measurements (`git log -- noisegroup/models/layers.py`,
    where these forms lived before this module).

    Args:
        x: `[b, h, w, i]`.
        cotangent: `[b, h + 2p - k + 1, w + 2p - k + 1, o]`.
        k: the kernel size.
        padding: p, 0 <= p <= k - 1.
        chunk: images per scan step, at most; default about `PATCH_ROWS` patch rows and at least
            `MIN_CHUNK_IMAGES` images. The largest divisor of b up to it is taken.

    Returns:
        `[k, k, i, o]`.
    """
    b, c_in, c_out = x.shape[0], x.shape[-1], cotangent.shape[-1]
    from_x = c_in <= c_out
    pixels = math.prod(cotangent.shape[1:3]) if from_x else math.prod(x.shape[1:3])  # patch rows per image
    per_image = pixels >= PER_IMAGE_PIXELS
    form = "shifted" if per_image and c_in + c_out < k * min(c_in, c_out) else "x" if from_x else "cotangent"
    chunk = max(MIN_CHUNK_IMAGES, PATCH_ROWS // pixels) if chunk is None else chunk
    chunk = max(d for d in range(1, min(chunk, b) + 1) if b % d == 0)
    products = "bpr,bpo->bro" if per_image else "bpr,bpo->ro"

    def flat_rows(a):  # [chunk, h, w, c] -> [chunk, h w, c]
        return a.reshape(chunk, -1, a.shape[-1])

    def add_chunk(total, start):
        # Slices of the whole arrays, not a chunked reshape of them, which XLA:CPU materialises apart (with the
        # activation that produced x recomputed into it).
        x_chunk = jax.lax.dynamic_slice_in_dim(x, start, chunk)
        g_chunk = jax.lax.dynamic_slice_in_dim(cotangent, start, chunk)
        if form == "shifted" and padding == 0:  # k products of x's row windows (slices) with G: [(ky, i), (kx, o)]
            columns = flat_rows(shifted_columns(g_chunk, k, x.shape[2]))
            products_by_row = [jnp.einsum(products, flat_rows(window), columns).sum(0)
                               for window in row_windows(x_chunk, k, cotangent.shape[1])]
            return total + jnp.concatenate(products_by_row, axis=0), None
        if form == "shifted":  # [chunk, h' (w + 2p), (ky, i)] against [chunk, h' (w + 2p), (kx, o)]
            rows, other = shifted_pair(x_chunk, g_chunk, k, padding)
        elif form == "x":  # rows [chunk, h' w', (ky, kx, i)] against the cotangent [chunk, h' w', o]
            rows, other = patches(x_chunk, k, 1, padding), g_chunk
        else:  # rows [chunk, h w, (ty, tx, o)] (ty = k - 1 - ky) against x [chunk, h w, i]
            rows, other = patches(g_chunk, k, 1, k - 1 - padding), x_chunk
        product = jnp.einsum(products, flat_rows(rows), flat_rows(other))
        return total + (product.sum(0) if product.ndim == 3 else product), None

    shape = {"shifted": (k * c_in, k * c_out), "x": (k * k * c_in, c_out), "cotangent": (k * k * c_out, c_in)}[form]
    total, _ = jax.lax.scan(add_chunk, jnp.zeros(shape, x.dtype), jnp.arange(0, b, chunk))
    if form == "shifted":  # [(ky, i), (kx, o)]
        return total.reshape(k, c_in, k, c_out).transpose(0, 2, 1, 3)
    return total.reshape(k, k, c_in, c_out) if form == "x" else flip_swap(total.reshape(k, k, c_out, c_in))


def _stride1_forward(x: jax.Array, w: jax.Array, padding: int) -> jax.Array:
    """Stride-1 convolution with symmetric zero padding as XLA:CPU runs it fastest: unpadded as the full
    convolution cropped (`_valid_conv_forward`), padded as it is."""
    return _valid_conv_forward(x, w) if padding == 0 else native_conv(x, w, 1, padding)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def stride1_conv(x: jax.Array, w: jax.Array, padding: int = 0) -> jax.Array:
    """Stride-1 convolution with symmetric zero padding 0 <= `padding` <= k - 1 (`native_conv(x, w, 1, padding)`),
    fast on CPU in all three computations.

    Forward: `_stride1_forward`. Input gradient: the convolution of the cotangent with the flipped, swapped kernel,
    padding k - 1 - `padding` (XLA's own form, already fast). Weight gradient: patch products in chunks of images
    (`chunked_patch_weight_grad` on x padded). XLA's native weight gradient would be the slow part of the MONet
    step: up to ~3x slower per layer (`python -m benchmarks.monet_layers`, columns "engine" and "xla").

    Args:
        x: `[b, h, w, i]`.
        w: `[k, k, i, o]` HWIO kernel, k >= 2.
        padding: zeros on each side of both spatial axes (static).

    Returns:
        `[b, h + 2 padding - k + 1, w + 2 padding - k + 1, o]`.
    """
    return _stride1_forward(x, w, padding)


def _stride1_conv_fwd(x, w, padding):
    return _stride1_forward(x, w, padding), (x, w)


def _stride1_conv_bwd(padding, residuals, cotangent):
    x, w = residuals
    k = w.shape[0]
    grad_x = _stride1_forward(cotangent, flip_swap(w), k - 1 - padding)  # unpadded (p = k - 1): full and cropped
    return grad_x, chunked_patch_weight_grad(x, cotangent, k, padding)


stride1_conv.defvjp(_stride1_conv_fwd, _stride1_conv_bwd)


# _UPSAMPLE_TAPS[a, d, t]: which 3 x 3 kernel row t reaches low-resolution row m - 1 + a + d (d in {0, 1}) from
# output row 2m + a of a padding-1 convolution of the nearest x2 upsampling (rows 2m + a - 1 .. 2m + a + 1 of the
# upsampled image are low rows m - 1, m, m for a = 0 and m, m, m + 1 for a = 1).
_UPSAMPLE_TAPS = (((1, 0, 0), (0, 1, 1)),
                  ((1, 1, 0), (0, 0, 1)))


def upsampled_conv(h: jax.Array, w: jax.Array) -> jax.Array:
    """`native_conv(upsample(h), w, 1, 1)` (nearest x2 upsampling, then a 3 x 3 stride-1 padding-1 convolution)
    in sub-pixel form: 4/9 of the products, and no upsampled copy of `h`.

    Output pixel (2m + a, 2n + b) sees low-resolution rows m - 1 + a + d and columns n - 1 + b + e (d, e in
    {0, 1}) through the phase kernel K[d, e, i, (a, b, o)] = sum of the 3 x 3 taps that land on them
    (`_UPSAMPLE_TAPS`). So one 2 x 2 `stride1_conv` of `h` with padding 1 and 4 * o channels gives all four phases
    on an (h + 1) x (w + 1) grid, interleaved into the output (`interleave_phases`).
    The MONet U-Net's up blocks (`noisegroup.models.unet`; their forward takes about half the time of the
    upsampled copy convolved: `python -m benchmarks.monet_layers`).

    Args:
        h: `[b, h, w, i]`.
        w: `[3, 3, i, o]` HWIO kernel.

    Returns:
        `[b, 2h, 2w, o]`.
    """
    if w.shape[:2] != (3, 3):
        raise ValueError(f"upsampled_conv takes a 3 x 3 kernel, got {w.shape[:2]}")
    taps = jnp.asarray(_UPSAMPLE_TAPS, w.dtype)
    phase_kernel = jnp.einsum("adt,beu,tuio->deiabo", taps, taps, w).reshape(2, 2, w.shape[2], 4 * w.shape[3])
    return interleave_phases(stride1_conv(h, phase_kernel, 1))


def valid_conv(x: jax.Array, w: jax.Array) -> jax.Array:
    """Stride-1 convolution without padding (`native_conv(x, w, 1, 0)`): `stride1_conv(x, w, 0)`.

    Args:
        x: `[b, h, w, i]`.
        w: `[k, k, i, o]` HWIO kernel, k >= 2.

    Returns:
        `[b, h - k + 1, w - k + 1, o]`.
    """
    return stride1_conv(x, w, 0)


# --- forward mode ---------------------------------------------------------------------------------------------


def bilinear_jvp(forward):
    """`forward(x, w)`, bilinear in (x, w), as a `jax.custom_jvp` function whose rule runs `forward` itself:

        d forward(x, w) = forward(dx, w) + forward(x, dw),

    a symbolically zero tangent's term skipped (differentiating by the input only, as a Jacobian in the latents
    does, costs one fast forward per tangent, not two).
    """
    fn = jax.custom_jvp(forward)

    def rule(primals, tangents):
        (x, w), (dx, dw) = primals, tangents
        out = fn(x, w)
        terms = [fn(t, w) for t in (dx,) if not isinstance(t, SymbolicZero)]
        terms += [fn(x, t) for t in (dw,) if not isinstance(t, SymbolicZero)]
        return out, sum(terms[1:], terms[0]) if terms else jnp.zeros_like(out)

    fn.defjvp(rule, symbolic_zeros=True)
    return fn


strided_conv_jvp = bilinear_jvp(lambda x, w: native_conv(x, w, 2, 1))
strided_conv_jvp.__doc__ = "`strided_conv`'s function with a forward-mode rule (native forward convolutions)."
strided_conv_transpose_jvp = bilinear_jvp(subpixel_conv_transpose)
strided_conv_transpose_jvp.__doc__ = ("`strided_conv_transpose`'s function with a forward-mode rule (sub-pixel "
                                      "forwards).")
same_conv_jvp = bilinear_jvp(_same_conv_forward)
same_conv_jvp.__doc__ = "`same_conv`'s function with a forward-mode rule (im2col forward for a narrow input)."
valid_conv_jvp = bilinear_jvp(_valid_conv_forward)
valid_conv_jvp.__doc__ = "`valid_conv`'s function with a forward-mode rule (full convolutions, cropped)."
