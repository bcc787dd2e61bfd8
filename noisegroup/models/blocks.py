"""Small NHWC building blocks of the MONet networks, initialised as PyTorch (or pix2pix) initialises them.

    conv = Conv(4, 32, 3, padding=1, bias=False)    # [b, h, w, 4] -> [b, h, w, 32], created at zero
    norm = InstanceNorm(32)                         # learned scale (1) and bias (0)
    dense = Dense(1024, 128)
    init_layers(network, rngs.params(), "pytorch")  # every Conv and Dense in `network` from one random draw

Initialisation schemes (`INIT_SCHEMES`; spec section 1.4 asks to pick one and record it):
    "pytorch"  PyTorch's defaults for `nn.Conv2d` / `nn.Linear`: weights Kaiming-uniform with a = sqrt(5), i.e.
               U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)); fan_in = c_in k k.
               What a PyTorch reimplementation (Komatsu's) gets unless it says otherwise.
    "normal"   baudm/MONet-pytorch (pix2pix's `init_weights`): weights N(0, 0.02^2), biases 0.
Instance-norm scales start at 1 and biases at 0 under both (pix2pix's normal init touches BatchNorm only).

Resizing is nearest-neighbour by exactly 2, as PyTorch's `interpolate(scale_factor=0.5 / 2, mode="nearest")`:
down = every second row and column from 0, up = each row and column repeated twice (spec section 8).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from flax import nnx

from noisegroup.models.conv_forms import native_conv, stride1_conv, valid_conv_jvp
from noisegroup.models.layers import resolve_impl

INIT_SCHEMES = ("pytorch", "normal")


class Conv(nnx.Module):
    """k x k convolution (cross-correlation), symmetric zero padding (PyTorch's), HWIO kernel, optional bias.
    Created at zero: the network that owns it draws its values (`init_layers`). `impl` ("auto", "fast", "fast_jvp",
    "native": `noisegroup.models.layers`) picks how a stride-1 convolution runs and differentiates; the function is the
    same."""

    def __init__(self, c_in: int, c_out: int, kernel: int, *, stride: int = 1, padding: int = 0, bias: bool = True,
                 impl: str = "auto"):
        self.stride, self.padding, self.impl = stride, padding, impl
        self.kernel = nnx.Param(jnp.zeros((kernel, kernel, c_in, c_out), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((c_out,), jnp.float32)) if bias else None
        self.fan_in = kernel * kernel * c_in

    def __call__(self, x: jax.Array) -> jax.Array:
        """`[b, h, w, c_in]` -> `[b, (h + 2 padding - k) // stride + 1, ..., c_out]`."""
        if self.kernel.shape[:2] == (1, 1) and self.stride == 1 and self.padding == 0:
            # A 1 x 1 convolution is a matrix product over channels. Written as one, it stays a product when seeds
            # are vmapped over a device mesh, where XLA's partitioner rejects the grouped convolution that vmap
            # makes of a 1-output-channel conv (the U-Net's mask head: "feature_group_count").
            y = x @ self.kernel[0, 0]
        elif self.stride == 1 and self.padding < self.kernel.shape[0] and (impl := resolve_impl(self.impl)) != "native":
            # XLA:CPU's weight gradients and unpadded convolutions are its slow ones (`conv_forms.stride1_conv`); a
            # padded forward is native already, so forward mode needs a twin for the unpadded case only.
            if impl == "fast":
                y = stride1_conv(x, self.kernel[...], self.padding)
            elif self.padding == 0:
                y = valid_conv_jvp(x, self.kernel[...])
            else:
                y = native_conv(x, self.kernel[...], 1, self.padding)
        else:
            y = native_conv(x, self.kernel[...], self.stride, self.padding)
        return y if self.bias is None else y + self.bias[...]


class Dense(nnx.Module):
    """Fully connected layer `[..., features_in]` -> `[..., features_out]`. Created at zero (`init_layers`).
    `fan_in` overrides the fan-in of the "pytorch" scheme (an LSTM's layers draw from U(+-1/sqrt(hidden)))."""

    def __init__(self, features_in: int, features_out: int, *, fan_in: int | None = None):
        self.kernel = nnx.Param(jnp.zeros((features_in, features_out), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((features_out,), jnp.float32))
        self.fan_in = fan_in or features_in

    def __call__(self, x: jax.Array) -> jax.Array:
        return x @ self.kernel[...] + self.bias[...]


class ConvTranspose(nnx.Module):
    """PyTorch's `ConvTranspose2d(c_in, c_out, kernel, stride, padding, output_padding)` up to the kernel's layout
    (HWIO, not flipped: the same function class), created at zero (`init_layers`; PyTorch's fan-in of a transposed
    conv is c_out k k). `[b, h, w, c_in]` -> `[b, (h - 1) stride - 2 padding + kernel + output_padding, ..., c_out]`:
    the convolution of the stride-dilated input padded by (k - 1 - p, k - 1 - p + output_padding)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, *, stride: int = 1, padding: int = 0,
                 output_padding: int = 0):
        self.stride, self.padding, self.output_padding = stride, padding, output_padding
        self.kernel = nnx.Param(jnp.zeros((kernel, kernel, c_in, c_out), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((c_out,), jnp.float32))
        self.fan_in = kernel * kernel * c_out

    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.kernel[...]
        k, s, p, op = kernel.shape[0], self.stride, self.padding, self.output_padding
        low = k - 1 - p
        if x.shape[1:3] == (1, 1) and s == 1 and p == 0 and op == 0:
            # A 1 x 1 map to k x k (GENESIS's first mask-decoder layer): one matrix product.
            y = (x.reshape(x.shape[0], -1) @ kernel[::-1, ::-1].transpose(2, 0, 1, 3).reshape(kernel.shape[2], -1))
            y = y.reshape(x.shape[0], k, k, -1)
        elif s == 1 and op == 0 and 2 * p + 1 == k:  # the dilation is the identity: a 'same' convolution
            y = _stride1_conv(x, kernel, p)
        elif s == 2 and low + op == k - low:  # out = 2 in: four phases of one conv, no zeros
            y = _subpixel_conv_transpose(x, kernel, low)
        else:
            y = jax.lax.conv_general_dilated(x, kernel, (1, 1), ((low, low + op),) * 2, lhs_dilation=(s, s),
                                             dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return y + self.bias[...]


def _stride1_conv(x: jax.Array, kernel: jax.Array, padding: int) -> jax.Array:
    """A stride-1 convolution with symmetric padding, by `Conv`'s CPU-fast path (`conv_forms.stride1_conv`)."""
    if resolve_impl("auto") == "fast":
        return stride1_conv(x, kernel, padding)
    return native_conv(x, kernel, 1, padding)


def _subpixel_conv_transpose(x: jax.Array, kernel: jax.Array, low: int) -> jax.Array:
    """The stride-2 transposed convolution `[b, h, w, i]` -> `[b, 2h, 2w, o]` (the convolution of the 2-dilated input
    padded by `low` before, `k - 1 - low` after: PyTorch's k5 s2 p2 output_padding 1) as ONE stride-1 convolution of
    the undilated input with 4 o outputs and a depth-to-space interleave.

    Output row 2m + a reads input rows m + (a + t - low) / 2 for the taps t with a + t - low even: for k = 5, low = 2,
    rows m - 1, m, m + 1 (taps 0, 2, 4) at a = 0 and rows m, m + 1 (taps 1, 3) at a = 1. One 3 x 3 kernel holds both
    phases (zeros where a phase has no tap), so the products with the dilation's zeros (3/4 of the naive form's) are
    never made, and XLA:CPU's slow dilated-convolution gradient is avoided.
    """
    k, _, c_in, c_out = kernel.shape
    offsets = {a: {t: (a + t - low) // 2 for t in range(k) if (a + t - low) % 2 == 0} for a in (0, 1)}
    first = min(min(o.values()) for o in offsets.values())
    last = max(max(o.values()) for o in offsets.values())
    taps = last - first + 1
    # tap_index[a][r] = the kernel tap that phase a applies at offset first + r (k: none -> a zero row appended).
    tap_index = [[next((t for t, o in offsets[a].items() if o == first + r), k) for r in range(taps)] for a in (0, 1)]
    padded = jnp.concatenate([kernel, jnp.zeros((1, k, c_in, c_out), kernel.dtype)], axis=0)
    padded = jnp.concatenate([padded, jnp.zeros((k + 1, 1, c_in, c_out), kernel.dtype)], axis=1)
    rows = jnp.asarray(tap_index)  # [2, taps]
    # phase_kernel[r, c, i, a, b', o] = kernel[tap_index[a][r], tap_index[b'][c], i, o]
    phase_kernel = padded[rows[:, :, None, None], rows[None, None, :, :]]  # [2, taps, 2, taps, i, o]
    phase_kernel = phase_kernel.transpose(1, 3, 4, 0, 2, 5).reshape(taps, taps, c_in, 4 * c_out)
    if first == -last:  # symmetric support: a 'same' convolution
        y = _stride1_conv(x, phase_kernel, last)
    else:
        xp = jnp.pad(x, ((0, 0), (-first, last), (-first, last), (0, 0)))
        y = _stride1_conv(xp, phase_kernel, 0)
    b, h, w, _ = y.shape
    y = y.reshape(b, h, w, 2, 2, c_out).transpose(0, 1, 3, 2, 4, 5)  # [b, h, a, w, b', o]
    return y.reshape(b, 2 * h, 2 * w, c_out)


def init_layers(module: nnx.Module, key: jax.Array, scheme: str) -> None:
    """Draws the weights and biases of every `Conv`, `ConvTranspose` and `Dense` inside `module`, in place, from ONE
    random draw.

    One draw of all the values instead of one per tensor: XLA:CPU compiles each threefry draw separately, so one
    draw per tensor made a network's initialisation compile many times longer. The
    distribution is the scheme's exactly (module docstring); fan_in is the layer's `fan_in` (k k c_in for a conv,
    k k c_out for a transposed one, features_in for a dense layer unless it says otherwise). Layers are visited in `nnx.iter_graph` order (deterministic).

    Raises:
        ValueError: an unknown scheme.
    """
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"init_scheme must be one of {INIT_SCHEMES}, got {scheme!r}")
    layers = [node for _, node in nnx.iter_graph(module) if isinstance(node, (Conv, ConvTranspose, Dense))]
    drawn = [(layer, name) for layer in layers for name in ("kernel", "bias")
             if getattr(layer, name) is not None and (scheme == "pytorch" or name == "kernel")]
    total = sum(getattr(layer, name).size for layer, name in drawn)
    if scheme == "pytorch":  # U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases
        values = jax.random.uniform(key, (total,), jnp.float32, -1.0, 1.0)
    else:  # N(0, 0.02^2) weights; biases stay 0
        values = 0.02 * jax.random.normal(key, (total,), jnp.float32)
    offset = 0
    for layer, name in drawn:
        param = getattr(layer, name)
        scale = 1.0 / math.sqrt(layer.fan_in) if scheme == "pytorch" else 1.0
        param[...] = scale * values[offset:offset + param.size].reshape(param.shape)
        offset += param.size


class InstanceNorm(nnx.Module):
    """PyTorch's `InstanceNorm2d(c, affine=True)`: per example and channel, normalise over h and w with the biased
    variance, then a learned scale (init 1) and bias (init 0); no running statistics.

        y = (x - mean_hw(x)) / sqrt(var_hw(x) + eps) * scale + bias

    `impl` as `Conv`'s: "fast" (CPU's "auto") differentiates by the closed form (`instance_norm`, reverse mode
    only); "native" and "fast_jvp" by autodiff of the statement (forward mode too). The function is the same.
    """

    def __init__(self, channels: int, *, epsilon: float = 1e-5, impl: str = "auto"):
        self.epsilon, self.impl = epsilon, impl
        self.scale = nnx.Param(jnp.ones((channels,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((channels,), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        """`[b, h, w, c]` -> `[b, h, w, c]`."""
        if resolve_impl(self.impl) == "fast":
            return instance_norm(x, self.scale[...], self.bias[...], self.epsilon)
        mean, inv_std = _instance_stats(x, self.epsilon)
        return (x - mean) * inv_std * self.scale[...] + self.bias[...]


class GroupNorm(nnx.Module):
    """PyTorch's `GroupNorm(groups, c)`: per example, normalise each group of c / groups channels over h, w and its
    channels (biased variance, eps 1e-5), then a learned scale (1) and bias (0) per channel. `[b, h, w, c]`."""

    def __init__(self, channels: int, groups: int = 8, *, epsilon: float = 1e-5):
        if channels % groups:
            raise ValueError(f"GroupNorm: {groups} groups must divide {channels} channels")
        self.groups, self.epsilon = groups, epsilon
        self.scale = nnx.Param(jnp.ones((channels,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((channels,), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        shape = x.shape
        g = x.reshape(*shape[:-1], self.groups, shape[-1] // self.groups)
        axes = tuple(range(1, g.ndim - 2)) + (g.ndim - 1,)  # every axis but the batch's and the group's
        mean = jnp.mean(g, axis=axes, keepdims=True)
        var = jnp.mean(jnp.square(g - mean), axis=axes, keepdims=True)
        normalised = ((g - mean) * jax.lax.rsqrt(var + self.epsilon)).reshape(shape)
        return normalised * self.scale[...] + self.bias[...]


class LayerNorm(nnx.Module):
    """PyTorch's `LayerNorm(c)` (eps 1e-5; Flax's default is 1e-6) over the last axis, learned scale and bias."""

    def __init__(self, features: int, *, epsilon: float = 1e-5):
        self.epsilon = epsilon
        self.scale = nnx.Param(jnp.ones((features,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((features,), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        mean = jnp.mean(x, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
        return (x - mean) * jax.lax.rsqrt(var + self.epsilon) * self.scale[...] + self.bias[...]


def _instance_stats(x: jax.Array, epsilon: float) -> tuple[jax.Array, jax.Array]:
    """(mean, 1 / sqrt(biased variance + epsilon)) over h and w: `[b, 1, 1, c]` each (two passes, not E[x^2] -
    E[x]^2, which cancels in float32)."""
    mean = jnp.mean(x, axis=(1, 2), keepdims=True)
    return mean, jax.lax.rsqrt(jnp.mean(jnp.square(x - mean), axis=(1, 2), keepdims=True) + epsilon)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def instance_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float) -> jax.Array:
    """`(x - mean_hw(x)) / sqrt(var_hw(x) + epsilon) * scale + bias`: `[b, h, w, c]`, `[c]`, `[c]` -> `[b, h, w, c]`.

    Its gradient is the closed form (with x^ the normalised x, g the cotangent, n = h w, sums over h and w):

        d bias = sum_{b, h, w} g,   d scale = sum_{b, h, w} g x^,
        d x = scale / sqrt(var + epsilon) * (g - sum(g) / n - x^ sum(g x^) / n),

    two reductions and one elementwise pass, where autodiff of the statement takes several more passes over
    `[b, h, w, c]` on XLA:CPU (the U-Net's gradient: `python -m benchmarks.monet_step`).
    """
    mean, inv_std = _instance_stats(x, epsilon)
    return (x - mean) * inv_std * scale + bias


def _instance_norm_fwd(x, scale, bias, epsilon):
    mean, inv_std = _instance_stats(x, epsilon)
    return (x - mean) * inv_std * scale + bias, (x, mean, inv_std, scale)


def _instance_norm_bwd(epsilon, residuals, g):
    x, mean, inv_std, scale = residuals
    normalised = (x - mean) * inv_std
    sum_g = jnp.sum(g, axis=(1, 2), keepdims=True)  # [b, 1, 1, c]
    sum_g_normalised = jnp.sum(g * normalised, axis=(1, 2), keepdims=True)
    n = x.shape[1] * x.shape[2]
    grad_x = (scale * inv_std) * (g - sum_g / n - normalised * (sum_g_normalised / n))
    return grad_x, jnp.sum(sum_g_normalised, axis=(0, 1, 2)), jnp.sum(sum_g, axis=(0, 1, 2))


instance_norm.defvjp(_instance_norm_fwd, _instance_norm_bwd)


def downsample(x: jax.Array) -> jax.Array:
    """Nearest-neighbour resize by 1/2: `[b, h, w, c]` -> `[b, h/2, w/2, c]` (rows and columns 0, 2, 4, ...)."""
    return x[:, ::2, ::2]


def upsample(x: jax.Array) -> jax.Array:
    """Nearest-neighbour resize by 2: `[b, h, w, c]` -> `[b, 2h, 2w, c]` (each row and column twice)."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
