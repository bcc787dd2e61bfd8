"""The engine as every family sees it: a toy family trained, resumed and restored with no edit of the engine; the
config schema; early termination; RMSProp; the jittable ARI."""

import dataclasses
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from sklearn.metrics import adjusted_rand_score

from noisegroup import metrics
from noisegroup.engine import config as engine_config
from noisegroup.engine import loop, losses, runlog
from noisegroup.models import FAMILIES, register_family
from noisegroup.models.family import Family


class TinyMLP(nnx.Module):
    """Flatten -> dense 16 -> ReLU -> dense to the image: a few dozen parameters' worth of autoencoder."""

    def __init__(self, image_shape, hidden: int, *, rngs: nnx.Rngs):
        size = int(np.prod(image_shape))
        self.image_shape = tuple(image_shape)
        self.encode = nnx.Linear(size, hidden, rngs=rngs)
        self.decode = nnx.Linear(hidden, size, rngs=rngs)

    def __call__(self, images, noise):
        h = jax.nn.relu(self.encode(images.reshape(len(images), -1)))
        if noise is not None:
            h = h + noise
        return self.decode(h).reshape(len(images), *self.image_shape)


@dataclasses.dataclass(frozen=True)
class TinyFamily(Family):
    """A third family, outside the library: its own config key (`hidden`), loss terms and noise."""

    hidden: int = 8
    noise_std: float = 0.0

    loss_terms = {"mse": lambda o: jnp.mean((o["reconstruction"] - o["images"]) ** 2, axis=(1, 2, 3)),
                  "l1_code": lambda o: jnp.zeros(len(o["images"]))}
    default_weights = {"mse": 1.0}

    def build(self, image_shape, rngs):
        return TinyMLP(image_shape, self.hidden, rngs=rngs)

    def sample_noise(self, key, batch):
        if not self.noise_std:
            return None
        return self.noise_std * jax.random.normal(key, (len(batch["images"]), self.hidden))

    def outputs(self, model, batch, noise):
        return {"images": batch["images"], "reconstruction": model(batch["images"], noise)}

    def eval_metrics(self, outputs, batch):
        return {"mse": jnp.mean((outputs["reconstruction"] - outputs["images"]) ** 2)}


register_family("tiny", TinyFamily)


def tiny_config(**overrides):
    config = dict(model="tiny", dataset="noise", seeds=(0, 1), batch_size=4, learning_rate=1e-2, num_steps=6,
                  eval_every=3, log_every=3, checkpoint_every=3, progress=False, hidden=8)
    config.update(overrides)
    return config


@pytest.fixture(scope="module")
def tiny_data():
    rng = np.random.default_rng(0)
    return rng.random((32, 16, 16, 1), np.float32), rng.random((8, 16, 16, 1), np.float32)


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


def test_rmsprop_is_pytorchs_flavour():
    engine, family = engine_config.parse(tiny_config(optimizer="rmsprop", learning_rate=1e-3))
    from noisegroup.engine.trainer import Trainer

    optimizer = Trainer.from_config(engine, family, (16, 16, 1)).optimizer
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


def test_host_ari_memory_follows_the_labels_present_not_the_largest():
    pred = np.zeros((2, 8, 8), np.int64)
    pred[:, :4] = 2**40  # a huge label: relabelled to 1 before any table is built
    true = np.zeros((2, 8, 8), np.int64)
    true[:, 4:] = 9999
    np.testing.assert_allclose(metrics.batch_ari(pred, true), 1.0)
    with pytest.raises(ValueError, match="integer labels"):
        metrics.batch_ari(pred.astype(np.float32), true)


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


def test_a_restore_error_moves_nothing_unless_an_older_step_restores(tmp_path):
    from noisegroup.engine import checkpoint

    ckpt = checkpoint.Checkpointer(tmp_path, keep=3)
    for step in (1, 2):
        ckpt.save(step, {"w": jnp.full((3,), float(step))})
    ckpt.wait()
    wrong = {"w": jax.ShapeDtypeStruct((4,), jnp.float32)}  # another run's shapes: every step fails alike
    with pytest.raises(ValueError, match="step 2.*nothing was moved or deleted"):
        ckpt.restore_latest(wrong)
    assert ckpt.steps() == [1, 2]
    for f in (tmp_path / "2").rglob("*"):  # now damage the newest: the older one restores, the newest goes aside
        if f.is_file() and f.stat().st_size > 0:
            f.write_bytes(b"\0" * 7)
    with pytest.warns(UserWarning, match="step 2 cannot be restored.*changed since it was saved"):
        step, state = ckpt.restore_latest({"w": jax.ShapeDtypeStruct((3,), jnp.float32)})
    assert step == 1 and float(state["w"][0]) == 1.0 and ckpt.steps() == [1]
    assert any(p.name.startswith("damaged-2-") for p in tmp_path.iterdir())
    ckpt.close()


def test_two_runs_in_one_workdir_are_refused_naming_the_holder(tmp_path, tiny_data):
    import os

    from noisegroup.engine import workdir_lock

    with workdir_lock.hold(tmp_path):
        with pytest.raises(workdir_lock.WorkdirBusyError, match=f"in use by pid {os.getpid()} on "):
            loop.train(tiny_config(), tmp_path, *tiny_data)
    assert np.all(np.asarray(loop.train(tiny_config(num_steps=3), tmp_path, *tiny_data).step) == 3)  # released


def test_a_torn_last_metrics_line_is_dropped_with_a_warning(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "lo')
    with pytest.warns(UserWarning, match="torn last line"):
        assert runlog.read_metrics(path) == [{"step": 1, "loss": 2.0}]
    path.write_text('{"step": 1, "lo\n{"step": 2}\n')
    with pytest.raises(ValueError, match="metrics.jsonl, line 1, is damaged"):
        runlog.read_metrics(path)


def test_a_flipped_byte_in_a_checkpoint_is_caught_by_its_seal(tmp_path):
    from noisegroup.engine import checkpoint

    ckpt = checkpoint.Checkpointer(tmp_path / "checkpoints", keep=3)
    for step in (1, 2):
        ckpt.save(step, {"w": jnp.full((1000,), float(step))})
    ckpt.wait()
    data = max((p for p in (tmp_path / "checkpoints" / "2").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # one bit: without the seal orbax may read this as a slightly different weight
    data.write_bytes(bytes(raw))
    with pytest.warns(UserWarning, match=f"step 2 cannot be restored .*{data.name} is changed since it was saved"):
        step, state = ckpt.restore_latest({"w": jax.ShapeDtypeStruct((1000,), jnp.float32)})
    assert step == 1 and np.all(np.asarray(state["w"]) == 1.0)
    ckpt.close()
