"""The autoencoder and beta-VAE of Latent Noise Segmentation (paper Table 4; the reference's `models.py`).

Burgess-style conv nets, NHWC, 64 x 64 x 3 inputs in [0, 1] used as they are (no normalisation):

    encoder  64 -conv3 s1-> 64 -conv4 s2-> 32 -> 16 -> 8 -> 4 -conv4 valid-> 1  (32, 64, 64, 128, 128, 256 channels)
             -> dense 128 -> dense z (AE: the code) or 2z (VAE: mu, logvar)
    decoder  z -> dense 128 -> dense 256 -> 1x1 -convT4-> 4 -convT4 s2-> 8 -> 16 -> 32 -> 64 -convT3 s1-> 64 x 64 x 3
             (128, 128, 64, 64, 32, 3 channels), ReLU after every layer but the last: the decoder returns logits.

Modules are deterministic: the VAE's reparameterisation noise is an argument, never module state.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from noisegroup.models.layers import Conv, ConvTranspose, Linear

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
