"""The interface between a model family and the training engine.

A family is a frozen dataclass whose fields are its own config keys (the engine's keys are in
`noisegroup.engine.config`). The engine calls only what is declared here, so a new family (MONet, GENESIS, a toy
MLP in the tests) plugs in with no edit of the engine:

    family = FAMILIES["vae"].from_config(config)         # picks its own keys out of a flat config
    model = family.build(image_shape=(64, 64, 3), rngs=nnx.Rngs(params=key))
    family.initialise(model, family.init_data(train))   # e.g. the decoder's output bias at the data's mean colour
    noise = family.sample_noise(key, batch)             # pytree with a leading batch axis, or None
    outputs = family.outputs(model, batch, noise)       # what the loss terms read
    per_example = family.loss_terms["kl"](outputs)      # [b]; the engine weights and averages the terms

Batches are dicts of arrays with a leading batch axis (`{"images": [b, h, w, c]}`, plus e.g. `"masks"` where
validation scores segmentations). Modules stay deterministic: every random draw comes in through `sample_noise`.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, Callable, ClassVar, Mapping

import jax
from flax import nnx

Batch = Mapping[str, jax.Array]
Outputs = Mapping[str, jax.Array]
LossTerm = Callable[[Outputs], jax.Array]


@dataclasses.dataclass(frozen=True)
class Family(abc.ABC):
    """Base class of model families; subclasses add their config keys as dataclass fields.

    Class attributes:
        loss_terms: {term name: per-example loss `outputs -> [b]`}: the family's registry of loss terms.
        default_weights: {term name: weight} used when the config gives none.
        geco_term: the term whose weight GECO controls when the config turns GECO on (None: GECO does not apply).
        geco_constraint: the term whose moving average GECO drives towards its goal.
        cpu_micro_batch: images per forward/backward pass on XLA:CPU when the config's `micro_batch_size` is
            "auto" (None: the whole batch in one pass). Accelerators always take one pass.
    """

    loss_terms: ClassVar[Mapping[str, LossTerm]] = {}
    default_weights: ClassVar[Mapping[str, float]] = {}
    geco_term: ClassVar[str | None] = None
    geco_constraint: ClassVar[str] = "reconstruction"
    # The AE / VAE at batch 64: passes of 8 keep the activations in cache (`python -m benchmarks.train_step`).
    cpu_micro_batch: ClassVar[int | None] = 8

    @classmethod
    def config_keys(cls) -> tuple[str, ...]:
        """The flat config keys this family reads (its dataclass fields)."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "Family":
        """The family with its fields taken from `config` (keys it does not read are the engine's business)."""
        return cls(**{k: config[k] for k in cls.config_keys() if k in config})

    @abc.abstractmethod
    def build(self, image_shape: tuple[int, int, int], rngs: nnx.Rngs) -> nnx.Module:
        """A freshly initialised model for images `[h, w, c]`.

        Raises:
            ValueError: the family cannot take images of this shape (naming it).
        """

    def init_data(self, train: Batch) -> Any:
        """Host-side statistics of the training data that `initialise` needs (a pytree of arrays, or None).
        Computed once when a run starts fresh, never on resume."""
        del train
        return None

    def initialise(self, model: nnx.Module, init_data: Any) -> None:
        """Adjusts a freshly built model in place with `init_data` (default: nothing)."""
        del model, init_data

    def sample_noise(self, key: jax.Array, batch: Batch) -> Any:
        """The step's random draws for `batch` (a pytree with a leading batch axis), or None: deterministic."""
        del key, batch
        return None

    @abc.abstractmethod
    def outputs(self, model: nnx.Module, batch: Batch, noise: Any) -> Outputs:
        """Everything the loss terms (and metrics) read, per example: a dict of arrays with a leading batch axis."""

    @property
    def has_masks(self) -> bool:
        """Whether `segmentation_masks` gives a segmentation: the family overrides it (slot models do)."""
        return type(self).segmentation_masks is not Family.segmentation_masks

    def segmentation_masks(self, outputs: Outputs) -> dict[str, jax.Array]:
        """{name: log masks `[b, K, h, w]`} whose argmax over K segments the images (the first, "masks", is the
        family's segmentation). Families without masks (the AE / beta-VAE: LNS segments those) raise.

        Raises:
            ValueError: naming the family.
        """
        del outputs
        raise ValueError(f"model family {type(self).__name__} has no segmentation masks (an autoencoder is segmented "
                         f"by LNS: `noisegroup.lns.segment`)")

    def eval_metrics(self, outputs: Outputs, batch: Batch) -> dict[str, jax.Array]:
        """Extra validation metrics (scalars, batch means), e.g. segmentation ARI; default none."""
        del outputs, batch
        return {}
