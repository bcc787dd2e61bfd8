"""What GENESIS and GENESIS-v2 share (spec `genesis_reference.md` sections 0, A.8, A.10, B.8, C.1).

    sigma = to_sigma(raw)                                 # posterior scale softplus(raw + 0.5) + 1e-8
    mean, sigma = prior_parameters(raw)                   # learned prior: tanh(nu), sigmoid(t + 4) + 1e-4
    prior = AutoregressivePrior(latent_dim, rngs=rngs)    # p(z_1) = N(0, I), p(z_k | z_<k) from an LSTM
    kl = monte_carlo_kl(z, q_mean, q_sigma, p_mean, p_sigma)   # [..., d] -> [...]: log q(z) - log p(z)
    nll = mixture_nll(images, log_masks, means, pixel_std)     # [b]: the per-channel mixture's NLL in nats
    alpha = clamp_preserve_gradients(x, 0.01, 0.99)       # clipped forward, identity gradient

Both models sample their latents in evaluation too (there is no posterior-mean mode in the official code), so all
randomness comes in from outside (`GenesisFamily.sample_noise`, `GenesisV2Family.sample_noise`).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from noisegroup.models.blocks import Dense, init_layers

HALF_LOG_TWO_PI = 0.5 * math.log(2.0 * math.pi)


def to_sigma(raw: jax.Array) -> jax.Array:
    """A posterior's scale from its raw head output: softplus(raw + 0.5) + 1e-8 (0.974077 at 0)."""
    return jax.nn.softplus(raw + 0.5) + 1e-8


def prior_parameters(raw: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(mean, scale) of a learned prior from `[..., 2 d]` raw outputs: mean tanh(first half) in (-1, 1), scale
    sigmoid(second half + 4) + 1e-4 in (1e-4, 1 + 1e-4) (0.982114 at 0)."""
    nu, t = jnp.split(raw, 2, axis=-1)
    return jnp.tanh(nu), jax.nn.sigmoid(t + 4.0) + 1e-4


def gaussian_log_density(x: jax.Array, mean: jax.Array, sigma: jax.Array) -> jax.Array:
    """log N(x; mean, sigma^2), elementwise."""
    return -0.5 * jnp.square((x - mean) / sigma) - jnp.log(sigma) - HALF_LOG_TWO_PI


def monte_carlo_kl(z: jax.Array, q_mean: jax.Array, q_sigma: jax.Array, p_mean: jax.Array,
                   p_sigma: jax.Array) -> jax.Array:
    """The single-sample estimate log q(z) - log p(z) summed over the last axis (both models' KLs; spec D.9):
    `[..., d]` -> `[...]`. Its mean over z ~ q is KL(q || p)."""
    return jnp.sum(gaussian_log_density(z, q_mean, q_sigma) - gaussian_log_density(z, p_mean, p_sigma), axis=-1)


def gaussian_kl(q_mean: jax.Array, q_sigma: jax.Array, p_mean: jax.Array, p_sigma: jax.Array) -> jax.Array:
    """KL(N(q_mean, q_sigma^2) || N(p_mean, p_sigma^2)) in closed form, summed over the last axis: the analytic
    alternative to `monte_carlo_kl` (spec D.9), `kl_estimator="analytic"`."""
    ratio = jnp.square(q_sigma / p_sigma)
    return jnp.sum(0.5 * (ratio + jnp.square((q_mean - p_mean) / p_sigma) - 1.0 - jnp.log(ratio)), axis=-1)


KL_ESTIMATORS = ("monte_carlo", "analytic")
MIXTURES = ("per_channel", "per_pixel")


def latent_kl(estimator: str, z: jax.Array, q_mean: jax.Array, q_sigma: jax.Array, p_mean: jax.Array,
              p_sigma: jax.Array) -> jax.Array:
    """The KL term of a latent `[..., d]` -> `[...]`: "monte_carlo" (official: log q(z) - log p(z) at the sample) or
    "analytic" (the Gaussians' closed form, given the prior's parameters)."""
    if estimator == "analytic":
        return gaussian_kl(q_mean, q_sigma, p_mean, p_sigma)
    return monte_carlo_kl(z, q_mean, q_sigma, p_mean, p_sigma)


def mixture_nll(images: jax.Array, log_masks: jax.Array, means: jax.Array, pixel_std: jax.Array,
                mixture: str = "per_channel") -> jax.Array:
    """-sum_{pixels i, channels c} log sum_k m_k(i) N(x_ic; mu_k,ic, sigma_k^2): the official code takes the mixture
    per channel (spec A.10, D.18); "per_pixel" takes it over each pixel's RGB vector, -sum_i log sum_k m_k(i)
    prod_c N(x_ic; ...) (the papers' p(x | z) read per pixel). In log space (logsumexp; the official code sums exps).

    Args:
        images: `[b, h, w, c]`.
        log_masks: `[b, k, h, w]` (sum_k exp = 1).
        means: `[b, k, h, w, c]`.
        pixel_std: `[k]` sigma per slot.
        mixture: "per_channel" or "per_pixel".

    Returns:
        `[b]` nats per image.
    """
    sigma = pixel_std[None, :, None, None, None]
    log_densities = gaussian_log_density(images[:, None], means, sigma)  # [b, k, h, w, c]
    if mixture == "per_pixel":
        return -jnp.sum(jax.nn.logsumexp(log_masks + jnp.sum(log_densities, axis=-1), axis=1), axis=(1, 2))
    return -jnp.sum(jax.nn.logsumexp(log_masks[..., None] + log_densities, axis=1), axis=(1, 2, 3))


def clamp_preserve_gradients(x: jax.Array, low: float, high: float) -> jax.Array:
    """clip(x, low, high) forward, the identity's gradient backward (spec section 0)."""
    return x + jax.lax.stop_gradient(jnp.clip(x, low, high) - x)


def stick_breaking(log_alphas: jax.Array, log_one_minus_alphas: jax.Array) -> jax.Array:
    """Log masks `[b, K, ...]` of K - 1 steps `[b, K - 1, ...]`: log m_k = log s_{k-1} + log alpha_k,
    log s_k = log s_{k-1} + log(1 - alpha_k) from log s_0 = 0, and log m_K = log s_{K-1}. They sum to one."""
    log_scopes = jnp.cumsum(log_one_minus_alphas, axis=1)  # log s_1 .. log s_{K-1}
    before = jnp.concatenate([jnp.zeros_like(log_scopes[:, :1]), log_scopes[:, :-1]], axis=1)  # log s_0 .. s_{K-2}
    return jnp.concatenate([before + log_alphas, log_scopes[:, -1:]], axis=1)


class LSTMCell(nnx.Module):
    """PyTorch's LSTM cell, two bias vectors (b_ih, b_hh) as the official code's parameter count has them; gates
    (i, f, g, o): c' = sigmoid(f) c + sigmoid(i) tanh(g), h' = sigmoid(o) tanh(c'). Every parameter
    U(+-1/sqrt(hidden)) under the "pytorch" scheme."""

    def __init__(self, features_in: int, hidden: int):
        self.hidden = hidden
        self.input = Dense(features_in, 4 * hidden, fan_in=hidden)
        self.recurrent = Dense(hidden, 4 * hidden, fan_in=hidden)

    def __call__(self, carry: tuple[jax.Array, jax.Array], x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(h, c) `[b, hidden]` each, input `[b, features_in]` -> the new (h, c)."""
        h, c = carry
        i, f, g, o = jnp.split(self.input(x) + self.recurrent(h), 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        return jax.nn.sigmoid(o) * jnp.tanh(c), c

    def zero_state(self, batch: int) -> tuple[jax.Array, jax.Array]:
        return jnp.zeros((batch, self.hidden), jnp.float32), jnp.zeros((batch, self.hidden), jnp.float32)


class AutoregressivePrior(nnx.Module):
    """p(z_1) = N(0, I); p(z_k | z_<k) = N(tanh nu_k, sigmoid(t_k + 4) + 1e-4) with [nu_k, t_k] = Linear(LSTM over
    z_1 .. z_{k-1}) (hidden 4 d): GENESIS's mask-latent prior and GENESIS-v2's object prior (spec A.8, B.8). In
    training the LSTM reads the posterior samples (teacher forcing)."""

    def __init__(self, latent_dim: int, *, init_scheme: str = "pytorch", rngs: nnx.Rngs):
        self.lstm = LSTMCell(latent_dim, 4 * latent_dim)
        self.out = Dense(4 * latent_dim, 2 * latent_dim)
        init_layers(self, rngs.params(), init_scheme)

    def __call__(self, z: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(means, scales) `[b, K, d]` of the prior of each of the K latents `z` `[b, K, d]`."""
        b, k, d = z.shape
        means, scales = [jnp.zeros((b, d), z.dtype)], [jnp.ones((b, d), z.dtype)]
        carry = self.lstm.zero_state(b)
        for i in range(k - 1):
            carry = self.lstm(carry, z[:, i])
            mean, scale = prior_parameters(self.out(carry[0]))
            means.append(mean)
            scales.append(scale)
        return jnp.stack(means, axis=1), jnp.stack(scales, axis=1)


def parameter_count(model: nnx.Module) -> int:
    """Trainable parameters of `model` (GENESIS 12,620,548 and GENESIS-v2 2,729,422 at 64 x 64, spec A.12 / B.10)."""
    return sum(int(x.size) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
