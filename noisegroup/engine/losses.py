"""Loss terms as registries of named per-example functions; a loss is a weighted sum of terms.

A family declares its registry (`Family.loss_terms`: name -> `outputs -> [b]`); the config gives the weights.
`weighted_loss` averages every term over the batch and reports each term's value and weight in the metrics
(SAVi's `compute_full_loss`), so an ablation is only a config. The terms themselves live with the models
(`noisegroup.models.terms` holds the shared ones).
"""

from __future__ import annotations

import math
from typing import Callable, Mapping

import jax
import jax.numpy as jnp

from noisegroup.checks import closest


def resolve_weights(terms: Mapping[str, Callable], defaults: Mapping[str, float],
                    weights: Mapping[str, float | None] | None) -> dict[str, float]:
    """The weight of every term a loss sums: `defaults` overridden by the config's `weights` (None: not set).

    Raises:
        ValueError: a weight for a term the family does not have, naming it and the known terms; a weight that is
            not a finite number >= 0 (a NaN or infinite weight would train and fail only at the NaN guard).
    """
    resolved = dict(defaults)
    for name, weight in (weights or {}).items():
        if weight is None:
            continue
        if name not in terms:
            raise ValueError(f"unknown loss term {name!r}{closest(name, terms)}; this family's terms: {sorted(terms)}")
        try:
            value = float(weight)
        except (TypeError, ValueError):
            value = math.nan
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"loss_weights.{name} must be a finite number >= 0, got {weight!r}")
        resolved[name] = value
    return resolved


def weighted_loss(terms: Mapping[str, Callable], outputs: Mapping[str, jax.Array],
                  weights: Mapping[str, jax.Array | float]):
    """Batch mean of sum_t weight_t * term_t(outputs).

    Args:
        terms: the registry {name: per-example function `outputs -> [b]`}.
        outputs: model outputs (whatever the terms read).
        weights: {term name: weight}; a weight may be a traced scalar (GECO's beta). A term of weight 0 (a Python
            number) is reported but takes no part in the loss or its gradient.

    Returns:
        (loss scalar, metrics {"loss", "<term>", "<term>_weight"}).
    """
    metrics, total = {}, 0.0
    for name, weight in weights.items():
        if isinstance(weight, (int, float)) and weight == 0:  # logged, not differentiated (an ablated term)
            metrics[name] = jax.lax.stop_gradient(jnp.mean(terms[name](outputs)))
            metrics[f"{name}_weight"] = jnp.float32(0.0)
            continue
        value = jnp.mean(terms[name](outputs))
        metrics[name], metrics[f"{name}_weight"] = value, jnp.asarray(weight, jnp.float32)
        total = total + weight * value
    metrics["loss"] = total
    return total, metrics
