"""The LNS paper's baselines through the library: scoring against scikit-learn, GENESIS's BatchNorm statistics, both
families trained, resumed and restored by the engine, and the LNS table's baseline rows."""

import csv
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from sklearn.metrics import adjusted_rand_score

from experiments.configs import lns as lns_configs
from noisegroup import baselines
from noisegroup.engine import loop
from noisegroup.errors import BadInputError
from noisegroup.lns import pipeline
from noisegroup.models import FAMILIES

ROOT = Path(__file__).parents[1]


def test_scores_equal_scikit_learn_on_saved_masks(tmp_path):
    """Argmax over slots (ties to the lowest slot), then ARI and FG-ARI per image as scikit-learn computes them; an
    image without foreground has FG-ARI 1.0 (scikit-learn's empty-input value)."""
    rng = np.random.default_rng(0)
    log_masks = np.log(rng.dirichlet(np.ones(4), size=(6, 8, 8)).transpose(0, 3, 1, 2)).astype(np.float32)
    log_masks[0, :, 0, 0] = np.log(0.25)  # a four-way tie: slot 0
    true = rng.integers(0, 3, size=(6, 8, 8))
    true[5] = 0  # no foreground
    np.savez(tmp_path / "masks.npz", log_masks=log_masks, true=true)
    saved = np.load(tmp_path / "masks.npz")
    scores = baselines.score(saved["log_masks"], saved["true"])
    pred = np.argmax(log_masks, axis=1)
    assert baselines.labels(log_masks)[0, 0, 0] == 0
    for i in range(6):
        assert scores["ari"][i] == pytest.approx(adjusted_rand_score(true[i].ravel(), pred[i].ravel()), abs=1e-5)
        fg = true[i].ravel() != 0
        expected = adjusted_rand_score(true[i].ravel()[fg], pred[i].ravel()[fg])
        assert scores["ari_fg"][i] == pytest.approx(expected, abs=1e-5)
    assert scores["ari_fg"][5] == 1.0


def _stacked(model):
    graphdef, params = nnx.split(model, nnx.Param)
    return graphdef, jax.tree.map(lambda x: x[None], params)


def test_genesis_scores_with_population_statistics_and_both_v2_mask_sets():
    """GENESIS scores with BatchNorm statistics averaged over training batches (20 normalisation layers); the same key
    gives the same scores; GENESIS-v2 gives the IC-SBP and the decoder segmentations."""
    rng = np.random.default_rng(1)
    images = rng.random((4, 32, 32, 3), np.float32)
    masks = rng.integers(0, 3, size=(4, 32, 32))
    genesis = FAMILIES["genesis"](num_slots=2)
    graphdef, params = _stacked(genesis.build((32, 32, 3), nnx.Rngs(params=jax.random.key(0))))
    one = jax.tree.map(lambda x: x[0], params)
    stats = baselines.population_statistics(genesis, graphdef, one, images, jax.random.key(3), 2, 2)
    assert len(stats) == 20
    # The mean over the two training batches of what each batch's forward pass records.
    recorded = [baselines._forward_jit(genesis, graphdef, one, jnp.asarray(images[2 * i:2 * i + 2]),
                                       jax.random.fold_in(jax.random.key(3), i), None)["norm_statistics"]
                for i in range(2)]
    for layer in (0, 4, 19):
        for part in (0, 1):  # mean, unbiased variance
            np.testing.assert_allclose(stats[layer][part], (recorded[0][layer][part] + recorded[1][layer][part]) / 2,
                                       rtol=1e-5, atol=1e-7)
    a = baselines.evaluate(genesis, graphdef, params, images, masks, jax.random.key(5), images, 2, 2)
    b = baselines.evaluate(genesis, graphdef, params, images, masks, jax.random.key(5), images, 2, 2)
    assert a["masks_ari"].shape == (1, 4) and a["labels_masks"].shape == (4, 32, 32)
    np.testing.assert_array_equal(a["masks_ari"], b["masks_ari"])
    with pytest.raises(ValueError, match="training images"):
        baselines.evaluate(genesis, graphdef, params, images, masks, jax.random.key(5))

    v2 = FAMILIES["genesis_v2"](num_slots=2)
    graphdef, params = _stacked(v2.build((32, 32, 3), nnx.Rngs(params=jax.random.key(0))))
    scores = baselines.evaluate(v2, graphdef, params, images, masks, jax.random.key(5))
    assert set(scores) >= {"masks_ari", "masks_ari_fg", "decoder_masks_ari", "decoder_masks_ari_fg",
                           "labels_masks", "labels_decoder_masks", "reconstructions"}
    expected = [adjusted_rand_score(t.ravel(), p.ravel()) for t, p in zip(masks, scores["labels_decoder_masks"])]
    np.testing.assert_allclose(scores["decoder_masks_ari"][0], expected, atol=1e-5)


def test_genesis_trains_resumes_and_restores_through_the_engine(tmp_path):
    """Two steps, then a third by resuming, equal three uninterrupted steps (GECO's state included); `restore` reads
    the run back without data; the other family's config is refused by name. (GENESIS-v2 trains and restores in
    `test_the_lns_table_gains_a_baseline_row`; resuming is the engine's, tested here and in test_engine.py.)"""
    model = "genesis"
    rng = np.random.default_rng(2)
    train, valid = rng.random((8, 32, 32, 3), np.float32), rng.random((4, 32, 32, 3), np.float32)
    # K = 2 and no validation on this schedule: one compiled step (resuming with more steps reuses it) keeps it short.
    config = baselines.training_config(model, "noise", (0,), "quick", {"num_slots": 2, "batch_size": 2,
                                                                       "eval_every": 100, "progress": False})
    loop.train({**config, "num_steps": 2}, tmp_path / "resumed", train, valid)
    resumed = loop.train({**config, "num_steps": 3}, tmp_path / "resumed", train, valid)
    straight = loop.train({**config, "num_steps": 3}, tmp_path / "straight", train, valid)
    assert int(resumed.step[0]) == 3
    for a, b in zip(jax.tree.leaves((resumed.params, resumed.geco)), jax.tree.leaves((straight.params, straight.geco))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    restored_config, restored = loop.restore(tmp_path / "resumed")
    assert restored_config["model"] == model and int(restored.step[0]) == 3
    assert float(restored.geco.beta[0]) == float(resumed.geco.beta[0]) != 1.0
    other_config = baselines.training_config("genesis_v2", "noise", (0,), "quick", {"num_slots": 2, "batch_size": 2})
    with pytest.raises(BadInputError, match="model: 'genesis' there, 'genesis_v2' now"):
        loop.train(other_config, tmp_path / "resumed", train, valid)


def test_the_lns_table_gains_a_baseline_row(tmp_path):
    """The LNS experiment with a baseline (shipped AE, GENESIS-v2 trained two steps): its row beside the paper's
    value, the decoder masks' ARI, the figure; a second run reads the cached scores; the baseline's run restores."""
    config = lns_configs.get_config("default").to_dict()  # the shipped AE's recipe
    config.update(datasets=("proximity",), models=("ae",), pretrained=str(ROOT / "pretrained"), test_limit=2,
                  noise_stds=(0.1,), num_noise_samples=(2,), fair_protocol=False, control=False, umap_images=0,
                  baselines=("genesis_v2",), baseline_budget="quick", baseline_population_batches=1, progress=False)
    rows = pipeline.run(config, tmp_path)
    row = next(r for r in rows if r["model"] == "genesis_v2")
    assert row["paper_ari"] == pytest.approx(0.059) and -1.0 <= row["ari"] <= 1.0
    assert -1.0 <= row["ari_decoder_masks"] <= 1.0 and len(row["per_image"]) == 2
    assert (tmp_path / "baselines.png").stat().st_size > 5_000
    table = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert {r["model"] for r in table} == {"ae", "genesis_v2"}
    cache = tmp_path / "segmentation" / "genesis_v2_proximity.npz"
    stamp = cache.stat().st_mtime_ns
    assert pipeline.run(config, tmp_path) == rows
    assert cache.stat().st_mtime_ns == stamp  # read, not recomputed
    restored_config, restored = loop.restore(tmp_path / "models" / "genesis_v2_proximity")
    assert restored_config["model"] == "genesis_v2" and int(restored.step[0]) == 2
    assert 0 < float(restored.geco.beta[0]) < 1  # GECO's state came back: beta fell from 1 (NLL above the goal)
