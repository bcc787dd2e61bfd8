"""MONet (Burgess et al. 2019) and the loss terms of Komatsu, Ohmura & Kuniyoshi's ablation, as a model family.

    family = MonetFamily(num_slots=5)                      # or FAMILIES["monet"].from_config(config)
    model = family.build((64, 64, 3), nnx.Rngs(params=key))
    outputs = family.outputs(model, {"images": x}, family.sample_noise(key, {"images": x}))
    nll = LOSS_TERMS["nll"](outputs)                       # [b]; the engine weights and averages the terms

Forward pass (spec section 1.1), K slots, images x `[b, h, w, 3]` in the model's input range:
    attention   log s_0 = 0; for k = 1..K-1: a_k = UNet(concat(x, log s_{k-1})),
                log m_k = log s_{k-1} + log sigmoid(a_k), log s_k = log s_{k-1} + log sigmoid(-a_k);
                log m_K = log s_{K-1}. The masks telescope to sum 1 per pixel; the U-Net weights are shared.
    encoder     concat(x, log m_k) -> 3x3 stride-2 convs (32, 32, 64, 64), padding 1, ReLU -> flatten
                -> dense 256, ReLU -> dense 2 d = (mu, h): q(z_k) = N(mu, sigma^2), sigma from h (`POSTERIOR_SCALES`).
    decoder     z_k tiled to (h + 8) x (w + 8), + 2 coordinate channels linspace(-1, 1) (rows, columns), four
                3x3 valid convs of 32 + ReLU, 1x1 conv to 4: RGB means mu_k (`RGB_ACTIVATIONS`) and a mask logit;
                decoded masks m^_k = softmax over the K slots.
    The component VAE (encoder and decoder) runs once on all b K slots: `[b, k, ...]` -> `[b k, ...]`.

Choices where the sources disagree (spec section 7), all family fields:
    posterior_scale  "log_sigma" (default, the MONet paper's wording): sigma = exp(h); "log_var" (baudm):
                     sigma = exp(h / 2); "softplus" (genesis): sigma = softplus(h + 0.5) + 1e-8.
    rgb_activation   "linear" (default, for Komatsu's [-1, 1] inputs, as baudm), "sigmoid" (for [0, 1] inputs, as
                     genesis/stelzner/addtt), "tanh".
    input_range      "[-1,1]" (Komatsu: x' = 2x - 1 of the engine's [0, 1] images) or "[0,1]" (as given).
    sigma_bg/fg      first slot 0.09, the others 0.11 (MONet and every reimplementation; Komatsu wrote the reverse).
    init_scheme      "pytorch" (default: PyTorch's default init, what a PyTorch reimplementation gets) or "normal"
                     (baudm's N(0, 0.02)); `noisegroup.models.blocks`.
    sample_latent    False: z = mu, no noise (Komatsu's rule whenever beta = 0).

Loss terms: `noisegroup.models.monet_losses.LOSS_TERMS` (nll, kl, mask_kl, ir, mse, mw, mask_mse), read from the
outputs of `MonetFamily.outputs`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from noisegroup.metrics import segmentation_metrics
from noisegroup.models.blocks import INIT_SCHEMES, Conv, Dense, init_layers
from noisegroup.models.conv_forms import native_conv
from noisegroup.models.family import Batch, Family
from noisegroup.models.layers import IMPLS
from noisegroup.models.monet_losses import LOSS_TERMS, reconstruction_mse
from noisegroup.models.unet import UNet, num_blocks_for

POSTERIOR_SCALES = ("log_sigma", "log_var", "softplus")
RGB_ACTIVATIONS = {"linear": lambda x: x, "sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh}
INPUT_RANGES = ("[-1,1]", "[0,1]")


class ComponentEncoder(nnx.Module):
    """`[n, s, s, in_channels]` -> `[n, 2 latent_dim]` (mu, then the scale's raw half)."""

    def __init__(self, image_size: int, in_channels: int, channels: tuple[int, ...], hidden: int, latent_dim: int,
                 *, init_scheme: str, activation=jax.nn.relu, rngs: nnx.Rngs):
        self.activation = activation  # ReLU (MONet); GENESIS's component VAE takes ELU
        ins = (in_channels, *channels[:-1])
        # Explicit symmetric padding 1 (PyTorch's; Flax's 'SAME' pads stride-2 convs asymmetrically): s -> ceil(s/2).
        self.convs = nnx.List([Conv(i, o, 3, stride=2, padding=1) for i, o in zip(ins, channels)])
        side = image_size
        for _ in channels:
            side = (side - 1) // 2 + 1
        self.hidden = Dense(side * side * channels[-1], hidden)
        self.out = Dense(hidden, 2 * latent_dim)
        init_layers(self, rngs.params(), init_scheme)

    def __call__(self, x: jax.Array) -> jax.Array:
        for conv in self.convs:
            x = self.activation(conv(x))
        return self.out(self.activation(self.hidden(x.reshape(x.shape[0], -1))))


class BroadcastDecoder(nnx.Module):
    """Spatial broadcast decoder: `[n, latent_dim]` -> `[n, s, s, out_channels]` (no output activation).

    The first conv is computed without tiling z: an unpadded 3x3 window sees z at all of its taps, so that conv
    is z times the kernel's z part summed over the taps (one matrix product), plus the convolution of the two
    coordinate channels (the same for every z, computed once), plus the bias: the same function, without the
    `[n, s + 8, s + 8, latent_dim + 2]` input and its convolution.
    """

    def __init__(self, image_size: int, latent_dim: int, channels: tuple[int, ...], out_channels: int = 4, *,
                 init_scheme: str, conv_impl: str = "auto", activation=jax.nn.relu, rngs: nnx.Rngs):
        self.image_size, self.activation = image_size, activation  # ReLU (MONet) or ELU (GENESIS)
        ins = (latent_dim + 2, *channels[:-1])
        self.convs = nnx.List([Conv(i, o, 3, impl=conv_impl) for i, o in zip(ins, channels)])
        self.out = Conv(channels[-1], out_channels, 1)
        init_layers(self, rngs.params(), init_scheme)

    def coordinates(self) -> jax.Array:
        """`[1, s + 8, s + 8, 2]`: linspace(-1, 1) down the rows, then along the columns (the tiled input's last
        two channels)."""
        side = self.image_size + 2 * len(self.convs)  # each valid 3x3 conv takes 2 pixels: 72 -> 64 at s = 64
        grid = jnp.linspace(-1.0, 1.0, side)
        return jnp.stack(jnp.meshgrid(grid, grid, indexing="ij"), axis=-1)[None]

    def __call__(self, z: jax.Array) -> jax.Array:
        d = z.shape[1]
        first = self.convs[0]
        kernel = first.kernel[...]  # [3, 3, d + 2, c]: the z channels first, then rows and columns
        coordinates = native_conv(self.coordinates(), kernel[:, :, d:], 1, 0)[0]  # [s + 6, s + 6, c]: tiny
        if first.bias is not None:
            coordinates = coordinates + first.bias[...]
        # The coordinates' share goes to every z as a product with a column of ones, not a broadcast: the gradient
        # of a broadcast over the n z's is a sum over them, which XLA:CPU runs an order of magnitude slower than
        # this product's gradient (a matrix product; README, MONet speed).
        shared = (jnp.ones((z.shape[0], 1), z.dtype) @ coordinates.reshape(1, -1)).reshape(-1, *coordinates.shape)
        x = self.activation((z @ kernel[:, :, :d].sum(axis=(0, 1)))[:, None, None, :] + shared)
        for conv in self.convs[1:]:
            x = self.activation(conv(x))
        return self.out(x)

    def tiled_input(self, z: jax.Array) -> jax.Array:
        """The tiled input `[n, s + 8, s + 8, d + 2]` of the textbook statement (z at every pixel, then the
        coordinates) that `__call__` never builds: for tests and readers."""
        coords = self.coordinates()
        n, d = z.shape
        return jnp.concatenate([jnp.broadcast_to(z[:, None, None, :], (n, *coords.shape[1:3], d)),
                                jnp.broadcast_to(coords, (n, *coords.shape[1:]))], axis=-1)


class MONet(nnx.Module):
    """Attention network + component VAE. Deterministic: the reparameterisation noise is an argument.

    Args:
        image_size: side s of the square images (a power of two >= 8).
        num_slots: K >= 2.
        latent_dim: d per slot.
        unet_channels, unet_mlp_hidden: the U-Net's base width and bottleneck width (`noisegroup.models.unet`).
        encoder_channels, encoder_hidden: the component encoder's conv widths and hidden dense width.
        decoder_channels: widths of the broadcast decoder's valid 3x3 convs.
        posterior_scale, rgb_activation, init_scheme: see the module docstring.
        conv_impl: how the U-Net's and the decoder's 3x3 convs run and differentiate
            (`noisegroup.models.layers.IMPLS`; "auto": fast on CPU).
    """

    def __init__(self, image_size: int, num_slots: int = 5, latent_dim: int = 16, *, channels: int = 3,
                 unet_channels: int = 32, unet_mlp_hidden: int = 128, encoder_channels=(32, 32, 64, 64),
                 encoder_hidden: int = 256, decoder_channels=(32, 32, 32, 32), posterior_scale: str = "log_sigma",
                 rgb_activation: str = "linear", init_scheme: str = "pytorch", conv_impl: str = "auto",
                 rngs: nnx.Rngs):
        self.num_slots, self.latent_dim, self.channels = num_slots, latent_dim, channels
        self.posterior_scale, self.rgb_activation = posterior_scale, rgb_activation
        self.attention = UNet(image_size, channels + 1, unet_channels, unet_mlp_hidden, init_scheme=init_scheme,
                              conv_impl=conv_impl, rngs=rngs)
        self.encoder = ComponentEncoder(image_size, channels + 1, tuple(encoder_channels), encoder_hidden, latent_dim,
                                        init_scheme=init_scheme, rngs=rngs)
        self.decoder = BroadcastDecoder(image_size, latent_dim, tuple(decoder_channels), channels + 1,
                                        init_scheme=init_scheme, conv_impl=conv_impl, rngs=rngs)

    def attend(self, x: jax.Array) -> jax.Array:
        """Log attention masks `[b, k, h, w]` of images `[b, h, w, c]` (K-1 U-Net calls, log-space stick-breaking)."""
        log_scope = jnp.zeros(x.shape[:3], x.dtype)  # log s_0 = 0
        log_masks = []
        for _ in range(self.num_slots - 1):
            alpha = self.attention(jnp.concatenate([x, log_scope[..., None]], axis=-1))[..., 0]  # [b, h, w] logits
            log_masks.append(log_scope + jax.nn.log_sigmoid(alpha))  # log m_k = log s_{k-1} + log alpha_k
            log_scope = log_scope + jax.nn.log_sigmoid(-alpha)  # log s_k = log s_{k-1} + log(1 - alpha_k)
        log_masks.append(log_scope)  # the last slot takes the remaining scope
        return jnp.stack(log_masks, axis=1)

    def encode(self, x: jax.Array, log_masks: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(mu, log sigma^2) `[b, k, d]` of q(z_k | x, m_k), all slots in one call.

        Args:
            x: `[b, h, w, c]`.
            log_masks: `[b, k, h, w]`.
        """
        b, k, h, w = log_masks.shape
        slots = jnp.concatenate([jnp.broadcast_to(x[:, None], (b, k, h, w, x.shape[-1])), log_masks[..., None]], -1)
        raw = self.encoder(slots.reshape(b * k, h, w, -1)).reshape(b, k, 2 * self.latent_dim)
        mean, scale = raw[..., : self.latent_dim], raw[..., self.latent_dim :]
        if self.posterior_scale == "log_sigma":  # the paper's "log sigma": sigma = exp(h)
            logvar = 2.0 * scale
        elif self.posterior_scale == "log_var":  # baudm
            logvar = scale
        else:  # genesis: sigma = softplus(h + 0.5) + 1e-8
            logvar = 2.0 * jnp.log(jax.nn.softplus(scale + 0.5) + 1e-8)
        return mean, logvar

    def decode(self, z: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(RGB means `[b, k, h, w, c]`, mask logits `[b, k, h, w]`) of latents `[b, k, d]`, all slots in one call."""
        b, k, d = z.shape
        out = self.decoder(z.reshape(b * k, d))
        out = out.reshape(b, k, *out.shape[1:])  # [b, k, h, w, c + 1]
        return RGB_ACTIVATIONS[self.rgb_activation](out[..., :-1]), out[..., -1]

    def __call__(self, x: jax.Array, noise: jax.Array | None = None) -> dict[str, jax.Array]:
        """The forward pass of images `x` `[b, h, w, c]` (in the model's input range).

        Args:
            x: images.
            noise: `[b, k, d]` standard normal draws for z = mu + sigma noise; None: z = mu.

        Returns:
            {"log_masks" `[b, k, h, w]`, "mask_logits" `[b, k, h, w]`, "means" `[b, k, h, w, c]`,
             "latent_mean", "latent_logvar" `[b, k, d]`, "reconstruction" `[b, h, w, c]` = sum_k m_k mu_k}.
        """
        log_masks = self.attend(x)
        mean, logvar = self.encode(x, log_masks)
        z = mean if noise is None else mean + jnp.exp(0.5 * logvar) * noise
        means, mask_logits = self.decode(z)
        reconstruction = jnp.sum(jnp.exp(log_masks)[..., None] * means, axis=1)  # x~ = sum_k m_k mu_k (eq. 3)
        return {"log_masks": log_masks, "mask_logits": mask_logits, "means": means, "latent_mean": mean,
                "latent_logvar": logvar, "reconstruction": reconstruction}


# --- the family ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MonetFamily(Family):
    """MONet as a model family (config `model="monet"`); the fields are its config keys.

    Attributes:
        num_slots: K >= 2 (Multi-dSprites 5, Objects Room 7).
        latent_dim: d per slot (16).
        unet_channels: the U-Net's base width c (32: down [c, c, 2c, 2c, 2c] at 64 x 64).
        unet_mlp_hidden: the U-Net bottleneck's hidden width (128).
        encoder_channels: the component encoder's stride-2 conv widths ((32, 32, 64, 64)).
        encoder_hidden: its dense layer (256).
        decoder_channels: the broadcast decoder's valid 3x3 conv widths ((32, 32, 32, 32): tile to h + 8).
        sigma_bg, sigma_fg: pixel std of the first slot and of the others in the mixture NLL (0.09, 0.11).
        sigma_ir: the single std of the IR loss (0.09).
        input_range: "[-1,1]" (x' = 2x - 1 of the [0, 1] data; Komatsu) or "[0,1]".
        sample_latent: draw z = mu + sigma eps; False: eps = 0 (Komatsu's rule for beta = 0), `sample_noise` None.
        rgb_activation: "linear", "sigmoid" or "tanh" on the decoded RGB means.
        posterior_scale: "log_sigma", "log_var" or "softplus" (module docstring).
        init_scheme: "pytorch" or "normal" (`noisegroup.models.blocks`).
        conv_impl: "auto" (fast forms on CPU, native elsewhere), "fast", "fast_jvp" or "native"
            (`noisegroup.models.layers`): how the U-Net's and the decoder's 3x3 convs run and differentiate; the
            function is the same.
        max_mask_labels: bound on ground-truth labels for the validation ARI (the contingency table is
            max(K, this) square; Multi-dSprites needs 5, Objects Room 7, CLEVR 11).
    """

    num_slots: int = 5
    latent_dim: int = 16
    unet_channels: int = 32
    unet_mlp_hidden: int = 128
    encoder_channels: tuple[int, ...] = (32, 32, 64, 64)
    encoder_hidden: int = 256
    decoder_channels: tuple[int, ...] = (32, 32, 32, 32)
    sigma_bg: float = 0.09
    sigma_fg: float = 0.11
    sigma_ir: float = 0.09
    input_range: str = "[-1,1]"
    sample_latent: bool = True
    rgb_activation: str = "linear"
    posterior_scale: str = "log_sigma"
    init_scheme: str = "pytorch"
    max_mask_labels: int = 16
    conv_impl: str = "auto"

    loss_terms = LOSS_TERMS
    default_weights = {"nll": 1.0, "kl": 0.5, "mask_kl": 0.25}  # the original MONet (Komatsu's condition 11)
    geco_term = None
    # Passes of 8 images on CPU (the AE's, `Family.cpu_micro_batch`): at batch 64, K = 5 on 2 cores they beat one
    # pass when this was set; since the cheaper weight gradient (`conv_forms.shifted_pair`) the pass sizes are within
    # the machine's noise of each other. `python -m benchmarks.monet_step` times them; the README has the figures.
    # More passes compile longer (unrolled). Configs of at most 8 images a batch run in one pass.
    cpu_micro_batch = 8

    def __post_init__(self):
        # Lists (a config read back from JSON) become tuples: the family is hashed as a cache key.
        for name in ("encoder_channels", "decoder_channels"):
            value = getattr(self, name)
            if isinstance(value, int) or not value or any(int(c) < 1 for c in value):
                raise ValueError(f"{name} must be a non-empty sequence of positive widths, got {value!r}")
            object.__setattr__(self, name, tuple(int(c) for c in value))
        if int(self.num_slots) < 2:
            raise ValueError(f"MONet needs K = num_slots >= 2 (K - 1 attention steps and a last slot), "
                             f"got num_slots={self.num_slots!r}")
        for name in ("latent_dim", "unet_channels", "unet_mlp_hidden", "encoder_hidden", "max_mask_labels"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("sigma_bg", "sigma_fg", "sigma_ir"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        choices = {"input_range": INPUT_RANGES, "rgb_activation": tuple(RGB_ACTIVATIONS),
                   "posterior_scale": POSTERIOR_SCALES, "init_scheme": INIT_SCHEMES, "conv_impl": IMPLS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if not isinstance(self.sample_latent, bool):
            raise ValueError(f"sample_latent must be True or False, got {self.sample_latent!r}")

    def build(self, image_shape, rngs: nnx.Rngs) -> MONet:
        h, w, c = tuple(image_shape)
        if h != w:
            raise ValueError(f"MONet takes square images, got shape {tuple(image_shape)}")
        num_blocks_for(h)  # a power of two >= 8, else ValueError naming the size
        return MONet(h, int(self.num_slots), int(self.latent_dim), channels=c, unet_channels=int(self.unet_channels),
                     unet_mlp_hidden=int(self.unet_mlp_hidden), encoder_channels=self.encoder_channels,
                     encoder_hidden=int(self.encoder_hidden), decoder_channels=self.decoder_channels,
                     posterior_scale=self.posterior_scale, rgb_activation=self.rgb_activation,
                     init_scheme=self.init_scheme, conv_impl=self.conv_impl, rngs=rngs)

    def sample_noise(self, key: jax.Array, batch: Batch) -> jax.Array | None:
        """eps `[b, k, d]` ~ N(0, I), or None when `sample_latent` is False (z = mu)."""
        if not self.sample_latent:
            return None
        return jax.random.normal(key, (batch["images"].shape[0], int(self.num_slots), int(self.latent_dim)))

    def model_images(self, images: jax.Array) -> jax.Array:
        """The engine's [0, 1] images in the model's input range."""
        return 2.0 * images - 1.0 if self.input_range == "[-1,1]" else images

    def outputs(self, model: MONet, batch: Batch, noise: Any) -> dict[str, jax.Array]:
        """`MONet.__call__`'s outputs plus "images" (in the model's range) `[b, h, w, c]`, "pixel_std" sigma_k
        `[b, k]` (first slot sigma_bg) and "ir_std" `[b]` (what the loss terms read)."""
        images = self.model_images(batch["images"])
        b, k = images.shape[0], int(self.num_slots)
        stds = jnp.asarray([self.sigma_bg] + [self.sigma_fg] * (k - 1), jnp.float32)
        return {"images": images, **model(images, noise), "pixel_std": jnp.broadcast_to(stds, (b, k)),
                "ir_std": jnp.full((b,), self.sigma_ir, jnp.float32)}

    def segmentation_masks(self, outputs) -> dict[str, jax.Array]:
        """{name: log masks `[b, K, h, w]`} a segmentation is the argmax of: the attention network's masks (the
        ablation's scored segmentation; the component VAE's decoded masks are not scored)."""
        return {"masks": outputs["log_masks"]}

    def eval_metrics(self, outputs, batch: Batch) -> dict[str, jax.Array]:
        """{"mse": Komatsu's monitored L_mse (eq. 7, in the model's range)} and, when `batch` has "masks"
        `[b, h, w]`, the attention masks' "ari", "fg_ari" and "deepmind_fg_ari_nan" (`segmentation_metrics`)."""
        metrics = {"mse": jnp.mean(reconstruction_mse(outputs["images"], outputs["reconstruction"]))}
        if "masks" in batch:
            num_labels = max(int(self.num_slots), int(self.max_mask_labels))
            metrics.update(segmentation_metrics(outputs["log_masks"], batch["masks"], num_labels))
        return metrics
