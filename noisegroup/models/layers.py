"""Convolution layers of the LNS networks, and the `impl` switch they share with MONet's blocks.

    conv = Conv(32, 64, 4, 2, 1, rngs=rngs)              # [b, 64, 64, 32] -> [b, 32, 32, 64]
    deconv = ConvTranspose(64, 32, 4, 2, 1, rngs=rngs)   # [b, 32, 32, 64] -> [b, 64, 64, 32]
    model = with_conv_impl(nnx.merge(graphdef, params), "fast_jvp")   # forward-mode capable, same parameters

Each layer sends its computation to one of the forms of `noisegroup.models.conv_forms`, by its `impl` (`IMPLS`):
"fast" (custom VJPs: the forms XLA:CPU trains fastest), "fast_jvp" (the same forwards with forward-mode rules: for
`noisegroup.lns.tangent`), "native" (XLA's convolutions and autodiff), or "auto" (fast on CPU, native on GPU/TPU,
where cuDNN/XLA handle dilation well). Every impl computes the same function of the same parameters:

    Conv, kernel 4, stride 2, padding 1                   `strided_conv`
    Conv of a k x k map to 1 x 1 (a dense layer)          `im2col_conv`
    Conv, stride 1, odd kernel, 'same' padding            `same_conv`
    ConvTranspose of a 1 x 1 map to k x k                 `upsample_from_point`
    ConvTranspose, kernel 4, stride 2, padding 1          `strided_conv_transpose`
    ConvTranspose, stride 1, odd kernel, 'same' padding   `same_conv` (the same function, `W` as it is)
    anything else, and impl "native"                      `native_conv`, `native_conv_transpose`

`with_conv_impl(model, impl)` switches a merged model's layers.

Parameters use HWIO kernels and the reference's initialisation: untruncated Kaiming-normal (fan-in) for
convolutions and dense layers with zero bias; PyTorch's default uniform for transposed convolutions, whose fan-in
PyTorch takes as ``out_channels * k * k``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from noisegroup.models.conv_forms import (
    im2col_conv,
    native_conv,
    native_conv_transpose,
    same_conv,
    same_conv_jvp,
    strided_conv,
    strided_conv_jvp,
    strided_conv_transpose,
    strided_conv_transpose_jvp,
    upsample_from_point,
)

kaiming_normal = nnx.initializers.variance_scaling(2.0, "fan_in", "normal")  # untruncated, as torch's kaiming_normal_


IMPLS = ("auto", "fast", "fast_jvp", "native")


def resolve_impl(impl: str) -> str:
    """"auto" -> "fast" on CPU, "native" elsewhere; any other of `IMPLS` as it is (ValueError otherwise)."""
    if impl not in IMPLS:
        raise ValueError(f"conv impl must be one of {IMPLS}, got {impl!r}")
    if impl == "auto":
        return "fast" if jax.default_backend() == "cpu" else "native"
    return impl


def with_conv_impl(model: nnx.Module, impl: str) -> nnx.Module:
    """Sets `impl` on every `Conv` / `ConvTranspose` of `model` (in place; returns it).

    Meant for a freshly merged model inside a traced function (`nnx.merge(graphdef, params)`), e.g. to take the
    forward-mode capable "fast_jvp" layers for a Jacobian; the parameters are untouched.
    """
    if impl not in IMPLS:
        raise ValueError(f"conv impl must be one of {IMPLS}, got {impl!r}")
    for _, module in nnx.iter_modules(model):
        if isinstance(module, (Conv, ConvTranspose)):
            module.impl = impl
    return model


def _fast_forms(impl: str):
    """(strided conv, strided transposed conv, same conv) of a resolved fast impl."""
    if impl == "fast":
        return strided_conv, strided_conv_transpose, same_conv
    return strided_conv_jvp, strided_conv_transpose_jvp, same_conv_jvp


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
        k, s, p = w.shape[0], self.stride, self.padding
        impl = resolve_impl(self.impl)
        fast = impl != "native"
        if fast:
            strided, _, same = _fast_forms(impl)
        if fast and (k, s, p) == (4, 2, 1) and x.shape[1] % 2 == 0 and x.shape[2] % 2 == 0:
            y = strided(x, w)
        elif fast and p == 0 and x.shape[1:3] == (k, k):  # k x k -> 1 x 1: a dense layer
            y = im2col_conv(x, w, s, p)
        elif fast and s == 1 and k % 2 == 1 and 2 * p + 1 == k:
            y = same(x, w)
        else:
            y = native_conv(x, w, s, p)
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
        fast = impl != "native"
        if fast:
            _, strided_transpose, same = _fast_forms(impl)
        if fast and s == 1 and p == 0 and x.shape[1:3] == (1, 1):
            y = upsample_from_point(x, self.kernel[...])
        elif fast and (k, s, p) == (4, 2, 1):
            y = strided_transpose(x, self.kernel[...])
        elif fast and s == 1 and k % 2 == 1 and 2 * p + 1 == k:  # = a 'same' conv with W as it is
            y = same(x, self.kernel[...])
        else:
            y = native_conv_transpose(x, self.kernel[...], s, p)
        return y + self.bias[...]
