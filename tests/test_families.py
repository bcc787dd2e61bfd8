"""The engine as every family sees it: a toy family trained, resumed and restored with no edit of the engine; the
config schema; early termination; RMSProp; the jittable ARI."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn.metrics import adjusted_rand_score
from toy_family import TinyFamily, tiny_config, tiny_images

from noisegroup import metrics
from noisegroup.engine import config as engine_config
from noisegroup.engine import loop, losses, runlog
from noisegroup.models import FAMILIES, register_family


@pytest.fixture(scope="module")
def tiny_data():
    return tiny_images()


def test_a_new_family_trains_resumes_and_restores(tmp_path, tiny_data):
    whole = loop.train(tiny_config(noise_std=0.1), tmp_path / "whole", *tiny_data)
    assert np.all(np.asarray(whole.step) == 6)
    records = runlog.read_metrics(tmp_path / "whole" / "metrics.jsonl")
    assert [r["step"] for r in records] == [3, 6] and "valid/mse" in records[0]
    assert np.all(np.asarray(records[-1]["valid/mse"]) < np.asarray(records[0]["valid/mse"]))  # it learns
    loop.train(tiny_config(noise_std=0.1, num_steps=3), tmp_path / "cut", *tiny_data)
    resumed = loop.train(tiny_config(noise_std=0.1), tmp_path / "cut", *tiny_data)
    chex.assert_trees_all_equal(resumed, whole)
    config, restored = loop.restore(tmp_path / "whole")  # no data, no training
    assert config["hidden"] == 8 and config["model"] == "tiny"
    chex.assert_trees_all_equal(restored, whole)
    _, at_3 = loop.restore(tmp_path / "whole", step=3)
    assert np.all(np.asarray(at_3.step) == 3)


def test_restore_of_an_empty_workdir_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no training run"):
        loop.restore(tmp_path)


def test_loss_weights_come_from_the_config(tmp_path, tiny_data):
    state = loop.train(tiny_config(loss_weights={"mse": 0.0, "l1_code": 1.0}), tmp_path, *tiny_data)
    _, fresh = loop.restore(tmp_path, step=3)  # weight 0 on the only informative term: parameters stay put
    chex.assert_trees_all_equal(state.params, fresh.params)
    record = runlog.read_metrics(tmp_path / "metrics.jsonl")[0]
    assert record["train/mse_weight"] == [0.0, 0.0] and record["train/l1_code_weight"] == [1.0, 1.0]


@pytest.mark.parametrize("overrides, message", [
    (dict(model="gan"), r"unknown model family 'gan'; known: \[.*'tiny'"),
    (dict(hiden=4), r"'hiden' \(did you mean 'hidden'\?\)"),
    (dict(latent_dim=4), r"unknown config key 'latent_dim'"),  # the AE's key, not this family's
    (dict(loss_weights={"mse": 1.0, "kl": 1.0}), r"unknown loss term 'kl'.*\['l1_code', 'mse'\]"),
    (dict(seed_batching="pmap"), "seed_batching.*'pmap'"),
    (dict(data_parallel=3), "data_parallel=3 must divide batch_size=4"),
    (dict(optimizer="sgd"), "optimizer.*'sgd'"),
    (dict(early_stop_metric="mse"), "'valid/<name>'"),
    (dict(micro_batch_size="auto-ish"), "micro_batch_size.*'auto-ish'"),
    (dict(learning_rate=float("nan")), "learning_rate"),
])
def test_config_errors_name_the_key_and_value(overrides, message):
    with pytest.raises(ValueError, match=message):
        engine_config.parse(tiny_config(**overrides))


def test_a_family_name_cannot_be_taken_twice():
    with pytest.raises(ValueError, match="already taken"):
        register_family("ae", TinyFamily)
    assert FAMILIES["tiny"] is TinyFamily


def test_early_termination_freezes_each_seed_that_meets_the_rule(tmp_path, tiny_data):
    # The watched MSE (~0.1 for noise images) is below 1e9 at every check, and it improves by less than 100 %:
    # both seeds stop at the second check (the first has no previous value), and the run ends there.
    config = tiny_config(early_stop_metric="valid/mse", early_stop_below=1e9, early_stop_min_improvement=0.999,
                         num_steps=30)
    state = loop.train(config, tmp_path, *tiny_data)
    records = runlog.read_metrics(tmp_path / "metrics.jsonl")
    assert [r["valid/stopped"] for r in records if "valid/stopped" in r] == [[False, False], [True, True]]
    assert np.all(np.asarray(state.step) == 6)
    again = loop.train(config, tmp_path, *tiny_data)  # a finished run does not train on
    chex.assert_trees_all_equal(again, state)
    with pytest.raises(ValueError, match="'valid/psnr' is not a validation metric"):
        loop.train({**config, "early_stop_metric": "valid/psnr"}, tmp_path / "other", *tiny_data)


def test_auto_micro_batches_are_the_familys_cpu_default():
    """"auto" on CPU: the family's `cpu_micro_batch` (passes of 8 for both; one pass for a batch of at most 8); a
    number is taken."""
    from noisegroup.engine.trainer import Trainer

    for model, want in (("ae", 8), ("monet", 8)):
        run = engine_config.parse({"model": model, "batch_size": 64, "micro_batch_size": "auto"})
        assert run.family.cpu_micro_batch == want
        assert Trainer.from_config(run.engine, run.family, (64, 64, 3)).micro_batch_size == want
        run = engine_config.parse({"model": model, "batch_size": 64, "micro_batch_size": 32})
        assert Trainer.from_config(run.engine, run.family, (64, 64, 3)).micro_batch_size == 32
    run = engine_config.parse({"model": "monet", "batch_size": 8, "micro_batch_size": "auto"})
    assert Trainer.from_config(run.engine, run.family, (16, 16, 3)).micro_batch_size is None  # the `default` config's batch


def test_rmsprop_is_pytorchs_flavour():
    run = engine_config.parse(tiny_config(optimizer="rmsprop", learning_rate=1e-3))
    from noisegroup.engine.trainer import Trainer

    optimizer = Trainer.from_config(run.engine, run.family, (16, 16, 1)).optimizer
    grad = {"w": jnp.array([0.5, -2.0])}
    state = optimizer.init(grad)
    v = np.zeros(2)
    for _ in range(3):  # torch.optim.RMSprop: v = a v + (1 - a) g^2; step = -lr g / (sqrt(v) + eps)
        updates, state = optimizer.update(grad, state)
        v = 0.99 * v + 0.01 * np.asarray(grad["w"]) ** 2
        np.testing.assert_allclose(updates["w"], -1e-3 * np.asarray(grad["w"]) / (np.sqrt(v) + 1e-8), rtol=1e-5)


def test_jitted_vmapped_ari_equals_sklearn():
    rng = np.random.default_rng(0)
    preds, trues = rng.integers(0, 5, (16, 12, 12)), rng.integers(0, 4, (16, 12, 12))
    trues[3] = 0  # one label only
    preds[4] = trues[4]  # identical
    ari = jax.jit(jax.vmap(functools.partial(metrics.ari_jax, num_labels=6)))
    got = np.asarray(ari(jnp.asarray(preds), jnp.asarray(trues)))
    want = [adjusted_rand_score(t.ravel(), p.ravel()) for p, t in zip(preds, trues)]
    np.testing.assert_allclose(got, want, atol=1e-5)
    fg = jax.jit(jax.vmap(lambda p, t: metrics.ari_jax(p, t, t != 0, num_labels=6)))(preds, trues)
    want_fg = [adjusted_rand_score(t[t != 0], p[t != 0]) if (t != 0).sum() > 1 else 1.0 for p, t in zip(preds, trues)]
    np.testing.assert_allclose(np.asarray(fg), want_fg, atol=1e-5)


def test_weighted_loss_sums_only_the_weighted_terms():
    outputs = {"images": jnp.ones((2, 4, 4, 1)), "reconstruction": jnp.zeros((2, 4, 4, 1))}
    total, logged = losses.weighted_loss(TinyFamily.loss_terms, outputs, {"mse": 2.0})
    assert float(total) == 2.0 and "l1_code" not in logged


def test_one_pass_of_sgd_through_the_trainer_is_the_closed_form():
    """A toy family's step through the engine is exactly one SGD step on its loss (an oracle, not a restatement)."""
    from noisegroup.engine.trainer import Trainer

    family = TinyFamily(hidden=2)
    trainer = Trainer(family=family, image_shape=(2, 2, 1), optimizer=optax.sgd(0.1), weights={"mse": 1.0})
    state = trainer.init(jax.random.key(0))
    batch = {"images": jnp.linspace(0, 1, 8).reshape(2, 2, 2, 1)}
    new, _ = trainer.train_step(state, batch, jax.random.key(1))

    def loss(params):
        return jnp.mean(TinyFamily.loss_terms["mse"](family.outputs(trainer.model_fn(params), batch, None)))

    grads = jax.grad(loss)(state.params)
    chex.assert_trees_all_close(new.params, jax.tree.map(lambda p, g: p - 0.1 * g, state.params, grads), atol=1e-7)
