"""One seed's training step for any model family, as pure functions of arrays.

    trainer = Trainer.from_config(engine_config, family, image_shape=(64, 64, 3))
    state = trainer.init(key, init_data)                       # init_data = family.init_data(train)
    state, metrics = trainer.train_step(state, batch, run_key)  # batch = {"images": [b, h, w, c], ...}

`Trainer` holds the static parts: the family, the loss terms and their config weights, an optax optimizer, and GECO
when the config turns it on for a family with a `geco_term`. `multi_seed` maps them over a leading seed axis
(`parallel.seed_map`). The per-step key is ``fold_in(run_key, step)``, so a resumed run replays the same noise.

The loss weights are an input of the compiled step (float32 scalars, `weight_arrays`), not constants in it: runs
that differ only in their weights (the conditions of an ablation) share one program (`programs`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct

from noisegroup.engine import losses, parallel
from noisegroup.engine.config import TrainConfig
from noisegroup.engine.geco import Geco
from noisegroup.models.family import Batch, Family

# Images per forward/backward pass on XLA:CPU ("auto") unless the family says otherwise (`Family.cpu_micro_batch`).
CPU_MICRO_BATCH = Family.cpu_micro_batch


@struct.dataclass
class TrainState:
    """One seed's training state (leading seed axis when mapped over seeds).

    Attributes:
        step: int32 scalar, optimizer steps taken.
        params: the model's parameters (an `nnx.State`).
        opt_state: the optax state.
        geco: GECO's state (`GecoState`) when GECO weights a term, else None.
        early_stop: with an early-termination rule, `{"stopped": bool, "last": float32}` (this seed has stopped;
            the watched metric at the previous check), else None. A stopped seed's parameters no longer change.
        ema_params: with `ema_decay` d > 0, the exponential moving average of the parameters, e_t = d e_{t-1} +
            (1 - d) p_t from e_0 = p_0 (what `inference_params` gives for segmentation); else None.
    """

    step: jax.Array
    params: Any
    opt_state: Any
    geco: Any = None
    early_stop: Any = None
    ema_params: Any = None

    @property
    def inference_params(self):
        """The parameters to segment / evaluate with: the moving average when the run keeps one."""
        return self.params if self.ema_params is None else self.ema_params


def learning_rate(config: TrainConfig) -> float | optax.Schedule:
    """The config's learning rate at every step: a linear warm-up from 0 over `lr_warmup_steps`, then "constant" (the
    reference; the schedule never depends on num_steps, so extending a run stays exact), or a "cosine" or "linear"
    decay from the peak to 0 over the next `lr_decay_steps`, and 0 after."""
    peak, warmup, decay = config.learning_rate, int(config.lr_warmup_steps), int(config.lr_decay_steps)
    if config.lr_schedule == "constant":
        return optax.linear_schedule(0.0, peak, warmup) if warmup else peak
    if config.lr_schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(0.0, peak, warmup, warmup + decay, end_value=0.0)
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), optax.linear_schedule(peak, 0.0, decay)],
                                [warmup])


def optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """The config's optimizer: Adam or RMSProp at `learning_rate(config)`, after clipping the gradients' global norm
    to `grad_clip_norm` when it is > 0."""
    rate = learning_rate(config)
    if config.optimizer == "rmsprop":  # PyTorch's flavour (MONet reimplementations): eps outside the sqrt
        opt = optax.rmsprop(rate, decay=config.rmsprop_decay, eps=config.rmsprop_eps, eps_in_sqrt=False)
    else:
        opt = optax.adam(rate, b1=config.adam_b1, b2=config.adam_b2, eps=config.adam_eps)
    return optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), opt) if config.grad_clip_norm else opt


def resolve_micro_batch(micro_batch_size: int | str, batch_size: int,
                        cpu_default: int | None = CPU_MICRO_BATCH) -> int | None:
    """Images per pass for a config's `micro_batch_size`: "auto" is `cpu_default` (the family's
    `cpu_micro_batch`) on CPU and one pass (None) on accelerators; a size that does not split the batch into
    several equal passes is one pass."""
    size = (cpu_default if jax.default_backend() == "cpu" else None) if micro_batch_size == "auto" \
        else int(micro_batch_size)
    return size if size and size < batch_size and batch_size % size == 0 else None


@dataclasses.dataclass(frozen=True)
class Trainer:
    """Static parts of a training run; its methods are pure functions of arrays.

    Attributes:
        family: the model family.
        image_shape: `(h, w, c)` of the data.
        optimizer: an optax transformation.
        weights: {loss term: weight} (validated against the family's terms): the config's, passed to the compiled
            programs as arrays (`weight_arrays`); a step called without weights uses them as constants.
        geco: GECO's constants, controlling the weight of `family.geco_term`; None: fixed weights.
        geco_tracks_validation: validation batches move GECO's moving average (the LNS reference's behaviour).
        micro_batch_size: images per forward/backward pass (None: one pass); the passes run as an unrolled loop and
            their gradients are averaged (the same function up to float rounding).
        data_shards: the mesh's data-axis size (a micro-batch pass takes the same slice of every shard).
        early_stop: the state carries the early-termination rule's flags.
        ema_decay: d > 0 keeps a moving average of the parameters (`TrainState.ema_params`); 0: none.
    """

    family: Family
    image_shape: tuple[int, int, int]
    optimizer: optax.GradientTransformation
    weights: Mapping[str, float]
    geco: Geco | None = None
    geco_tracks_validation: bool = True
    micro_batch_size: int | None = None
    data_shards: int = 1
    early_stop: bool = False
    ema_decay: float = 0.0

    @classmethod
    def from_config(cls, config: TrainConfig, family: Family, image_shape,
                    weights: Mapping[str, float] | None = None) -> "Trainer":
        """The trainer a validated config describes, for data of `image_shape` `(h, w, c)`; `weights` the resolved
        loss weights (`RunConfig.weights`; None: resolved here from the config)."""
        geco = None
        if config.geco and family.geco_term is not None:
            geco = Geco.for_images(tuple(image_shape), goal_per_value=config.geco_goal,
                                   step_size_64=config.geco_step_size, alpha=config.geco_alpha,
                                   speedup=config.geco_speedup)
        if weights is None:
            weights = losses.resolve_weights(family.loss_terms, family.default_weights, config.loss_weights)
        return cls(family=family, image_shape=tuple(image_shape), optimizer=optimizer(config), weights=weights,
                   geco=geco, ema_decay=float(config.ema_decay),
                   geco_tracks_validation=config.geco_tracks_validation,
                   micro_batch_size=resolve_micro_batch(config.micro_batch_size,
                                                        config.batch_size // config.data_parallel,
                                                        family.cpu_micro_batch),
                   data_shards=config.data_parallel, early_stop=bool(config.early_stop_metric))

    def build(self, key: jax.Array) -> nnx.Module:
        return self.family.build(self.image_shape, nnx.Rngs(params=key))

    @functools.cached_property
    def graphdef(self) -> nnx.GraphDef:
        return nnx.split(nnx.eval_shape(lambda: self.build(jax.random.key(0))))[0]

    def model_fn(self, params) -> nnx.Module:
        return nnx.merge(self.graphdef, params)

    def init(self, key: jax.Array, init_data: Any = None) -> TrainState:
        """A fresh state from `key`, adjusted by the family with `init_data` (`family.init_data(train)`)."""
        model = self.build(key)
        self.family.initialise(model, init_data)
        params = nnx.state(model, nnx.Param)
        geco = self.geco.init() if self.geco is not None else None
        early_stop = {"stopped": jnp.bool_(False), "last": jnp.float32(jnp.inf)} if self.early_stop else None
        ema = jax.tree.map(jnp.copy, params) if self.ema_decay else None
        return TrainState(jnp.int32(0), params, self.optimizer.init(params), geco, early_stop, ema)

    def weight_arrays(self) -> dict[str, jax.Array]:
        """The config's loss weights as float32 scalars: the programs' weight input."""
        return {name: jnp.float32(w) for name, w in self.weights.items()}

    def _weights(self, geco_state, weights: Mapping[str, Any] | None) -> dict:
        """The loss weights (`weights`, or the config's when None), GECO's beta multiplying the weight of the term it
        controls (the pre-update beta, as the reference)."""
        weights = dict(self.weights if weights is None else weights)
        if set(weights) != set(self.weights):
            raise ValueError(f"loss weights for terms {sorted(weights)}, but this trainer sums {sorted(self.weights)}")
        if self.geco is not None:
            weights[self.family.geco_term] = weights[self.family.geco_term] * geco_state.beta
        return weights

    def loss(self, params, batch: Batch, noise: Any, geco_state: Any, weights: Mapping[str, Any] | None = None):
        """(loss, metrics) of a batch: the family's terms with `weights` (None: the config's)."""
        outputs = self.family.outputs(self.model_fn(params), batch, noise)
        return losses.weighted_loss(self.family.loss_terms, outputs, self._weights(geco_state, weights))

    def gradients(self, params, batch: Batch, noise: Any, geco_state: Any, weights: Mapping[str, Any] | None = None):
        """(metrics, gradients) of the batch-mean loss, in passes of `micro_batch_size` examples of each data shard
        (metrics and gradients are means over the passes, so equal to one pass's up to rounding). A pass takes the
        same slice of every shard, so a batch split over a mesh's data axis stays where it is."""
        grad_fn = jax.grad(self.loss, has_aux=True)
        m, shards = self.micro_batch_size, self.data_shards
        per_shard = jax.tree.leaves(batch)[0].shape[0] // shards
        if m is None or m >= per_shard or per_shard % m:
            grads, metrics = grad_fn(params, batch, noise, geco_state, weights)
            return metrics, grads
        passes = per_shard // m

        def take(x, i):  # [b, ...] -> pass i: [shards * m, ...]
            x = x.reshape(shards, -1, *x.shape[1:])[:, i * m:(i + 1) * m]
            return x.reshape(-1, *x.shape[2:])

        # An unrolled loop, not `lax.scan`: XLA:CPU ran these convolutions many times slower inside a while loop.
        total = None
        for i in range(passes):
            part = jax.tree.map(lambda x: take(x, i), (batch, noise))
            grads, metrics = grad_fn(params, *part, geco_state, weights)
            total = (metrics, grads) if total is None else jax.tree.map(jnp.add, total, (metrics, grads))
        return jax.tree.map(lambda x: x / passes, total)

    def _update_geco(self, geco_state, metrics, **kwargs):
        if self.geco is None:
            return geco_state
        geco_state = self.geco.update(geco_state, metrics[self.family.geco_constraint], **kwargs)
        metrics["geco_ema"] = geco_state.ema
        return geco_state

    def train_step(self, state: TrainState, batch: Batch, run_key: jax.Array,
                   weights: Mapping[str, Any] | None = None):
        """One optimizer step of one seed: `(state, batch, key[, weights]) -> (state, metrics)`; `weights` {term:
        float32 scalar} (None: the config's, as constants)."""
        key = jax.random.fold_in(run_key, state.step)
        noise = self.family.sample_noise(key, batch)
        metrics, grads = self.gradients(state.params, batch, noise, state.geco, weights)
        updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        geco = self._update_geco(state.geco, metrics)
        ema = state.ema_params
        if self.ema_decay:
            d = self.ema_decay
            ema = jax.tree.map(lambda e, p: d * e + (1 - d) * p, ema, params)
        new = state.replace(step=state.step + 1, params=params, opt_state=opt_state, geco=geco, ema_params=ema)
        if self.early_stop:  # a seed that met the termination rule keeps its state (the step still counts)
            kept = jax.tree.map(lambda n, o: jnp.where(state.early_stop["stopped"], o, n),
                                (new.params, new.opt_state, new.geco, new.ema_params),
                                (state.params, state.opt_state, state.geco, state.ema_params))
            new = new.replace(params=kept[0], opt_state=kept[1], geco=kept[2], ema_params=kept[3])
        return new, metrics

    def eval_step(self, state: TrainState, batch: Batch, run_key: jax.Array, index: jax.Array,
                  weights: Mapping[str, Any] | None = None):
        """A validation batch: metrics (the loss terms and the family's `eval_metrics`), and (the LNS reference's
        behaviour, `geco_tracks_validation`) GECO's moving average absorbs its error with beta frozen. `index`
        numbers the validation batches for their noise."""
        key = jax.random.fold_in(jax.random.fold_in(run_key, state.step), 1_000_000 + index)
        noise = self.family.sample_noise(key, batch)
        outputs = self.family.outputs(self.model_fn(state.params), batch, noise)
        _, metrics = losses.weighted_loss(self.family.loss_terms, outputs, self._weights(state.geco, weights))
        metrics.update(self.family.eval_metrics(outputs, batch))
        geco = state.geco
        if self.geco_tracks_validation:
            geco = self._update_geco(geco, metrics, freeze_beta=True)
        return state.replace(geco=geco), metrics

    def programs(self, batching: str = "vmap"):
        """(init, train_step, eval_step) over a leading seed axis, jitted (state buffers donated; see
        `parallel.seed_map`), the loss weights an input shared by the seeds: `train_step(states, batches, run_keys,
        weights)`, `eval_step(states, batches, run_keys, index, weights)`. Trainers that differ only in their
        weights' values can run each other's programs."""
        init_seeds = parallel.seed_map(self.init, (0, None), batching)
        init = jax.jit(lambda keys, init_data=None: init_seeds(keys, init_data))  # one init_data for every seed
        step = parallel.seed_jit(self.train_step, (0, 0, 0, None), batching, donate=True)
        evaluate = parallel.seed_jit(self.eval_step, (0, 0, 0, None, None), batching, donate=True)
        return init, step, evaluate

    def multi_seed(self, batching: str = "vmap", programs=None):
        """(init, train_step, eval_step) over a leading seed axis with this trainer's weights bound:
        `train_step(states, batches, run_keys)`, `eval_step(states, batches, run_keys, index)`. `programs`: those of
        `programs(batching)` to bind (default: this trainer's own, compiled on first call)."""
        init, step, evaluate = self.programs(batching) if programs is None else programs
        weights = self.weight_arrays()
        return (init, lambda states, batches, keys: step(states, batches, keys, weights),
                lambda states, batches, keys, index: evaluate(states, batches, keys, index, weights))
