"""Loss terms as a registry of named per-image functions; a loss is a weighted sum of terms.

Every term maps the model outputs to a per-image value `[b]`; `weighted_loss` averages over the batch and reports
every term's value and weight in the metrics (an ablation is then only a config).
"""

from __future__ import annotations

from typing import Callable, Mapping

import jax
import jax.numpy as jnp


def sum_squared_error(logits: jax.Array, images: jax.Array) -> jax.Array:
    """Per-image sum over pixels and channels of (sigmoid(logits) - images)^2: `[b, h, w, c]` x2 -> `[b]`.

    The reference's reconstruction loss (the paper's "MSE" is this sum, not a per-pixel mean; it sets the scale of
    GECO's goal and of the KL balance)."""
    return jnp.sum(jnp.square(jax.nn.sigmoid(logits) - images), axis=(1, 2, 3))


def kl_to_standard_normal(mean: jax.Array, logvar: jax.Array) -> jax.Array:
    """KL(N(mean, exp(logvar)) || N(0, I)) summed over latent units: `[b, z]` x2 -> `[b]`."""
    return jnp.sum(-0.5 * (1.0 + logvar - jnp.square(mean) - jnp.exp(logvar)), axis=-1)


# outputs: {"images": [b,h,w,c], "logits": [b,h,w,c], "mean": [b,z], "logvar": [b,z] (VAE only)}
TERMS: dict[str, Callable[[Mapping[str, jax.Array]], jax.Array]] = {
    "reconstruction": lambda o: sum_squared_error(o["logits"], o["images"]),
    "kl": lambda o: kl_to_standard_normal(o["mean"], o["logvar"]),
}


def weighted_loss(outputs: Mapping[str, jax.Array], weights: Mapping[str, jax.Array | float]):
    """Batch mean of sum_t weight_t * term_t.

    Args:
        outputs: model outputs (see `TERMS`).
        weights: {term name: weight}; a weight may be a traced scalar (GECO's beta).

    Returns:
        (loss scalar, metrics {"loss", "<term>", "<term>_weight"}).
    """
    unknown = set(weights) - set(TERMS)
    if unknown:
        raise ValueError(f"unknown loss terms {sorted(unknown)}; known: {sorted(TERMS)}")
    metrics, total = {}, 0.0
    for name, weight in weights.items():
        value = jnp.mean(TERMS[name](outputs))
        metrics[name], metrics[f"{name}_weight"] = value, jnp.asarray(weight, jnp.float32)
        total = total + weight * value
    metrics["loss"] = total
    return total, metrics
