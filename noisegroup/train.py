"""The training engine: seeds as an array axis, one jitted vmapped step, orbax checkpoints, resume.

    state = train(config, workdir)   # trains S seeds at once; resumes from workdir's checkpoints if any

Pieces (usable on their own, e.g. by MONet later):

* `Trainer`: a model family, a loss (named weighted terms), an optax optimizer, GECO. Pure functions
  `init(key) -> TrainState` and `train_step(state, images, key) -> (state, metrics)` for one seed;
  `jax.vmap` makes them S-seed functions (`Trainer.multi_seed`).
* `EpochSampler`: each seed's shuffled epochs with drop_last (the reference's DataLoader), a pure function of
  (seed, step): a resumed run sees the same batches.
* `train`: the loop. Per-step randomness is ``fold_in(run_key, step)``, batches a function of the step, so a run
  resumed from a checkpoint ends in the same state as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx, struct

from noisegroup import checkpoint, losses, parallel
from noisegroup import logging as runlog
from noisegroup.geco import Geco, GecoState
from noisegroup.models import MODELS

# Config keys that may change when a run is resumed (everything else must match the workdir's config.json).
RESUMABLE_KEYS = ("num_steps", "log_every", "checkpoint_every", "keep_checkpoints", "progress", "seed_batching")


@struct.dataclass
class TrainState:
    """One seed's training state (leading seed axis when vmapped).

    Attributes:
        step: int32 scalar, optimizer steps taken.
        params: the model's parameters (an `nnx.State`).
        opt_state: the optax state.
        geco: GECO's beta and moving average (unused by the AE, as in the reference).
    """

    step: jax.Array
    params: Any
    opt_state: Any
    geco: GecoState


@dataclasses.dataclass(frozen=True)
class Trainer:
    """Static parts of a training run; its methods are pure functions of arrays.

    Attributes:
        model: a key of `MODELS` ("ae" or "vae").
        latent_dim: size of the latent code.
        optimizer: an optax transformation.
        geco: GECO's constants (the VAE's KL weight); None for a fixed KL weight of 1.
        conv_impl: "auto", "fast" or "native" (see `noisegroup.models.layers`).
        geco_tracks_validation: validation batches move GECO's moving average (the reference's behaviour).
        micro_batch_size: images per forward/backward pass; a larger batch runs as an unrolled loop of passes whose
            gradients are averaged (the same function up to float rounding). 0: one pass. XLA:CPU trains passes
            of 8 ~1.3x faster per image than one pass of 64 (their activations stay in cache).
    """

    model: str = "ae"
    latent_dim: int = 15
    optimizer: optax.GradientTransformation = dataclasses.field(default_factory=lambda: optax.adam(5e-5))
    geco: Geco | None = dataclasses.field(default_factory=Geco.for_images)
    conv_impl: str = "auto"
    geco_tracks_validation: bool = True
    micro_batch_size: int = 0

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; expected one of {sorted(MODELS)}")
        if self.micro_batch_size < 0:
            raise ValueError(f"micro_batch_size must be >= 0 (0: one pass), got {self.micro_batch_size}")

    @property
    def is_vae(self) -> bool:
        return self.model == "vae"

    def build(self, key: jax.Array) -> nnx.Module:
        return MODELS[self.model](self.latent_dim, impl=self.conv_impl, rngs=nnx.Rngs(params=key))

    @functools.cached_property
    def graphdef(self) -> nnx.GraphDef:
        return nnx.split(nnx.eval_shape(lambda: self.build(jax.random.key(0))))[0]

    def init(self, key: jax.Array, output_bias: jax.Array | None = None) -> TrainState:
        """A fresh state from `key`: parameters initialised as the reference, except the decoder's output bias when
        `output_bias` (`[3]` logits, e.g. `data_mean_logits`) is given."""
        model = self.build(key)
        if output_bias is not None:
            model.decoder.out.bias[...] = jnp.asarray(output_bias, jnp.float32)
        params = nnx.state(model, nnx.Param)
        geco = self.geco.init() if self.geco is not None else Geco.for_images().init()
        return TrainState(jnp.int32(0), params, self.optimizer.init(params), geco)

    def model_fn(self, params) -> nnx.Module:
        return nnx.merge(self.graphdef, params)

    def posterior_noise(self, key: jax.Array, batch_size: int) -> jax.Array | None:
        """The VAE's reparameterisation noise `[b, z]` for a batch (None for the AE)."""
        return jax.random.normal(key, (batch_size, self.latent_dim)) if self.is_vae else None

    def loss(self, params, images: jax.Array, noise: jax.Array | None, beta: jax.Array):
        """(loss, metrics) of a batch `[b, 64, 64, 3]`; the VAE decodes mean + exp(logvar / 2) * noise `[b, z]`."""
        model = self.model_fn(params)
        logits, encoding = model(images, noise)
        weights = {"reconstruction": 1.0}
        if self.is_vae:
            weights["kl"] = beta if self.geco is not None else 1.0
        return losses.weighted_loss({"images": images, "logits": logits, **encoding}, weights)

    def gradients(self, params, images: jax.Array, noise: jax.Array | None, beta: jax.Array):
        """(metrics, gradients) of the batch-mean loss, in passes of `micro_batch_size` images when that divides the
        batch (metrics and gradients are means over the passes, so equal to one pass's up to rounding)."""
        grad_fn = jax.grad(self.loss, has_aux=True)
        b, m = images.shape[0], self.micro_batch_size
        if not m or m >= b or b % m:
            grads, metrics = grad_fn(params, images, noise, beta)
            return metrics, grads
        passes = b // m
        # An unrolled loop, not `lax.scan`: XLA:CPU ran these convolutions ~20x slower inside a while loop.
        total = None
        for i in range(passes):
            part = slice(i * m, (i + 1) * m)
            grads, metrics = grad_fn(params, images[part], None if noise is None else noise[part], beta)
            total = (metrics, grads) if total is None else jax.tree.map(jnp.add, total, (metrics, grads))
        return jax.tree.map(lambda x: x / passes, total)

    def train_step(self, state: TrainState, images: jax.Array, run_key: jax.Array):
        """One optimizer step of one seed: `(state, [b, 64, 64, 3], key) -> (state, metrics)`."""
        key = jax.random.fold_in(run_key, state.step)
        noise = self.posterior_noise(key, images.shape[0])
        metrics, grads = self.gradients(state.params, images, noise, state.geco.beta)
        updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        geco = state.geco
        if self.is_vae and self.geco is not None:  # loss used the pre-update beta, as the reference
            geco = self.geco.update(geco, metrics["reconstruction"])
        metrics["geco_ema"] = geco.ema
        return state.replace(step=state.step + 1, params=params, opt_state=opt_state, geco=geco), metrics

    def eval_step(self, state: TrainState, images: jax.Array, run_key: jax.Array, index: jax.Array):
        """A validation batch: metrics, and (reference behaviour, `geco_tracks_validation`) GECO's moving average
        absorbs its error with beta frozen. `index` numbers the validation batches for their noise."""
        key = jax.random.fold_in(jax.random.fold_in(run_key, state.step), 1_000_000 + index)
        _, metrics = self.loss(state.params, images, self.posterior_noise(key, images.shape[0]), state.geco.beta)
        geco = state.geco
        if self.is_vae and self.geco is not None and self.geco_tracks_validation:
            geco = self.geco.update(geco, metrics["reconstruction"], freeze_beta=True)
        return state.replace(geco=geco), metrics

    def multi_seed(self, batching: str = "vmap"):
        """(init, train_step, eval_step) over a leading seed axis, jitted (state buffers donated); see `seed_map`."""
        init_seeds = seed_map(self.init, (0, None), batching)
        init = jax.jit(lambda keys, output_bias=None: init_seeds(keys, output_bias))  # one bias for every seed
        step = jax.jit(seed_map(self.train_step, batching=batching), donate_argnums=0)
        evaluate = jax.jit(seed_map(self.eval_step, (0, 0, 0, None), batching), donate_argnums=0)
        return init, step, evaluate


SEED_BATCHING = ("auto", "vmap", "unroll")


def resolve_seed_batching(batching: str, sharded: bool) -> str:
    """"auto": "unroll" on a single CPU device, "vmap" on accelerators and meshes."""
    if batching not in SEED_BATCHING:
        raise ValueError(f"seed_batching must be one of {SEED_BATCHING}, got {batching!r}")
    if batching == "auto":
        return "unroll" if jax.default_backend() == "cpu" and not sharded else "vmap"
    return batching


def seed_map(fn, in_axes=0, batching: str = "vmap"):
    """`fn` over the leading seed axis of its arguments (those with axis 0 in `in_axes`), as one program.

    "vmap" batches the seeds (right for GPU/TPU and meshes). "unroll" traces one unbatched copy of `fn` per seed
    and stacks the results: the same function, but on XLA:CPU batched matrix products cost ~1.8x per seed, so this
    is ~1.7x faster there (compile time grows with the number of seeds). One seed is always run unbatched.
    """

    def run(*args):
        axes = in_axes if isinstance(in_axes, (tuple, list)) else (in_axes,) * len(args)
        sizes = {jax.tree.leaves(a)[0].shape[0] for a, ax in zip(args, axes) if ax == 0}
        (size,) = sizes
        if batching == "vmap" and size > 1:
            return jax.vmap(fn, in_axes=in_axes)(*args)
        per_seed = [fn(*(jax.tree.map(lambda x: x[s], a) if ax == 0 else a for a, ax in zip(args, axes)))
                    for s in range(size)]
        return jax.tree.map(lambda *xs: jnp.stack(xs), *per_seed)

    return run


class EpochSampler:
    """Batch indices per seed: shuffled epochs without replacement, the last partial batch dropped.

    ``indices(step)[s]`` is batch ``step % steps_per_epoch`` of seed `s`'s epoch ``step // steps_per_epoch``,
    whose order is ``default_rng([seed, stream, epoch]).permutation(n)``: a pure function of (seed, step).
    """

    def __init__(self, num_examples: int, batch_size: int, seeds, stream: int = 0):
        if batch_size > num_examples:
            raise ValueError(f"batch_size {batch_size} exceeds the {num_examples} examples")
        self.n, self.batch_size, self.seeds, self.stream = num_examples, batch_size, list(seeds), stream
        self.steps_per_epoch = num_examples // batch_size
        self._cache: dict[int, np.ndarray] = {}

    def _order(self, epoch: int) -> np.ndarray:
        if epoch not in self._cache:
            self._cache = {epoch: np.stack([np.random.default_rng([s, self.stream, epoch]).permutation(self.n)
                                            for s in self.seeds])}
        return self._cache[epoch]

    def indices(self, step: int) -> np.ndarray:
        """int `[S, batch_size]`."""
        epoch, i = divmod(step, self.steps_per_epoch)
        return self._order(epoch)[:, i * self.batch_size:(i + 1) * self.batch_size]


def check_images(images: np.ndarray, what: str = "images") -> np.ndarray:
    """Validates training images: float32 `[n, 64, 64, 3]`, finite, in [0, 1].

    Raises:
        ValueError: naming the problem and the offending value.
    """
    if not isinstance(images, np.ndarray) or images.ndim != 4 or images.shape[1:] != (64, 64, 3):
        raise ValueError(f"{what} must be an array [n, 64, 64, 3], got shape {getattr(images, 'shape', None)}")
    if images.dtype != np.float32:
        raise ValueError(f"{what} must be float32, got {images.dtype}")
    bad = ~np.isfinite(images)
    if bad.any():
        raise ValueError(f"{what} contain non-finite values (first at index {np.argwhere(bad)[0].tolist()})")
    lo, hi = float(images.min()), float(images.max())
    if lo < 0 or hi > 1:
        raise ValueError(f"{what} must lie in [0, 1], got values in [{lo}, {hi}]")
    return images


TRAINER_KEYS = ("model", "latent_dim", "learning_rate", "lr_warmup_steps", "adam_b1", "adam_b2", "adam_eps", "geco",
                "geco_goal", "geco_step_size", "geco_alpha", "geco_speedup", "conv_impl", "geco_tracks_validation",
                "micro_batch_size")
# XLA:CPU's fastest pass for these networks at batch 64, one seed (`python -m benchmarks.train_step`, 2 cores):
# 0.22 s per step in passes of 8, 0.26 s in 16, 0.30 s in 32, 0.29 s in one pass. (With 8 seeds unrolled in one
# program, passes of 16 are faster: 2.46 s vs 2.95 s, and compile in 42 s instead of 63 s.)
CPU_MICRO_BATCH = 8
OUTPUT_BIAS_INITS = ("reference", "data_mean")


def data_mean_logits(images: np.ndarray) -> tuple[float, ...]:
    """Per-channel logit of the mean pixel value of `images` `[n, h, w, c]`: an output bias that starts the decoder
    at the mean colour (accumulated in float64: a float32 sum of 1e8 pixels drifts far off)."""
    mean = np.clip(np.asarray(images).mean(axis=(0, 1, 2), dtype=np.float64), 1e-3, 1 - 1e-3)
    return tuple(float(v) for v in np.log(mean / (1 - mean)))


def initial_output_bias(config: Mapping[str, Any], train_images: np.ndarray) -> jax.Array | None:
    """The `output_bias` argument of `Trainer.init` that the config's `output_bias_init` asks for."""
    return jnp.asarray(data_mean_logits(train_images)) if config["output_bias_init"] == "data_mean" else None


def trainer_from_config(config: Mapping[str, Any]) -> Trainer:
    """The `Trainer` a config describes."""
    return _trainer_and_programs(tuple((k, config[k]) for k in TRAINER_KEYS), "vmap")[0]


@functools.lru_cache(maxsize=8)
def _trainer_and_programs(items: tuple, batching: str) -> tuple[Trainer, tuple]:
    """Trainer and its jitted multi-seed programs, memoised so repeated runs of a config (resume, tests, notebooks)
    reuse the compiled code."""
    trainer = _build_trainer(dict(items))
    return trainer, trainer.multi_seed(batching)


def _build_trainer(config: Mapping[str, Any]) -> Trainer:
    geco = None
    if config.get("geco", True):
        geco = Geco.for_images(goal_per_value=config["geco_goal"], step_size_64=config["geco_step_size"],
                               alpha=config["geco_alpha"], speedup=config["geco_speedup"])
    warmup = int(config["lr_warmup_steps"])
    if warmup < 0:
        raise ValueError(f"lr_warmup_steps must be >= 0, got {warmup}")
    # A linear warm-up, then constant: the schedule never depends on num_steps, so extending a run stays exact.
    rate = optax.linear_schedule(0.0, config["learning_rate"], warmup) if warmup else config["learning_rate"]
    optimizer = optax.adam(rate, b1=config["adam_b1"], b2=config["adam_b2"], eps=config["adam_eps"])
    return Trainer(model=config["model"], latent_dim=config["latent_dim"], optimizer=optimizer, geco=geco,
                   conv_impl=config["conv_impl"], geco_tracks_validation=config["geco_tracks_validation"],
                   micro_batch_size=resolve_micro_batch(int(config.get("micro_batch_size", 0))))


def resolve_micro_batch(micro_batch_size: int) -> int:
    """A config's `micro_batch_size` for the `Trainer`: 0 ("auto") is `CPU_MICRO_BATCH` on CPU and one pass on
    accelerators."""
    if micro_batch_size < 0:
        raise ValueError(f"micro_batch_size must be >= 0 (0: auto), got {micro_batch_size}")
    if micro_batch_size == 0:
        return CPU_MICRO_BATCH if jax.default_backend() == "cpu" else 0
    return micro_batch_size


def load_data(config: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(train, valid) images of the config's Good Gestalt dataset (cached; `train_limit` takes a prefix)."""
    from datasets import good_gestalt as gg

    def split(name, limit):
        if limit:
            return gg.generate(config["dataset"], name, limit=limit).images
        return gg.load(config["dataset"], name).images

    return split("train", config.get("train_limit")), split("valid", config.get("valid_limit"))


def train(config: Mapping[str, Any], workdir: str | Path, *, data=None) -> TrainState:
    """Trains `config["seeds"]` (S seeds, one vmapped program) and checkpoints; resumes from `workdir`.

    Args:
        config: a training config (see ``experiments/configs/train.py``), as a mapping.
        workdir: where config.json, metrics.jsonl and checkpoints/ go.
        data: optional (train, valid) float32 image arrays instead of the config's dataset.

    Returns:
        The final `TrainState`, stacked over seeds (leading axis S).

    Raises:
        ValueError: bad config values or images, or a workdir holding another config's run.
        FloatingPointError: a non-finite loss, with its step and seed.
    """
    config = dict(config)
    seeds = [int(s) for s in config["seeds"]]
    if len(seeds) < 1 or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be a non-empty list of distinct integers, got {config['seeds']!r}")
    for key in ("num_steps", "batch_size", "checkpoint_every", "log_every"):
        if int(config[key]) < 1:
            raise ValueError(f"{key} must be >= 1, got {config[key]!r}")
    if config["output_bias_init"] not in OUTPUT_BIAS_INITS:
        raise ValueError(f"output_bias_init must be one of {OUTPUT_BIAS_INITS}, got {config['output_bias_init']!r}")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    runlog.check_or_write_config(workdir, config, may_differ=RESUMABLE_KEYS)

    train_images, valid_images = data if data is not None else load_data(config)
    check_images(train_images, "train images")
    check_images(valid_images, "valid images")
    mesh = parallel.seed_mesh(len(seeds))
    batching = resolve_seed_batching(config.get("seed_batching", "auto"), sharded=mesh is not None)
    _, (init, train_step, eval_step) = _trainer_and_programs(tuple((k, config[k]) for k in TRAINER_KEYS), batching)

    run_keys = parallel.shard_seeds(jnp.stack([jax.random.key(s) for s in seeds]), mesh)
    init_keys = jax.vmap(lambda k: jax.random.fold_in(k, 2**31 - 1))(run_keys)
    abstract = parallel.seed_shardings(jax.eval_shape(init, init_keys), mesh)  # the bias changes no shape

    ckpt = checkpoint.Checkpointer(workdir / "checkpoints", keep=int(config["keep_checkpoints"]))
    restored = ckpt.restore_latest(abstract)
    if restored is None:  # the data mean takes ~2 s over 30,000 images: not on resume
        state = parallel.shard_seeds(init(init_keys, initial_output_bias(config, train_images)), mesh)
    else:
        state = restored[1]
    start = 0 if restored is None else restored[0]
    writer = runlog.MetricsWriter(workdir / "metrics.jsonl", resume_step=start)

    sampler = EpochSampler(len(train_images), int(config["batch_size"]), seeds)
    valid_sampler = EpochSampler(len(valid_images), min(int(config["batch_size"]), len(valid_images)), seeds, stream=1)
    eval_every = int(config.get("eval_every") or sampler.steps_per_epoch)
    num_steps = int(config["num_steps"])
    pending: list[tuple[int, dict]] = []  # per-step metrics still on the device (checked for NaN at log time)

    from tqdm.auto import tqdm

    bar = tqdm(total=num_steps, initial=start, desc=f"{config['model']} {config['dataset']} x{len(seeds)} seeds",
               unit="step", disable=not config.get("progress", True))
    tic, tic_step = time.perf_counter(), start
    try:
        for step in range(start, num_steps):
            batch = parallel.shard_seeds(jnp.asarray(train_images[sampler.indices(step)]), mesh)
            state, metrics = train_step(state, batch, run_keys)
            pending.append((step + 1, metrics))
            done = step + 1
            if done % eval_every == 0:  # only on the schedule: an extended run must equal a longer one
                state, valid_metrics = _validate(state, valid_images, valid_sampler, done // eval_every, eval_step,
                                                 run_keys, mesh)
            else:
                valid_metrics = None
            if done % int(config["log_every"]) == 0 or done == num_steps or valid_metrics is not None:
                _check_finite(pending, seeds)
                rate = (done - tic_step) / max(time.perf_counter() - tic, 1e-9)
                record = {f"train/{k}": v for k, v in jax.device_get(pending[-1][1]).items()}
                record.update({f"valid/{k}": v for k, v in (valid_metrics or {}).items()}, steps_per_s=rate)
                writer.write(done, record)
                bar.set_postfix(loss=float(np.mean(record["train/loss"])), refresh=False)
                pending, tic, tic_step = [], time.perf_counter(), done
            if done % int(config["checkpoint_every"]) == 0 or done == num_steps:
                _check_finite(pending, seeds)
                ckpt.save(done, state)
            bar.update(1)
    finally:
        bar.close()
        writer.close()
        ckpt.close()
    return state


def _validate(state, images, sampler, epoch, eval_step, run_keys, mesh):
    """One pass over the validation batches of epoch `epoch` (drop_last, as the reference); mean metrics."""
    results = []
    for i in range(sampler.steps_per_epoch):
        batch = parallel.shard_seeds(jnp.asarray(images[sampler.indices(epoch * sampler.steps_per_epoch + i)]), mesh)
        state, metrics = eval_step(state, batch, run_keys, jnp.int32(i))
        results.append(jax.device_get(metrics))
    return state, {k: np.mean([r[k] for r in results], axis=0) for k in results[0]}


def _check_finite(pending: list[tuple[int, dict]], seeds: list[int]) -> None:
    for step, metrics in pending:
        loss = np.asarray(jax.device_get(metrics["loss"]))
        if not np.all(np.isfinite(loss)):
            s = int(np.flatnonzero(~np.isfinite(loss))[0])
            raise FloatingPointError(f"non-finite loss {loss[s]} at step {step} (seed {seeds[s]}); stopping")
