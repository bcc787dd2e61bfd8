"""Training engine on the LNS families: losses, GECO, the multi-seed step, resume, checkpoints, errors, a run."""

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from toy_family import tiny_config, tiny_images

from experiments.configs import train as train_configs
from noisegroup.engine import checkpoint, loop, losses, parallel, runlog, sampler
from noisegroup.engine.geco import Geco
from noisegroup.engine.trainer import CPU_MICRO_BATCH, Trainer, resolve_micro_batch
from noisegroup.models import FAMILIES
from noisegroup.models import terms
from noisegroup.models.autoencoder import data_mean_logits

ROOT = Path(__file__).parents[1]


def quick_config(**overrides):
    config = train_configs.get_config("quick").to_dict()
    config.update(overrides)
    return config


def make_trainer(model: str, micro_batch_size=None) -> Trainer:
    """A trainer of an LNS family with SGD (and the reference's GECO for the VAE)."""
    family = FAMILIES[model]()
    return Trainer(family=family, image_shape=(64, 64, 3), optimizer=optax.sgd(1e-3),
                   weights=dict(family.default_weights), geco=Geco.for_images() if family.geco_term else None,
                   micro_batch_size=micro_batch_size)


@pytest.fixture(scope="module")
def tiny_data():
    from datasets import good_gestalt as gg

    return gg.generate("kanizsa", "train", limit=64).images, gg.generate("kanizsa", "valid", limit=32).images


# --- losses and GECO ------------------------------------------------------------------------------------------


def test_reconstruction_loss_by_hand():
    logits = jnp.zeros((2, 64, 64, 3))  # sigmoid = 0.5
    images = jnp.full((2, 64, 64, 3), 0.25)
    chex.assert_trees_all_close(terms.sum_squared_error(logits, images), jnp.full((2,), 12288 * 0.0625))


def test_kl_by_hand():
    zeros = jnp.zeros((1, 15))
    chex.assert_trees_all_close(terms.kl_to_standard_normal(zeros, zeros), jnp.zeros(1))  # identical: 0
    chex.assert_trees_all_close(terms.kl_to_standard_normal(jnp.ones((1, 15)), zeros), jnp.full((1,), 7.5))
    # var e: -0.5 (1 + 1 - 0 - e) per unit
    chex.assert_trees_all_close(terms.kl_to_standard_normal(zeros, jnp.ones((1, 15))), jnp.full((1,), 15 * 0.5 * (math.e - 2)))


def test_weighted_loss_reports_terms_and_weights():
    outputs = {"images": jnp.full((2, 64, 64, 3), 0.25), "logits": jnp.zeros((2, 64, 64, 3)),
               "mean": jnp.ones((2, 15)), "logvar": jnp.zeros((2, 15))}
    terms = FAMILIES["vae"].loss_terms
    total, metrics = losses.weighted_loss(terms, outputs, {"reconstruction": 1.0, "kl": 0.5})
    assert float(total) == pytest.approx(768 + 0.5 * 7.5)
    assert float(metrics["kl_weight"]) == 0.5 and float(metrics["reconstruction"]) == pytest.approx(768)
    with pytest.raises(ValueError, match="'perceptual'.*'kl', 'reconstruction'"):
        losses.resolve_weights(terms, {}, {"perceptual": 1.0})
    with pytest.raises(ValueError, match="'kl'"):  # the AE has no KL term
        losses.resolve_weights(FAMILIES["ae"].loss_terms, {}, {"kl": 1.0})


def test_geco_constants_of_the_reference():
    geco = Geco.for_images()
    assert geco.goal == pytest.approx(7.3728) and geco.step_size == pytest.approx(1e-5)


def test_geco_against_a_hand_worked_sequence():
    geco = Geco.for_images()
    state = geco.init()
    assert float(state.beta) == 1.0
    state = geco.update(state, jnp.float32(100.0))  # first call: ema = err; c = 7.3728 - 100 < 0
    assert float(state.ema) == pytest.approx(100.0)
    assert float(state.beta) == pytest.approx(math.exp(1e-5 * (7.3728 - 100)), rel=1e-6)
    beta = float(state.beta)
    state = geco.update(state, jnp.float32(5.0))  # ema = 0.01 * 5 + 0.99 * 100 = 99.05
    assert float(state.ema) == pytest.approx(99.05, rel=1e-6)
    assert float(state.beta) == pytest.approx(beta * math.exp(1e-5 * (7.3728 - 99.05)), rel=1e-6)
    beta = float(state.beta)
    state = geco.update(state, jnp.float32(1.0), freeze_beta=True)  # validation: the EMA moves, beta does not
    assert float(state.ema) == pytest.approx(0.01 + 0.99 * 99.05, rel=1e-6) and float(state.beta) == beta
    # Under the goal: ten times faster growth.
    low = state.replace(ema=jnp.float32(5.0))
    grown = geco.update(low, jnp.float32(5.0))
    assert float(grown.beta) == pytest.approx(beta * math.exp(10 * 1e-5 * (7.3728 - 5.0)), rel=1e-6)
    # Clamped to [1e-10, 1e10].
    assert float(geco.update(low.replace(beta=jnp.float32(1e10)), jnp.float32(0.0)).beta) == pytest.approx(1e10)


# --- the step -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model, batching", [("ae", "vmap"), ("vae", "unroll")])
def test_multi_seed_step_equals_single_seed_steps(model, batching, tiny_data):
    # SGD: parameters move linearly in the gradients, so float reordering under vmap stays tiny (Adam's first step
    # is ~lr * sign(grad), which amplifies rounding in near-zero gradients).
    trainer = make_trainer(model)
    keys = jnp.stack([jax.random.key(1), jax.random.key(2)])
    images = jnp.asarray(tiny_data[0][:16].reshape(2, 8, 64, 64, 3))
    init, step, _ = trainer.multi_seed(batching)
    states, metrics = step(init(keys), {"images": images}, keys)
    for s in range(2):
        single, single_metrics = jax.jit(trainer.train_step)(trainer.init(keys[s]), {"images": images[s]}, keys[s])
        chex.assert_trees_all_close(jax.tree.map(lambda x: x[s], states), single, atol=1e-6, rtol=1e-5)
        chex.assert_trees_all_close(jax.tree.map(lambda x: x[s], metrics), single_metrics, rtol=1e-5)
    assert metrics["loss"].shape == (2,)
    if model == "vae":  # GECO moved beta (error far above the goal: beta shrinks)
        assert np.all(np.asarray(states.geco.beta) < 1.0)
    else:
        assert "kl" not in metrics


def test_a_seed_loop_equals_single_seed_steps():
    """seed_batching="loop" (one seed at a time, a Python loop over one compiled step): the toy family with noise,
    each seed drawing its own."""
    _, trainer, _ = loop.build(tiny_config(noise_std=0.5), (16, 16, 1))
    keys = jnp.stack([jax.random.key(1), jax.random.key(2)])
    images = jnp.asarray(tiny_images()[0][:16].reshape(2, 8, 16, 16, 1))
    init, step, _ = trainer.multi_seed("loop")
    states, metrics = step(init(keys), {"images": images}, keys)
    for s in range(2):
        single, single_metrics = jax.jit(trainer.train_step)(trainer.init(keys[s]), {"images": images[s]}, keys[s])
        chex.assert_trees_all_close(jax.tree.map(lambda x: x[s], states), single, atol=1e-6, rtol=1e-5)
        chex.assert_trees_all_close(jax.tree.map(lambda x: x[s], metrics), single_metrics, rtol=1e-5)
    assert not np.allclose(metrics["loss"][0], metrics["loss"][1])


@pytest.mark.parametrize("model", ["ae", "vae"])
def test_micro_batched_step_equals_one_pass(model, tiny_data):
    """Gradients averaged over 4 passes of 4 images: the one-pass step (the VAE's noise drawn for the whole batch)."""
    images, key = jnp.asarray(tiny_data[0][:16]), jax.random.key(3)

    def step(micro_batch_size):
        trainer = make_trainer(model, micro_batch_size)
        return jax.jit(trainer.train_step)(trainer.init(key), {"images": images}, key)

    one_pass, passes = step(None), step(4)
    chex.assert_trees_all_close(passes, one_pass, atol=1e-6, rtol=1e-5)
    assert float(one_pass[1]["loss"]) > 0
    for bad in (-1, 0, "8x"):
        with pytest.raises(ValueError, match=f"micro_batch_size.*{bad!r}"):
            loop.build(quick_config(micro_batch_size=bad), (64, 64, 3))
    assert resolve_micro_batch("auto", 64) == CPU_MICRO_BATCH and resolve_micro_batch(5, 64) is None  # CPU
    assert resolve_micro_batch(16, 64) == 16 and resolve_micro_batch(64, 64) is None  # one pass
    assert resolve_micro_batch("auto", 64, cpu_default=None) is None  # a family whose CPU default is one pass


def test_epoch_sampler_shuffles_each_epoch_and_drops_the_last_batch():
    epochs = sampler.EpochSampler(10, 3, seeds=[0, 1])
    assert epochs.steps_per_epoch == 3
    epoch = np.concatenate([epochs.indices(i) for i in range(3)], axis=1)  # [S, 9]
    assert all(len(set(row)) == 9 for row in epoch)  # without replacement, one index left out
    assert not np.array_equal(epoch[0], epoch[1])  # each seed its own order
    assert not np.array_equal(epochs.indices(3), epochs.indices(0))  # a new order next epoch
    np.testing.assert_array_equal(sampler.EpochSampler(10, 3, seeds=[0, 1]).indices(4), epochs.indices(4))


# --- runs -----------------------------------------------------------------------------------------------------


def test_a_run_end_to_end(tmp_path):
    # The loop is the same for every family: the toy family (with noise, two seeds) keeps this fast; the VAE runs
    # end to end in the resume test below and in tests/test_lns.py.
    state = loop.train(tiny_config(noise_std=0.1, num_steps=12, eval_every=4, log_every=4, checkpoint_every=4),
                       tmp_path, *tiny_images())
    assert np.all(np.asarray(state.step) == 12)
    records = runlog.read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == [4, 8, 12]
    assert "valid/loss" in records[1] and len(records[-1]["train/loss"]) == 2
    assert records[-1]["train/mse"][0] < records[0]["train/mse"][0]
    assert checkpoint.Checkpointer(tmp_path / "checkpoints").steps() == [4, 8, 12]
    assert (tmp_path / "config.json").exists()


def test_resume_after_interruption_equals_an_uninterrupted_run(tmp_path, tiny_data, monkeypatch):
    config = quick_config(model="vae")
    reference = loop.train(config, tmp_path / "whole", *tiny_data)

    indices = sampler.EpochSampler.indices

    def interrupt_at_7(self, step):
        if step == 7:
            raise KeyboardInterrupt
        return indices(self, step)

    monkeypatch.setattr(sampler.EpochSampler, "indices", interrupt_at_7)
    with pytest.raises(KeyboardInterrupt):
        loop.train(config, tmp_path / "cut", *tiny_data)
    monkeypatch.setattr(sampler.EpochSampler, "indices", indices)
    assert checkpoint.Checkpointer(tmp_path / "cut" / "checkpoints").steps() == [4]
    resumed = loop.train(config, tmp_path / "cut", *tiny_data)  # from step 4, losing steps 5-7
    chex.assert_trees_all_equal(resumed, reference)
    steps = [r["step"] for r in runlog.read_metrics(tmp_path / "cut" / "metrics.jsonl")]
    assert steps == [4, 8, 12]


def test_extending_a_run_resumes_from_its_last_checkpoint(tmp_path):
    # The engine's resume is family-agnostic: the toy family (tests/toy_family.py) keeps this fast.
    data = tiny_images()
    loop.train(tiny_config(num_steps=3), tmp_path, *data)
    state = loop.train(tiny_config(num_steps=6), tmp_path, *data)
    chex.assert_trees_all_equal(state, loop.train(tiny_config(), tmp_path / "whole", *data))


def test_a_damaged_latest_checkpoint_falls_back_to_the_previous(tmp_path):
    data = tiny_images()
    loop.train(tiny_config(), tmp_path, *data)  # checkpoints at 3 and 6
    latest = tmp_path / "checkpoints" / "6"
    for f in latest.rglob("*"):
        if f.is_file() and f.stat().st_size > 0:
            f.write_bytes(b"\0" * 7)
    with pytest.warns(UserWarning, match="step 6"):
        state = loop.train(tiny_config(num_steps=9), tmp_path, *data)
    assert int(state.step[0]) == 9


def test_kill_9_mid_training_then_resume(tmp_path):
    """A run killed with SIGKILL while checkpointing every step resumes and finishes (the toy family in a
    subprocess: tests/toy_train.py)."""
    workdir = tmp_path / "run"
    command = [sys.executable, str(ROOT / "tests" / "toy_train.py"), str(workdir), "num_steps=100000",
               "checkpoint_every=1", "log_every=1", "eval_every=0"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if (workdir / "checkpoints").exists() and len(list((workdir / "checkpoints").iterdir())) >= 3:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    steps = checkpoint.Checkpointer(workdir / "checkpoints").steps()
    assert steps, "no checkpoint was written before the kill"
    config = tiny_config(num_steps=steps[-1] + 3, checkpoint_every=1, log_every=1, eval_every=0,
                         seed_batching="vmap")
    state = loop.train(config, workdir, *tiny_images())
    assert int(state.step[0]) == steps[-1] + 3
    recorded = [r["step"] for r in runlog.read_metrics(workdir / "metrics.jsonl")]
    assert recorded == sorted(set(recorded)) and recorded[-1] == steps[-1] + 3


def test_seeds_sharded_over_a_mesh_equal_the_unsharded_run(tmp_path, monkeypatch):
    assert jax.device_count() == 4  # tests/conftest.py
    # The toy family: sharding is the engine's, whatever the family (the AE on a mesh compiles for minutes here).
    data = tiny_images()
    config = tiny_config(seeds=(0, 1, 2, 3), num_steps=4, seed_batching="vmap")  # the same program, sharded or not
    sharded = loop.train(config, tmp_path / "mesh", *data)
    assert len(sharded.params["encode"]["kernel"][...].sharding.device_set) == 4
    monkeypatch.setattr(parallel, "make_mesh", lambda *args: None)
    single_device = loop.train(config, tmp_path / "one", *data)
    # Same seeds, batches and keys; only float reduction order differs between the two programs.
    losses_of = lambda run: [r["train/loss"] for r in runlog.read_metrics(tmp_path / run / "metrics.jsonl")  # noqa: E731
                             if "train/loss" in r]
    np.testing.assert_allclose(losses_of("mesh"), losses_of("one"), rtol=1e-5)
    chex.assert_trees_all_close(jax.device_get(sharded.params), jax.device_get(single_device.params), atol=1e-5)


# --- bad input ------------------------------------------------------------------------------------------------


def test_another_config_in_the_workdir_is_refused(tmp_path):
    loop.train(tiny_config(num_steps=3), tmp_path, *tiny_images())
    with pytest.raises(ValueError, match="hidden: 8 there, 16 now"):
        loop.train(tiny_config(hidden=16), tmp_path, *tiny_images())


def test_a_run_written_before_a_key_existed_resumes_at_its_default(tmp_path):
    """A workdir from an older version lacks config keys added since (e.g. ema_decay): it ran as their defaults, so
    it resumes; a key that was written keeps guarding the workdir."""
    import json

    loop.train(tiny_config(num_steps=3), tmp_path, *tiny_images())
    stored = json.loads((tmp_path / "config.json").read_text())
    for key in ("ema_decay", "lr_schedule", "lr_decay_steps", "grad_clip_norm"):
        del stored[key]
    (tmp_path / "config.json").write_text(json.dumps(stored))
    assert int(loop.train(tiny_config(), tmp_path, *tiny_images()).step[0]) == 6
    with pytest.raises(ValueError, match="ema_decay: 0.0 there, 0.5 now"):
        loop.train(tiny_config(num_steps=9, ema_decay=0.5), tmp_path, *tiny_images())


@pytest.mark.parametrize(
    "overrides, match",
    [(dict(seeds=()), r"seeds.*\(\)"), (dict(seeds=(1, 1)), r"\(1, 1\)"), (dict(num_steps=0), "num_steps"),
     (dict(model="gan"), "'gan'"), (dict(output_bias_init="zeros"), "'zeros'"), (dict(lr_warmup_steps=-1), "-1"),
     (dict(learnig_rate=1e-3), "'learnig_rate'.*did you mean 'learning_rate'"),
     (dict(loss_weights={"reconstruction": None, "kl": 2.0}), "unknown loss term 'kl'"),
     (dict(data_parallel=3), "data_parallel=3 must divide batch_size=16")],
)
def test_bad_config_values_are_named(tmp_path, tiny_data, overrides, match):
    with pytest.raises(ValueError, match=match):
        loop.train(quick_config(**overrides), tmp_path, *tiny_data)


@pytest.mark.parametrize(
    "images, match",
    [(np.zeros((4, 32, 32, 3), np.float32), r"\(32, 32, 3\)"), (np.zeros((4, 64, 64, 3)), "float64"),
     (np.full((4, 64, 64, 3), 2.0, np.float32), r"\[2.0, 2.0\]"),
     (np.where(np.arange(4)[:, None, None, None] == 2, np.nan, 0.5).astype(np.float32) * np.ones((4, 64, 64, 3), np.float32), "index \\[2, 0, 0, 0\\]")],
)
def test_bad_images_are_named(tmp_path, tiny_data, images, match):
    with pytest.raises(ValueError, match=match):
        loop.train(quick_config(), tmp_path, images, tiny_data[1])


def test_nan_guard_stops_with_the_step(tmp_path):
    with pytest.raises(FloatingPointError, match="at step 2 "):
        loop.train(tiny_config(learning_rate=1e30), tmp_path, *tiny_images())


# --- the fast CPU recipe: data-mean output bias, learning-rate warm-up ------------------------------------------


def test_data_mean_logits_is_the_logit_of_the_mean_colour():
    images = np.zeros((4, 64, 64, 3), np.float32)
    images[..., 0], images[:2, ..., 1], images[..., 2] = 0.25, 1.0, 0.8  # channel means 0.25, 0.5, 0.8
    np.testing.assert_allclose(data_mean_logits(images), [-math.log(3), 0.0, math.log(4)], atol=1e-6)


def test_data_mean_output_bias_starts_the_decoder_at_the_mean_colour(tiny_data):
    _, trainer, _ = loop.build(quick_config(), (64, 64, 3))
    bias = FAMILIES["ae"](output_bias_init="data_mean").init_data({"images": tiny_data[0]})
    assert FAMILIES["ae"]().init_data({"images": tiny_data[0]}) is None
    key = jax.random.key(3)
    state, ref_state = trainer.init(key, bias), trainer.init(key)
    got = state.params["decoder"]["out"]["bias"][...]
    np.testing.assert_allclose(got, data_mean_logits(tiny_data[0]), rtol=1e-6)
    assert not np.allclose(got, ref_state.params["decoder"]["out"]["bias"][...])
    # every other parameter is the reference's initialisation from the same key
    state.params["decoder"]["out"]["bias"][...] = ref_state.params["decoder"]["out"]["bias"][...]
    chex.assert_trees_all_equal(state.params, ref_state.params)


def test_a_run_starts_from_its_familys_init_data(tmp_path):
    """The loop hands `family.init_data(train)` to the initialisation (as the AE's data-mean bias needs; the test
    above checks the AE's hook): the toy family's bias starts at the mean training image."""
    data = tiny_images()
    config = tiny_config(bias_from_data=True, num_steps=1, lr_warmup_steps=5)  # rate 0 at step 0: params stay
    state = loop.train(config, tmp_path, *data)
    np.testing.assert_allclose(state.params["decode"]["bias"][...][0], data[0].mean(0).reshape(-1), rtol=1e-6)
    plain = loop.train(tiny_config(num_steps=1, lr_warmup_steps=5), tmp_path / "plain", *data)
    assert not np.allclose(plain.params["decode"]["bias"][...][0], data[0].mean(0).reshape(-1))


def test_warm_up_starts_from_a_zero_learning_rate():
    # The schedule is the engine's, whatever the family: the toy family keeps this fast.
    _, trainer, _ = loop.build(tiny_config(lr_warmup_steps=4, learning_rate=1e-2), (16, 16, 1))
    state = trainer.init(jax.random.key(0))
    images = {"images": jnp.asarray(tiny_images()[0][:8])}
    first, _ = trainer.train_step(state, images, jax.random.key(1))
    chex.assert_trees_all_equal(first.params, state.params)  # rate 0 at step 0
    second, _ = trainer.train_step(first, images, jax.random.key(1))
    moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), second.params, first.params)
    # Adam's first step moves each weight by about the rate (1e-2 / 4 at step 1); none by more
    assert 1e-3 < max(jax.tree.leaves(moved)) <= 1e-2 / 4 * 1.001
