"""Per-example loss terms that more than one model family uses (each family's registry names them).

    terms.sum_squared_error(logits, images)          # [b]: the LNS reconstruction error
    terms.kl_to_standard_normal(mean, logvar)        # [b, ...]: a Gaussian posterior's KL to the prior

The engine only weights and sums registries of such terms (`noisegroup.engine.losses`); the models never import it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def sum_squared_error(logits: jax.Array, images: jax.Array) -> jax.Array:
    """Per-image sum over pixels and channels of (sigmoid(logits) - images)^2: `[b, h, w, c]` x2 -> `[b]`.

    The LNS reference's reconstruction loss (the paper's "MSE" is this sum, not a per-pixel mean; it sets the scale
    of GECO's goal and of the KL balance)."""
    return jnp.sum(jnp.square(jax.nn.sigmoid(logits) - images), axis=(1, 2, 3))


def kl_to_standard_normal(mean: jax.Array, logvar: jax.Array) -> jax.Array:
    """KL(N(mean, exp(logvar)) || N(0, I)) summed over the latent axis: `[b, ..., z]` x2 -> `[b, ...]`."""
    return jnp.sum(-0.5 * (1.0 + logvar - jnp.square(mean) - jnp.exp(logvar)), axis=-1)
