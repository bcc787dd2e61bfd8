"""LNS over a grid of noise levels and sample counts for S trained seeds: features, clustering, ARI.

    settings = SweepSettings(noise_stds=(1e-3, 1e-1), num_noise_samples=(10, 40), method="kmeans")
    result = evaluate(graphdef, params, images, masks, key, settings)
    result.ari   # [S, sigma, N, b] ARI per seed, setting and image

One pass per chunk of images decodes the largest N once for every sigma (`lns.noisy_decodes`: the sigmas share
their noise draws, a smaller N takes the first N samples), then each N's features are clustered. The seed axis is
one program (`engine.parallel.seed_map`: vmapped on accelerators, unrolled on CPU).

Clustering methods: those of `noisegroup.lns.cluster` (NumPy boundary: "ward", the reference's, "complete",
"kmeans") and "kmeans_jax" (`noisegroup.lns.kmeans`: every image of every seed and setting at once, on the device).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from noisegroup import metrics
from noisegroup.checks import check_num_clusters
from noisegroup.engine.parallel import resolve_seed_batching, seed_map
from noisegroup.lns import cluster, kmeans
from noisegroup.lns import features as lns

CLUSTER_METHODS = (*cluster.METHODS, "kmeans_jax")


def check_method(method: str) -> None:
    if method not in CLUSTER_METHODS:
        raise ValueError(f"unknown clustering method {method!r}; expected one of {CLUSTER_METHODS}")


def segment(features, num_clusters, method: str, key: jax.Array, *, workers: int | None = None, restarts: int = 1,
            progress: bool = False) -> np.ndarray:
    """Labels `[b, p]` of features `[b, p, f]` with k `[b]` clusters by `method` (see module docstring); `restarts`
    k-means initialisations per image (scikit-learn's k-means only)."""
    check_method(method)
    if method == "kmeans_jax":
        if restarts != 1:
            raise ValueError(f"kmeans_restarts={restarts} needs clustering='kmeans' (kmeans_jax runs one "
                             f"initialisation per image)")
        return np.asarray(kmeans.batch_kmeans(features, num_clusters, key))  # checks the features, naming an image
    seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
    return cluster.cluster(features, num_clusters, method, seed=seed, workers=workers, progress=progress,
                           restarts=restarts)


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


@dataclasses.dataclass(frozen=True)
class SweepSettings:
    """What a sweep computes; checked when made, so a bad grid fails before any model is trained.

    Attributes:
        noise_stds: latent noise levels sigma (ignored by the control, which has one pixel noise level).
        num_noise_samples: the Ns (each >= 2).
        normalisation: "channel" (reference) or "pixel" (paper).
        method: clustering method (`CLUSTER_METHODS`).
        kmeans_restarts: initialisations per image of scikit-learn's k-means (1: its default since 1.4; 10: when
            the paper was written).
        num_clusters: k for every image, or None: each mask's number of labels (the reference).
        control: run the noisy-reconstruction control instead (`lns.control_features`).
        control_noise_std: the control's noise std.
        control_reading: which reading of the paper's control sentence (`lns.ControlReading`).
        image_chunk: images per decoding program (bounds memory: S x sigma x chunk x max N decodes at once).
        seed_batching: "auto", "vmap" or "unroll" (`engine.parallel`).
        workers: clustering processes (None: all cores).
        progress: a progress bar.
    """

    noise_stds: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 0.5)
    num_noise_samples: tuple[int, ...] = (5, 20)
    normalisation: str = "channel"
    method: str = "ward"
    kmeans_restarts: int = 1
    num_clusters: int | None = None
    control: bool = False
    control_noise_std: float = lns.CONTROL_NOISE_STD
    control_reading: lns.ControlReading = lns.ControlReading()
    image_chunk: int = 25
    seed_batching: str = "auto"
    workers: int | None = None
    progress: bool = False

    def __post_init__(self):
        # The grid stays tuples of Python numbers (it becomes a float32 array once, in `evaluate`). Sigma is checked
        # where it is used: not in the control, whose one noise level is `control_noise_std`, so the control's
        # variant of an experiment's sweep (`dataclasses.replace(..., control=True)`) checks no sigma again.
        stds = tuple(float(v) for v in _numbers(self.noise_stds))
        counts = _numbers(self.num_noise_samples)
        for n in counts:
            lns.check_settings(num_noise_samples=n)
        lns.check_settings(normalisation=self.normalisation)
        if not self.control:
            lns.check_settings(noise_std=stds or None)
        if not stds or not counts:
            raise ValueError(f"the grid needs at least one sigma and one N, got {self.noise_stds!r} x "
                             f"{self.num_noise_samples!r}")
        lns.check_settings(noise_std=self.control_noise_std)
        check_method(self.method)
        if int(self.kmeans_restarts) < 1 or (self.method == "kmeans_jax" and int(self.kmeans_restarts) != 1):
            raise ValueError(f"kmeans_restarts must be >= 1 (and 1 with clustering='kmeans_jax'), got "
                             f"{self.kmeans_restarts!r}")
        if self.num_clusters is not None and int(self.num_clusters) < 1:
            raise ValueError(f"num_clusters must be >= 1 or None (k from each mask), got {self.num_clusters!r}")
        if int(self.image_chunk) < 1:
            raise ValueError(f"image_chunk must be >= 1, got {self.image_chunk!r}")
        object.__setattr__(self, "noise_stds", stds)
        object.__setattr__(self, "num_noise_samples", tuple(int(n) for n in counts))


def _numbers(value) -> tuple:
    """A sequence of numbers as a tuple, or one number as a 1-tuple (a config gives tuples, a script may give one)."""
    return tuple(value) if isinstance(value, (tuple, list)) else tuple(np.atleast_1d(value).tolist())


@functools.lru_cache(maxsize=16)
def _decode_program(graphdef, num_noise_samples: int, batching: str, chunk_size: int):
    def one_seed(params, keys, images, stds):
        return lns.perturbed_decodes(graphdef, params, images, keys, stds, num_noise_samples, chunk_size)

    return jax.jit(seed_map(one_seed, (0, 0, None, None), batching))


def setting_features(graphdef, params, images, key: jax.Array, noise_std: float, num_noise_samples: int,
             normalisation: str = "channel") -> jax.Array:
    """LNS features `[b, h*w, 3(N-1)]` of one seed's model at one setting; image i draws noise from
    `fold_in(key, i)`, so with `key = fold_in(evaluate's key, s)` these are exactly the features `evaluate` clusters
    for seed s."""
    keys = lns.image_keys(key, jnp.arange(len(images)))
    images = lns.check_model_images(graphdef, params, images)
    with jax.default_matmul_precision("highest"):  # sigma and N come from checked settings: the unchecked core
        outputs, _ = lns.perturbed_decodes(graphdef, params, images, keys, jnp.asarray([noise_std], jnp.float32),
                                           int(num_noise_samples))
    return lns.difference_features(outputs[0], normalisation)


def evaluate(graphdef, params, images, masks, key: jax.Array, settings: SweepSettings, *, keep_labels: bool = False,
             label: str = "") -> SweepResult:
    """LNS (or its noisy-reconstruction control) over a (sigma, N) grid for S seeds.

    Args:
        graphdef: the model's graph definition.
        params: parameters stacked over seeds (leading axis S), e.g. a trained `TrainState.params`.
        images: `[b, h, w, c]` float32 in [0, 1] of the model's shape (checked); masks: `[b, h, w]` ground truth.
        key: noise key; seed s and image i use `fold_in(fold_in(key, s), i)`.
        settings: what to compute (`SweepSettings`, checked when it was made).
        keep_labels: keep every prediction (memory: S x sigma x N x b x h x w int32).
        label: what the progress bar is of (e.g. "kanizsa / ae: test").

    Returns:
        A `SweepResult`.
    """
    images = lns.check_model_images(graphdef, params, images, stacked=True)
    masks = np.asarray(masks)
    if masks.shape != images.shape[:3]:
        raise ValueError(f"masks {masks.shape} must be [b, h, w] matching images {images.shape}")
    # The one change of type of the grid: the settings' tuples become the program's float32 input here.
    noise_stds = np.asarray((settings.control_noise_std,) if settings.control else settings.noise_stds, np.float32)
    sample_counts = np.asarray(settings.num_noise_samples, np.int64)
    normalisation, method, control = settings.normalisation, settings.method, settings.control
    control_noise_std, image_chunk = settings.control_noise_std, settings.image_chunk
    b, h, w = masks.shape
    num_clusters = settings.num_clusters
    ks = check_num_clusters(cluster.num_clusters_from_masks(masks) if num_clusters is None else num_clusters, b, h * w)
    num_seeds = jax.tree.leaves(params)[0].shape[0]
    batching = resolve_seed_batching(settings.seed_batching, sharded=False)
    if batching == "loop":  # the decoding program maps seeds itself
        batching = "unroll"
    # The control uses only the unperturbed reconstructions: decode the minimum number of noisy samples (2).
    max_n = 2 if control else int(sample_counts.max())
    program = _decode_program(graphdef, max_n, batching, 8)
    seed_keys = jnp.stack([jax.random.fold_in(key, s) for s in range(num_seeds)])

    shape = (num_seeds, len(noise_stds), len(sample_counts), b)
    ari, ari_fg, zero = np.zeros(shape, np.float32), np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    labels = np.zeros((*shape, h, w), np.int32) if keep_labels else None
    reconstructions = np.zeros((num_seeds, *images.shape), np.float32)
    desc = f"{label} {'LNS control' if control else 'LNS'}".strip()
    bar = tqdm(total=b, desc=desc, unit="img", disable=not settings.progress,
               leave=False)
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
                feats = jax.vmap(lambda r, k: lns.control_features(
                    r, k, int(n), control_noise_std, normalisation, settings.control_reading))(
                    recon, control_keys)[:, None]  # [S, 1, chunk, p, f]
            else:
                feats = lns.difference_features(outputs[:, :, :, :n], normalisation)  # [S, sigma, chunk, p, f]
            flat = feats.reshape(-1, *feats.shape[-2:])
            zero[:, :, j, sl] = np.asarray(jnp.all(feats == 0, axis=-1).mean(-1))
            chunk_ks = np.tile(ks[sl], num_seeds * len(noise_stds))
            pred = segment(flat, chunk_ks, method, jax.random.fold_in(key, 7919 * start + j), workers=settings.workers,
                           restarts=int(settings.kmeans_restarts))
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
