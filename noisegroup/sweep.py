"""LNS over a grid of noise levels and sample counts for S trained seeds: features, clustering, ARI.

    result = evaluate(graphdef, params, images, masks, key, noise_stds=(1e-3, 1e-1), num_noise_samples=(10, 40))
    result.ari   # [S, sigma, N, b] ARI per seed, setting and image

One pass per chunk of images decodes the largest N once for every sigma (`lns.noisy_decodes`: the sigmas share
their noise draws, a smaller N takes the first N samples), then each N's features are clustered. The seed axis is
one program (`train.seed_map`: vmapped on accelerators, unrolled on CPU).

Clustering methods: those of `noisegroup.cluster` (NumPy boundary: "ward", the reference's, "complete", "kmeans")
and "kmeans_jax" (`noisegroup.kmeans`: every image of every seed and setting at once, on the device).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from noisegroup import cluster, kmeans, lns, metrics
from noisegroup.train import resolve_seed_batching, seed_map

CLUSTER_METHODS = (*cluster.METHODS, "kmeans_jax")


def check_method(method: str) -> None:
    if method not in CLUSTER_METHODS:
        raise ValueError(f"unknown clustering method {method!r}; expected one of {CLUSTER_METHODS}")


def segment(features, num_clusters, method: str, key: jax.Array, *, workers: int | None = None,
            progress: bool = False) -> np.ndarray:
    """Labels `[b, p]` of features `[b, p, f]` with k `[b]` clusters by `method` (see module docstring)."""
    check_method(method)
    if method == "kmeans_jax":
        return np.asarray(kmeans.batch_kmeans(jnp.asarray(features), num_clusters, key))
    seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
    return cluster.cluster(features, num_clusters, method, seed=seed, workers=workers, progress=progress)


@dataclasses.dataclass
class SweepResult:
    """ARI of every (seed, sigma, N, image), and optionally the predicted labels.

    Attributes:
        noise_stds: `[sigma]`; num_noise_samples: `[N]`.
        ari: `[S, sigma, N, b]` ARI over all pixels (the paper's number).
        ari_fg: `[S, sigma, N, b]` ARI over foreground pixels (the reference's ARI_FG).
        labels: `[S, sigma, N, b, h, w]` int32 predictions if kept, else None.
        reconstructions: `[S, b, h, w, c]` unperturbed reconstructions.
        zero_feature_fraction: `[S, sigma, N, b]` share of pixels whose features are all zero (the decoder's
            differences vanished there, e.g. a saturated sigmoid; such pixels sit together at the origin).
    """

    noise_stds: np.ndarray
    num_noise_samples: np.ndarray
    ari: np.ndarray
    ari_fg: np.ndarray
    labels: np.ndarray | None
    reconstructions: np.ndarray
    zero_feature_fraction: np.ndarray


def _check_images(images: np.ndarray, masks: np.ndarray) -> None:
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.float32:
        raise ValueError(f"images must be float32 [b, h, w, 3], got {images.dtype} {images.shape}")
    if images.size and (np.nanmin(images) < 0 or np.nanmax(images) > 1 or not np.isfinite(images).all()):
        raise ValueError(f"images must be finite values in [0, 1], got range [{np.nanmin(images)}, {np.nanmax(images)}]")
    if masks.shape != images.shape[:3]:
        raise ValueError(f"masks {masks.shape} must be [b, h, w] matching images {images.shape}")


@functools.lru_cache(maxsize=16)
def _decode_program(graphdef, num_noise_samples: int, batching: str, chunk_size: int):
    def one_seed(params, keys, images, stds):
        return lns._noisy_decodes(graphdef, params, images, keys, stds, num_noise_samples, chunk_size)

    return jax.jit(seed_map(one_seed, (0, 0, None, None), batching))


def features(graphdef, params, images, key: jax.Array, noise_std: float, num_noise_samples: int,
             normalisation: str = "channel") -> jax.Array:
    """LNS features `[b, h*w, 3(N-1)]` of one seed's model at one setting; image i draws noise from
    `fold_in(key, i)`, so with `key = fold_in(evaluate's key, s)` these are exactly the features `evaluate` clusters
    for seed s."""
    keys = lns.image_keys(key, jnp.arange(len(images)))
    outputs, _ = lns.noisy_decodes(graphdef, params, jnp.asarray(images), keys, noise_std, num_noise_samples)
    return lns.difference_features(outputs[0], normalisation)


def evaluate(graphdef, params, images, masks, key: jax.Array, *, noise_stds, num_noise_samples,
             normalisation: str = "channel", method: str = "ward", num_clusters=None, control: bool = False,
             control_noise_std: float = lns.CONTROL_NOISE_STD, image_chunk: int = 25, keep_labels: bool = False,
             seed_batching: str = "auto", workers: int | None = None, progress: bool = False) -> SweepResult:
    """LNS (or its noisy-reconstruction control) over a (sigma, N) grid for S seeds.

    Args:
        graphdef: the model's graph definition.
        params: parameters stacked over seeds (leading axis S), e.g. a trained `TrainState.params`.
        images: `[b, h, w, 3]` float32 in [0, 1]; masks: `[b, h, w]` ground truth.
        key: noise key; seed s and image i use `fold_in(fold_in(key, s), i)`.
        noise_stds: latent noise levels sigma (ignored by the control, which has one pixel noise level).
        num_noise_samples: the Ns (each >= 2).
        normalisation: "channel" (reference) or "pixel" (paper).
        method: clustering method (`CLUSTER_METHODS`).
        num_clusters: k, an int or `[b]`; None takes each mask's number of labels (the reference).
        control: run the noisy-reconstruction control instead (`lns.control_features`).
        image_chunk: images per decoding program (bounds memory: S x sigma x chunk x max N decodes at once).
        keep_labels: keep every prediction (memory: S x sigma x N x b x h x w int32).

    Returns:
        A `SweepResult`.
    """
    images, masks = np.asarray(images), np.asarray(masks)
    _check_images(images, masks)
    noise_stds = np.atleast_1d(np.asarray(noise_stds, np.float32))
    sample_counts = np.atleast_1d(np.asarray(num_noise_samples, np.int64))
    for n in sample_counts:
        lns.check_settings(num_noise_samples=int(n))
    lns.check_settings(noise_std=noise_stds, normalisation=normalisation)
    check_method(method)
    if control:
        noise_stds = np.asarray([control_noise_std], np.float32)
    b, h, w = masks.shape
    ks = cluster.num_clusters_from_masks(masks) if num_clusters is None else np.broadcast_to(num_clusters, (b,))
    ks = np.asarray(ks, np.int64)
    if b and (ks.min() < 1 or ks.max() > h * w):
        raise ValueError(f"number of clusters must be in [1, {h * w}], got {int(ks[(ks < 1) | (ks > h * w)][0])}")
    num_seeds = jax.tree.leaves(params)[0].shape[0]
    batching = resolve_seed_batching(seed_batching, sharded=False)
    # The control uses only the unperturbed reconstructions: decode the minimum number of noisy samples (2).
    max_n = 2 if control else int(sample_counts.max())
    program = _decode_program(graphdef, max_n, batching, 8)
    seed_keys = jnp.stack([jax.random.fold_in(key, s) for s in range(num_seeds)])

    shape = (num_seeds, len(noise_stds), len(sample_counts), b)
    ari, ari_fg, zero = np.zeros(shape, np.float32), np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    labels = np.zeros((*shape, h, w), np.int32) if keep_labels else None
    reconstructions = np.zeros((num_seeds, *images.shape), np.float32)
    from tqdm.auto import tqdm

    bar = tqdm(total=b, desc="LNS control" if control else "LNS", unit="img", disable=not progress, leave=False)
    for start in range(0, b, image_chunk):
        sl = slice(start, min(start + image_chunk, b))
        idx = jnp.arange(sl.start, sl.stop)
        keys = jax.vmap(lambda k: lns.image_keys(k, idx))(seed_keys)  # [S, chunk]
        with jax.default_matmul_precision("highest"):
            outputs, recon = program(params, keys, jnp.asarray(images[sl]), jnp.asarray(noise_stds))
        reconstructions[:, sl] = np.asarray(recon)
        if control:
            control_keys = jax.vmap(lambda k: lns.image_keys(jax.random.fold_in(k, 2**30), idx))(seed_keys)
        for j, n in enumerate(sample_counts):
            if control:
                feats = jax.vmap(lambda r, k: lns.control_features(r, k, int(n), control_noise_std, normalisation))(
                    recon, control_keys)[:, None]  # [S, 1, chunk, p, f]
            else:
                feats = lns.difference_features(outputs[:, :, :, :n], normalisation)  # [S, sigma, chunk, p, f]
            flat = feats.reshape(-1, *feats.shape[-2:])
            zero[:, :, j, sl] = np.asarray(jnp.all(feats == 0, axis=-1).mean(-1))
            chunk_ks = np.tile(ks[sl], num_seeds * len(noise_stds))
            pred = segment(flat, chunk_ks, method, jax.random.fold_in(key, 7919 * start + j), workers=workers)
            pred = pred.reshape(num_seeds, len(noise_stds), sl.stop - sl.start, h, w)
            true = np.broadcast_to(masks[sl], pred.shape)
            ari[:, :, j, sl] = metrics.batch_ari(pred.reshape(-1, h, w), true.reshape(-1, h, w)).reshape(pred.shape[:3])
            ari_fg[:, :, j, sl] = metrics.batch_ari(pred.reshape(-1, h, w), true.reshape(-1, h, w),
                                                    foreground=True).reshape(pred.shape[:3])
            if keep_labels:
                labels[:, :, j, sl] = pred
        bar.update(sl.stop - sl.start)
    bar.close()
    return SweepResult(noise_stds, sample_counts, ari, ari_fg, labels, reconstructions, zero)
