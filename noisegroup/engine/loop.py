"""The training loop and its inverse: train S seeds of any family with checkpoints, and restore a run without data.

    state = train(config, workdir, train_data, valid_data)   # resumes from workdir's checkpoints if any
    config, state = restore(workdir)                          # a finished or unfinished run, no data, no training

Data are dicts of arrays with a leading example axis (`{"images": float32 [n, h, w, c]}`, plus whatever the family
reads, e.g. `"masks"`); a bare image array means `{"images": array}`. The entry points load them (the engine knows
no dataset). Per-step randomness is ``fold_in(run_key, step)`` and batches a function of the step, so a run resumed
from a checkpoint ends in the same state as an uninterrupted one.

In a multi-process run (`parallel.initialize`) every process calls `train` with the same arguments; each gathers
only its devices' part of every batch, orbax writes one checkpoint from all of them, and process 0 writes the logs.
"""

from __future__ import annotations

import collections
import contextlib
import json
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from tqdm.auto import tqdm

from noisegroup import atomic
from noisegroup.checks import check_images, check_workdir
from noisegroup.errors import ExpectedError, NotFoundError
from noisegroup.engine import checkpoint, parallel, runlog, workdir_lock
from noisegroup.engine import config as engine_config
from noisegroup.engine.sampler import EpochSampler
from noisegroup.engine.trainer import Trainer, TrainState

Data = Mapping[str, np.ndarray]
Config = engine_config.RunConfig | Mapping[str, Any]  # a parsed config, or a flat mapping (parsed on entry)


def as_data(data: Data | np.ndarray, what: str) -> dict[str, np.ndarray]:
    """`data` as a dict of arrays with one leading example count, its images checked (`checks.check_images`)."""
    data = {"images": data} if not isinstance(data, Mapping) else dict(data)
    if "images" not in data:
        raise ValueError(f"{what} must hold 'images', got keys {sorted(data)}")
    data["images"] = check_images(data["images"], f"{what} images")
    counts = {k: len(v) for k, v in data.items()}
    if len(set(counts.values())) != 1:
        raise ValueError(f"{what} arrays must share their first axis, got {counts}")
    return data


_PROGRAMS: collections.OrderedDict = collections.OrderedDict()  # the 8 newest programs (`_programs`)


def _programs(run: engine_config.RunConfig, image_shape: tuple, batching: str):
    """The jitted multi-seed programs of `run` (`Trainer.programs`), memoised by everything but the loss weights'
    values, so repeated runs of a config (resume, tests, notebooks) and the conditions of an ablation reuse the
    compiled code."""
    key = (run.program_key(), image_shape, batching)
    if key not in _PROGRAMS:
        _PROGRAMS[key] = Trainer.from_config(run.engine, run.family, image_shape, run.weights).programs(batching)
        if len(_PROGRAMS) > 8:
            _PROGRAMS.popitem(last=False)
    _PROGRAMS.move_to_end(key)
    return _PROGRAMS[key]


def build(config: Config, image_shape, batching: str = "vmap"):
    """(engine config, trainer, (init, train_step, eval_step)) of a config for data of `image_shape`: the
    trainer's programs with its loss weights bound (`Trainer.multi_seed`)."""
    run = engine_config.as_run_config(config)
    trainer = Trainer.from_config(run.engine, run.family, tuple(image_shape), run.weights)
    return run.engine, trainer, trainer.multi_seed(batching, _programs(run, tuple(image_shape), batching))


def _keys(seeds):
    run_keys = jnp.stack([jax.random.key(s) for s in seeds])
    return run_keys, jax.vmap(lambda k: jax.random.fold_in(k, 2**31 - 1))(run_keys)


def train(config: Config, workdir: str | Path, train_data: Data | np.ndarray,
          valid_data: Data | np.ndarray, on_start: Callable[[int], None] | None = None) -> TrainState:
    """Trains `config["seeds"]` (S seeds, one program) and checkpoints; resumes from `workdir`.

    Args:
        config: a training config: a `RunConfig` (`noisegroup.engine.config.parse`), or a flat mapping of the engine's
            keys and the family's, parsed here.
        workdir: where config.json, run.json, metrics.jsonl and checkpoints/ go.
        train_data, valid_data: the examples (see the module docstring).
        on_start: called with the step training starts from (0, or the restored checkpoint's), e.g. to report the
            steps this call trained (the last metrics line may lie beyond the restored step after a crash).

    Returns:
        The final `TrainState`, stacked over seeds (leading axis S).

    Raises:
        ValueError: bad config values or data, or a workdir holding another config's run
            (`errors.BadInputError`), or checkpoints none of which restores
            (`checkpoint.NoRestorableCheckpointError`).
        FloatingPointError: a non-finite loss, with its step and seed (`DivergedError`).
    """
    run = engine_config.as_run_config(config)  # every key and value checked before any work
    workdir = check_workdir(workdir)
    train_data, valid_data = as_data(train_data, "train"), as_data(valid_data, "valid")
    image_shape = train_data["images"].shape[1:]
    if valid_data["images"].shape[1:] != image_shape:
        raise ValueError(f"valid images {valid_data['images'].shape[1:]} differ from train images {image_shape}")
    lead = jax.process_index() == 0
    workdir.mkdir(parents=True, exist_ok=True)
    # One run per workdir: process 0 holds the lock (all processes of one run share the workdir).
    with workdir_lock.hold(workdir) if lead else contextlib.nullcontext():
        return _train(run, workdir, train_data, valid_data, lead, on_start)


def _train(run: engine_config.RunConfig, workdir: Path, train_data: dict, valid_data: dict, lead: bool,
           on_start: Callable[[int], None] | None) -> TrainState:
    engine, family = run.engine, run.family
    image_shape = train_data["images"].shape[1:]
    flat = run.as_dict()
    if lead:
        # Keys added since an older run was written are compared at their defaults (what that run ran with).
        defaults = engine_config.parse({"model": engine.model}).as_dict()
        runlog.check_or_write_config(workdir, flat, may_differ=engine.resumable_keys(), defaults=defaults,
                                     comparable=engine_config.comparable)
        _note_processes(workdir, image_shape)

    seeds = list(engine.seeds)
    mesh = parallel.make_mesh(len(seeds), engine.data_parallel)
    batching = parallel.resolve_seed_batching(engine.seed_batching, sharded=mesh is not None)
    _, trainer, (init, train_step, eval_step) = build(run, image_shape, batching)

    run_keys, init_keys = (parallel.shard(k, mesh) for k in _keys(seeds))
    abstract = parallel.abstract_on_mesh(jax.eval_shape(init, init_keys), mesh)
    ckpt = checkpoint.Checkpointer(workdir / "checkpoints", keep=engine.keep_checkpoints)
    restored = ckpt.restore_latest(abstract)
    if restored is None:  # family statistics of the data (e.g. the mean colour, ~2 s over 30,000 images): fresh only
        state = parallel.shard(init(init_keys, family.init_data(train_data)), mesh)
    else:
        state = restored[1]
    start = 0 if restored is None else restored[0]
    if on_start is not None:
        on_start(start)
    writer = runlog.MetricsWriter(workdir / "metrics.jsonl", resume_step=start) if lead else None

    sampler = EpochSampler(len(train_data["images"]), engine.batch_size, seeds)
    valid_batch = min(engine.batch_size, len(valid_data["images"]))
    valid_sampler = EpochSampler(len(valid_data["images"]), valid_batch - valid_batch % engine.data_parallel, seeds,
                                 stream=1)
    eval_every = engine.eval_every or sampler.steps_per_epoch
    pending: list[tuple[int, dict]] = []  # per-step metrics still on the device (checked for NaN at log time)
    if engine.early_stop_metric and restored is not None and np.all(_host(state.early_stop["stopped"])):
        return state  # every seed met the termination rule before: nothing left to train

    bar = tqdm(total=engine.num_steps, initial=start, desc=f"{engine.model} {engine.dataset} x{len(seeds)} seeds",
               unit="step", disable=not (engine.progress and lead))
    tic, tic_step = time.perf_counter(), start
    try:
        for step in range(start, engine.num_steps):
            batch = parallel.global_batch(train_data, sampler.indices(step), mesh)
            state, metrics = train_step(state, batch, run_keys)
            pending.append((step + 1, metrics))
            done = step + 1
            valid_metrics = None
            if done % eval_every == 0:  # only on the schedule: an extended run must equal a longer one
                state, valid_metrics = _validate(state, valid_data, valid_sampler, done // eval_every, eval_step,
                                                 run_keys, mesh)
                if engine.early_stop_metric:
                    state, valid_metrics["stopped"] = _early_stop(state, valid_metrics, engine, mesh)
            if done % engine.log_every == 0 or done == engine.num_steps or valid_metrics is not None:
                _check_finite(pending, seeds)
                rate = (done - tic_step) / max(time.perf_counter() - tic, 1e-9)
                record = {f"train/{k}": v for k, v in _host(pending[-1][1]).items()}
                record.update({f"valid/{k}": v for k, v in (valid_metrics or {}).items()}, steps_per_s=rate)
                if writer is not None:
                    writer.write(done, record)
                bar.set_postfix(loss=float(np.mean(record["train/loss"])), refresh=False)
                pending, tic, tic_step = [], time.perf_counter(), done
            finished = valid_metrics is not None and bool(np.all(valid_metrics.get("stopped", False)))
            if done % engine.checkpoint_every == 0 or done == engine.num_steps or finished:
                _check_finite(pending, seeds)
                ckpt.save(done, state)
            bar.update(1)
            if finished:  # every seed met the early-termination rule
                break
    finally:
        bar.close()
        if writer is not None:
            writer.close()
        ckpt.close()
    return state


def restore(workdir: str | Path, step: int | None = None) -> tuple[dict, TrainState]:
    """The config and newest (or `step`'s) state of a run, without its data and without training.

    Returns:
        (the flat config of the run, its `TrainState` stacked over seeds, on this process's default device).

    Raises:
        FileNotFoundError: the workdir holds no run or no checkpoint.
    """
    workdir = Path(workdir)
    config = runlog.read_config(workdir)
    run = json.loads((workdir / "run.json").read_text())
    engine, trainer, (init, _, _) = build(config, tuple(run["image_shape"]), "unroll")
    _, init_keys = _keys(engine.seeds)
    # Read-only: this may run beside the live training run of the workdir (e.g. experiments.lns_curve).
    ckpt = checkpoint.Checkpointer(workdir / "checkpoints", keep=engine.keep_checkpoints, read_only=True)
    try:
        restored = ckpt.restore_latest(parallel.abstract_on_mesh(jax.eval_shape(init, init_keys), None), step=step)
    finally:
        ckpt.close()
    if restored is None:
        raise NotFoundError(f"{workdir} holds no checkpoint{'' if step is None else f' at step {step}'}")
    return config, restored[1]


def _note_processes(workdir: Path, image_shape) -> None:
    """Writes run.json (what `restore` needs that config.json does not say); says so when a run resumes on another
    number of processes (allowed: orbax reshards the checkpoint)."""
    path = workdir / "run.json"
    now = {"image_shape": list(image_shape), "process_count": jax.process_count(), "device_count": jax.device_count()}
    if path.exists():
        before = json.loads(path.read_text())
        if before.get("process_count") != now["process_count"]:
            warnings.warn(f"{workdir}: resuming a run of {before.get('process_count')} process(es) on "
                          f"{now['process_count']}; the checkpoint is resharded", stacklevel=3)
    atomic.write_json(path, now)


def _host(tree):
    """Device values to NumPy, including arrays that span processes (each process holds the same replicated
    metrics; seed-sharded ones are gathered)."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    return jax.tree.map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))


def _validate(state, data, sampler, epoch, eval_step, run_keys, mesh):
    """One pass over the validation batches of epoch `epoch` (drop_last, as the reference); mean metrics."""
    results = []
    for i in range(sampler.steps_per_epoch):
        batch = parallel.global_batch(data, sampler.indices(epoch * sampler.steps_per_epoch + i), mesh)
        state, metrics = eval_step(state, batch, run_keys, jnp.int32(i))
        results.append(_host(metrics))
    return state, {k: np.mean([r[k] for r in results], axis=0) for k in results[0]}


def _early_stop(state, valid_metrics: dict, engine, mesh):
    """Komatsu et al.'s termination rule per seed, at a validation: stop when the watched metric is below
    `early_stop_below` and improved by less than `early_stop_min_improvement` (relative) since the last check.

    Returns:
        (the state with the seeds' stop flags, bool `[S]` stopped).
    """
    name = engine.early_stop_metric.removeprefix("valid/")
    if name not in valid_metrics:
        raise ValueError(f"early_stop_metric {engine.early_stop_metric!r} is not a validation metric of this family; "
                         f"known: {sorted('valid/' + k for k in valid_metrics)}")
    value = np.asarray(valid_metrics[name], np.float64)
    flags = _host(state.early_stop)
    meets = (value < engine.early_stop_below) & (value / np.asarray(flags["last"], np.float64)
                                                  > 1.0 - engine.early_stop_min_improvement)
    stopped = np.asarray(flags["stopped"]) | meets
    early_stop = {"stopped": jnp.asarray(stopped), "last": jnp.asarray(value, jnp.float32)}
    return state.replace(early_stop=parallel.shard(early_stop, mesh)), stopped


class DivergedError(ExpectedError, FloatingPointError):
    """A non-finite loss: the run stops (its last checkpoint is from before it), reported in one line."""


def _check_finite(pending: list[tuple[int, dict]], seeds: list[int]) -> None:
    for step, metrics in pending:
        loss = np.asarray(_host(metrics["loss"]))
        if not np.all(np.isfinite(loss)):
            s = int(np.flatnonzero(~np.isfinite(loss))[0])
            raise DivergedError(f"non-finite loss {loss[s]} at step {step} (seed {seeds[s]}); stopping (the newest "
                                "checkpoint is from before it: try a lower learning rate or grad_clip_norm)")


__all__ = ["as_data", "build", "restore", "train"]
