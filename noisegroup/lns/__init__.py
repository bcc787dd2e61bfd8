"""Latent Noise Segmentation (Lonnqvist, Wu & Herzog, ICML 2024) as a layer over the models and the engine.

Modules, one concern each:
    features   perturb the latent N times, decode, difference, normalise (and the noisy-reconstruction control)
    sweep      features, clustering and ARI over a (sigma, N) grid for S seeds (`SweepSettings`, `evaluate`)
    tangent    the sigma -> 0, N -> infinity limit: the decoder's Jacobian rows at the latent mean as features, and
               the finite-(sigma, N) bridge to it (Gram matrices, the exact finite-N second moments)
    cluster    the NumPy boundary: Ward / complete linkage / k-means per image, over worker processes
    kmeans     k-means on the device, every image at once
    pipeline   the experiment end to end (`python -m experiments.lns`): data, models, sweeps, protocols, tables
    plots      figures from a run's saved segmentations
    paper_ari.json   the paper's Table 1 and 2 values, as data
"""
