"""The one evaluation of every method (`noisegroup.evaluation`): every family's masks, through it, score as
scikit-learn scores their saved segmentations; its documented edge cases; families without masks refused."""

import jax
import numpy as np
import pytest
from flax import nnx
from sklearn.metrics import adjusted_rand_score

from noisegroup import baselines, evaluation
from noisegroup.models import FAMILIES

# The smallest images each family takes, and widths that keep the forward pass cheap.
MASK_FAMILIES = {
    "monet": ((16, 16, 3), dict(num_slots=3, latent_dim=4, unet_channels=4, unet_mlp_hidden=8,
                                encoder_channels=(4, 4, 4, 4), encoder_hidden=8, decoder_channels=(4,))),
    "slot_attention": ((16, 16, 3), dict(num_slots=3, slot_dim=8, hidden_dim=8, mlp_hidden=8)),
    "genesis": ((32, 32, 3), dict(num_slots=3)),
    "genesis_v2": ((16, 16, 3), dict(num_slots=3)),
}


def _sklearn(pred, true):
    fg = true.ravel() != 0
    return (adjusted_rand_score(true.ravel(), pred.ravel()),
            adjusted_rand_score(true.ravel()[fg], pred.ravel()[fg]) if fg.any() else 1.0)


@pytest.mark.parametrize("name", sorted(MASK_FAMILIES))
def test_every_familys_masks_score_as_scikit_learn_scores_the_saved_segmentations(name, tmp_path):
    shape, fields = MASK_FAMILIES[name]
    family = FAMILIES[name](**fields)
    graphdef, params = nnx.split(family.build(shape, nnx.Rngs(params=jax.random.key(0))), nnx.Param)
    params = jax.tree.map(lambda a, b: np.stack([a, b]), params,  # two seeds: the second's weights perturbed
                          jax.tree.map(lambda x: x * 1.5, params))
    rng = np.random.default_rng(1)
    images = rng.random((3, *shape), np.float32)
    true = np.zeros(shape[:2], np.int32)[None].repeat(3, 0)
    true[:, 2:8, 2:9], true[:, 9:14, 4:12] = 1, 2
    true[2] = 0  # no foreground: FG-ARI 1.0
    found = baselines.seed_labels(family, graphdef, params, images, jax.random.key(2), train_images=images,
                                  population_batches=1, population_batch_size=3)
    np.savez(tmp_path / "seg.npz", labels=found["labels_masks"], true=true)
    saved = np.load(tmp_path / "seg.npz")
    assert saved["labels"].shape == (2, 3, *shape[:2])
    scores = evaluation.score(saved["labels"], saved["true"])
    for s in range(2):
        for i in range(3):
            ari, ari_fg = _sklearn(saved["labels"][s, i], true[i])
            assert scores["ari"][s, i] == pytest.approx(ari, abs=1e-5)
            assert scores["ari_fg"][s, i] == pytest.approx(ari_fg, abs=1e-5)
    assert scores["ari_fg"][0, 2] == 1.0


def test_a_family_without_masks_is_refused_naming_it():
    with pytest.raises(ValueError, match="AutoEncoderFamily has no segmentation masks"):
        baselines.seed_labels(FAMILIES["ae"](), None, {"w": np.zeros((1, 2))}, np.zeros((1, 8, 8, 3)),
                              jax.random.key(0))


def test_one_object_fg_ari_is_one_when_whole_and_zero_when_split():
    true = np.zeros((2, 6, 6), np.int32)
    true[:, 1:5, 1:5] = 1  # one object
    whole = np.where(true == 1, 3, 0)
    split = whole.copy()
    split[1, 1:3, 1:5] = 4  # the object in two groups
    scores = evaluation.score(np.stack([whole[0], split[1]]), true)
    assert scores["ari_fg"].tolist() == [1.0, 0.0]
    assert scores["ari_fg"][1] == adjusted_rand_score(true[1][true[1] > 0], split[1][true[1] > 0])


def test_mask_labels_tie_to_the_lowest_slot_and_clusters_count_background():
    log_masks = np.zeros((1, 3, 2, 2), np.float32)
    log_masks[0, 2, 1, 1] = 1.0
    assert evaluation.mask_labels(log_masks).tolist() == [[[0, 0], [0, 2]]]
    true = np.array([[[0, 0], [1, 1]], [[0, 5], [7, 9]]])
    assert evaluation.clusters_for(true).tolist() == [2, 4]


def test_mismatched_shapes_are_named():
    with pytest.raises(ValueError, match=r"labels \(2, 4, 4\) must be"):
        evaluation.score(np.zeros((2, 4, 4), np.int32), np.zeros((2, 5, 5), np.int32))
