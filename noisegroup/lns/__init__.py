"""Latent Noise Segmentation (Lonnqvist, Wu & Herzog, ICML 2024) as a layer over the models and the engine.

    from noisegroup import lns
    seg = lns.segment(lns.load_model("pretrained/vae_kanizsa.npz"), images, num_groups=None)   # seg.labels [b, h, w]

Modules, one concern each:
    segmentation  `segment` (one call: a user's model and images -> labels, k given or estimated) and `load_model`
    num_groups    the number of groups of an image estimated from its features alone (no ground truth)
    features      perturb the latent N times, decode, difference, normalise (and the noisy-reconstruction control)
    sweep         features, clustering and ARI over a (sigma, N) grid for S seeds (`SweepSettings`, `evaluate`)
    tangent       the sigma -> 0, N -> infinity limit: the decoder's Jacobian rows at the latent mean as features, and
                  the finite-(sigma, N) bridge to it (Gram matrices, the exact finite-N second moments)
    cluster       the NumPy boundary: Ward / complete linkage / k-means per image, over worker processes
    kmeans        k-means on the device, every image at once
    pipeline      the experiment end to end (`python -m experiments.lns`): data, models, sweeps, protocols, tables
    plots         figures from a run's saved segmentations
    paper_ari.json   the paper's Table 1 and 2 values, as data
"""

import importlib

_PUBLIC = {"segment": "segmentation", "load_model": "segmentation", "Segmentation": "segmentation"}


def __getattr__(name: str):
    # `lns.segment` is imported on first use, not with the package: the clustering workers
    # (`python -m noisegroup.lns.cluster`) import this package and must not load the engine (orbax, optax) with it.
    if name in _PUBLIC:
        return getattr(importlib.import_module(f"noisegroup.lns.{_PUBLIC[name]}"), name)
    raise AttributeError(f"module 'noisegroup.lns' has no attribute {name!r}")
