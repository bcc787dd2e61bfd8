"""Shipped float16 / int8 weights: round trip, refusals, the shipped files themselves (exporting and segmenting with
them end to end: tests/test_lns.py)."""

from pathlib import Path

import jax
import numpy as np
import pytest

from experiments.configs import train as train_configs
from noisegroup.engine import loop, pretrained

ROOT = Path(__file__).parents[1]


def config(**overrides):
    return {**train_configs.get_config("quick").to_dict(), **overrides}


@pytest.fixture(scope="module")
def ae_params():
    _, trainer, _ = loop.build(config(), (64, 64, 3))
    return config(dataset="x"), jax.vmap(trainer.init)(jax.random.split(jax.random.key(0), 2)).params


def test_round_trip_is_float16_rounding(tmp_path, ae_params):
    train_config, params = ae_params
    path = pretrained.save(tmp_path / "ae_x.npz", params, {"model": "ae", "latent_dim": 15, "dataset": "x"})
    loaded = pretrained.load(path, train_config)
    assert pretrained.read_meta(path)["dataset"] == "x"
    for got, want in zip(jax.tree.leaves(loaded), jax.tree.leaves(params), strict=True):
        assert got.dtype == np.float32 and got.shape == want.shape
        # float16 keeps 11 significant bits: relative error <= 2^-11 (weights here are far from subnormal)
        np.testing.assert_allclose(got, want, rtol=2**-11, atol=1e-7)
        np.testing.assert_array_equal(got, np.asarray(want).astype(np.float16).astype(np.float32))
    assert path.stat().st_size < 2 * 2.2e6 * 2  # two seeds of 2.1 M float16 parameters, compressed


def test_int8_round_trip_is_within_half_a_step_per_output_channel(tmp_path, ae_params):
    train_config, params = ae_params
    meta = {"model": "ae", "latent_dim": 15, "dataset": "x"}
    path = pretrained.save(tmp_path / "ae_x.npz", params, meta, precision="int8")
    loaded = pretrained.load(path, train_config)
    kernels = 0
    for got, want in zip(jax.tree.leaves(loaded), jax.tree.leaves(params), strict=True):
        got, want = np.asarray(got), np.asarray(want)
        if want.ndim >= 3:  # [seed, ..., out]: the step is max |w| / 127 of each seed's output channel
            kernels += 1
            step = np.abs(want).max(axis=tuple(range(1, want.ndim - 1)), keepdims=True) / 127
            assert np.all(np.abs(got - want) <= step * (0.5 + 1e-4))  # + float32 rounding of q * scale
            assert np.abs(got - want).max() > 0  # it did quantise
        else:
            np.testing.assert_array_equal(got, want.astype(np.float16).astype(np.float32))
    assert kernels >= 10
    float16 = pretrained.save(tmp_path / "ae_16.npz", params, meta)
    assert path.stat().st_size < 0.6 * float16.stat().st_size
    # convert: float16 file -> int8 file, the same meta; its kernels quantise the float16 values
    converted = pretrained.convert(float16, tmp_path / "ae_c.npz", "int8")
    assert pretrained.read_meta(converted) == pretrained.read_meta(float16)
    halves = jax.tree.map(lambda w: np.asarray(w).astype(np.float16).astype(np.float32), params)
    want = pretrained.load(pretrained.save(tmp_path / "ae_h.npz", halves, meta, precision="int8"), train_config)
    for a, b in zip(jax.tree.leaves(pretrained.load(converted, train_config)), jax.tree.leaves(want), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="precision='int4'"):
        pretrained.save(tmp_path / "bad.npz", params, meta, precision="int4")


def test_weights_of_another_model_are_refused(tmp_path, ae_params):
    _, params = ae_params
    path = pretrained.save(tmp_path / "ae.npz", params, {"model": "ae", "latent_dim": 15,
                                                         "dataset": config()["dataset"]})
    with pytest.raises(ValueError, match="model='ae'.*model='vae'"):
        pretrained.load(path, config(model="vae"))
    with pytest.raises(ValueError, match="latent_dim=15.*latent_dim=8"):
        pretrained.load(path, config(latent_dim=8))
    with pytest.raises(FileNotFoundError, match="nowhere.npz"):
        pretrained.load(tmp_path / "nowhere.npz", config())


def test_unsavable_values_are_named(tmp_path, ae_params):
    _, params = ae_params
    bad = jax.tree.map(lambda x: x, params)
    bad["decoder"]["out"]["bias"][...] = bad["decoder"]["out"]["bias"][...].at[0, 0].set(1e6)
    with pytest.raises(ValueError, match="decoder/out/bias"):
        pretrained.save(tmp_path / "bad.npz", bad, {"model": "ae", "latent_dim": 15, "dataset": "x"})
    with pytest.raises(ValueError, match="'model'"):
        pretrained.save(tmp_path / "bad.npz", params, {"latent_dim": 15, "dataset": "x"})
    with pytest.raises(ValueError, match="'dataset'"):
        pretrained.save(tmp_path / "bad.npz", params, {"latent_dim": 15, "model": "ae"})


def test_paper_budget_trains_the_shipped_recipe_with_the_papers_seeds_grid_and_ward():
    from experiments.configs import lns as lns_configs
    from noisegroup.lns.pipeline import LNSConfig

    default = LNSConfig.from_mapping(lns_configs.get_config("default").to_dict())
    budget = LNSConfig.from_mapping(lns_configs.get_config("paper_budget").to_dict())
    paper = LNSConfig.from_mapping(lns_configs.get_config("paper").to_dict())
    assert budget.pretrained == "" and budget.seeds == paper.seeds == (0, 1, 2, 3, 4)
    for field in ("noise_stds", "num_noise_samples", "clustering", "kmeans_restarts", "fair_limit", "control_limit"):
        assert getattr(budget, field) == getattr(paper, field), field
    for dataset in budget.datasets:
        for model in budget.models:
            want = {**default.model_train_config(model, dataset), "seeds": (0, 1, 2, 3, 4)}
            assert budget.model_train_config(model, dataset) == want


def test_shipped_weights_are_the_default_configs_and_reconstruct():
    """pretrained/ holds one file per (model, dataset) the `default` config segments, trained with exactly the
    default's recipe for its steps, and each decoder uses its latent and beats the mean colour on unseen images."""
    from datasets import good_gestalt as gg
    from experiments.configs import lns as lns_configs
    from noisegroup.lns import features as lns
    from noisegroup.lns.pipeline import LNSConfig

    lns_config = LNSConfig.from_mapping(lns_configs.get_config("default").to_dict())
    for dataset in lns_config.datasets:
        for model in lns_config.models:
            path = ROOT / lns_config.weights_path(model, dataset)
            meta = pretrained.read_meta(path)
            want = lns_config.model_train_config(model, dataset)
            for field in ("model", "dataset", "batch_size", "learning_rate", "lr_warmup_steps", "output_bias_init",
                          "num_steps", "latent_dim", "adam_b1", "adam_b2"):
                assert meta["train"][field] == want[field], (path.name, field)
            assert meta["steps"] == want["num_steps"]
            _, trainer, _ = loop.build(want, (64, 64, 3))
            params = pretrained.load(path, want)
            images = gg.generate(dataset, "test_iid", limit=8).images
            seed0 = jax.tree.map(lambda x: x[0], params)
            outputs, recon = lns.noisy_decodes(trainer.graphdef, seed0, images, lns.image_keys(jax.random.key(0),
                                               np.arange(8)), [0.1], 3)
            assert float(np.abs(np.diff(np.asarray(outputs), axis=2)).max()) > 1e-3, path.name  # latent matters
            sse = ((np.asarray(recon) - images) ** 2).sum((1, 2, 3)).mean()
            mean_colour_sse = ((images.mean((0, 1, 2)) - images) ** 2).sum((1, 2, 3)).mean()
            assert sse < 0.7 * mean_colour_sse, (path.name, sse, mean_colour_sse)
