"""Convolution layers of the LNS networks, with matrix-product formulations that train fast on XLA:CPU.

XLA:CPU computes the weight gradient of a stride-2 transposed convolution (a convolution with input dilation)
very slowly: 4 to 7 s per layer at batch 64 for this network; its other convolution gradients are 3 to 8 times
their forward pass. The same functions can be written as matrix products, whose gradients are matrix products too:

* convolution: im2col (the k*k shifted, strided views of the padded input, concatenated on channels) times the
  kernel reshaped to `[k*k*in, out]`.

* stride-2 transposed conv, kernel 4, padding 1 (``2H`` out of ``H``): every output pixel ``(2m + a, 2n + b)``
  sees a 2 x 2 input window. One stride-1 2 x 2 convolution with ``4 * out`` channels (one block per phase
  ``(a, b)``) over the input padded by 1, then a depth-to-space interleave ("sub-pixel convolution"). Derivation
  with ``lax.conv_transpose``'s convention (correlate the zero-dilated input, padded by 2, with ``W``): output row
  ``2m + a`` takes input rows ``m - 1 + a + d`` with kernel row ``2d + a``, d in {0, 1}. So the phase kernel is
  ``K[d, e, i, (a, b, o)] = W[2d + a, 2e + b, i, o]``.
* transposed conv from a 1 x 1 map (kernel 4, padding 0): a dense layer, ``out[y, x, o] = sum_i x[i] W[3-y, 3-x, i, o]``.

The remaining 3 x 3 stride-1 transposed conv (the output layer) is a plain convolution; XLA's is fastest there.

Each fast form computes exactly the function of the standard layer with the same parameters (tests compare
forward passes and gradients with ``lax.conv_transpose`` / ``lax.conv_general_dilated``); `impl` picks one:
"fast", "native", or "auto" (fast on CPU, native on GPU/TPU, where cuDNN/XLA handle dilation well).

Parameters use HWIO kernels and the reference's initialisation: untruncated Kaiming-normal (fan-in) for
convolutions and dense layers with zero bias; PyTorch's default uniform for transposed convolutions, whose fan-in
PyTorch takes as ``out_channels * k * k``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

_DIMS = ("NHWC", "HWIO", "NHWC")
kaiming_normal = nnx.initializers.variance_scaling(2.0, "fan_in", "normal")  # untruncated, as torch's kaiming_normal_


def resolve_impl(impl: str) -> str:
    if impl not in ("auto", "fast", "native"):
        raise ValueError(f"conv impl must be 'auto', 'fast' or 'native', got {impl!r}")
    if impl == "auto":
        return "fast" if jax.default_backend() == "cpu" else "native"
    return impl


class Linear(nnx.Module):
    """Dense layer, Kaiming-normal weights, zero bias."""

    def __init__(self, features_in: int, features_out: int, *, rngs: nnx.Rngs):
        self.kernel = nnx.Param(kaiming_normal(rngs.params(), (features_in, features_out), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((features_out,), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        return x @ self.kernel[...] + self.bias[...]


class Conv(nnx.Module):
    """Convolution (NHWC) with symmetric padding `padding` (PyTorch's), Kaiming-normal weights, zero bias."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, *, impl="auto", rngs):
        self.stride, self.padding, self.impl = stride, padding, impl
        # fan_in = kernel * kernel * c_in: variance_scaling's fan-in for an HWIO shape.
        self.kernel = nnx.Param(kaiming_normal(rngs.params(), (kernel, kernel, c_in, c_out), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((c_out,), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        w = self.kernel[...]
        if resolve_impl(self.impl) == "fast":
            return im2col_conv(x, w, self.stride, self.padding) + self.bias[...]
        pad = ((self.padding, self.padding),) * 2
        y = jax.lax.conv_general_dilated(x, w, (self.stride,) * 2, pad, dimension_numbers=_DIMS)
        return y + self.bias[...]


class ConvTranspose(nnx.Module):
    """Transposed convolution equal to PyTorch's ``ConvTranspose2d(c_in, c_out, kernel, stride, padding)`` up to
    the kernel layout: it computes ``lax.conv_transpose(x, W, stride, [(k-1-p, k-1-p)] * 2)`` (HWIO ``W``, not
    flipped; a PyTorch weight ``w[i, o, y, x]`` corresponds to ``W = w[:, :, ::-1, ::-1].transpose(2, 3, 0, 1)``)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, *, impl="auto", rngs):
        self.kernel_size, self.stride, self.padding, self.impl = kernel, stride, padding, impl
        bound = 1 / math.sqrt(c_out * kernel * kernel)  # PyTorch's default init; its fan-in is c_out * k * k
        uniform = lambda key, shape: jax.random.uniform(key, shape, jnp.float32, -bound, bound)  # noqa: E731
        self.kernel = nnx.Param(uniform(rngs.params(), (kernel, kernel, c_in, c_out)))
        self.bias = nnx.Param(uniform(rngs.params(), (c_out,)))

    def __call__(self, x: jax.Array) -> jax.Array:
        """`[b, h, w, c_in]` -> `[b, h', w', c_out]`."""
        impl = resolve_impl(self.impl)
        k, s, p = self.kernel_size, self.stride, self.padding
        if impl == "fast" and s == 1 and p == 0 and x.shape[1:3] == (1, 1):
            y = upsample_from_point(x, self.kernel[...])
        elif impl == "fast" and (k, s, p) == (4, 2, 1):
            y = subpixel_conv_transpose(x, self.kernel[...])
        else:
            y = native_conv_transpose(x, self.kernel[...], s, p)
        return y + self.bias[...]


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
    b, h, wd, _ = x.shape
    padded = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0))) if padding else x
    h_out, w_out = (h + 2 * padding - k) // stride + 1, (wd + 2 * padding - k) // stride + 1
    span_h, span_w = stride * (h_out - 1) + 1, stride * (w_out - 1) + 1
    views = [padded[:, y : y + span_h : stride, x_ : x_ + span_w : stride] for y in range(k) for x_ in range(k)]
    patches = jnp.concatenate(views, axis=-1)  # [b, h', w', (ky, kx, i)]
    return (patches.reshape(-1, k * k * c_in) @ w.reshape(k * k * c_in, c_out)).reshape(b, h_out, w_out, c_out)


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
    y = im2col_conv(x, phase_kernel, 1, 1).reshape(b, h + 1, wd + 1, 2, 2, c_out)  # [b, h+1, w+1, a, b, o]
    # Phase (a, b) of output pixel (m, n) sits at window (m + a, n + b).
    rows = [jnp.stack([y[:, a : a + h, q : q + wd, a, q] for q in (0, 1)], axis=3) for a in (0, 1)]  # [b,h,w,2,o]
    return jnp.stack(rows, axis=2).reshape(b, 2 * h, 2 * wd, c_out)  # [b, h, a, w, q, o] -> [b, 2h, 2w, o]
