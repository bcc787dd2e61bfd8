"""GECO (Rezende & Viola 2018) as used by the LNS reference (adapted from GENESIS-v2): beta follows the
reconstruction error's moving average towards a goal.

Per call with the batch reconstruction error ``err`` (per-image SSE, batch mean):

1. the loss uses the current, pre-update beta: ``err + beta * kl``;
2. ``ema = err`` on the first call, else ``ema = (1 - alpha) * err + alpha * ema``;
3. unless beta is frozen: ``c = goal - ema``; ``beta *= exp(speedup * step_size * c)`` if ``c > 0`` (reconstruction
   better than the goal), else ``beta *= exp(step_size * c)``; then clamp to ``[beta_min, beta_max]``.

The reference's validation calls it with beta frozen, which still moves the EMA (`Trainer` makes this a switch).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class GecoState:
    beta: jax.Array  # float32 scalar
    ema: jax.Array  # float32 scalar, the moving average of err
    initialized: jax.Array  # bool scalar: False until the first update


@dataclasses.dataclass(frozen=True)
class Geco:
    """GECO's constants. `for_images` gives the reference's values for an image shape."""

    goal: float
    step_size: float
    alpha: float = 0.99
    speedup: float = 10.0
    beta_init: float = 1.0
    beta_min: float = 1e-10
    beta_max: float = 1e10

    @classmethod
    def for_images(cls, image_shape=(64, 64, 3), goal_per_value=0.0006, step_size_64=1e-5, **kwargs) -> "Geco":
        """goal = goal_per_value * h * w * c (7.3728 at 64 x 64 x 3); step = step_size_64 * 64^2 / (h * w)."""
        h, w, c = image_shape
        return cls(goal=goal_per_value * h * w * c, step_size=step_size_64 * 64**2 / (h * w), **kwargs)

    def init(self) -> GecoState:
        return GecoState(jnp.float32(self.beta_init), jnp.float32(0.0), jnp.bool_(False))

    def update(self, state: GecoState, err: jax.Array, *, freeze_beta: bool = False) -> GecoState:
        """The state after one call with batch error `err` (a scalar; gradients are stopped)."""
        err = jax.lax.stop_gradient(err).astype(jnp.float32)
        ema = jnp.where(state.initialized, (1.0 - self.alpha) * err + self.alpha * state.ema, err)
        beta = state.beta
        if not freeze_beta:
            c = self.goal - ema
            rate = jnp.where(c > 0, self.speedup * self.step_size, self.step_size)
            beta = jnp.clip(beta * jnp.exp(rate * c), self.beta_min, self.beta_max)
        return GecoState(beta=beta, ema=ema, initialized=jnp.bool_(True))
