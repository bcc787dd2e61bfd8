"""The loss terms of MONet and of Komatsu, Ohmura & Kuniyoshi's ablation (spec sections 2.1-2.4), per example.

    LOSS_TERMS["nll"](outputs)      # [b]: `MonetFamily.loss_terms`; the engine weights and averages them

Notation: x `[b, h, w, c]` the images in the model's range, I = h w c elements, K slots, m_k the attention masks
(used as log masks, never log(exp(.))), m^_k = softmax_k of the decoded mask logits, mu_k the decoded RGB means,
x~ = sum_k m_k mu_k. Sums over pixels for `nll`, `kl`, `mask_kl`, `ir`; means for `mse`, `mw`, `mask_mse` (the
scales differ by ~10^4: Komatsu's gammas are only comparable within each group). The registry reads the outputs of
`noisegroup.models.monet.MonetFamily.outputs`, which carry the family's pixel stds ("pixel_std" `[b, k]`, "ir_std"
`[b]`): a registry entry sees only the outputs.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from noisegroup.models import terms

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def mixture_nll(images: jax.Array, means: jax.Array, log_masks: jax.Array, pixel_std: jax.Array) -> jax.Array:
    """Spec 2.1 / Komatsu eq. 2: -sum_i log sum_k m_k N(x_i | mu_ki, sigma_k^2), per element (pixel and channel).

    = -sum_i logsumexp_k [log m_k - log sigma_k - (x_i - mu_ki)^2 / (2 sigma_k^2)] + I log sqrt(2 pi).

    Args:
        images: x `[b, h, w, c]`; means: mu `[b, k, h, w, c]`; log_masks: `[b, k, h, w]` (used as they are: never
            log(exp(.))); pixel_std: sigma_k `[b, k]`.

    Returns:
        `[b]`, summed over I = h w c elements, the Gaussian constant included.
    """
    sigma = pixel_std[:, :, None, None, None]
    log_terms = (log_masks[..., None] - jnp.log(sigma)
                 - jnp.square(images[:, None] - means) / (2.0 * jnp.square(sigma)))
    per_element = -jax.nn.logsumexp(log_terms, axis=1) + HALF_LOG_2PI  # [b, h, w, c]
    return jnp.sum(per_element, axis=(1, 2, 3))


def latent_kl(mean: jax.Array, logvar: jax.Array) -> jax.Array:
    """Spec 2.1.2 / eq. 4: KL(prod_k q(z_k) || N(0, I)) = sum_k sum_d (mu^2 + sigma^2 - 1 - log sigma^2) / 2:
    `[b, k, d]` x2 -> `[b]`."""
    return jnp.sum(terms.kl_to_standard_normal(mean, logvar), axis=1)


def mask_kl(log_masks: jax.Array, mask_logits: jax.Array) -> jax.Array:
    """Spec 2.1.3 / eq. 5: sum_pixels sum_k m_k (log m_k - log m^_k), m^ = softmax_k(logits), no clamping:
    `[b, k, h, w]` x2 -> `[b]`."""
    log_decoded = jax.nn.log_softmax(mask_logits, axis=1)
    return jnp.sum(jnp.exp(log_masks) * (log_masks - log_decoded), axis=(1, 2, 3))


def integrated_nll(images: jax.Array, reconstruction: jax.Array, std: jax.Array) -> jax.Array:
    """Spec 2.3 / Komatsu eq. 8 (IR loss): sum_i (x_i - x~_i)^2 / (2 sigma_x^2) + I log(sigma_x sqrt(2 pi))
    (the paper writes the constant once; it belongs to every element): `[b, h, w, c]` x2, `[b]` -> `[b]`."""
    num_elements = math.prod(images.shape[1:])
    squared = jnp.sum(jnp.square(images - reconstruction), axis=(1, 2, 3))
    return squared / (2.0 * jnp.square(std)) + num_elements * (jnp.log(std) + HALF_LOG_2PI)


def reconstruction_mse(images: jax.Array, reconstruction: jax.Array) -> jax.Array:
    """Komatsu eq. 7: (1/I) sum_i (x_i - x~_i)^2: `[b, h, w, c]` x2 -> `[b]`."""
    return jnp.mean(jnp.square(images - reconstruction), axis=(1, 2, 3))


def mask_weighted_error(images: jax.Array, means: jax.Array, log_masks: jax.Array) -> jax.Array:
    """Komatsu eq. 9 (MW loss): (1/I) sum_i sum_k m_k (x_i - mu_ki)^2, I = h w c:
    `[b, h, w, c]`, `[b, k, h, w, c]`, `[b, k, h, w]` -> `[b]`."""
    weighted = jnp.sum(jnp.exp(log_masks)[..., None] * jnp.square(images[:, None] - means), axis=1)
    return jnp.mean(weighted, axis=(1, 2, 3))


def mask_mse(log_masks: jax.Array, mask_logits: jax.Array) -> jax.Array:
    """Komatsu eq. 10 (the new mask loss): (1/(h w)) sum_pixels sum_k (m_k - m^_k)^2 (I read as the pixel count:
    spec 2.4; broadcasting over channels gives the same value): `[b, k, h, w]` x2 -> `[b]`."""
    squared = jnp.square(jnp.exp(log_masks) - jax.nn.softmax(mask_logits, axis=1))
    return jnp.mean(jnp.sum(squared, axis=1), axis=(1, 2))


LOSS_TERMS = {
    "nll": lambda o: mixture_nll(o["images"], o["means"], o["log_masks"], o["pixel_std"]),
    "kl": lambda o: latent_kl(o["latent_mean"], o["latent_logvar"]),
    "mask_kl": lambda o: mask_kl(o["log_masks"], o["mask_logits"]),
    "ir": lambda o: integrated_nll(o["images"], o["reconstruction"], o["ir_std"]),
    "mse": lambda o: reconstruction_mse(o["images"], o["reconstruction"]),
    "mw": lambda o: mask_weighted_error(o["images"], o["means"], o["log_masks"]),
    "mask_mse": lambda o: mask_mse(o["log_masks"], o["mask_logits"]),
}
