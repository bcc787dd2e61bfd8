"""The loss conditions of Komatsu, Ohmura & Kuniyoshi's MONet ablation, as config overrides (spec sections 2.2-2.4).

    weights, overrides = CONDITIONS["mw_m"]
    config = {**base, "model": "monet", "loss_weights": weights, **overrides}
    config = {**base, **condition_config("mw_m", dataset="objects_room")}   # the same, gamma 0.1

Each condition gives every loss term of the family's default (nll, kl, mask_kl) a weight, 0 where the condition
drops it: the engine's `resolve_weights` starts from the family's `default_weights` and only overrides, so an absent
default term would keep its MONet weight. Terms outside the default (ir, mse, mw, mask_mse) appear only where used.
A weight of 0 still computes the term (its value is logged, its gradient is zero).

    condition  weights                           sample_latent   paper
    11         nll 1, kl 0.5, mask_kl 0.25       True            3.1, the original MONet
    01         nll 1, kl 0,   mask_kl 0.25       False           3.1 (beta = 0 -> eps = 0)
    10         nll 1, kl 0.5, mask_kl 0          True            3.1
    00         nll 1, kl 0,   mask_kl 0          False           3.1
    nll_m      = 01                                              3.2 / 3.3 NLL+M
    ir_m       ir 1, mask_kl 0.25                False           3.2 IR+M (sigma_x = 0.09: the family's sigma_ir)
    mse_m      mse 1, mask_mse gamma             False           3.3 MSE+M
    mw_m       mw 1, mask_mse gamma              False           3.3 MW+M

gamma of mask_mse: 0.01 on Multi-dSprites (`CONDITIONS`), 0.1 on Objects Room (`MASK_MSE_GAMMA`,
`condition_config(..., dataset="objects_room")`): the values "best under MW+M in preliminary experiments". The paper
does not state beta for IR+M, MSE+M and MW+M; beta = 0 (and so eps = 0) is the reading of spec 2.3-2.4.

Everything else follows the original MONet (spec 1.4): RMSProp (PyTorch's: decay 0.99, eps 1e-8 outside the
square root), learning rate 1e-4, batch 64, K = 5 (Multi-dSprites) or 7 (Objects Room), 1,000,000 steps with
early termination every 100,000 steps once the validation MSE (`MonetFamily.eval_metrics`' "mse", in [-1, 1] units)
is below 0.001 (Multi-dSprites) / 0.005 (Objects Room) and improved by less than 1 %. These are engine keys; they
belong to the experiment's config, not to a condition.
"""

from __future__ import annotations

from typing import Any

MASK_MSE_GAMMA = {"multi_dsprites": 0.01, "objects_room": 0.1}
NUM_SLOTS = {"multi_dsprites": 5, "objects_room": 7}

_DROP_DEFAULTS = {"nll": 0.0, "kl": 0.0, "mask_kl": 0.0}


def _conditions(gamma: float) -> dict[str, tuple[dict[str, float], dict[str, Any]]]:
    deterministic = {"sample_latent": False}
    beta_gamma = {
        "11": ({"nll": 1.0, "kl": 0.5, "mask_kl": 0.25}, {"sample_latent": True}),
        "01": ({"nll": 1.0, "kl": 0.0, "mask_kl": 0.25}, deterministic),
        "10": ({"nll": 1.0, "kl": 0.5, "mask_kl": 0.0}, {"sample_latent": True}),
        "00": ({"nll": 1.0, "kl": 0.0, "mask_kl": 0.0}, deterministic),
    }
    return {
        **beta_gamma,
        "nll_m": beta_gamma["01"],
        "ir_m": ({**_DROP_DEFAULTS, "ir": 1.0, "mask_kl": 0.25}, deterministic),
        "mse_m": ({**_DROP_DEFAULTS, "mse": 1.0, "mask_mse": gamma}, deterministic),
        "mw_m": ({**_DROP_DEFAULTS, "mw": 1.0, "mask_mse": gamma}, deterministic),
    }


CONDITIONS: dict[str, tuple[dict[str, float], dict[str, Any]]] = _conditions(MASK_MSE_GAMMA["multi_dsprites"])


def condition_config(name: str, dataset: str = "multi_dsprites") -> dict[str, Any]:
    """Flat config overrides of condition `name` on `dataset`: {"model": "monet", "loss_weights": ..., the family
    overrides, "num_slots"}.

    Raises:
        ValueError: an unknown condition or dataset, naming the known ones.
    """
    if dataset not in MASK_MSE_GAMMA:
        raise ValueError(f"unknown dataset {dataset!r}; known: {sorted(MASK_MSE_GAMMA)}")
    conditions = _conditions(MASK_MSE_GAMMA[dataset])
    if name not in conditions:
        raise ValueError(f"unknown condition {name!r}; known: {sorted(conditions)}")
    weights, overrides = conditions[name]
    return {"model": "monet", "loss_weights": dict(weights), "num_slots": NUM_SLOTS[dataset], **overrides}
