"""Slot Attention (Locatello et al., NeurIPS 2020) and its object-discovery autoencoder, as a model family.

    family = SlotAttentionFamily(num_slots=7)               # 7 on CLEVR; 6 on Multi-dSprites
    model = family.build((64, 64, 3), nnx.Rngs(params=key))
    outputs = family.outputs(model, {"images": x}, family.sample_noise(key, {"images": x}))
    mse = LOSS_TERMS["reconstruction"](outputs)             # [b]

Slot Attention (paper Algorithm 1), inputs `[b, n, d_in]`, K slots of dimension d, T iterations:
    inputs  = LayerNorm(inputs); k = inputs W_k, v = inputs W_v                 (no biases)
    slots   = mu + exp(log_sigma) eps, eps ~ N(0, I) `[b, K, d]` (drawn outside: `sample_noise`)
    T times:
        q       = LayerNorm(slots) W_q                                          (no bias)
        attn    = softmax over the K SLOTS of k q^T / sqrt(d) + 1e-8            `[b, n, K]`: slots compete for inputs
        weights = attn / sum over the n inputs of attn                          (a weighted mean, not a sum)
        updates = weights^T v                                                   `[b, K, d]`
        slots   = GRU(updates, slots); slots = slots + MLP(LayerNorm(slots))     (MLP hidden 128, ReLU)
Every slot is treated alike (shared weights, i.i.d. initial noise), so the output slots are permutation-equivariant
in the initial noise and invariant to the order of the inputs (`tests/test_slot_attention.py` checks both).

The autoencoder (paper appendix E.1, CLEVR at 128 px; here any power-of-two side s >= 8):
    encoder  4 x (5x5 conv, 64, 'SAME', stride 1, ReLU) -> + soft position embedding (a Dense of the 4-channel
             grid [y, x, 1 - y, 1 - x] in [0, 1]) -> flatten `[b, s s, 64]` -> LayerNorm -> MLP 64-ReLU-64.
    decoder  each slot broadcast to 8 x 8 + its own position embedding -> log2(s / 8) transposed 5x5 convs stride 2
             (64, ReLU; 8 -> 16 -> 32 -> 64 at s = 64, the paper's four reach 128) -> transposed 5x5 stride 1 (64,
             ReLU) -> transposed 3x3 stride 1 to c + 1 channels: RGB (linear, as the paper) and an alpha logit.
             masks = softmax of the alpha logits over the K slots; reconstruction = sum_k masks_k rgb_k.
Loss: the per-example mean squared error over pixels and channels (the paper's MSE; the engine averages over the
batch), in the model's input range ([-1, 1] by default, as the paper's data pipeline).

Initialisation: PyTorch's defaults ("pytorch", `noisegroup.models.blocks.init_layers`) for every conv and dense
layer; the GRU draws all its parameters from U(+-1/sqrt(d)) as `torch.nn.GRUCell`; mu and log_sigma are
Glorot-uniform `[1, 1, d]` (the official code's).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from noisegroup.metrics import segmentation_metrics
from noisegroup.models.blocks import INIT_SCHEMES, Conv, ConvTranspose, Dense, LayerNorm, init_layers
from noisegroup.models.family import Batch, Family

INPUT_RANGES = ("[-1,1]", "[0,1]")
DECODER_INIT_SIZE = 8  # the spatial-broadcast grid (paper E.1)

# The paper's training schedule for object discovery (appendix E.1; the configs do not read this: a record for
# whoever writes one). Adam with lr 4e-4, linear warm-up over the first 10k steps, then lr * 0.5 ** (step / 100k)
# (exponential decay, half every 100k steps), batch 64, 500k steps; gradient clipping none.
PAPER_TRAINING = {"optimizer": "adam", "learning_rate": 4e-4, "warmup_steps": 10_000, "decay_rate": 0.5,
                  "decay_steps": 100_000, "batch_size": 64, "num_steps": 500_000}


class Projection(Dense):
    """A dense layer without bias, `[..., features_in]` -> `[..., features_out]` (Slot Attention's k, q, v maps).
    A `Dense` (so `init_layers` draws its kernel) whose bias is None (so it draws none)."""

    def __init__(self, features_in: int, features_out: int):  # not super().__init__: it would create a bias
        self.kernel = nnx.Param(jnp.zeros((features_in, features_out), jnp.float32))
        self.bias = None
        self.fan_in = features_in

    def __call__(self, x: jax.Array) -> jax.Array:
        return x @ self.kernel[...]


class GRUCell(nnx.Module):
    """PyTorch's `GRUCell(features_in, hidden)`, two bias vectors (b_ih, b_hh), gates in the order (r, z, n):

        r = sigmoid(W_ir x + b_ir + W_hr h + b_hr),  z = sigmoid(W_iz x + b_iz + W_hz h + b_hz),
        n = tanh(W_in x + b_in + r (W_hn h + b_hn)),  h' = (1 - z) n + z h.

    The reset gate multiplies the recurrent product with its bias (why the two biases are not one). Every parameter
    U(+-1/sqrt(hidden)) under the "pytorch" scheme."""

    def __init__(self, features_in: int, hidden: int):
        self.input = Dense(features_in, 3 * hidden, fan_in=hidden)
        self.recurrent = Dense(hidden, 3 * hidden, fan_in=hidden)

    def __call__(self, x: jax.Array, h: jax.Array) -> jax.Array:
        """Input `[..., features_in]`, state `[..., hidden]` -> the new state `[..., hidden]`."""
        x_r, x_z, x_n = jnp.split(self.input(x), 3, axis=-1)
        h_r, h_z, h_n = jnp.split(self.recurrent(h), 3, axis=-1)
        r = jax.nn.sigmoid(x_r + h_r)
        z = jax.nn.sigmoid(x_z + h_z)
        n = jnp.tanh(x_n + r * h_n)
        return (1.0 - z) * n + z * h


class SlotAttention(nnx.Module):
    """The iterative attention module (module docstring). Deterministic: the initial noise is an argument.

    Args:
        num_slots: K.
        input_dim: d_in of the inputs.
        slot_dim: d of the slots (and of k, q, v).
        mlp_hidden: the residual MLP's hidden width (128).
        num_iterations: T (3).
        epsilon: added to the attention before the weighted mean (1e-8), so an unattended slot divides no zero.
    """

    def __init__(self, num_slots: int, input_dim: int, slot_dim: int = 64, mlp_hidden: int = 128, *,
                 num_iterations: int = 3, epsilon: float = 1e-8, init_scheme: str = "pytorch", rngs: nnx.Rngs):
        if int(num_iterations) < 1:
            raise ValueError(f"Slot Attention needs num_iterations >= 1, got {num_iterations!r}")
        self.num_slots, self.slot_dim, self.num_iterations, self.epsilon = num_slots, slot_dim, num_iterations, epsilon
        self.norm_inputs, self.norm_slots, self.norm_mlp = LayerNorm(input_dim), LayerNorm(slot_dim), LayerNorm(slot_dim)
        self.project_k, self.project_v = Projection(input_dim, slot_dim), Projection(input_dim, slot_dim)
        self.project_q = Projection(slot_dim, slot_dim)
        self.gru = GRUCell(slot_dim, slot_dim)
        self.mlp_hidden, self.mlp_out = Dense(slot_dim, mlp_hidden), Dense(mlp_hidden, slot_dim)
        init_layers(self, rngs.params(), init_scheme)
        bound = math.sqrt(6.0 / (1 + slot_dim))  # Glorot uniform of a [1, d] matrix
        mu_key, sigma_key = jax.random.split(rngs.params())
        self.slots_mu = nnx.Param(jax.random.uniform(mu_key, (1, 1, slot_dim), jnp.float32, -bound, bound))
        self.slots_log_sigma = nnx.Param(jax.random.uniform(sigma_key, (1, 1, slot_dim), jnp.float32, -bound, bound))

    def initial_slots(self, noise: jax.Array) -> jax.Array:
        """mu + sigma eps: noise eps `[b, K, d]` -> slots `[b, K, d]`."""
        return self.slots_mu[...] + jnp.exp(self.slots_log_sigma[...]) * noise

    def step(self, slots: jax.Array, k: jax.Array, v: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """One iteration: (new slots `[b, K, d]`, attention `[b, n, K]` (softmax over slots), updates `[b, K, d]`)
        of slots `[b, K, d]` and keys, values `[b, n, d]`."""
        q = self.project_q(self.norm_slots(slots))
        logits = jnp.einsum("bnd,bkd->bnk", k, q) / math.sqrt(self.slot_dim)
        attention = jax.nn.softmax(logits, axis=-1)  # over the slots: each input is shared out among them
        weights = attention + self.epsilon
        weights = weights / jnp.sum(weights, axis=1, keepdims=True)  # over the inputs: a weighted mean per slot
        updates = jnp.einsum("bnk,bnd->bkd", weights, v)
        slots = self.gru(updates, slots)
        slots = slots + self.mlp_out(jax.nn.relu(self.mlp_hidden(self.norm_mlp(slots))))
        return slots, attention, updates

    def keys_values(self, inputs: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(k, v) `[b, n, d]` of inputs `[b, n, d_in]` (after the input LayerNorm)."""
        inputs = self.norm_inputs(inputs)
        return self.project_k(inputs), self.project_v(inputs)

    def __call__(self, inputs: jax.Array, noise: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(slots `[b, K, d]`, the last iteration's attention `[b, n, K]`, sums 1 over K) of inputs `[b, n, d_in]`
        and initial noise `[b, K, d]`."""
        if noise.shape != (inputs.shape[0], self.num_slots, self.slot_dim):
            raise ValueError(f"slot noise must be [b, K, d] = {[inputs.shape[0], self.num_slots, self.slot_dim]}, "
                             f"got {noise.shape}")
        k, v = self.keys_values(inputs)
        slots = self.initial_slots(noise)
        attention = None
        for _ in range(self.num_iterations):  # unrolled: T is small and static
            slots, attention, _ = self.step(slots, k, v)
        return slots, attention


def position_grid(height: int, width: int) -> jax.Array:
    """`[h, w, 4]`: (y, x, 1 - y, 1 - x), y and x linspace(0, 1) down the rows and along the columns."""
    y, x = jnp.meshgrid(jnp.linspace(0.0, 1.0, height), jnp.linspace(0.0, 1.0, width), indexing="ij")
    return jnp.stack([y, x, 1.0 - y, 1.0 - x], axis=-1)


class SoftPositionEmbedding(nnx.Module):
    """Adds Dense(position_grid) to features `[b, h, w, c]` (a learned function of position, not a concatenation)."""

    def __init__(self, channels: int):
        self.dense = Dense(4, channels)

    def __call__(self, x: jax.Array) -> jax.Array:
        return x + self.dense(position_grid(x.shape[1], x.shape[2]))


def num_upsamplings(image_size: int) -> int:
    """log2(s / 8): the decoder's stride-2 layers for images of side s (a power of two >= 8, else ValueError)."""
    if image_size < DECODER_INIT_SIZE or image_size & (image_size - 1):
        raise ValueError(f"Slot Attention's decoder doubles an {DECODER_INIT_SIZE} x {DECODER_INIT_SIZE} grid: the "
                         f"image side must be a power of two >= {DECODER_INIT_SIZE}, got {image_size}")
    return int(math.log2(image_size // DECODER_INIT_SIZE))


class SlotAttentionAutoEncoder(nnx.Module):
    """The object-discovery model (module docstring). Deterministic: the slots' initial noise is an argument.

    Args:
        image_size: side s of the square images (a power of two >= 8).
        num_slots: K.
        channels: c of the images.
        hidden_dim: the encoder's and the decoder's conv width (64).
        slot_dim: d (64).
        mlp_hidden: Slot Attention's MLP width (128).
        num_iterations: T (3).
    """

    def __init__(self, image_size: int, num_slots: int = 7, *, channels: int = 3, hidden_dim: int = 64,
                 slot_dim: int = 64, mlp_hidden: int = 128, num_iterations: int = 3, init_scheme: str = "pytorch",
                 rngs: nnx.Rngs):
        self.image_size, self.num_slots = image_size, num_slots
        ups = num_upsamplings(image_size)
        c = hidden_dim
        self.encoder = nnx.List([Conv(channels if i == 0 else c, c, 5, padding=2) for i in range(4)])
        self.encoder_position = SoftPositionEmbedding(c)
        self.norm = LayerNorm(c)
        self.mlp_hidden, self.mlp_out = Dense(c, c), Dense(c, c)
        self.decoder_position = SoftPositionEmbedding(slot_dim)
        # PyTorch's k5 s2 p2 output_padding 1 doubles the side: `ConvTranspose` runs it as a sub-pixel convolution.
        self.decoder = nnx.List([ConvTranspose(slot_dim if i == 0 else c, c, 5, stride=2, padding=2, output_padding=1)
                                 for i in range(ups)]
                                + [ConvTranspose(slot_dim if ups == 0 else c, c, 5, padding=2)])
        self.decoder_out = ConvTranspose(c, channels + 1, 3, padding=1)
        init_layers(self, rngs.params(), init_scheme)
        self.slot_attention = SlotAttention(num_slots, c, slot_dim, mlp_hidden, num_iterations=num_iterations,
                                            init_scheme=init_scheme, rngs=rngs)

    def encode(self, x: jax.Array) -> jax.Array:
        """Input set `[b, s s, c_hidden]` of images `[b, s, s, c]`."""
        for conv in self.encoder:
            x = jax.nn.relu(conv(x))
        x = self.encoder_position(x)
        x = self.norm(x.reshape(x.shape[0], -1, x.shape[-1]))
        return self.mlp_out(jax.nn.relu(self.mlp_hidden(x)))

    def decode(self, slots: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(RGB `[b, K, s, s, c]`, alpha logits `[b, K, s, s]`) of slots `[b, K, d]`, all b K slots in one pass."""
        b, k, d = slots.shape
        g = DECODER_INIT_SIZE
        x = self.decoder_position(jnp.broadcast_to(slots.reshape(b * k, 1, 1, d), (b * k, g, g, d)))
        for conv in self.decoder:
            x = jax.nn.relu(conv(x))
        out = self.decoder_out(x).reshape(b, k, self.image_size, self.image_size, -1)
        return out[..., :-1], out[..., -1]

    def __call__(self, x: jax.Array, noise: jax.Array) -> dict[str, jax.Array]:
        """The forward pass of images `x` `[b, s, s, c]` (in the model's input range).

        Args:
            x: images.
            noise: the slots' initial noise eps `[b, K, d]`, standard normal.

        Returns:
            {"slots" `[b, K, d]`, "attention" `[b, s s, K]` (the last iteration's, sums 1 over K), "means"
             `[b, K, s, s, c]`, "log_masks" `[b, K, s, s]` (log softmax of the alpha logits over K),
             "reconstruction" `[b, s, s, c]` = sum_k m_k means_k}.
        """
        if x.shape[1:3] != (self.image_size, self.image_size):
            raise ValueError(f"the model was built for {self.image_size} x {self.image_size} images, got {x.shape}")
        slots, attention = self.slot_attention(self.encode(x), noise)
        means, alpha_logits = self.decode(slots)
        log_masks = jax.nn.log_softmax(alpha_logits, axis=1)
        reconstruction = jnp.sum(jnp.exp(log_masks)[..., None] * means, axis=1)
        return {"slots": slots, "attention": attention, "means": means, "log_masks": log_masks,
                "reconstruction": reconstruction}


# --- the loss term and the family ---------------------------------------------------------------------------------


def reconstruction_mse(images: jax.Array, reconstruction: jax.Array) -> jax.Array:
    """Per-example mean over pixels and channels of (x - x~)^2: `[b, h, w, c]` x2 -> `[b]` (the paper's MSE; a
    mean, not a sum, so the learning rate of `PAPER_TRAINING` keeps its scale)."""
    return jnp.mean(jnp.square(reconstruction - images), axis=(1, 2, 3))


LOSS_TERMS = {"reconstruction": lambda o: reconstruction_mse(o["images"], o["reconstruction"])}


@dataclasses.dataclass(frozen=True)
class SlotAttentionFamily(Family):
    """Slot Attention's object-discovery autoencoder as a model family; the fields are its config keys.

    Attributes:
        num_slots: K (7 for CLEVR as the paper; 6 for Multi-dSprites).
        num_iterations: T (3; the paper also evaluates with more at test time, which changes no parameter).
        slot_dim: d (64).
        hidden_dim: the encoder's and the decoder's conv width (64).
        mlp_hidden: Slot Attention's residual MLP width (128).
        input_range: "[-1,1]" (x' = 2x - 1 of the engine's [0, 1] images; the paper's pipeline) or "[0,1]".
        init_scheme: "pytorch" or "normal" (`noisegroup.models.blocks`).
        max_mask_labels: bound on ground-truth labels for the validation ARI.
    """

    num_slots: int = 7
    num_iterations: int = 3
    slot_dim: int = 64
    hidden_dim: int = 64
    mlp_hidden: int = 128
    input_range: str = "[-1,1]"
    init_scheme: str = "pytorch"
    max_mask_labels: int = 16

    loss_terms = LOSS_TERMS
    default_weights: ClassVar[Mapping[str, float]] = {"reconstruction": 1.0}
    geco_term = None
    # LayerNorms are per example, so passes of 8 are the same function; the decoder runs on b K images of 64 x 64.
    cpu_micro_batch = 8

    def __post_init__(self):
        for name in ("num_slots", "num_iterations", "slot_dim", "hidden_dim", "mlp_hidden", "max_mask_labels"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        for name, allowed in (("input_range", INPUT_RANGES), ("init_scheme", INIT_SCHEMES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")

    def build(self, image_shape, rngs: nnx.Rngs) -> SlotAttentionAutoEncoder:
        h, w, c = tuple(image_shape)
        if h != w:
            raise ValueError(f"Slot Attention takes square images, got shape {tuple(image_shape)}")
        num_upsamplings(h)  # a power of two >= 8, else ValueError naming the side
        return SlotAttentionAutoEncoder(h, int(self.num_slots), channels=c, hidden_dim=int(self.hidden_dim),
                                        slot_dim=int(self.slot_dim), mlp_hidden=int(self.mlp_hidden),
                                        num_iterations=int(self.num_iterations), init_scheme=self.init_scheme,
                                        rngs=rngs)

    def sample_noise(self, key: jax.Array, batch: Batch) -> jax.Array:
        """The slots' initial noise eps `[b, K, d]` ~ N(0, I)."""
        return jax.random.normal(key, (batch["images"].shape[0], int(self.num_slots), int(self.slot_dim)))

    def model_images(self, images: jax.Array) -> jax.Array:
        """The engine's [0, 1] images in the model's input range."""
        return 2.0 * images - 1.0 if self.input_range == "[-1,1]" else images

    def outputs(self, model: SlotAttentionAutoEncoder, batch: Batch, noise: Any) -> dict[str, jax.Array]:
        """`SlotAttentionAutoEncoder.__call__`'s outputs plus "images" (in the model's range) `[b, h, w, c]`, "masks"
        `[b, K, h, w]` (exp of "log_masks", sum 1 over K) and "mse" `[b]` (what the loss term reads)."""
        images = self.model_images(batch["images"])
        out = model(images, noise)
        return {"images": images, **out, "masks": jnp.exp(out["log_masks"]),
                "mse": reconstruction_mse(images, out["reconstruction"])}

    def segmentation_masks(self, outputs) -> dict[str, jax.Array]:
        """{name: log masks `[b, K, h, w]`} a segmentation is the argmax of: the decoder's alpha masks (the paper's
        segmentation; the attention `[b, h w, K]` is the other one, at the encoder's resolution)."""
        return {"masks": outputs["log_masks"]}

    def eval_metrics(self, outputs, batch: Batch) -> dict[str, jax.Array]:
        """{"mse"} and, when `batch` has "masks" `[b, h, w]`, the decoder masks' "ari" and "fg_ari"."""
        metrics = {"mse": jnp.mean(outputs["mse"])}
        if "masks" in batch:
            num_labels = max(int(self.num_slots), int(self.max_mask_labels))
            scores = segmentation_metrics(outputs["log_masks"], batch["masks"], num_labels)
            metrics.update(ari=scores["ari"], fg_ari=scores["fg_ari"])
        return metrics
