"""The autoencoder and beta-VAE of Latent Noise Segmentation (paper Table 4; the reference's `models.py`).

Burgess-style conv nets, NHWC, 64 x 64 x 3 inputs in [0, 1] used as they are (no normalisation):

    encoder  64 -conv3 s1-> 64 -conv4 s2-> 32 -> 16 -> 8 -> 4 -conv4 valid-> 1  (32, 64, 64, 128, 128, 256 channels)
             -> dense 128 -> dense z (AE: the code) or 2z (VAE: mu, logvar)
    decoder  z -> dense 128 -> dense 256 -> 1x1 -convT4-> 4 -convT4 s2-> 8 -> 16 -> 32 -> 64 -convT3 s1-> 64 x 64 x 3
             (128, 128, 64, 64, 32, 3 channels), ReLU after every layer but the last: the decoder returns logits.

Modules are deterministic: the VAE's reparameterisation noise is an argument, never module state.

`AutoEncoderFamily` and `BetaVAEFamily` are what the training engine sees (`noisegroup.models.family`): their fields
are the config keys `latent_dim`, `conv_impl` and `output_bias_init`; their loss terms are the reference's summed
squared error ("reconstruction") and, for the VAE, the KL to the standard normal ("kl", the term GECO weights).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from noisegroup.models.family import Batch, Family
from noisegroup.models import terms
from noisegroup.models.layers import IMPLS, Conv, ConvTranspose, Linear

IMAGE_SHAPE = (64, 64, 3)
ENCODER_CHANNELS = (32, 64, 64, 128, 128, 256)
DECODER_CHANNELS = (128, 128, 64, 64, 32)


class Encoder(nnx.Module):
    """`[b, 64, 64, 3]` -> `[b, features_out]`."""

    def __init__(self, features_out: int, *, impl: str = "auto", rngs: nnx.Rngs):
        c = ENCODER_CHANNELS
        self.convs = nnx.List([
            Conv(3, c[0], 3, 1, 1, impl=impl, rngs=rngs),
            *(Conv(c[i], c[i + 1], 4, 2, 1, impl=impl, rngs=rngs) for i in range(4)),
            Conv(c[4], c[5], 4, 1, 0, impl=impl, rngs=rngs),  # 4 x 4 -> 1 x 1
        ])
        self.hidden = Linear(c[5], 128, rngs=rngs)
        self.out = Linear(128, features_out, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        for conv in self.convs:
            x = jax.nn.relu(conv(x))
        x = jax.nn.relu(self.hidden(x.reshape(x.shape[0], -1)))
        return self.out(x)


class Decoder(nnx.Module):
    """`[b, z]` -> logits `[b, 64, 64, 3]`."""

    def __init__(self, latent_dim: int, *, impl: str = "auto", rngs: nnx.Rngs):
        c = DECODER_CHANNELS
        self.hidden = Linear(latent_dim, 128, rngs=rngs)
        self.project = Linear(128, 256, rngs=rngs)
        self.deconvs = nnx.List([
            ConvTranspose(256, c[0], 4, 1, 0, impl=impl, rngs=rngs),  # 1 x 1 -> 4 x 4
            *(ConvTranspose(c[i], c[i + 1], 4, 2, 1, impl=impl, rngs=rngs) for i in range(4)),
        ])
        self.out = ConvTranspose(c[4], 3, 3, 1, 1, impl=impl, rngs=rngs)

    def __call__(self, z: jax.Array) -> jax.Array:
        x = jax.nn.relu(self.hidden(z))
        x = jax.nn.relu(self.project(x)).reshape(z.shape[0], 1, 1, 256)
        for deconv in self.deconvs:
            x = jax.nn.relu(deconv(x))
        return self.out(x)


class AutoEncoder(nnx.Module):
    """The LNS autoencoder: the latent is the raw encoder output."""

    def __init__(self, latent_dim: int = 15, *, impl: str = "auto", rngs: nnx.Rngs):
        self.latent_dim = latent_dim
        self.encoder = Encoder(latent_dim, impl=impl, rngs=rngs)
        self.decoder = Decoder(latent_dim, impl=impl, rngs=rngs)

    def encode(self, images: jax.Array) -> dict[str, jax.Array]:
        """`[b, 64, 64, 3]` -> {"mean": `[b, z]`}: the code, the point LNS perturbs."""
        return {"mean": self.encoder(images)}

    def decode(self, latents: jax.Array) -> jax.Array:
        """`[b, z]` -> logits `[b, 64, 64, 3]`."""
        return self.decoder(latents)

    def __call__(self, images: jax.Array, noise: jax.Array | None = None) -> tuple[jax.Array, dict]:
        """Reconstruction logits and the encoding (`noise` is ignored: the AE is deterministic)."""
        encoding = self.encode(images)
        return self.decode(encoding["mean"]), encoding


class BetaVAE(nnx.Module):
    """The LNS beta-VAE: the encoder gives (mu, logvar), unclamped; z = mu + exp(logvar / 2) * noise."""

    def __init__(self, latent_dim: int = 15, *, impl: str = "auto", rngs: nnx.Rngs):
        self.latent_dim = latent_dim
        self.encoder = Encoder(2 * latent_dim, impl=impl, rngs=rngs)
        self.decoder = Decoder(latent_dim, impl=impl, rngs=rngs)

    def encode(self, images: jax.Array) -> dict[str, jax.Array]:
        """`[b, 64, 64, 3]` -> {"mean": mu `[b, z]`, "logvar": `[b, z]`}."""
        h = self.encoder(images)
        return {"mean": h[:, : self.latent_dim], "logvar": h[:, self.latent_dim :]}

    def decode(self, latents: jax.Array) -> jax.Array:
        return self.decoder(latents)

    def __call__(self, images: jax.Array, noise: jax.Array | None = None) -> tuple[jax.Array, dict]:
        """Reconstruction logits of a posterior sample (of the mean if `noise` is None) and the encoding.

        Args:
            images: `[b, 64, 64, 3]`.
            noise: `[b, z]` standard normal noise for the reparameterisation, or None.
        """
        encoding = self.encode(images)
        z = encoding["mean"]
        if noise is not None:
            z = z + jnp.exp(0.5 * encoding["logvar"]) * noise
        return self.decode(z), encoding


OUTPUT_BIAS_INITS = ("reference", "data_mean")


def data_mean_logits(images: np.ndarray) -> tuple[float, ...]:
    """Per-channel logit of the mean pixel value of `images` `[n, h, w, c]`: an output bias that starts the decoder
    at the mean colour (accumulated in float64: a float32 sum of 1e8 pixels drifts far off)."""
    mean = np.clip(np.asarray(images).mean(axis=(0, 1, 2), dtype=np.float64), 1e-3, 1 - 1e-3)
    return tuple(float(v) for v in np.log(mean / (1 - mean)))


@dataclasses.dataclass(frozen=True)
class AutoEncoderFamily(Family):
    """The LNS autoencoder as a model family.

    Attributes:
        latent_dim: size of the code.
        conv_impl: "auto", "fast", "fast_jvp" or "native" (`noisegroup.models.layers`).
        output_bias_init: "reference" (PyTorch's default init of the decoder's output bias) or "data_mean" (the
            logit of the training images' mean colour: keeps fast learning rates from saturating the sigmoid).
    """

    latent_dim: int = 15
    conv_impl: str = "auto"
    output_bias_init: str = "reference"

    loss_terms = {"reconstruction": lambda o: terms.sum_squared_error(o["logits"], o["images"])}
    default_weights = {"reconstruction": 1.0}
    network = AutoEncoder

    def __post_init__(self):
        if int(self.latent_dim) < 1:
            raise ValueError(f"latent_dim must be >= 1, got {self.latent_dim!r}")
        if self.conv_impl not in IMPLS:
            raise ValueError(f"conv_impl must be one of {IMPLS}, got {self.conv_impl!r}")
        if self.output_bias_init not in OUTPUT_BIAS_INITS:
            raise ValueError(f"output_bias_init must be one of {OUTPUT_BIAS_INITS}, got {self.output_bias_init!r}")

    def build(self, image_shape, rngs: nnx.Rngs) -> nnx.Module:
        if tuple(image_shape) != IMAGE_SHAPE:
            raise ValueError(f"the LNS networks take images of shape {IMAGE_SHAPE}, got {tuple(image_shape)}")
        return self.network(int(self.latent_dim), impl=self.conv_impl, rngs=rngs)

    def init_data(self, train: Batch) -> Any:
        if self.output_bias_init == "data_mean":
            return jnp.asarray(data_mean_logits(train["images"]))
        return None

    def initialise(self, model: nnx.Module, init_data: Any) -> None:
        if init_data is not None:  # the decoder's output bias `[3]` logits
            model.decoder.out.bias[...] = jnp.asarray(init_data, jnp.float32)

    def outputs(self, model: nnx.Module, batch: Batch, noise: Any) -> dict[str, jax.Array]:
        logits, encoding = model(batch["images"], noise)
        return {"images": batch["images"], "logits": logits, **encoding}


@dataclasses.dataclass(frozen=True)
class BetaVAEFamily(AutoEncoderFamily):
    """The LNS beta-VAE as a model family: reparameterisation noise `[b, z]` per step; GECO weights the KL."""

    loss_terms = {**AutoEncoderFamily.loss_terms,
                  "kl": lambda o: terms.kl_to_standard_normal(o["mean"], o["logvar"])}
    default_weights = {"reconstruction": 1.0, "kl": 1.0}
    geco_term = "kl"
    network = BetaVAE

    def sample_noise(self, key: jax.Array, batch: Batch) -> jax.Array:
        return jax.random.normal(key, (batch["images"].shape[0], int(self.latent_dim)))
