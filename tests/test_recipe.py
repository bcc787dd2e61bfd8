"""The training levers of the LNS recipe (learning-rate schedules, gradient clipping, a moving average of the
weights) against closed forms, and their bad values named. The engine is the same for every family, so the toy
family keeps these fast."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from toy_family import tiny_config, tiny_images

from noisegroup.engine import config as engine_config
from noisegroup.engine import loop, trainer


def engine(**overrides) -> engine_config.TrainConfig:
    return engine_config.parse(tiny_config(**overrides)).engine


def expected_rate(t: int, peak: float, warmup: int, decay: int, schedule: str) -> float:
    """The schedule written out: linear warm-up from 0, then constant or a decay to 0 over `decay` steps."""
    if t < warmup:
        return peak * t / warmup
    if schedule == "constant":
        return peak
    x = min((t - warmup) / decay, 1.0)
    return peak * (0.5 * (1 + math.cos(math.pi * x)) if schedule == "cosine" else 1 - x)


@pytest.mark.parametrize("schedule, warmup, decay", [("constant", 0, 0), ("constant", 3, 0), ("cosine", 3, 8),
                                                     ("linear", 3, 8), ("cosine", 0, 5)])
def test_each_schedule_is_its_closed_form(schedule, warmup, decay):
    rate = trainer.learning_rate(engine(learning_rate=2e-3, lr_schedule=schedule, lr_warmup_steps=warmup,
                                        lr_decay_steps=decay))
    for t in range(warmup + decay + 4):
        got = float(rate(t)) if callable(rate) else rate
        assert got == pytest.approx(expected_rate(t, 2e-3, warmup, decay, schedule), abs=1e-9), t


def test_adam_moves_by_the_scheduled_rate_each_step():
    """With a constant gradient, Adam's bias-corrected step is exactly the rate (up to eps): after t steps a weight
    has moved by the sum of the first t rates of the schedule."""
    config = engine(learning_rate=1e-2, lr_schedule="cosine", lr_warmup_steps=2, lr_decay_steps=5, adam_eps=1e-12)
    opt = trainer.optimizer(config)
    params = {"w": jnp.zeros(3)}
    state = opt.init(params)
    grads = {"w": jnp.array([1.0, -2.0, 0.5])}
    for t in range(9):
        updates, state = opt.update(grads, state, params)
        params = jax.tree.map(jnp.add, params, updates)
        moved = sum(expected_rate(i, 1e-2, 2, 5, "cosine") for i in range(t + 1))
        np.testing.assert_allclose(params["w"], -np.sign(grads["w"]) * moved, rtol=1e-5, atol=1e-9)


def test_gradient_clipping_scales_the_gradient_to_its_global_norm():
    """Adam with eps = 1 steps by rate * g / (|g| + 1) on its first step, so the clipped gradient shows."""
    grads = {"a": jnp.array([3.0]), "b": jnp.array([4.0])}  # global norm 5
    for clip, scale in ((0.0, 1.0), (1.0, 1 / 5), (10.0, 1.0)):
        opt = trainer.optimizer(engine(learning_rate=0.1, adam_eps=1.0, grad_clip_norm=clip))
        updates, _ = opt.update(grads, opt.init(grads))
        for name, g in (("a", 3.0), ("b", 4.0)):
            g = g * scale
            np.testing.assert_allclose(updates[name], [-0.1 * g / (abs(g) + 1)], rtol=1e-4)  # float32 bias correction


def test_the_moving_average_follows_its_recurrence_and_is_what_inference_uses():
    _, trainer_, _ = loop.build(tiny_config(ema_decay=0.9, learning_rate=1e-2), (16, 16, 1))
    state = trainer_.init(jax.random.key(0))
    chex.assert_trees_all_equal(state.ema_params, state.params)  # e_0 = p_0
    images = jnp.asarray(tiny_images()[0])
    expected = jax.tree.map(np.asarray, state.params)
    for t in range(4):
        state, _ = trainer_.train_step(state, {"images": images[8 * t: 8 * t + 8]}, jax.random.key(1))
        expected = jax.tree.map(lambda e, p: 0.9 * e + 0.1 * np.asarray(p), expected, state.params)
    chex.assert_trees_all_close(state.ema_params, expected, rtol=1e-6)
    assert state.inference_params is state.ema_params
    assert not np.allclose(state.ema_params["decode"]["kernel"][...], state.params["decode"]["kernel"][...])
    plain = trainer_.init(jax.random.key(0)).replace(ema_params=None)
    assert plain.inference_params is plain.params


def test_a_run_with_a_moving_average_resumes_it(tmp_path):
    config = tiny_config(ema_decay=0.5, num_steps=6)
    full = loop.train(config, tmp_path / "full", *tiny_images())
    loop.train({**config, "num_steps": 3}, tmp_path / "split", *tiny_images())
    resumed = loop.train(config, tmp_path / "split", *tiny_images())
    chex.assert_trees_all_close(resumed.ema_params, full.ema_params, rtol=1e-6)
    _, restored = loop.restore(tmp_path / "full")
    chex.assert_trees_all_close(restored.inference_params, full.ema_params, rtol=1e-6)


@pytest.mark.parametrize("overrides, match", [
    (dict(lr_schedule="cosin"), r"lr_schedule must be one of .*'cosin'"),
    (dict(lr_schedule="cosine"), r"lr_decay_steps, which must be >= 1.*got 0"),
    (dict(lr_schedule="linear", lr_decay_steps=-5), r"lr_decay_steps must be >= 0, got -5"),
    (dict(ema_decay=1.0), r"ema_decay must lie in \[0, 1\).*got 1.0"),
    (dict(ema_decay=-0.1), r"ema_decay.*-0.1"),
    (dict(grad_clip_norm=-1.0), r"grad_clip_norm.*-1.0"),
    (dict(grad_clip_norm=float("nan")), r"grad_clip_norm.*nan"),
])
def test_bad_recipe_values_are_named(overrides, match):
    with pytest.raises(ValueError, match=match):
        engine(**overrides)
