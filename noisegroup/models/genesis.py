"""GENESIS (Engelcke et al., ICLR 2020) as a model family: a sequential mask VAE and a component VAE.

    family = GenesisFamily(num_slots=5)                        # or FAMILIES["genesis"].from_config(config)
    model = family.build((64, 64, 3), nnx.Rngs(params=key))
    outputs = family.outputs(model, {"images": x}, family.sample_noise(key, {"images": x}))

Forward pass (spec `genesis_reference.md` Part A), K slots, images x `[b, 64, 64, 3]` in [0, 1]:
    mask encoder  gated convs (a conv to 2 c channels, h * sigmoid(g), BatchNorm on each half) 3 -> 32 -> 32 (s2)
                  -> 64 -> 64 (s2) -> 64, then a 16 x 16 gated conv to 256 (no norm): h `[b, 256]`, once per image.
    posterior     z^m_1 from Linear heads on h; z^m_k (k >= 2) from an LSTM (hidden 128) reading [h, z^m_{k-1}];
                  scale softplus(raw + 0.5) + 1e-8; z = mu + sigma eps (sampled in evaluation too).
    mask decoder  gated transposed convs 1 -> 16 (k16) -> 16 -> 32 (s2) -> 32 -> 64 (s2) -> 64, 1x1 conv to a logit,
                  all K latents as ONE batch of K b (its BatchNorm statistics pool the slots, spec D.5).
    masks         stick-breaking of the first K - 1 logits in log space; m_K the remaining scope (the K-th logit is
                  computed and unused, spec D.4).
    components    MONet's component VAE with ELU: encoder of [x, log m_k] -> z^c_k (16), spatial-broadcast decoder
                  -> RGB sigmoid(.) (`noisegroup.models.monet.ComponentEncoder`, `BroadcastDecoder`).
    priors        z^m: an LSTM over z^m_1..z^m_{K-1} (`AutoregressivePrior`); z^c_k: an MLP of z^m_k.

Loss (spec A.10): nll (the per-channel mixture with sigma 0.7) + beta (mask-latent KL + component KL), both KLs
single-sample Monte-Carlo estimates, summed over slots and dims; GECO moves beta (the engine's `Geco` with the
official constants: `experiments/configs/genesis.py`).

BatchNorm. The official model normalises with batch statistics in training and with running averages (momentum
0.1) in evaluation. The engine keeps parameters only, so here every forward pass normalises with the statistics
of its own batch, unless it is given statistics: `population_statistics` averages the batch statistics of training
batches (the limit the running averages estimate; "precise BN"), and scoring uses them (`norm_statistics`, the
family's `eval_norm` switch). The engine's validation metrics use the validation batch's own statistics.

The component encoder reads [x, log m_k] (MONet's order; the official code puts log m_k first): a permutation of
its first layer's input channels, the same function class.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from noisegroup.metrics import segmentation_metrics
from noisegroup.models.blocks import Conv, ConvTranspose, Dense, init_layers
from noisegroup.models.family import Batch, Family
from noisegroup.models.genesis_parts import (
    KL_ESTIMATORS,
    MIXTURES,
    AutoregressivePrior,
    LSTMCell,
    latent_kl,
    mixture_nll,
    prior_parameters,
    stick_breaking,
    to_sigma,
)
from noisegroup.models.monet import BroadcastDecoder, ComponentEncoder

MASK_LATENT_DIM = 64
ENCODER_FEATURES = 256
EVAL_NORMS = ("population", "batch")


class NormStatistics:
    """The BatchNorm statistics of one forward pass, in call order: recorded from the batch (`given` None), or handed
    out from `given` (a sequence of (mean, variance) pairs) to normalise with. A Python object that lives only while a
    forward pass is traced."""

    def __init__(self, given: Sequence[tuple[jax.Array, jax.Array]] | None = None):
        self.given = given
        self.seen: list[tuple[jax.Array, jax.Array]] = []


class BatchNorm(nnx.Module):
    """PyTorch's `BatchNorm2d(c)` (eps 1e-5, affine) over `[n, h, w, c]`: normalises with the batch's mean and biased
    variance, or with the (mean, variance) that `statistics.given` holds for this layer. Records (batch mean, unbiased
    batch variance: what PyTorch's running variance averages) in `statistics.seen`."""

    def __init__(self, channels: int, *, epsilon: float = 1e-5):
        self.epsilon = epsilon
        self.scale = nnx.Param(jnp.ones((channels,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((channels,), jnp.float32))

    def __call__(self, x: jax.Array, statistics: NormStatistics | None = None) -> jax.Array:
        if statistics is not None and statistics.given is not None:
            if len(statistics.seen) >= len(statistics.given):
                raise ValueError(f"norm_statistics holds {len(statistics.given)} (mean, variance) pairs; this model "
                                 f"has more BatchNorm layers")
            mean, var = statistics.given[len(statistics.seen)]
            statistics.seen.append((mean, var))
        else:
            mean = jnp.mean(x, axis=(0, 1, 2))
            var = jnp.mean(jnp.square(x - mean), axis=(0, 1, 2))
            if statistics is not None:
                n = x.shape[0] * x.shape[1] * x.shape[2]
                statistics.seen.append((mean, var * n / max(n - 1, 1)))
        return (x - mean) * jax.lax.rsqrt(var + self.epsilon) * self.scale[...] + self.bias[...]


class GatedConv(nnx.Module):
    """A gated (transposed) convolution: one layer to 2 c channels split into h and g, output Norm(h) *
    sigmoid(Norm(g)) with two BatchNorms (or none): `[n, s, s, c_in]` -> `[n, s', s', c_out]`."""

    def __init__(self, c_in: int, c_out: int, kernel: int, *, stride: int = 1, padding: int = 0,
                 output_padding: int = 0, transpose: bool = False, norm: bool = True):
        if transpose:
            self.conv = ConvTranspose(c_in, 2 * c_out, kernel, stride=stride, padding=padding,
                                      output_padding=output_padding)
        else:
            self.conv = Conv(c_in, 2 * c_out, kernel, stride=stride, padding=padding)
        self.norm_h = BatchNorm(c_out) if norm else None
        self.norm_g = BatchNorm(c_out) if norm else None

    def __call__(self, x: jax.Array, statistics: NormStatistics | None = None) -> jax.Array:
        conv = self.conv
        if isinstance(conv, Conv) and conv.padding == 0 and x.shape[1:3] == conv.kernel.shape[:2]:
            y = x.reshape(x.shape[0], 1, 1, -1) @ conv.kernel[...].reshape(-1, conv.kernel.shape[-1])  # k x k -> 1 x 1
            y = y + conv.bias[...]
        else:
            y = conv(x)
        h, g = jnp.split(y, 2, axis=-1)
        if self.norm_h is not None:
            h, g = self.norm_h(h, statistics), self.norm_g(g, statistics)
        return h * jax.nn.sigmoid(g)


def _encoder_layers(image_size: int) -> list[dict]:
    """The mask encoder's gated convs at 64 x 64 (spec A.3; 32 x 32 takes a last kernel of 8)."""
    last = image_size // 4
    widths = [(3, 32, 1), (32, 32, 2), (32, 64, 1), (64, 64, 2), (64, 64, 1)]  # (in, out, stride), kernel 5
    return [dict(c_in=i, c_out=o, kernel=5, stride=s, padding=2) for i, o, s in widths] + [
        dict(c_in=64, c_out=ENCODER_FEATURES, kernel=last, stride=1, padding=0, norm=False)]


def _decoder_layers(image_size: int) -> list[dict]:
    """The mask decoder's gated transposed convs (spec A.5): 1 -> s/4 -> s/4 -> s/2 -> s/2 -> s -> s."""
    first = image_size // 4
    return [dict(c_in=MASK_LATENT_DIM, c_out=64, kernel=first, norm=False),
            dict(c_in=64, c_out=64, kernel=5, padding=2), dict(c_in=64, c_out=32, kernel=5, stride=2, padding=2,
                                                                 output_padding=1),
            dict(c_in=32, c_out=32, kernel=5, padding=2), dict(c_in=32, c_out=32, kernel=5, stride=2, padding=2,
                                                                 output_padding=1),
            dict(c_in=32, c_out=32, kernel=5, padding=2)]


class Genesis(nnx.Module):
    """GENESIS with the official defaults (spec A.1). Deterministic: the posterior noise is an argument.

    Args:
        image_size: side s of the square images (32 or 64, the official code's sizes at these strides).
        num_slots: K >= 2.
        component_latent_dim: d of each z^c_k (16).
        pixel_std: the likelihood's sigma of the first slot and of the others ((0.7, 0.7)).
        kl_estimator: "monte_carlo" (official: single-sample) or "analytic" (the Gaussians' closed form).
        init_scheme: "pytorch" (the official code's PyTorch defaults) or "normal" (`noisegroup.models.blocks`).
    """

    def __init__(self, image_size: int = 64, num_slots: int = 5, component_latent_dim: int = 16, *,
                 kl_estimator: str = "monte_carlo", init_scheme: str = "pytorch", rngs: nnx.Rngs):
        self.num_slots, self.component_latent_dim, self.kl_estimator = num_slots, component_latent_dim, kl_estimator
        d = MASK_LATENT_DIM
        self.encoder = nnx.List([GatedConv(**layer) for layer in _encoder_layers(image_size)])
        self.head_mean, self.head_scale = Dense(ENCODER_FEATURES, d), Dense(ENCODER_FEATURES, d)
        self.posterior_lstm = LSTMCell(ENCODER_FEATURES + d, 2 * d)
        self.posterior_out = Dense(2 * d, 2 * d)
        self.decoder = nnx.List([GatedConv(**layer, transpose=True) for layer in _decoder_layers(image_size)])
        self.decoder_out = Conv(32, 1, 1)
        self.component_prior = nnx.List([Dense(d, 256), Dense(256, 256), Dense(256, 2 * component_latent_dim)])
        init_layers(self, rngs.params(), init_scheme)  # the modules below draw their own
        self.mask_prior = AutoregressivePrior(d, init_scheme=init_scheme, rngs=rngs)
        self.component_encoder = ComponentEncoder(image_size, 4, (32, 32, 64, 64), 256, component_latent_dim,
                                                  init_scheme=init_scheme, activation=jax.nn.elu, rngs=rngs)
        self.component_decoder = BroadcastDecoder(image_size, component_latent_dim, (32, 32, 32, 32), 3,
                                                  init_scheme=init_scheme, activation=jax.nn.elu, rngs=rngs)

    def encode_masks(self, x: jax.Array, noise: jax.Array, statistics: NormStatistics | None):
        """(z, mean, sigma) `[b, K, 64]` of the sequential mask posterior (`noise` `[b, K, 64]` standard normal)."""
        h = x
        for layer in self.encoder:
            h = layer(h, statistics)
        h = h.reshape(h.shape[0], -1)  # [b, 256]
        mean, sigma = self.head_mean(h), to_sigma(self.head_scale(h))
        z = mean + sigma * noise[:, 0]
        zs, means, sigmas = [z], [mean], [sigma]
        carry = self.posterior_lstm.zero_state(h.shape[0])
        for k in range(1, self.num_slots):
            carry = self.posterior_lstm(carry, jnp.concatenate([h, z], axis=-1))
            mean, raw = jnp.split(self.posterior_out(carry[0]), 2, axis=-1)
            sigma = to_sigma(raw)
            z = mean + sigma * noise[:, k]
            zs.append(z)
            means.append(mean)
            sigmas.append(sigma)
        return jnp.stack(zs, 1), jnp.stack(means, 1), jnp.stack(sigmas, 1)

    def decode_masks(self, z: jax.Array, statistics: NormStatistics | None) -> tuple[jax.Array, jax.Array]:
        """(log masks `[b, K, s, s]`, logits `[b, K, s, s]`) of mask latents `[b, K, 64]`: one decoder call on all K
        b latents, slot-major as the official code (the BatchNorm statistics pool slots and images)."""
        b, k, d = z.shape
        h = jnp.swapaxes(z, 0, 1).reshape(k * b, 1, 1, d)
        for layer in self.decoder:
            h = layer(h, statistics)
        logits = self.decoder_out(h)[..., 0]
        logits = jnp.swapaxes(logits.reshape(k, b, *logits.shape[1:]), 0, 1)  # [b, K, s, s]
        steps = logits[:, :-1]  # the K-th logit is unused: m_K is the remaining scope
        return stick_breaking(jax.nn.log_sigmoid(steps), jax.nn.log_sigmoid(-steps)), logits

    def __call__(self, x: jax.Array, noise: dict[str, jax.Array],
                 norm_statistics: Sequence[tuple[jax.Array, jax.Array]] | None = None) -> dict[str, Any]:
        """The forward pass of images `x` `[b, s, s, 3]` in [0, 1].

        Args:
            x: images.
            noise: {"mask": `[b, K, 64]`, "component": `[b, K, 16]`} standard normal draws.
            norm_statistics: (mean, variance) per BatchNorm in call order (`population_statistics`); None: each
                batch's own.

        Returns:
            {"log_masks" `[b, K, s, s]`, "mask_logits" `[b, K, s, s]`, "means" `[b, K, s, s, 3]`,
             "reconstruction" `[b, s, s, 3]`, "mask_kl" and "component_kl" `[b, K]` (Monte-Carlo, summed over
             dims), "norm_statistics" (the pairs this pass normalised with)}.
        """
        statistics = NormStatistics(norm_statistics)
        z_mask, q_mean, q_sigma = self.encode_masks(x, noise["mask"], statistics)
        log_masks, logits = self.decode_masks(z_mask, statistics)
        p_mean, p_sigma = self.mask_prior(z_mask)
        mask_kl = latent_kl(self.kl_estimator, z_mask, q_mean, q_sigma, p_mean, p_sigma)
        b, k, s = log_masks.shape[:3]
        slots = jnp.concatenate([jnp.broadcast_to(x[:, None], (b, k, s, s, x.shape[-1])), log_masks[..., None]], -1)
        raw = self.component_encoder(slots.reshape(b * k, s, s, -1)).reshape(b, k, -1)
        c_mean, c_raw = jnp.split(raw, 2, axis=-1)
        c_sigma = to_sigma(c_raw)
        z_comp = c_mean + c_sigma * noise["component"]
        h = z_mask
        for i, dense in enumerate(self.component_prior):
            h = dense(h) if i == len(self.component_prior) - 1 else jax.nn.elu(dense(h))
        cp_mean, cp_sigma = prior_parameters(h)
        component_kl = latent_kl(self.kl_estimator, z_comp, c_mean, c_sigma, cp_mean, cp_sigma)
        means = jax.nn.sigmoid(self.component_decoder(z_comp.reshape(b * k, -1))).reshape(b, k, s, s, -1)
        reconstruction = jnp.sum(jnp.exp(log_masks)[..., None] * means, axis=1)
        if norm_statistics is not None and len(norm_statistics) != len(statistics.seen):
            raise ValueError(f"norm_statistics holds {len(norm_statistics)} (mean, variance) pairs; this model has "
                             f"{len(statistics.seen)} BatchNorm layers")
        return {"log_masks": log_masks, "mask_logits": logits, "means": means, "reconstruction": reconstruction,
                "mask_kl": mask_kl, "component_kl": component_kl, "norm_statistics": tuple(statistics.seen)}


# --- the loss terms and the family --------------------------------------------------------------------------------


LOSS_TERMS = {
    "nll": lambda o: o["nll"],  # [b] nats: the mixture's negative log-likelihood (GECO's constraint)
    "kl": lambda o: jnp.sum(o["mask_kl"] + o["component_kl"], axis=1),  # [b]: what GECO's beta weights
    "mask_latent_kl": lambda o: jnp.sum(o["mask_kl"], axis=1),  # its parts, logged at weight 0
    "component_kl": lambda o: jnp.sum(o["component_kl"], axis=1),
}


def check_image_shape(name: str, image_shape, sizes: tuple[int, ...]) -> None:
    """ValueError unless the images are square RGB of a side in `sizes` (naming the sizes that work). (K >= 2 is
    checked when the family is made.)"""
    h, w, c = tuple(image_shape)
    if h != w or h not in sizes or c != 3:
        raise ValueError(f"{name} takes square RGB images of side {' or '.join(map(str, sizes))} (the strides of its "
                         f"networks), got shape {tuple(image_shape)}")


@dataclasses.dataclass(frozen=True)
class GenesisFamily(Family):
    """GENESIS as a model family (config `model="genesis"`); the fields are its config keys.

    Attributes:
        num_slots: K >= 2 (5 on Multi-dSprites and in the LNS paper).
        component_latent_dim: d of z^c (16).
        pixel_std: sigma of the mixture's components (0.7 for every slot; `pixel_std_first` the first slot's).
        pixel_std_first: the first slot's sigma (0.7; the official code allows it to differ, MONet-style).
        mixture: "per_channel" (official: the mixture over slots taken per colour channel) or "per_pixel".
        kl_estimator: "monte_carlo" (official: single-sample estimates) or "analytic".
        eval_norm: how scoring normalises: "population" (batch statistics averaged over training batches, the limit
            of the official running averages) or "batch" (each batch's own).
        init_scheme: "pytorch" (the official code's defaults) or "normal".
        max_mask_labels: bound on ground-truth labels for the validation ARI.
    """

    num_slots: int = 5
    component_latent_dim: int = 16
    pixel_std: float = 0.7
    pixel_std_first: float = 0.7
    mixture: str = "per_channel"
    kl_estimator: str = "monte_carlo"
    eval_norm: str = "population"
    init_scheme: str = "pytorch"
    max_mask_labels: int = 16

    loss_terms = LOSS_TERMS
    default_weights = {"nll": 1.0, "kl": 1.0, "mask_latent_kl": 0.0, "component_kl": 0.0}
    geco_term = "kl"
    geco_constraint = "nll"
    cpu_micro_batch = None  # BatchNorm: the batch statistics are of the whole batch, so one pass
    image_sizes = (32, 64)

    def __post_init__(self):
        for name in ("component_latent_dim", "max_mask_labels"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if int(self.num_slots) < 2:
            raise ValueError(f"GENESIS needs K = num_slots >= 2 (K - 1 mask steps and a last slot), got "
                             f"num_slots={self.num_slots!r}")
        for name in ("pixel_std", "pixel_std_first"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        for name, allowed in (("eval_norm", EVAL_NORMS), ("mixture", MIXTURES), ("kl_estimator", KL_ESTIMATORS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")

    def build(self, image_shape, rngs: nnx.Rngs) -> Genesis:
        check_image_shape("GENESIS", image_shape, self.image_sizes)
        return Genesis(int(image_shape[0]), int(self.num_slots), int(self.component_latent_dim),
                       kl_estimator=self.kl_estimator, init_scheme=self.init_scheme, rngs=rngs)

    def sample_noise(self, key: jax.Array, batch: Batch) -> dict[str, jax.Array]:
        """{"mask": `[b, K, 64]`, "component": `[b, K, d]`} ~ N(0, I)."""
        b, k = batch["images"].shape[0], int(self.num_slots)
        mask_key, component_key = jax.random.split(key)
        return {"mask": jax.random.normal(mask_key, (b, k, MASK_LATENT_DIM)),
                "component": jax.random.normal(component_key, (b, k, int(self.component_latent_dim)))}

    def outputs(self, model: Genesis, batch: Batch, noise: Any, norm_statistics=None) -> dict[str, Any]:
        """`Genesis.__call__`'s outputs plus "images", "pixel_std" `[K]` and "nll" `[b]` (what the loss terms
        read)."""
        k = int(self.num_slots)
        stds = jnp.asarray([self.pixel_std_first] + [self.pixel_std] * (k - 1), jnp.float32)
        outputs = {"images": batch["images"], **model(batch["images"], noise, norm_statistics), "pixel_std": stds}
        outputs["nll"] = mixture_nll(batch["images"], outputs["log_masks"], outputs["means"], stds, self.mixture)
        return outputs

    def segmentation_masks(self, outputs) -> dict[str, jax.Array]:
        """{name: log masks `[b, K, h, w]`} a segmentation is the argmax of: the stick-breaking masks."""
        return {"masks": outputs["log_masks"]}

    def eval_metrics(self, outputs, batch: Batch) -> dict[str, jax.Array]:
        """{"mse": mean (x - x~)^2} and, when `batch` has "masks" `[b, h, w]`, the masks' "ari" and "fg_ari"."""
        metrics = {"mse": jnp.mean(jnp.square(outputs["reconstruction"] - outputs["images"]))}
        if "masks" in batch:
            num_labels = max(int(self.num_slots), int(self.max_mask_labels))
            scores = segmentation_metrics(outputs["log_masks"], batch["masks"], num_labels)
            metrics.update(ari=scores["ari"], fg_ari=scores["fg_ari"])
        return metrics
