"""noisegroup: unsupervised perceptual grouping and object segmentation in JAX/Flax.

    noisegroup.models    model families (the LNS autoencoder and beta-VAE; `register_family` for new ones)
    noisegroup.engine    training for every family: seeds as an array axis, meshes, checkpoints, `restore`
    noisegroup.lns       Latent Noise Segmentation: features, sweeps, clustering, the experiment pipeline, figures
    noisegroup.metrics   ARI (jittable), shared by both methods
    noisegroup.stats     summaries and tests over seeds
    noisegroup.checks, noisegroup.atomic   input checks and the one atomic file writer

Importing changes no process state: entry points call `noisegroup.malloc.reuse_freed_memory()` themselves.
"""

__version__ = "0.1.0"
