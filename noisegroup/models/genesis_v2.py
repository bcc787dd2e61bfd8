"""GENESIS-v2 (Engelcke, Parker Jones & Posner, NeurIPS 2021) as a model family: pixel embeddings, the
instance-colouring stick-breaking process (IC-SBP), one latent per object.

    family = GenesisV2Family(num_slots=5)                      # or FAMILIES["genesis_v2"].from_config(config)
    model = family.build((64, 64, 3), nnx.Rngs(params=key))
    outputs = family.outputs(model, {"images": x}, family.sample_noise(key, {"images": x}))

Forward pass (spec `genesis_reference.md` Part B), K slots, images x `[b, 64, 64, 3]` in [0, 1]:
    encoder     the U-Net of `noisegroup.models.unet` with GroupNorm (8 groups), base 64 channels, no final conv:
                F `[b, s, s, 64]`.
    embeddings  u = gate * Conv1x1(ConvGNReLU(F)) + (0, .., 0, row, col): 8 channels, the gate a learned scalar
                starting at 0, so at first the IC-SBP groups by position only (spec B.4, D.15).
    IC-SBP      one uniform score r per pixel; for k = 1..K-1 the seed is argmax_i r_i s_{k-1}(i), alpha_k(i) =
                kernel(||u(i) - u(seed)||^2 / sigma) with a learned bandwidth sigma = exp(l), l starting at
                log sigma_0 (Gaussian: 1 / (K ln 2)), clamped straight-through to [0.01, 0.99]; stick-breaking in
                log space; m_K the remaining scope (spec B.5).
    latents     f_k = sum_i m_k(i) G(i) / (sum_i m_k(i) + 1e-5) with G = feat_head(F) (computed once, spec D.21);
                z_k ~ N(mu_k, sigma_k) from LayerNorm -> Linear -> ReLU -> Linear.
    decoder     z_k tiled to 4 x 4 + coordinates, four transposed convs (k5 s2, 64 channels, GroupNorm, ReLU), 1x1 to
                4: RGB sigmoid(.) and a mask logit; decoder masks m^ = softmax over slots.
Loss (spec B.8): nll with the DECODER masks + beta KL of z against the autoregressive prior (z in IC-SBP order);
`mask_consistency` (the official `klm_loss`, off) adds KL(m || m^) with m^ detached to the beta-weighted term.

Segmentation: the IC-SBP masks ("masks", the official main metric) and the decoder's ("decoder_masks", the
official "-R" metric); `GenesisV2Family.segmentation_masks` gives both.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from noisegroup.metrics import segmentation_metrics
from noisegroup.models.blocks import Conv, ConvTranspose, Dense, GroupNorm, LayerNorm, init_layers
from noisegroup.models.family import Batch, Family
from noisegroup.models.genesis import check_image_shape
from noisegroup.models.genesis_parts import (
    KL_ESTIMATORS,
    MIXTURES,
    AutoregressivePrior,
    clamp_preserve_gradients,
    latent_kl,
    mixture_nll,
    stick_breaking,
    to_sigma,
)
from noisegroup.models.unet import UNet

FEATURES = 64  # U-Net output channels = latent dim per slot
EMBEDDING_DIM = 8
# The kernels of the IC-SBP: psi(squared distance d2, bandwidth sigma), and sigma_0(K), which puts psi = 0.5 at
# d2 = 1 / K at initialisation (spec B.5).
KERNELS = {
    "gaussian": (lambda d2, sigma: jnp.exp(-d2 / sigma), lambda k: 1.0 / (k * math.log(2.0))),
    "laplacian": (lambda d2, sigma: jnp.exp(-jnp.sqrt(clamp_preserve_gradients(d2, 1e-10, 1e10)) / sigma),
                  lambda k: 1.0 / (math.sqrt(k) * math.log(2.0))),
    "epanechnikov": (lambda d2, sigma: jax.nn.relu(1.0 - d2 / sigma), lambda k: 2.0 / k),
}


class ConvGNReLU(nnx.Module):
    """3x3 conv (padding 1, no bias) -> GroupNorm(8) -> ReLU: `[b, s, s, c_in]` -> `[b, s, s, c_out]`."""

    def __init__(self, c_in: int, c_out: int):
        self.conv = Conv(c_in, c_out, 3, padding=1, bias=False)
        self.norm = GroupNorm(c_out, 8)

    def __call__(self, x: jax.Array) -> jax.Array:
        return jax.nn.relu(self.norm(self.conv(x)))


def coordinate_grid(side: int) -> jax.Array:
    """`[side, side, 2]`: linspace(-1, 1) down the rows, then along the columns."""
    grid = jnp.linspace(-1.0, 1.0, side)
    return jnp.stack(jnp.meshgrid(grid, grid, indexing="ij"), axis=-1)


SEED_SELECTIONS = ("scope_weighted_argmax", "categorical")


def instance_colouring(embeddings: jax.Array, seed_scores: jax.Array, num_slots: int, log_bandwidth: jax.Array,
                       kernel: str = "gaussian", seed_selection: str = "scope_weighted_argmax") -> jax.Array:
    """The IC-SBP's log masks `[b, K, h, w]` (sum_k exp = 1) of pixel embeddings `[b, h, w, e]`.

    Args:
        embeddings: u `[b, h, w, e]`.
        seed_scores: r `[b, h w]` in (0, 1), drawn once per forward pass and reused at every step.
        num_slots: K (K - 1 seeded steps, then the remaining scope).
        log_bandwidth: l (scalar); sigma = exp(l).
        kernel: a key of `KERNELS`.
        seed_selection: "scope_weighted_argmax" (the official code: argmax_i r_i s_{k-1}(i)) or "categorical" (a
            draw from Categorical(s_{k-1} / sum s_{k-1}) by Gumbel-max, argmax_i log s_{k-1}(i) - log(-log r_i):
            the paper's "a random pixel of the remaining scope" read literally; spec D.12).
    """
    b, h, w, e = embeddings.shape
    flat = embeddings.reshape(b, h * w, e)
    psi, _ = KERNELS[kernel]
    sigma = jnp.exp(log_bandwidth)
    log_scope = jnp.zeros((b, h * w), embeddings.dtype)
    log_alphas, log_rests = [], []
    gumbel = -jnp.log(-jnp.log(jnp.clip(seed_scores, 1e-12, 1.0 - 1e-7)))
    for _ in range(num_slots - 1):
        if seed_selection == "categorical":
            seed = jnp.argmax(log_scope + gumbel, axis=1)
        else:
            seed = jnp.argmax(seed_scores * jnp.exp(log_scope), axis=1)  # [b]: no gradient through the choice
        centre = jnp.take_along_axis(flat, seed[:, None, None], axis=1)  # [b, 1, e]: the gather carries gradients
        alpha = clamp_preserve_gradients(psi(jnp.sum(jnp.square(flat - centre), axis=-1), sigma), 0.01, 0.99)
        log_alphas.append(jnp.log(alpha))
        log_rests.append(jnp.log1p(-alpha))
        log_scope = log_scope + log_rests[-1]
    log_masks = stick_breaking(jnp.stack(log_alphas, 1), jnp.stack(log_rests, 1))
    return log_masks.reshape(b, num_slots, h, w)


class GenesisV2(nnx.Module):
    """GENESIS-v2 with the official defaults (spec B.1). Deterministic: the seed scores and latent noise are
    arguments.

    Args:
        image_size: side s of the square images (a power of two >= 16: the decoder broadcasts to s / 16).
        num_slots: K >= 2 (sets the IC-SBP bandwidth's initial value).
        kernel: the IC-SBP kernel ("gaussian", "laplacian", "epanechnikov").
        semiconv: the semi-convolutional embeddings (gate + coordinates); False: a plain 1x1 conv.
        seed_selection: how the IC-SBP picks its seeds (`instance_colouring`).
        kl_estimator: "monte_carlo" (official) or "analytic".
        init_scheme: "pytorch" or "normal".
    """

    def __init__(self, image_size: int = 64, num_slots: int = 5, *, kernel: str = "gaussian", semiconv: bool = True,
                 seed_selection: str = "scope_weighted_argmax", kl_estimator: str = "monte_carlo",
                 init_scheme: str = "pytorch", conv_impl: str = "auto", rngs: nnx.Rngs):
        self.num_slots, self.kernel, self.semiconv, self.image_size = num_slots, kernel, semiconv, image_size
        self.seed_selection, self.kl_estimator = seed_selection, kl_estimator
        c = FEATURES
        self.seg_head = ConvGNReLU(c, c)
        self.colour_head = Conv(c, EMBEDDING_DIM, 1)
        self.feat_head = ConvGNReLU(c, c)
        self.feat_out = Conv(c, 2 * c, 1)
        self.z_norm = LayerNorm(2 * c)
        self.z_hidden, self.z_out = Dense(2 * c, 2 * c), Dense(2 * c, 2 * c)
        self.decoder = nnx.List([ConvTranspose(c + 2 if i == 0 else c, c, 5, stride=2, padding=2, output_padding=1)
                                 for i in range(4)])
        self.decoder_norms = nnx.List([GroupNorm(c, 8) for _ in range(4)])
        self.decoder_out = Conv(c, 4, 1)
        init_layers(self, rngs.params(), init_scheme)
        self.encoder = UNet(image_size, 3, c, 128, init_scheme=init_scheme, conv_impl=conv_impl, norm="group",
                            head=False, rngs=rngs)
        self.gate = nnx.Param(jnp.zeros((), jnp.float32))  # the semi-convolution's scalar gate starts at 0
        self.log_bandwidth = nnx.Param(jnp.asarray(math.log(KERNELS[kernel][1](num_slots)), jnp.float32))
        self.prior = AutoregressivePrior(c, init_scheme=init_scheme, rngs=rngs)

    def embed(self, features: jax.Array) -> jax.Array:
        """Pixel embeddings u `[b, s, s, 8]` of U-Net features `[b, s, s, 64]`."""
        e = self.colour_head(self.seg_head(features))
        if not self.semiconv:
            return e
        s = features.shape[1]
        offsets = jnp.concatenate([jnp.zeros((s, s, EMBEDDING_DIM - 2)), coordinate_grid(s)], axis=-1)
        return self.gate[...] * e + offsets

    def decode(self, z: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(RGB means `[b, K, s, s, 3]`, decoder log masks `[b, K, s, s]`) of latents `[b, K, 64]`, all slots in one
        call."""
        b, k, d = z.shape
        side = self.image_size // 16
        grid = jnp.broadcast_to(coordinate_grid(side), (b * k, side, side, 2))
        h = jnp.concatenate([jnp.broadcast_to(z.reshape(b * k, 1, 1, d), (b * k, side, side, d)), grid], axis=-1)
        for conv, norm in zip(self.decoder, self.decoder_norms):
            h = jax.nn.relu(norm(conv(h)))
        out = self.decoder_out(h).reshape(b, k, self.image_size, self.image_size, 4)
        return jax.nn.sigmoid(out[..., :3]), jax.nn.log_softmax(out[..., 3], axis=1)

    def __call__(self, x: jax.Array, noise: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """The forward pass of images `x` `[b, s, s, 3]` in [0, 1].

        Args:
            x: images.
            noise: {"seed_scores": `[b, s s]` uniform in [0, 1), "latent": `[b, K, 64]` standard normal}.

        Returns:
            {"log_masks" (IC-SBP) and "decoder_log_masks" `[b, K, s, s]`, "means" `[b, K, s, s, 3]`,
             "reconstruction" `[b, s, s, 3]` (with the decoder masks), "latent_kl" `[b, K]` (Monte-Carlo, summed
             over dims), "embeddings" `[b, s, s, 8]`}.
        """
        features = self.encoder(x)
        embeddings = self.embed(features)
        log_masks = instance_colouring(embeddings, noise["seed_scores"], self.num_slots, self.log_bandwidth[...],
                                       self.kernel, self.seed_selection)
        g = self.feat_out(self.feat_head(features))  # [b, s, s, 128], once (the official code redoes it per slot)
        masks = jnp.exp(log_masks)
        pooled = jnp.einsum("bkhw,bhwc->bkc", masks, g) / (jnp.sum(masks, axis=(2, 3))[..., None] + 1e-5)
        mean, raw = jnp.split(self.z_out(jax.nn.relu(self.z_hidden(self.z_norm(pooled)))), 2, axis=-1)
        sigma = to_sigma(raw)
        z = mean + sigma * noise["latent"]
        p_mean, p_sigma = self.prior(z)
        means, decoder_log_masks = self.decode(z)
        reconstruction = jnp.sum(jnp.exp(decoder_log_masks)[..., None] * means, axis=1)
        return {"log_masks": log_masks, "decoder_log_masks": decoder_log_masks, "means": means,
                "reconstruction": reconstruction, "latent_kl": latent_kl(self.kl_estimator, z, mean, sigma, p_mean,
                                                                         p_sigma),
                "embeddings": embeddings}


# --- the loss terms and the family --------------------------------------------------------------------------------


def mask_consistency_kl(log_masks: jax.Array, decoder_log_masks: jax.Array) -> jax.Array:
    """The official `klm_loss`: sum_{i, k} m_k(i) (log m_k(i) - log m^_k(i)) with both floored at 1e-5 and the
    decoder masks m^ detached: `[b, K, h, w]` x2 -> `[b]`."""
    m = jnp.maximum(jnp.exp(log_masks), 1e-5)
    m_hat = jax.lax.stop_gradient(jnp.maximum(jnp.exp(decoder_log_masks), 1e-5))
    return jnp.sum(m * (jnp.log(m) - jnp.log(m_hat)), axis=(1, 2, 3))


def _kl(outputs) -> jax.Array:
    kl = jnp.sum(outputs["latent_kl"], axis=1)
    return kl + outputs["mask_consistency"] * mask_consistency_kl(outputs["log_masks"], outputs["decoder_log_masks"])


LOSS_TERMS = {
    "nll": lambda o: o["nll"],  # [b] nats, with the decoder masks
    "kl": _kl,  # [b]: what GECO's beta weights (the latents' KL, + KL(m || m^) with `mask_consistency`)
    "latent_kl": lambda o: jnp.sum(o["latent_kl"], axis=1),  # logged at weight 0
    "mask_kl": lambda o: mask_consistency_kl(o["log_masks"], o["decoder_log_masks"]),  # logged at weight 0
}


@dataclasses.dataclass(frozen=True)
class GenesisV2Family(Family):
    """GENESIS-v2 as a model family (config `model="genesis_v2"`); the fields are its config keys.

    Attributes:
        num_slots: K >= 2 (5 on Multi-dSprites and in the LNS paper; it sets the kernel's initial bandwidth).
        kernel: the IC-SBP kernel: "gaussian" (official default), "laplacian" or "epanechnikov".
        semiconv: semi-convolutional embeddings (official default True).
        seed_selection: "scope_weighted_argmax" (official) or "categorical" (`instance_colouring`).
        mixture: "per_channel" (official) or "per_pixel" (`genesis_parts.mixture_nll`).
        kl_estimator: "monte_carlo" (official) or "analytic".
        mask_consistency: add KL(IC-SBP masks || decoder masks) to the beta-weighted term (the official
            `klm_loss`, default False).
        pixel_std: sigma of every slot's component (0.7; the official code asserts one sigma).
        init_scheme: "pytorch" (the official code's defaults) or "normal".
        conv_impl: how the U-Net's 3x3 convs run (`noisegroup.models.layers.IMPLS`).
        max_mask_labels: bound on ground-truth labels for the validation ARI.
    """

    num_slots: int = 5
    kernel: str = "gaussian"
    semiconv: bool = True
    seed_selection: str = "scope_weighted_argmax"
    mixture: str = "per_channel"
    kl_estimator: str = "monte_carlo"
    mask_consistency: bool = False
    pixel_std: float = 0.7
    init_scheme: str = "pytorch"
    conv_impl: str = "auto"
    max_mask_labels: int = 16

    loss_terms = LOSS_TERMS
    default_weights = {"nll": 1.0, "kl": 1.0, "latent_kl": 0.0, "mask_kl": 0.0}
    geco_term = "kl"
    geco_constraint = "nll"
    cpu_micro_batch = 8  # GroupNorm is per image: passes of 8 are the same function

    def __post_init__(self):
        if int(self.num_slots) < 2:
            raise ValueError(f"GENESIS-v2 needs K = num_slots >= 2 (K - 1 seeded steps and a last slot), got "
                             f"num_slots={self.num_slots!r}")
        for name, allowed in (("kernel", tuple(KERNELS)), ("seed_selection", SEED_SELECTIONS), ("mixture", MIXTURES),
                              ("kl_estimator", KL_ESTIMATORS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name in ("semiconv", "mask_consistency"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if not (isinstance(self.pixel_std, (int, float)) and math.isfinite(self.pixel_std) and self.pixel_std > 0):
            raise ValueError(f"pixel_std must be a finite number > 0, got {self.pixel_std!r}")
        if int(self.max_mask_labels) < 1:
            raise ValueError(f"max_mask_labels must be >= 1, got {self.max_mask_labels!r}")

    def build(self, image_shape, rngs: nnx.Rngs) -> GenesisV2:
        check_image_shape("GENESIS-v2", image_shape, (16, 32, 64, 128))
        return GenesisV2(int(image_shape[0]), int(self.num_slots), kernel=self.kernel, semiconv=self.semiconv,
                         seed_selection=self.seed_selection, kl_estimator=self.kl_estimator,
                         init_scheme=self.init_scheme, conv_impl=self.conv_impl, rngs=rngs)

    def sample_noise(self, key: jax.Array, batch: Batch) -> dict[str, jax.Array]:
        """{"seed_scores": `[b, h w]` ~ U[0, 1), "latent": `[b, K, 64]` ~ N(0, I)}."""
        b, h, w = batch["images"].shape[:3]
        seed_key, latent_key = jax.random.split(key)
        return {"seed_scores": jax.random.uniform(seed_key, (b, h * w)),
                "latent": jax.random.normal(latent_key, (b, int(self.num_slots), FEATURES))}

    def outputs(self, model: GenesisV2, batch: Batch, noise: Any, norm_statistics=None) -> dict[str, Any]:
        """`GenesisV2.__call__`'s outputs plus "images", "pixel_std" `[K]`, "nll" `[b]` (with the decoder masks) and
        "mask_consistency" (what the loss terms read). `norm_statistics` is accepted for symmetry with GENESIS
        (GroupNorm keeps none)."""
        del norm_statistics
        stds = jnp.full((int(self.num_slots),), self.pixel_std, jnp.float32)
        outputs = {"images": batch["images"], **model(batch["images"], noise), "pixel_std": stds,
                   "mask_consistency": jnp.float32(self.mask_consistency)}
        outputs["nll"] = mixture_nll(batch["images"], outputs["decoder_log_masks"], outputs["means"], stds,
                                     self.mixture)
        return outputs

    def segmentation_masks(self, outputs) -> dict[str, jax.Array]:
        """{name: log masks `[b, K, h, w]`}: the IC-SBP's ("masks", the official main metric) and the decoder's
        ("decoder_masks", the official "-R" metric)."""
        return {"masks": outputs["log_masks"], "decoder_masks": outputs["decoder_log_masks"]}

    def eval_metrics(self, outputs, batch: Batch) -> dict[str, jax.Array]:
        """{"mse"} and, when `batch` has "masks", "ari" / "fg_ari" of the IC-SBP masks and "ari_r" / "fg_ari_r" of
        the decoder masks."""
        metrics = {"mse": jnp.mean(jnp.square(outputs["reconstruction"] - outputs["images"]))}
        if "masks" in batch:
            num_labels = max(int(self.num_slots), int(self.max_mask_labels))
            for suffix, key in (("", "log_masks"), ("_r", "decoder_log_masks")):
                scores = segmentation_metrics(outputs[key], batch["masks"], num_labels)
                metrics.update({f"ari{suffix}": scores["ari"], f"fg_ari{suffix}": scores["fg_ari"]})
        return metrics
