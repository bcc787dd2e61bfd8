"""Latent Noise Segmentation (LNS) features: perturb the latent N times, decode, difference, normalise.

    outputs = noisy_decodes(graphdef, params, images, image_keys, noise_stds, num_noise_samples)
    features = difference_features(outputs[..., :n, :, :, :], "channel")   # [..., h*w, 3(n-1)] per pixel

Per image x (the reference's `NoisySegmentation.forward`, spec section 4):

1. m = encode(x)["mean"]: the AE's code or the VAE's mu (logvar unused, no sampling);
2. y_n = sigmoid(decode(m + sigma * eps_n)), eps_n ~ N(0, I) fresh for each of the N samples;
3. D_n = y_n - y_{n+1} for n = 1..N-1 (the reference's order; the paper's sign is the opposite, which no
   normalisation or clustering can see);
4. normalise: "channel" (reference, default) divides each pixel's length-(N-1) time vector of each channel by its
   L2 norm, so a pixel's feature has norm sqrt(3); "pixel" (the paper's Appendix D) divides the whole 3(N-1) vector,
   norm 1. Norms below 1e-12 divide by 1e-12 (as torch's F.normalize): a block whose differences are exactly zero
   (a saturated sigmoid) stays all-zero rather than NaN;
5. features [h*w, 3(N-1)] with index step * 3 + channel, pixels in row-major order, as the reference.

Noise is a pure function of (key, image index): image i draws eps from `fold_in(key, i)`, so results do not depend
on how images are batched. All noise levels of a sweep scale the same standard-normal draws (common random numbers)
and a smaller N uses the first N of them, so a sweep over (sigma, N) decodes once per sigma.

Run this stage at `highest` matmul precision (`jax.default_matmul_precision("highest")`, as `noisy_decodes` does):
with sigma <= 1e-3 the differences are tiny, and TF32 matmuls on GPUs would drown them.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
from flax import nnx

from noisegroup.checks import check_images

NORMALISATIONS = ("channel", "pixel")
# Std of the pixel noise of the paper's noisy-reconstruction control (App. C.3: the mean of the best latent noise
# levels of the AE and the VAE).
CONTROL_NOISE_STD = 0.3235


def check_settings(noise_std=None, num_noise_samples=None, normalisation=None) -> None:
    """Raises ValueError naming a bad LNS setting (sigma <= 0, N < 2, unknown normalisation)."""
    if noise_std is not None:
        for s in jnp.atleast_1d(jnp.asarray(noise_std)).tolist():
            if not (math.isfinite(s) and s > 0):
                raise ValueError(f"noise_std must be a finite number > 0, got {s!r}")
    if num_noise_samples is not None and (int(num_noise_samples) != num_noise_samples or num_noise_samples < 2):
        raise ValueError(f"num_noise_samples must be an integer >= 2 (differences need two samples), "
                         f"got {num_noise_samples!r}")
    if normalisation is not None and normalisation not in NORMALISATIONS:
        raise ValueError(f"unknown normalisation {normalisation!r}; expected one of {NORMALISATIONS}")


@functools.lru_cache(maxsize=32)
def _decoded_shape(graphdef, treedef, leaves: tuple) -> tuple[int, ...]:
    def decode_one(params):
        model = nnx.merge(graphdef, params)
        return model.decode(jnp.zeros((1, int(model.latent_dim)), jnp.float32))

    abstract = jax.tree.unflatten(treedef, [jax.ShapeDtypeStruct(shape, dtype) for shape, dtype in leaves])
    return tuple(jax.eval_shape(decode_one, abstract).shape[1:])


def model_image_shape(graphdef: nnx.GraphDef, params, *, stacked: bool = False) -> tuple[int, ...]:
    """The image shape `(h, w, c)` a model takes: the shape its decoder returns for one latent (`latent_dim` of
    them), as LNS compares the decodes with the image's mask pixel by pixel. Shapes only (`jax.eval_shape`, cached
    per model): no weight is read and nothing is computed.

    Args:
        graphdef, params: the model; `stacked`: params carry a leading seed axis (a `TrainState`'s).
    """
    leaves, treedef = jax.tree.flatten(params)
    shapes = tuple((tuple(leaf.shape[1:] if stacked else leaf.shape), jnp.dtype(leaf.dtype)) for leaf in leaves)
    return _decoded_shape(graphdef, treedef, shapes)


def check_model_images(graphdef: nnx.GraphDef, params, images, *, stacked: bool = False):
    """`check_images` (dtype, finite, in [0, 1]), then that `images` have the model's shape (`model_image_shape`):
    an image of another size or channel count would otherwise fail deep inside XLA (a `dot_general`, broadcast
    or reshape error) or, worse, decode at the model's size without a word.

    Returns:
        The images as a NumPy array.

    Raises:
        ValueError: naming `images`, their shape and the model's.
    """
    images = check_images(images)  # first: these checks need no model
    shape = model_image_shape(graphdef, params, stacked=stacked)
    if images.shape[1:] != shape:
        raise ValueError(f"images must have the model's shape [n, {', '.join(map(str, shape))}], got "
                         f"{list(images.shape)}")
    return images


def image_keys(key: jax.Array, indices: jax.Array) -> jax.Array:
    """One key per image: `fold_in(key, index)` for image indices `[b]` -> keys `[b]`."""
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(indices)


def standard_noise(keys: jax.Array, num_noise_samples: int, latent_dim: int) -> jax.Array:
    """eps `[b, n, z]` ~ N(0, I): image i's N noise vectors from `keys[i]`."""
    return jax.vmap(lambda k: jax.random.normal(k, (num_noise_samples, latent_dim)))(keys)


def decode_in_chunks(decode, latents: jax.Array, chunk_size: int) -> jax.Array:
    """sigmoid(decode(latents)) for latents `[m, z]` -> `[m, h, w, c]`, `chunk_size` rows at a time.

    `lax.map` over chunks bounds memory (N x images decodes never sit in one batch) and, on CPU, small decoder
    batches are faster than one big one (chunks of 8 measured fastest on 2 cores).
    """
    m = latents.shape[0]
    padded = -(-m // chunk_size) * chunk_size
    chunks = jnp.pad(latents, ((0, padded - m), (0, 0))).reshape(padded // chunk_size, chunk_size, -1)
    probs = jax.lax.map(lambda z: jax.nn.sigmoid(decode(z)), chunks)
    return probs.reshape(padded, *probs.shape[2:])[:m]


@functools.partial(jax.jit, static_argnames=("graphdef", "num_noise_samples", "chunk_size"))
def perturbed_decodes(graphdef, params, images, keys, noise_stds, num_noise_samples: int, chunk_size: int = 8):
    """The traceable core of `noisy_decodes` (same arguments and results): no checks, and the caller sets
    `jax.default_matmul_precision("highest")` around the call (or around the program that calls it)."""
    model = nnx.merge(graphdef, params)
    means = model.encode(images)["mean"]  # [b, z]
    eps = standard_noise(keys, num_noise_samples, means.shape[-1])  # [b, n, z]
    latents = means[None, :, None, :] + noise_stds[:, None, None, None] * eps[None]  # [sigma, b, n, z]
    probs = decode_in_chunks(model.decode, latents.reshape(-1, means.shape[-1]), chunk_size)
    reconstructions = jax.nn.sigmoid(model.decode(means))
    return probs.reshape(*latents.shape[:3], *probs.shape[1:]), reconstructions


def noisy_decodes(graphdef: nnx.GraphDef, params, images: jax.Array, keys: jax.Array, noise_stds,
                  num_noise_samples: int, *, chunk_size: int = 8) -> tuple[jax.Array, jax.Array]:
    """Decoded outputs of N latent perturbations per image and noise level, at `highest` matmul precision.

    Args:
        graphdef, params: the trained model (`nnx.split(model, nnx.Param)` or a `TrainState`'s params).
        images: float32 `[b, h, w, c]` in [0, 1], of the model's shape (checked: ValueError otherwise).
        keys: `[b]` one key per image (`image_keys(key, indices)`).
        noise_stds: `[sigma]` noise levels (absolute latent units); they share the noise draws.
        num_noise_samples: N >= 2.
        chunk_size: decoder batch size inside the program.

    Returns:
        (outputs `[sigma, b, n, h, w, c]` = sigmoid(decode(mean + sigma * eps)),
         reconstructions `[b, h, w, c]` = sigmoid(decode(mean)), the unperturbed ones).
    """
    check_model_images(graphdef, params, images)
    noise_stds = jnp.atleast_1d(jnp.asarray(noise_stds, jnp.float32))
    check_settings(noise_std=noise_stds, num_noise_samples=num_noise_samples)
    with jax.default_matmul_precision("highest"):
        return perturbed_decodes(graphdef, params, images, keys, noise_stds, int(num_noise_samples), int(chunk_size))


def _flatten(stack: jax.Array) -> jax.Array:
    """`[..., t, h, w, c]` -> `[..., h, w, t, c]` -> `[..., h*w, t*c]`: feature index = step * c + channel."""
    t, h, w, c = stack.shape[-4:]
    return jnp.moveaxis(stack, -4, -2).reshape(*stack.shape[:-4], h * w, t * c)


def normalise(stack: jax.Array, normalisation: str = "channel") -> jax.Array:
    """Normalises per-pixel time series `[..., t, h, w, c]` and flattens them to features `[..., h*w, t*c]`.

    "channel": each (pixel, channel) time vector to unit L2 norm (the reference's `F.normalize(D, dim=0)`);
    "pixel": each pixel's whole t*c vector to unit norm (the paper's Appendix D). Norms are clamped at 1e-12.
    """
    check_settings(normalisation=normalisation)
    axes = (-4,) if normalisation == "channel" else (-4, -1)
    norms = jnp.sqrt(jnp.sum(stack * stack, axis=axes, keepdims=True))
    return _flatten(stack / jnp.maximum(norms, 1e-12))


def difference_features(outputs: jax.Array, normalisation: str = "channel") -> jax.Array:
    """LNS features from N decoded samples `[..., n, h, w, c]` -> `[..., h*w, (n-1)*c]`.

    D_n = y_n - y_{n+1} (consecutive differences in the reference's order), then `normalise`.
    """
    if outputs.shape[-4] < 2:
        raise ValueError(f"need at least 2 noise samples to difference, got {outputs.shape[-4]}")
    return normalise(outputs[..., :-1, :, :, :] - outputs[..., 1:, :, :, :], normalisation)


CONTROL_SPACES = ("pixel", "logit")
CONTROL_NOISES = ("iid", "shared")
CONTROL_NORMALISATIONS = ("lns", "channel", "pixel", "none")


@dataclasses.dataclass(frozen=True)
class ControlReading:
    """One reading of the paper's control sentence: noise "added to the reconstruction instead of the latent layer,
    keeping the rest ... the same" (Sec. 2.4, App. C.3: std 0.3235, no more detail, no code). With r the sigmoid
    reconstruction and eps_n ~ N(0, 1), sample n of N is

        space "pixel": y_n = r + std * eps_n;    space "logit": y_n = sigmoid(logit(r) + std * eps_n)

    noise "iid": eps_n drawn per pixel and channel; "shared": one draw per sample and channel, the same at every
    pixel (as latent noise is shared by every pixel it reaches). difference: cluster the consecutive differences
    y_n - y_{n+1} (as LNS does) or the samples y_n themselves. normalisation: "lns" (the run's LNS normalisation),
    "channel", "pixel" or "none" (raw values).

    The default, pixel / iid / stack / none (N noisy reconstructions r + eps_n, raw), is the reading whose pattern
    over the six datasets matches the paper's control row (README: "The control"; `python -m
    experiments.lns_controls` measures every reading on the shipped weights). Differencing i.i.d. noise cancels r
    (ARI ~0 everywhere), and normalising each (pixel, channel) time vector maps any constant r to 1/sqrt(N), so the
    colour is lost (ARI ~0 but on Gradient Occlusion), against the paper's 0.98 on Gradient Occlusion.
    """

    space: str = "pixel"
    noise: str = "iid"
    difference: bool = False
    normalisation: str = "none"

    def __post_init__(self):
        for name, value, allowed in (("control_space", self.space, CONTROL_SPACES),
                                     ("control_noise", self.noise, CONTROL_NOISES),
                                     ("control_normalisation", self.normalisation, CONTROL_NORMALISATIONS)):
            if value not in allowed:
                raise ValueError(f"unknown {name} {value!r}; expected one of {allowed}")
        if not isinstance(self.difference, bool):
            raise ValueError(f"control_difference must be True or False, got {self.difference!r}")

    @property
    def name(self) -> str:
        return f"{self.space}/{self.noise}/{'diff' if self.difference else 'stack'}/{self.normalisation}"


def control_features(reconstructions: jax.Array, keys: jax.Array, num_noise_samples: int,
                     noise_std: float = CONTROL_NOISE_STD, normalisation: str = "channel",
                     reading: ControlReading = ControlReading()) -> jax.Array:
    """Features of the noisy-reconstruction control (paper Table 1, "AE Rec." / "VAE Rec."), in one `reading`.

    Args:
        reconstructions: `[b, h, w, c]` unperturbed sigmoid reconstructions.
        keys: `[b]` one key per image.
        num_noise_samples: N >= 2.
        noise_std: the noise's std (pixel or logit units, by `reading.space`).
        normalisation: the run's LNS normalisation (used when `reading.normalisation` is "lns").
        reading: which reading of the paper's sentence (`ControlReading`).

    Returns:
        `[b, h*w, n*c]` features ((n-1)*c with `reading.difference`).
    """
    check_settings(noise_std=noise_std, num_noise_samples=num_noise_samples, normalisation=normalisation)
    norm = normalisation if reading.normalisation == "lns" else reading.normalisation

    def one(r, key):
        shape = (num_noise_samples, *r.shape) if reading.noise == "iid" else (num_noise_samples, 1, 1, r.shape[-1])
        eps = noise_std * jax.random.normal(key, shape)
        if reading.space == "pixel":
            return r[None] + eps
        # Logits of the reconstruction, clipped where float32's sigmoid saturated (logit +-16).
        r = jnp.clip(r, 1e-7, 1 - 1e-7)
        return jax.nn.sigmoid((jnp.log(r) - jnp.log1p(-r))[None] + eps)

    samples = jax.vmap(one)(reconstructions, keys)  # [b, n, h, w, c]
    if reading.difference:
        samples = samples[:, :-1] - samples[:, 1:]
    return _flatten(samples) if norm == "none" else normalise(samples, norm)
