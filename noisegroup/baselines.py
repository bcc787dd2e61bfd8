"""The object-centric baselines of the LNS paper's Table 1 (GENESIS, GENESIS-v2): their masks and ARIs.

    stats = population_statistics(family, model, train_images, key)    # GENESIS's BatchNorm; None for GENESIS-v2
    masks = object_masks(family, model, images, key, stats)            # {"masks": [b, K, h, w] log masks, ...}
    scores = score(masks["masks"], true)                               # {"ari": [b], "ari_fg": [b]}

A segmentation is the argmax over the K slots of the log masks (ties to the lowest slot, spec C.4 / E.17), scored per
image with the ARI over every pixel (background included: what the LNS table reports) and over the foreground only
(FG-ARI, the official metric script's), by `noisegroup.evaluation.score` (scikit-learn's semantics), the evaluation
the LNS rows use. Both models sample their latents (and GENESIS-v2 its seed pixels) in evaluation, as the official code
does: every draw comes from the `key` given, so a score is a function of (weights, images, key).

GENESIS-v2 gives two segmentations: the IC-SBP masks ("masks", the official main metric and the row of our table) and
the decoder's ("decoder_masks", the official "-R" metric).
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from noisegroup import evaluation
from noisegroup.models.family import Family

# Settings of the official training (spec C.1, C.2): Adam 1e-4; GECO on the mixture NLL, goal 0.5655 nats per pixel
# value, step 1e-5 at 64 x 64, average 0.99, 10x faster rise, beta weighting the KL; validation does not move GECO.
OFFICIAL_TRAINING = dict(learning_rate=1e-4, geco=True, geco_goal=0.5655, geco_step_size=1e-5, geco_alpha=0.99,
                         geco_speedup=10.0, geco_tracks_validation=False)
BASELINES = ("genesis", "genesis_v2")
# Training budgets. "default": a 2-core CPU's (300 steps at batch 16: 4,800 images, 0.015 % of the paper's; GENESIS
# ~3.6 s a step, GENESIS-v2 ~1.9 s, i.e. ~18 and ~10 minutes a dataset). "paper": the LNS paper's (batch 64, 5e5 steps).
BUDGETS = {
    "quick": dict(batch_size=4, num_steps=2, checkpoint_every=2, log_every=1, eval_every=2, train_limit=32,
                  valid_limit=8),
    "default": dict(batch_size=16, num_steps=300, checkpoint_every=50, log_every=10, eval_every=100, valid_limit=64),
    "paper": dict(batch_size=64, num_steps=500_000, checkpoint_every=5_000, log_every=100, eval_every=5_000,
                  valid_limit=320),
}
SCORING_BATCH = 16  # images per forward pass when scoring (memory: K x this images through the decoders)


def _forward(family: Family, graphdef, params, images, key, statistics):
    model = nnx.merge(graphdef, params)
    batch = {"images": images}
    noise = family.sample_noise(key, batch)
    # Only GENESIS takes BatchNorm statistics; any other family with masks (GENESIS-v2, Slot Attention) scores as is.
    return family.outputs(model, batch, noise) if statistics is None else family.outputs(model, batch, noise, statistics)


_forward_jit = jax.jit(_forward, static_argnums=(0, 1))


def population_statistics(family: Family, graphdef, params, images: np.ndarray, key: jax.Array,
                          batch_size: int = 16, batches: int = 10):
    """The BatchNorm statistics the official GENESIS evaluates with, estimated without running averages: the mean over
    `batches` training batches of each layer's batch mean and unbiased batch variance (what PyTorch's running averages
    follow, momentum 0.1: about the last ten batches). None for a model that records none (GENESIS-v2).

    Args:
        family, graphdef, params: one seed's model.
        images: training images `[n, h, w, c]`; batch i is images[i * batch_size:(i + 1) * batch_size] (wrapping).
        key: the noise of the forward passes.
    """
    totals = None
    for i in range(batches):
        index = np.arange(i * batch_size, (i + 1) * batch_size) % len(images)
        outputs = _forward_jit(family, graphdef, params, jnp.asarray(images[index]), jax.random.fold_in(key, i), None)
        recorded = outputs.get("norm_statistics")
        if not recorded:
            return None
        totals = recorded if totals is None else jax.tree.map(jnp.add, totals, recorded)
    return jax.tree.map(lambda x: x / batches, totals)


def object_masks(family: Family, graphdef, params, images: np.ndarray, key: jax.Array, statistics=None,
                 batch_size: int = SCORING_BATCH) -> dict[str, np.ndarray]:
    """The log masks of every segmentation the family gives (`family.segmentation_masks`) and the reconstructions.

    Args:
        family, graphdef, params: one seed's model.
        images: `[b, h, w, c]` in [0, 1].
        key: the evaluation's noise; passes of `batch_size` images draw from fold_in(key, pass index).
        statistics: GENESIS's BatchNorm statistics (`population_statistics`); None: each pass's own batch's.

    Returns:
        {name: float32 log masks `[b, K, h, w]`, ..., "reconstructions": `[b, h, w, c]`}.
    """
    parts: dict[str, list] = {}
    for i, start in enumerate(range(0, len(images), batch_size)):
        outputs = _forward_jit(family, graphdef, params, jnp.asarray(images[start:start + batch_size]),
                               jax.random.fold_in(key, i), statistics)
        found = {**family.segmentation_masks(outputs), "reconstructions": outputs["reconstruction"]}
        for name, value in found.items():
            parts.setdefault(name, []).append(np.asarray(value))
    return {name: np.concatenate(value) for name, value in parts.items()}


def labels(log_masks: np.ndarray) -> np.ndarray:
    """Segmentation `[b, h, w]` (int32) of log masks `[b, K, h, w]` (`noisegroup.evaluation.mask_labels`)."""
    return evaluation.mask_labels(log_masks)


def score(log_masks: np.ndarray, true: np.ndarray) -> dict[str, np.ndarray]:
    """{"ari", "ari_fg"}: float32 `[b]` of the masks' segmentation against ground-truth label maps `[b, h, w]`, by the
    one evaluation of every method (`noisegroup.evaluation.score`)."""
    return evaluation.score(labels(log_masks), true)


def seed_labels(family: Family, graphdef, params, images: np.ndarray, key: jax.Array,
                train_images: np.ndarray | None = None, population_batches: int = 10,
                population_batch_size: int = 16) -> dict[str, np.ndarray]:
    """The segmentations of every seed of a trained model with masks (any family with `has_masks`).

    Args:
        family, graphdef: the model.
        params: parameters stacked over S seeds (leading axis).
        images: test images `[b, h, w, c]` in [0, 1].
        key: the evaluation's noise (seed s draws from fold_in(key, s)).
        train_images: training images for GENESIS's BatchNorm statistics when its `eval_norm` is "population".
        population_batches, population_batch_size: how many training batches of what size estimate them.

    Returns:
        {"labels_<name>": int32 `[S, b, h, w]` per segmentation name ("masks", and "decoder_masks" for GENESIS-v2);
         "reconstructions": seed 0's `[b, h, w, c]`}.

    Raises:
        ValueError: the family has no masks, or GENESIS's population statistics lack the training images.
    """
    if not family.has_masks:
        family.segmentation_masks({})  # the base class's error, naming the family, before any work
    seeds = int(jax.tree.leaves(params)[0].shape[0])
    out: dict[str, list] = {}
    reconstructions = None
    for s in range(seeds):
        params_s = jax.tree.map(lambda x: x[s], params)
        key_s = jax.random.fold_in(key, s)
        statistics = None
        if getattr(family, "eval_norm", "batch") == "population":
            if train_images is None:
                raise ValueError("eval_norm='population' needs the training images for the BatchNorm statistics")
            statistics = population_statistics(family, graphdef, params_s, train_images, jax.random.fold_in(key_s, 1),
                                               population_batch_size, population_batches)
        found = object_masks(family, graphdef, params_s, images, jax.random.fold_in(key_s, 0), statistics)
        if s == 0:
            reconstructions = found.pop("reconstructions")
        for name, log_masks in found.items():
            if name != "reconstructions":
                out.setdefault(f"labels_{name}", []).append(labels(log_masks))
    return {**{k: np.stack(v) for k, v in out.items()}, "reconstructions": reconstructions}


def evaluate(family: Family, graphdef, params, images: np.ndarray, masks: np.ndarray, key: jax.Array,
             train_images: np.ndarray | None = None, population_batches: int = 10,
             population_batch_size: int = 16) -> dict[str, Any]:
    """Scores of every seed of a trained baseline on test images (`seed_labels`, then `noisegroup.evaluation.score`).

    Args:
        family, graphdef, params, images, key, train_images, population_*: as `seed_labels`.
        masks: ground-truth label maps `[b, h, w]`.

    Returns:
        {"<name>_ari", "<name>_ari_fg": `[S, b]` per segmentation name ("masks", and "decoder_masks" for GENESIS-v2);
         "labels_<name>": seed 0's segmentations `[b, h, w]`; "reconstructions": seed 0's `[b, h, w, c]`}.
    """
    found = seed_labels(family, graphdef, params, images, key, train_images, population_batches,
                        population_batch_size)
    out: dict[str, Any] = {"reconstructions": found.pop("reconstructions")}
    for key_name, seg in found.items():
        name = key_name.removeprefix("labels_")
        scores = evaluation.score(seg, masks)
        out[f"{name}_ari"], out[f"{name}_ari_fg"], out[key_name] = scores["ari"], scores["ari_fg"], seg[0]
    return out


def training_config(name: str, dataset: str, seeds, budget: str = "default",
                    overrides: Mapping[str, Any] | None = None) -> dict:
    """The flat training config of baseline `name` on a dataset: the official settings, a budget (`BUDGETS`), then
    `overrides`."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; known: {BASELINES}")
    if budget not in BUDGETS:
        raise ValueError(f"unknown baseline budget {budget!r}; known: {tuple(BUDGETS)}")
    return {**OFFICIAL_TRAINING, **BUDGETS[budget], **dict(overrides or {}), "model": name, "dataset": dataset,
            "seeds": tuple(seeds)}
