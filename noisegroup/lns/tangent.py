"""Tangent-limit LNS: segment by the decoder's Jacobian at the latent mean (sigma -> 0, N -> infinity).

    feats = tangent_features(graphdef, params, images)   # [b, h*w, 3z], the layout of `features.difference_features`

The limit. LNS decodes y_n = sigmoid(decode(m + sigma eps_n)), differences D_n = y_n - y_{n+1} and normalises each
(pixel, channel) time vector. For small sigma, y(m + sigma eps) = y(m) + sigma J eps + O(sigma^2), with J = dy/dz at
the mean m (`[h, w, c, z]`; row j_pc in R^z per pixel p and channel c), so

    D_n[p, c] = sigma j_pc . delta_n + O(sigma^2),      delta_n = eps_n - eps_{n+1}.

With the noise matrix E `[N, z]` and the differencing matrix B `[N-1, N]`, Delta = B E `[N-1, z]` and the time vector
of (p, c) is sigma Delta j_pc. The rows delta_n are correlated: Cov(delta_n, delta_m) = C_nm I_z with C = B B^T the
tridiagonal `[N-1, N-1]` matrix (2 on the diagonal, -1 beside it; `difference_covariance`). Hence, exactly in the
linear regime,

    Cov(D_n[a], D_m[b]) = sigma^2 C_nm (J J^T)_ab                 (a, b: (pixel, channel) rows)
    E[D D^T] = sigma^2 tr(C) J J^T = 2 (N - 1) sigma^2 J J^T       (pixel x pixel Gram over time, per channel)

(`expected_difference_gram`). The normalised inner product of two pixels' channel-c features is the cosine of
Delta j_p and Delta j_q under S = Delta^T Delta; S / (2(N-1)) -> I_z as N grows, so the LNS Gram matrix tends to the
Gram matrix of the per-channel unit-normalised Jacobian rows: the LNS features are, up to a random rotation of the
feature space (which no Euclidean clustering sees), `tangent_features`. The correlation of consecutive differences
slows that convergence: with W = S / (2(N-1)) - I_z,

    E ||W||_F^2 = z (z + 1) (6N - 8) / (4 (N - 1)^2)                 (`gram_fluctuation`)

(a sum of N-1 correlated products: Var(sum_n delta_na delta_nb) = sum_nm C_nm^2 = 6N - 8 for a != b, twice that for
a = b; independent differences would give 4(N-1)), i.e. about 1.5x the variance of independent differences, a
1/sqrt(N) decay. So the distance between the LNS Gram and the tangent Gram has a noise floor ~ 1/sqrt(N) (reached as
sigma -> 0; `linear_limit_features` computes it with the same draws) and a curvature term O(sigma) on top.

Saturated outputs. Where the sigmoid saturates (or a ReLU path is dead) the Jacobian row is exactly zero; its
normalisation divides by 1e-12 (as `features.normalise`, torch's F.normalize), so the row stays all-zero, never NaN,
the same as LNS's zero differences there; such pixels sit together at the origin for the clustering
(`TangentResult.zero_feature_fraction` counts them).

Speed. J is z forward-mode products (`jax.jvp` of the decoder vmapped over the latent basis) per image, against N
decodes per (sigma, N) setting for LNS. The fast CPU conv layers are `jax.custom_vjp` functions, which forward mode
cannot enter, so the decoder runs with their forward-mode twins (`layers.with_conv_impl(model, "fast_jvp")`).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from noisegroup import metrics
from noisegroup.checks import check_images, check_num_clusters
from noisegroup.lns import cluster, sweep
from noisegroup.lns import features as lns
from noisegroup.models import layers

FEATURES = ("lns", "tangent")


def check_features_kind(kind: str) -> None:
    """Raises ValueError naming an unknown features kind (`FEATURES`)."""
    if kind not in FEATURES:
        raise ValueError(f"unknown features {kind!r}; expected one of {FEATURES}")


def forward_mode_impl(conv_impl: str) -> str:
    """The conv impl a forward-mode program runs: "fast" (custom VJPs, no forward mode) -> "fast_jvp"."""
    impl = layers.resolve_impl(conv_impl)
    return "fast_jvp" if impl == "fast" else impl


@functools.partial(jax.jit, static_argnames=("graphdef", "conv_impl", "chunk_size"))
def output_jacobians(graphdef, params, images, conv_impl: str = "auto", chunk_size: int = 8):
    """The traceable core of `jacobians` (same arguments and results): no checks, and the caller sets
    `jax.default_matmul_precision("highest")`."""
    model = layers.with_conv_impl(nnx.merge(graphdef, params), forward_mode_impl(conv_impl))
    means = model.encode(images)["mean"]  # [b, z]
    b, z = means.shape

    def decode(latents):  # [m, z] -> [m, h, w, c], the sigmoid output LNS differences
        return jax.nn.sigmoid(model.decode(latents))

    def chunk_jacobian(m):  # [chunk, z] -> [chunk, z, h, w, c]
        # One forward-mode product per latent direction e_k, the same e_k for every image of the chunk (the decoder
        # treats batch rows independently); the primal decode is unbatched under the vmap, so it runs once.
        along = lambda e: jax.jvp(decode, (m,), (jnp.broadcast_to(e, m.shape),))[1]  # noqa: E731
        return jnp.moveaxis(jax.vmap(along)(jnp.eye(z, dtype=m.dtype)), 0, 1)

    padded = -(-b // chunk_size) * chunk_size
    chunks = jnp.pad(means, ((0, padded - b), (0, 0))).reshape(padded // chunk_size, chunk_size, z)
    jac = jax.lax.map(chunk_jacobian, chunks)  # [chunks, chunk, z, h, w, c]
    return jac.reshape(padded, *jac.shape[2:])[:b], decode(means)


def jacobians(graphdef: nnx.GraphDef, params, images, *, conv_impl: str = "auto",
              chunk_size: int = 8) -> tuple[jax.Array, jax.Array]:
    """The decoder's Jacobian dy/dz at the latent mean, y = sigmoid(decode(z)), per image.

    Args:
        graphdef, params: one model (an AE: its code is the mean; a VAE: mu).
        images: float32 `[b, h, w, c]` in [0, 1] of the model's shape (checked: ValueError naming the shapes).
        conv_impl: conv layers for the forward-mode program: "auto" (fast with forward-mode rules on CPU, native
            elsewhere), "fast" / "fast_jvp" (the same), or "native" (XLA's convolutions).
        chunk_size: images per forward-mode program step (memory: chunk x z tangent decodes at once).

    Returns:
        (jacobians `[b, z, h, w, c]`: entry `[i, k, y, x, ch]` = d y[y, x, ch] / d z_k of image i,
         reconstructions `[b, h, w, c]` = sigmoid(decode(mean))).
    """
    lns.check_model_images(graphdef, params, images)
    layers.resolve_impl(conv_impl)  # a bad impl fails here, naming it
    with jax.default_matmul_precision("highest"):
        return output_jacobians(graphdef, params, jnp.asarray(images), conv_impl, int(chunk_size))


def tangent_features(graphdef: nnx.GraphDef, params, images, normalisation: str = "channel", *,
                     conv_impl: str = "auto", chunk_size: int = 8) -> jax.Array:
    """Tangent-limit LNS features: the per-pixel Jacobian rows at the latent mean, normalised as LNS normalises.

    Args:
        graphdef, params: one model.
        images: float32 `[b, h, w, c]` in [0, 1] (checked: ValueError naming shape, dtype or range).
        normalisation: "channel" (the reference's: each (pixel, channel) row j_pc in R^z to unit norm) or "pixel"
            (the paper's: each pixel's whole 3z vector to unit norm); ValueError otherwise. Norms below 1e-12
            divide by 1e-12: an all-zero row (saturated sigmoid, dead ReLUs) stays zero.
        conv_impl, chunk_size: as `jacobians`.

    Returns:
        `[b, h*w, z*c]` features, index = latent direction * c + channel, pixels row-major (the layout of
        `features.difference_features`, so clustering and ARI take them unchanged).
    """
    lns.check_settings(normalisation=normalisation)
    jac, _ = jacobians(graphdef, params, images, conv_impl=conv_impl, chunk_size=chunk_size)
    return lns.normalise(jac, normalisation)  # [b, z, h, w, c]: z plays LNS's time axis


# --- the bridge from finite (sigma, N) to the limit -------------------------------------------------------------


def gram(features: jax.Array) -> jax.Array:
    """Pixel x pixel inner products `[..., p, p]` of features `[..., p, f]` (G = F F^T)."""
    return jnp.einsum("...pf,...qf->...pq", features, features)


def gram_distance(features: jax.Array, reference: jax.Array) -> jax.Array:
    """Relative Frobenius distance ||F F^T - R R^T|| / ||R R^T|| of two feature sets `[..., p, f]`, `[..., p, g]`
    -> `[...]`, without forming the p x p matrices: ||F F^T - R R^T||^2 = ||F^T F||^2 + ||R^T R||^2 - 2 ||F^T R||^2
    (the cross term is tr(F F^T R R^T) = ||F^T R||^2), O(p f g) instead of O(p^2 f)."""
    sq = lambda a, b: jnp.sum(jnp.einsum("...pf,...pg->...fg", a, b) ** 2, axis=(-2, -1))  # noqa: E731
    ref = sq(reference, reference)
    return jnp.sqrt(jnp.maximum(sq(features, features) + ref - 2 * sq(features, reference), 0.0) / ref)


def difference_matrix(num_noise_samples: int) -> np.ndarray:
    """B `[N-1, N]` with (B E)_n = eps_n - eps_{n+1}: LNS's consecutive differences."""
    n = int(num_noise_samples)
    return np.eye(n - 1, n, dtype=np.float32) - np.eye(n - 1, n, k=1, dtype=np.float32)


def difference_covariance(num_noise_samples: int) -> np.ndarray:
    """C = B B^T `[N-1, N-1]`: Cov(delta_n, delta_m) = C_nm I_z for delta_n = eps_n - eps_{n+1}, eps ~ N(0, I)
    (2 on the diagonal, -1 for neighbours, 0 elsewhere)."""
    b = difference_matrix(num_noise_samples)
    return b @ b.T


def expected_difference_gram(jacobian: jax.Array, noise_std: float, num_noise_samples: int) -> jax.Array:
    """E[D D^T] over time of the unnormalised LNS differences in the linear regime, per channel.

    D_c `[p, N-1]` = sigma J_c Delta^T with Delta = B E, so E[D_c D_c^T] = sigma^2 J_c E[Delta^T Delta] J_c^T
    = sigma^2 tr(C) J_c J_c^T = 2 (N - 1) sigma^2 J_c J_c^T (E[E^T M E] = tr(M) I for standard normal E).

    Args:
        jacobian: `[z, h, w, c]` (one image of `jacobians`).

    Returns:
        `[c, h*w, h*w]`.
    """
    z, h, w, c = jacobian.shape
    rows = jnp.transpose(jacobian.reshape(z, h * w, c), (2, 1, 0))  # [z, p, c] -> [c, p, z]
    return noise_std**2 * float(np.trace(difference_covariance(num_noise_samples))) * gram(rows)


def gram_fluctuation(latent_dim: int, num_noise_samples: int) -> float:
    """E ||Delta^T Delta / (2(N-1)) - I_z||_F^2 = z (z + 1) (6N - 8) / (4 (N - 1)^2): how far the finite-N noise
    metric is from the identity, the source of the LNS Gram's 1/sqrt(N) distance to the tangent Gram."""
    z, n = int(latent_dim), int(num_noise_samples)
    return z * (z + 1) * (6 * n - 8) / (4 * (n - 1) ** 2)


def linear_limit_features(jacobian: jax.Array, eps: jax.Array, normalisation: str = "channel") -> jax.Array:
    """The sigma -> 0 limit of LNS features at finite N with draws `eps`: normalise(J (eps_n - eps_{n+1})).

    Args:
        jacobian: `[..., z, h, w, c]`.
        eps: `[..., n, z]` standard-normal draws (`features.standard_noise`, the same LNS perturbs with).

    Returns:
        `[..., h*w, 3(N-1)]` (sigma cancels in the normalisation).
    """
    delta = eps[..., :-1, :] - eps[..., 1:, :]  # [..., n-1, z]
    return lns.normalise(jnp.einsum("...tz,...zhwc->...thwc", delta, jacobian), normalisation)


def bridge(graphdef, params, images, key: jax.Array, noise_stds, sample_counts, normalisation: str = "channel",
           *, conv_impl: str = "auto") -> dict[str, np.ndarray]:
    """Distance between the LNS Gram and the tangent Gram over a (sigma, N) grid, for one model.

    Image i draws its noise from `fold_in(key, i)` as in LNS; a smaller N takes the first N draws.

    Returns:
        {"noise_stds" `[sigma]`, "sample_counts" `[n]`,
         "distance" `[sigma, n, b]`: `gram_distance(LNS features, tangent features)`,
         "linear_limit" `[n, b]`: the same for `linear_limit_features` (sigma -> 0 with the same draws),
         "expected_fluctuation" `[n]`: sqrt(`gram_fluctuation`) / sqrt(z), the 1/sqrt(N) scale of the floor}.
    """
    images = check_images(images)
    jac, _ = jacobians(graphdef, params, images, conv_impl=conv_impl)
    tangent = lns.normalise(jac, normalisation)
    keys = lns.image_keys(key, jnp.arange(len(images)))
    n_max = int(max(sample_counts))
    outputs, _ = lns.noisy_decodes(graphdef, params, images, keys, noise_stds, n_max)  # [sigma, b, n, h, w, c]
    eps = lns.standard_noise(keys, n_max, jac.shape[1])  # [b, n, z]
    distance = np.stack([np.stack([np.asarray(gram_distance(lns.difference_features(o[:, :n], normalisation), tangent))
                                   for n in sample_counts]) for o in outputs])
    linear = np.stack([np.asarray(gram_distance(linear_limit_features(jac, eps[:, :n], normalisation), tangent))
                       for n in sample_counts])
    z = jac.shape[1]
    return {"noise_stds": np.asarray(noise_stds, np.float32), "sample_counts": np.asarray(sample_counts),
            "distance": distance, "linear_limit": linear,
            "expected_fluctuation": np.array([np.sqrt(gram_fluctuation(z, n) / z) for n in sample_counts])}


# --- segmentation -------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class TangentResult:
    """ARI of every (seed, image) with tangent features, and optionally the labels.

    Attributes:
        ari, ari_fg: `[S, b]` over all pixels / foreground pixels.
        labels: `[S, b, h, w]` int32 if kept, else None.
        reconstructions: `[S, b, h, w, c]`.
        zero_feature_fraction: `[S, b]` share of pixels whose Jacobian rows are all zero.
    """

    ari: np.ndarray
    ari_fg: np.ndarray
    labels: np.ndarray | None
    reconstructions: np.ndarray
    zero_feature_fraction: np.ndarray


def evaluate(graphdef, params, images, masks, key: jax.Array, settings: sweep.SweepSettings | None = None, *,
             conv_impl: str = "auto", keep_labels: bool = False) -> TangentResult:
    """Tangent-limit LNS for S seeds: features, clustering (`sweep.segment`), ARI. No (sigma, N): nothing to select.

    Args:
        params: parameters stacked over seeds (leading axis S).
        images: `[b, h, w, c]` float32 in [0, 1] of the model's shape (checked); masks: `[b, h, w]`.
        key: clustering key (the features are deterministic).
        settings: the sweep's settings, of which this reads normalisation, method, kmeans_restarts, num_clusters,
            workers and image_chunk (images per Jacobian program); None: the defaults. The noise grid, the control
            and the seed batching do not apply.
        conv_impl: the layers' impl for the Jacobians (`jacobians`).
        keep_labels: keep every prediction (`TangentResult.labels`).
    """
    settings = sweep.SweepSettings() if settings is None else settings
    images = lns.check_model_images(graphdef, params, images, stacked=True)  # the settings were checked when made
    masks = np.asarray(masks)
    if masks.shape != images.shape[:3]:
        raise ValueError(f"masks {masks.shape} must be [b, h, w] matching images {images.shape}")
    b, h, w = masks.shape
    k = cluster.num_clusters_from_masks(masks) if settings.num_clusters is None else settings.num_clusters
    ks = check_num_clusters(k, b, h * w)
    num_seeds = jax.tree.leaves(params)[0].shape[0]
    shape = (num_seeds, b)
    ari, ari_fg, zero = np.zeros(shape, np.float32), np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    labels = np.zeros((*shape, h, w), np.int32) if keep_labels else None
    reconstructions = np.zeros((num_seeds, *images.shape), np.float32)
    for s in range(num_seeds):
        seed_params = jax.tree.map(lambda x, s=s: x[s], params)
        for start in range(0, b, settings.image_chunk):
            sl = slice(start, min(start + settings.image_chunk, b))
            jac, recon = jacobians(graphdef, seed_params, images[sl], conv_impl=conv_impl)
            feats = lns.normalise(jac, settings.normalisation)
            reconstructions[s, sl] = np.asarray(recon)
            zero[s, sl] = np.asarray(jnp.all(feats == 0, axis=-1).mean(-1))
            pred = sweep.segment(feats, ks[sl], settings.method, jax.random.fold_in(jax.random.fold_in(key, s), start),
                                 workers=settings.workers, restarts=settings.kmeans_restarts).reshape(-1, h, w)
            ari[s, sl] = metrics.batch_ari(pred, masks[sl])
            ari_fg[s, sl] = metrics.batch_ari(pred, masks[sl], foreground=True)
            if keep_labels:
                labels[s, sl] = pred
    return TangentResult(ari, ari_fg, labels, reconstructions, zero)
