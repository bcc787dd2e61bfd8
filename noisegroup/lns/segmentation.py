"""LNS on anyone's images and model, in one call: `segment` (and `load_model` for a shipped file or a workdir).

    from noisegroup import lns
    model = lns.load_model("pretrained/vae_kanizsa.npz")         # or a training workdir, or (graphdef, params)
    seg = lns.segment(model, images, key=jax.random.key(0))       # images float32 [b, 64, 64, 3] in [0, 1]
    seg.labels          # [b, 64, 64] int32 groups; seg.num_groups [b]: estimated (num_groups=None) or given
    seg = lns.segment(model, images, num_groups=3, noise_std=0.1, num_noise_samples=20, clustering="ward")

The same numbers as the experiment pipeline for the same settings and key: the features are `noisegroup.lns.features`'
(image i draws its noise from `fold_in(fold_in(key, 0), i)`, which is `sweep.evaluate`'s seed 0), images go in chunks of
`image_chunk` as there, and chunk c is clustered with `fold_in(key, 7919 * c_start)` as `sweep.evaluate` clusters its
first N. So `segment(..., num_groups=masks' k)` equals `sweep.evaluate(...)`'s labels of seed 0 at that (sigma, N).

With `num_groups=None` the number of groups is estimated per image from the features alone
(`noisegroup.lns.num_groups`; no ground truth), between 2 and `k_max`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from noisegroup.engine import config as engine_config
from noisegroup.engine import loop, pretrained
from noisegroup.errors import BadInputError, NotFoundError
from noisegroup.lns import cluster, sweep
from noisegroup.lns import features as lns
from noisegroup.lns import num_groups as groups
from noisegroup.models.autoencoder import AutoEncoderFamily

DEFAULT_NOISE_STD = 0.1  # the middle of the default run's grid {0.01, 0.1, 0.5}
DEFAULT_NUM_NOISE_SAMPLES = 20  # likewise, of {5, 20, 40}
CLUSTER_KEY_STRIDE = 7919  # sweep.evaluate clusters the chunk starting at image c with fold_in(key, 7919 c + j)


@dataclasses.dataclass(frozen=True)
class Segmentation:
    """What `segment` returns.

    Attributes:
        labels: int32 `[b, h, w]` group of every pixel, in [0, num_groups[i]).
        num_groups: int32 `[b]` the k each image was clustered into (given, or estimated).
        features: float32 `[b, h*w, 3(N-1)]` the LNS features clustered, if asked for (`return_features=True`).
    """

    labels: np.ndarray
    num_groups: np.ndarray
    features: np.ndarray | None = None


def as_graphdef_params(model):
    """(graphdef, params) of an `nnx.Module` or of a (graphdef, params) pair (`nnx.split(model, nnx.Param)`)."""
    if isinstance(model, nnx.Module):
        graphdef, params, _ = nnx.split(model, nnx.Param, ...)
        return graphdef, params
    if isinstance(model, tuple) and len(model) == 2:
        return model
    raise BadInputError(f"model must be an nnx.Module, a (graphdef, params) pair or load_model's result, got "
                        f"{type(model).__name__}")


def load_model(source: str | Path, seed: int = 0):
    """(graphdef, params) of one seed of a trained LNS model (AE or beta-VAE).

    Args:
        source: a shipped weights file (`pretrained/vae_kanizsa.npz`, `python -m experiments.export_pretrained`) or a
            training workdir (`python -m experiments.train`: its newest checkpoint, the moving average when it keeps one).
        seed: which seed of the file or run (its position in the run's `seeds`).

    Raises:
        NotFoundError: no such file or workdir; BadInputError: a damaged file, or a seed the source does not hold.
    """
    path = Path(source)
    if path.is_dir():
        if not (path / "config.json").exists() or not (path / "run.json").exists():
            raise NotFoundError(f"{str(path)!r} is not a training workdir (no config.json / run.json); give a "
                                f"workdir of `python -m experiments.train` or a weights .npz")
        config, state = loop.restore(path)
        image_shape = tuple(json.loads((path / "run.json").read_text())["image_shape"])
        params = state.inference_params
    elif path.exists():
        meta = pretrained.read_meta(path)
        # The recipe the file was trained with; how that run was run (seeds, micro-batches, ...) is not the model's.
        config = {k: v for k, v in meta["train"].items() if k not in pretrained.NOT_RECIPE}
        image_shape = tuple(meta.get("image_shape", (64, 64, 3)))
        params = pretrained.load(path, config, image_shape)
    else:
        raise NotFoundError(f"no model at {str(path)!r}: give a weights .npz (e.g. pretrained/vae_kanizsa.npz) or a "
                            f"training workdir")
    run = engine_config.as_run_config(config)
    if not isinstance(run.family, AutoEncoderFamily):  # the beta-VAE's family is a subclass
        raise BadInputError(f"{str(path)!r} holds a {run.engine.model!r} model; LNS needs an autoencoder or beta-VAE")
    num_seeds = int(jax.tree.leaves(params)[0].shape[0])
    if not 0 <= int(seed) < num_seeds:
        raise BadInputError(f"seed must be in [0, {num_seeds}) for {str(path)!r} (it holds {num_seeds} seed(s)), "
                            f"got {seed!r}")
    _, trainer, _ = loop.build(run, image_shape)
    return trainer.graphdef, jax.tree.map(lambda x: x[int(seed)], params)


def prepare_images(images, image_shape: tuple[int, ...], resize: bool) -> np.ndarray:
    """`images` as float32 `[b, *image_shape]` in [0, 1]: uint8 is divided by 255; another size is an error naming
    both shapes, or, with `resize`, a bilinear (antialiased) resize to the model's size."""
    images = np.asarray(images)
    if images.ndim == 3:  # one image
        images = images[None]
    if images.dtype == np.uint8:
        images = (images / 255.0).astype(np.float32)
    if images.ndim == 4 and images.shape[1:] != tuple(image_shape) and resize:
        if images.shape[-1] != image_shape[-1]:
            raise BadInputError(f"images have {images.shape[-1]} channels, the model {image_shape[-1]}: resize changes "
                                f"height and width only")
        images = np.clip(np.asarray(jax.image.resize(jnp.asarray(images, jnp.float32),
                                                     (len(images), *image_shape), "linear", antialias=True)), 0, 1)
    if images.ndim == 4 and images.shape[1:] != tuple(image_shape):
        raise BadInputError(f"images are {list(images.shape[1:])} and the model takes {list(image_shape)}; resize "
                            f"them (segment(..., resize=True), or load the folder at the model's size)")
    return images


def check_num_groups(num_groups, num_images: int, num_pixels: int) -> np.ndarray:
    """k per image as int32 `[b]` from an int or `[b]` ints, each in [1, num_pixels].

    Raises:
        BadInputError: naming the bad k (a float, bool, k < 1 or above the pixels, the wrong count).
    """
    values = np.asarray(num_groups)
    if values.dtype == bool or not (np.issubdtype(values.dtype, np.integer) or
                                    (np.issubdtype(values.dtype, np.floating) and np.all(values == np.round(values)))):
        raise BadInputError(f"num_groups must be an integer (or one per image) in [1, {num_pixels}], or None "
                            f"(estimated); got {num_groups!r}")
    if values.ndim > 1 or (values.ndim == 1 and len(values) != num_images):
        raise BadInputError(f"num_groups must be one integer or one per image ({num_images}), got shape "
                            f"{list(values.shape)}")
    bad = (values < 1) | (values > num_pixels)
    if np.any(bad):
        raise BadInputError(f"num_groups must be in [1, {num_pixels}] (the pixels of an image), got "
                            f"{values[bad].ravel()[0].item()!r}")
    return np.broadcast_to(values.astype(np.int32), (num_images,)).copy()


def segment(model, images, *, key: jax.Array | int = 0, num_groups=None,
            noise_std: float = DEFAULT_NOISE_STD, num_noise_samples: int = DEFAULT_NUM_NOISE_SAMPLES,
            normalisation: str = "channel", clustering: str = "ward", estimator: str = groups.DEFAULT_ESTIMATOR,
            k_max: int = groups.DEFAULT_K_MAX, kmeans_restarts: int = 1, image_chunk: int = 25,
            return_features: bool = False, resize: bool = False, workers: int | None = None,
            progress: bool = False) -> Segmentation:
    """Segments images by Latent Noise Segmentation with a trained autoencoder or beta-VAE.

    Args:
        model: an `nnx.Module`, a (graphdef, params) pair of ONE seed, or `load_model(path)`'s result.
        images: float32 `[b, h, w, c]` in [0, 1] (uint8 is divided by 255; one image `[h, w, c]` is a batch of one),
            of the model's size unless `resize`.
        key: the noise key (a `jax.random.key` or an int seed).
        num_groups: k for every image (an int in [1, h*w], or `[b]` ints, e.g. each mask's number of labels), or
            None: estimated per image from its features (`estimator`, between 2 and k_max).
        noise_std, num_noise_samples: sigma (latent units) and N.
        normalisation: "channel" (the reference's) or "pixel" (the paper's Appendix D).
        clustering: "ward" (the reference's), "complete", "kmeans" or "kmeans_jax" (`sweep.CLUSTER_METHODS`).
        estimator, k_max: how k is estimated when `num_groups` is None (`noisegroup.lns.num_groups.ESTIMATORS`).
        kmeans_restarts: scikit-learn k-means initialisations per image.
        image_chunk: images decoded per program (memory: chunk x N decodes).
        return_features: keep the features (memory: b x h*w x 3(N-1) float32).
        resize: resize images of another size to the model's (bilinear); otherwise that is an error.
        workers: clustering processes (None: all cores for the linkages).
        progress: a progress bar over images.

    Returns:
        A `Segmentation`.

    Raises:
        BadInputError / ValueError: naming the bad value (images out of range or of another size, sigma <= 0, N < 2,
            an unknown method or estimator, k < 1 or above the pixels, k_max out of range).
    """
    graphdef, params = as_graphdef_params(model)
    image_shape = lns.model_image_shape(graphdef, params)
    images = lns.check_model_images(graphdef, params, prepare_images(images, image_shape, resize))
    lns.check_settings(noise_std=noise_std, num_noise_samples=num_noise_samples, normalisation=normalisation)
    sweep.check_method(clustering)
    b, h, w = images.shape[:3]
    if num_groups is None:
        groups.check_estimator(estimator)
        groups.check_k_max(k_max, h * w)
    else:
        num_groups = check_num_groups(num_groups, b, h * w)
    if int(image_chunk) < 1:
        raise BadInputError(f"image_chunk must be >= 1, got {image_chunk!r}")
    key = jax.random.key(key) if isinstance(key, int) else key
    noise_key = jax.random.fold_in(key, 0)  # sweep.evaluate's seed 0
    stds = jnp.asarray([noise_std], jnp.float32)

    labels = np.zeros((b, h, w), np.int32)
    counts = np.zeros((b,), np.int32)
    kept = [] if return_features else None
    bar = tqdm(total=b, desc="LNS segment", unit="img", disable=not progress, leave=False)
    for start in range(0, b, int(image_chunk)):
        sl = slice(start, min(start + int(image_chunk), b))
        keys = lns.image_keys(noise_key, jnp.arange(sl.start, sl.stop))
        with jax.default_matmul_precision("highest"):
            outputs, _ = lns.perturbed_decodes(graphdef, params, jnp.asarray(images[sl]), keys, stds,
                                               int(num_noise_samples))
        feats = lns.difference_features(outputs[0], normalisation)  # [chunk, h*w, 3(N-1)]
        cluster_key = jax.random.fold_in(key, CLUSTER_KEY_STRIDE * start)
        chunk_groups = None if num_groups is None else num_groups[sl]
        pred, ks = _cluster(feats, chunk_groups, clustering, cluster_key, estimator, int(k_max), workers,
                            int(kmeans_restarts))
        labels[sl], counts[sl] = pred.reshape(-1, h, w), ks
        if kept is not None:
            kept.append(np.asarray(feats))
        bar.update(sl.stop - sl.start)
    bar.close()
    return Segmentation(labels, counts, np.concatenate(kept) if kept else None)


def _cluster(features, num_groups, method: str, key, estimator: str, k_max: int, workers, restarts: int):
    """(labels `[b, p]`, ks `[b]`) of one chunk: `sweep.segment`'s clustering (the pipeline's), with k estimated
    first when `num_groups` is None (inside the clustering workers, where Ward shares its tree with "ward_gap")."""
    if num_groups is not None:
        return sweep.segment(features, num_groups, method, key, workers=workers, restarts=restarts), num_groups
    seed = int(jax.random.randint(key, (), 0, 2**31 - 1))  # the seed sweep.segment gives scikit-learn
    if method == "kmeans_jax":  # k per image on the host first, then every image at once on the device
        host = np.asarray(jax.device_get(features))
        ks = np.array([groups.estimate(x, estimator, k_max, seed=seed + i) for i, x in enumerate(host)], np.int32)
        return sweep.segment(features, ks, method, key), ks
    labels, ks = cluster.cluster_with_counts(features, None, method, seed=seed, workers=workers, restarts=restarts,
                                             estimator=estimator, k_max=k_max)
    return labels, np.asarray(ks, np.int32)
