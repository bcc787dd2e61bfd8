"""The attention U-Net of MONet (spec section 1.2): one logit map per call, NHWC.

    unet = UNet(image_size=64, in_channels=4, base_channels=32, rngs=nnx.Rngs(params=key))
    logits = unet(jnp.concatenate([x, log_scope], axis=-1))     # [b, 64, 64, 4] -> [b, 64, 64, 1]
    stages = unet.stages(x)                                     # every block's output, for shape checks

Block = 3x3 conv, stride 1, padding 1, **no bias** -> instance norm (learned scale and bias, eps 1e-5) -> ReLU ->
nearest resize x2 (down on the contracting path, up on the expanding path; none after the last block of each path).
Number of blocks per path n = log2(image size) - 1 (5 at 64 x 64, 6 at 128 x 128: genesis' rule).

Skips are the down blocks' outputs after the ReLU, before downsampling; up block i takes concat(previous, skip of
down block n-1-i) (channels last: [previous, skip]). Bottleneck: the last skip, flattened, through an MLP
(hidden 128, 128; output = the last skip's size; ReLU after all three layers), reshaped and concatenated with that
same skip before the first up block (flattened in NHWC order, PyTorch's in NCHW: a permutation of the MLP's
weights, the same function class). Head: 1x1 conv (with bias, as genesis) to 1 logit.

Channels with base c (genesis/addtt, the "light" variant of spec 1.2): the last three down blocks have 2c, earlier
ones c; the first two up blocks output 2c, the others c. At n = 5: down [c, c, 2c, 2c, 2c], up [2c, 2c, c, c, c],
up inputs [4c, 4c, 4c, 2c, 2c]; genesis' own tables for n = 4 and 6 follow the same rule. The shape walk at
64 x 64, c = 32 (spec 1.2):

    64^2 x 4 -> D1 64^2 x 32 (skip1) -> 32^2 -> D2 32^2 x 32 -> 16^2 -> D3 16^2 x 64 -> 8^2 -> D4 8^2 x 64 -> 4^2
    -> D5 4^2 x 64 (skip5, no resize) -> MLP 1024 -> 128 -> 128 -> 1024 -> 4^2 x 64 (+ skip5: 128 ch)
    -> U1 4^2 x 64 -> 8^2 (+ skip4) -> U2 8^2 x 64 -> 16^2 (+ skip3) -> U3 16^2 x 32 -> 32^2 (+ skip2)
    -> U4 32^2 x 32 -> 64^2 (+ skip1) -> U5 64^2 x 32 -> 1x1 conv -> 64^2 x 1
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from noisegroup.models.blocks import Conv, Dense, GroupNorm, InstanceNorm, downsample, init_layers, upsample
from noisegroup.models.conv_forms import stride1_conv, upsampled_conv
from noisegroup.models.layers import resolve_impl


def num_blocks_for(image_size: int) -> int:
    """Blocks per path for square images of side `image_size` (a power of two >= 8): log2(size) - 1.

    Raises:
        ValueError: naming a size that is not a power of two >= 8.
    """
    if image_size < 8 or image_size & (image_size - 1):
        raise ValueError(f"the MONet U-Net takes square images whose side is a power of two >= 8, got {image_size}")
    return int(math.log2(image_size)) - 1


def unet_channels(num_blocks: int, base: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(down-block output channels, up-block output channels) for `num_blocks` blocks of base width `base`."""
    down = tuple(base if i < num_blocks - 3 else 2 * base for i in range(num_blocks))
    up = tuple(2 * base if i < 2 else base for i in range(num_blocks))
    return down, up


NORMS = ("instance", "group")


class ConvBlock(nnx.Module):
    """3x3 conv (no bias) -> instance norm (MONet) or group norm of 8 groups (GENESIS-v2) -> ReLU:
    `[b, h, w, c_in]` -> `[b, h, w, c_out]` (resizing is the caller's)."""

    def __init__(self, c_in: int, c_out: int, conv_impl: str = "auto", norm: str = "instance"):
        if norm not in NORMS:
            raise ValueError(f"U-Net norm must be one of {NORMS}, got {norm!r}")
        self.conv = Conv(c_in, c_out, 3, padding=1, bias=False, impl=conv_impl)
        self.norm = InstanceNorm(c_out, impl=conv_impl) if norm == "instance" else GroupNorm(c_out, 8)

    def __call__(self, x: jax.Array) -> jax.Array:
        return jax.nn.relu(self.norm(self.conv(x)))

    def upsampled(self, low: jax.Array, skip: jax.Array) -> jax.Array:
        """The block of `concat([upsample(low), skip])`: `[b, h, w, c_low]`, `[b, 2h, 2w, c_skip]` ->
        `[b, 2h, 2w, c_out]`.

        With the "fast" impl (CPU's "auto") the conv is split by input channels: the upsampled part in sub-pixel
        form (`conv_forms.upsampled_conv`, 4/9 of its products), the skip part as it is, and the concatenated copy is
        never made. The same function and parameters as the plain statement (the other impls)."""
        if resolve_impl(self.conv.impl) != "fast":
            return self(jnp.concatenate([upsample(low), skip], axis=-1))
        kernel, c_low = self.conv.kernel[...], low.shape[-1]
        y = upsampled_conv(low, kernel[:, :, :c_low]) + stride1_conv(skip, kernel[:, :, c_low:], 1)
        return jax.nn.relu(self.norm(y))


class UNet(nnx.Module):
    """MONet's attention U-Net: `[b, s, s, in_channels]` -> logits `[b, s, s, 1]`.

    Args:
        image_size: side s of the square input (a power of two >= 8).
        in_channels: input channels (MONet: 3 image channels + 1 log scope).
        base_channels: c of the channel rule in the module docstring.
        mlp_hidden: width of the bottleneck MLP's two hidden layers.
        init_scheme: `noisegroup.models.blocks.INIT_SCHEMES` (every conv and dense layer from one draw of
            `rngs.params()`: `blocks.init_layers`).
        conv_impl: how the 3x3 convs and instance norms run and differentiate (`noisegroup.models.layers.IMPLS`;
            "auto": on CPU the convs' patch weight gradient, `conv_forms.stride1_conv`, the up blocks' upsampled input
            in sub-pixel form, `ConvBlock.upsampled`, and the norms' closed-form gradient, `blocks.instance_norm`).
        norm: "instance" (MONet) or "group" (GENESIS-v2's encoder: GroupNorm with 8 groups).
        head: end in the 1x1 conv to one logit (MONet); False: return the last up block's features
            `[b, s, s, c]` (GENESIS-v2, whose U-Net drops the final conv).
    """

    def __init__(self, image_size: int, in_channels: int = 4, base_channels: int = 32, mlp_hidden: int = 128, *,
                 init_scheme: str = "pytorch", conv_impl: str = "auto", norm: str = "instance", head: bool = True,
                 rngs: nnx.Rngs):
        n = num_blocks_for(image_size)
        down, up = unet_channels(n, base_channels)
        self.bottleneck_size = image_size // 2 ** (n - 1)  # the last down block's side (4 for any 2^(n+1) input)
        self.bottleneck_channels = down[-1]
        ins = (in_channels, *down[:-1])
        self.down = nnx.List([ConvBlock(i, o, conv_impl, norm) for i, o in zip(ins, down)])
        # up block i: [previous output (the MLP's for i = 0), skip of down block n-1-i]
        up_ins = [prev + skip for prev, skip in zip((down[-1], *up[:-1]), down[::-1])]
        self.up = nnx.List([ConvBlock(i, o, conv_impl, norm) for i, o in zip(up_ins, up)])
        flat = self.bottleneck_size**2 * down[-1]
        self.mlp = nnx.List([Dense(flat, mlp_hidden), Dense(mlp_hidden, mlp_hidden), Dense(mlp_hidden, flat)])
        self.head = Conv(up[-1], 1, 1) if head else None
        init_layers(self, rngs.params(), init_scheme)

    def stages(self, x: jax.Array) -> dict[str, jax.Array | list[jax.Array]]:
        """Every stage of a forward pass of `x` `[b, s, s, in_channels]`.

        Returns:
            {"down": n block outputs (after ReLU, before resizing: the skips), "bottleneck": the MLP's output
            reshaped to the last skip's shape, "up": n block outputs (before resizing), "logits": `[b, s, s, 1]`}.
        """
        skips = []
        for i, block in enumerate(self.down):
            x = block(x)
            skips.append(x)
            if i < len(self.down) - 1:
                x = downsample(x)
        h = x.reshape(x.shape[0], -1)  # [b, side^2 * c_last], flattened in NHWC order
        for dense in self.mlp:
            h = jax.nn.relu(dense(h))  # ReLU after all three layers (spec 1.2)
        bottleneck = h.reshape(x.shape)
        h = self.up[0](jnp.concatenate([bottleneck, skips[-1]], axis=-1))
        ups = [h]
        for i, block in enumerate(self.up[1:], start=2):  # the others take the previous block's output upsampled
            h = block.upsampled(h, skips[-i])
            ups.append(h)
        return {"down": skips, "bottleneck": bottleneck, "up": ups, "logits": h if self.head is None else self.head(h)}

    def __call__(self, x: jax.Array) -> jax.Array:
        """`[b, s, s, in_channels]` -> logits `[b, s, s, 1]` (features `[b, s, s, c]` without the head)."""
        return self.stages(x)["logits"]
