"""The number of groups estimated from features: known k on synthetic groups, degenerate inputs, the Ward tree
shared with clustering, the silhouette against scikit-learn, bad input."""

import numpy as np
import pytest
from sklearn.cluster import AgglomerativeClustering
from sklearn.metrics import adjusted_rand_score, silhouette_score

from noisegroup.lns import cluster, linkage, num_groups

# Unequal groups, as in images (a large background, a few smaller shapes); 2048 pixels keep the tests fast.
SIZES = {2: (1500, 548), 3: (1500, 400, 148), 4: (1000, 600, 300, 148), 5: (750, 500, 400, 250, 148)}


def groups(sizes, separation, seed=0, copies=0.0, dim=57, spread_dims=5):
    """Features `[p, dim]` float32 of len(sizes) groups and their labels `[p]`.

    Centres are `separation` apart (pairwise), the spread is unit Gaussian in `spread_dims` directions (LNS
    features of a region vary in few directions), and a fraction `copies` of each group's pixels sit exactly on its
    centre (identical rows, as a flat image region gives); everything then rotated at random.
    """
    rng = np.random.default_rng(seed)
    k = len(sizes)
    truth = np.repeat(np.arange(k), sizes)
    centres = np.eye(k, dim) * separation / np.sqrt(2)
    spread = np.zeros((len(truth), dim))
    spread[:, :spread_dims] = rng.normal(size=(len(truth), spread_dims))
    spread[rng.random(len(truth)) < copies] = 0.0
    rotation = np.linalg.qr(rng.normal(size=(dim, dim)))[0]
    return ((centres[truth] + spread) @ rotation).astype(np.float32), truth


@pytest.mark.parametrize("method", num_groups.ESTIMATORS)
def test_separated_groups_of_unequal_sizes_give_exact_k(method):
    found = [num_groups.estimate(groups(sizes, 10)[0], method) for sizes in SIZES.values()]
    assert found == list(SIZES)


@pytest.mark.parametrize("method", num_groups.ESTIMATORS)
def test_overlapping_groups_give_k_within_one(method):
    """Centres 4 standard deviations apart: the groups' tails mix along the line between centres."""
    found = np.array([num_groups.estimate(groups(sizes, 4, seed=1)[0], method) for sizes in SIZES.values()])
    assert np.abs(found - list(SIZES)).max() <= 1, found


@pytest.mark.parametrize("method", num_groups.ESTIMATORS)
def test_groups_with_many_identical_rows_give_exact_k(method):
    """70 % of every group's pixels are one identical row (the eigengap deduplicates them, with weights)."""
    found = [num_groups.estimate(groups(sizes, 10, copies=0.7)[0], method) for sizes in SIZES.values()]
    assert found == list(SIZES)


@pytest.mark.filterwarnings("error")  # no division warnings, no convergence warnings
@pytest.mark.parametrize("method", num_groups.ESTIMATORS)
def test_degenerate_features_give_a_valid_k(method):
    """All-identical or all-zero rows: the smallest k, 2. Fewer distinct rows than k_max: one group each. As many
    pixels as k_max, all distinct: k_max."""
    rng = np.random.default_rng(0)
    assert num_groups.estimate(np.ones((500, 57), np.float32), method) == 2
    assert num_groups.estimate(np.zeros((500, 57), np.float32), method) == 2
    assert num_groups.estimate(np.array([[0.0, 1.0], [-0.0, 1.0]] * 50, np.float32), method) == 2  # -0.0 == 0.0
    three = rng.normal(size=(3, 57))[rng.integers(0, 3, 600)]
    assert num_groups.estimate(three, method) == 3
    assert num_groups.estimate(rng.normal(size=(6, 4)), method, k_max=6) == 6
    assert num_groups.estimate(rng.normal(size=(2, 4)), method, k_max=2) == 2


@pytest.mark.parametrize("k_max", [2, 3, 8, 40])
def test_estimate_from_the_tree_is_the_ward_gap(k_max):
    rng = np.random.default_rng(k_max)
    for x in (groups(SIZES[3], 10, copies=0.5)[0][::8], rng.normal(size=(300, 9)), np.zeros((50, 3))):
        tree = linkage.ward_tree(x)
        k = num_groups.estimate_from_tree(tree, k_max)
        assert k == num_groups.estimate(x, "ward_gap", k_max)
        assert 2 <= k <= k_max


def test_scipys_cuts_of_ward_trees_are_cut_tree_at():
    """The silhouette cuts with SciPy's cut_tree, every k at once; clustering cuts with `linkage.cut_tree_at`."""
    from scipy.cluster.hierarchy import cut_tree

    x = groups(SIZES[4], 4, copies=0.3)[0][::4]  # identical rows: ties at height 0
    tree = linkage.ward_tree(x)
    cuts = cut_tree(tree, n_clusters=np.arange(2, 9))
    for i, k in enumerate(range(2, 9)):
        assert adjusted_rand_score(cuts[:, i], linkage.cut_tree_at(tree, k)) == 1.0
        assert len(np.unique(cuts[:, i])) == k


def test_ward_gap_is_the_largest_ratio_of_merge_heights():
    """A hand-made tree of 6 points, heights h_2..h_6 = 100, 50, 5, 4, 3: the ratios h_k / h_{k+1} for k = 2..5,
    2, 10, 1.25, 1.33, say k = 3; the differences, 50, 45, 1, 1, would say 2 (the root's merge is the highest)."""
    merges = np.array([[0, 1, 3.0, 2], [2, 3, 4.0, 2], [4, 6, 5.0, 3], [5, 7, 50.0, 3], [8, 9, 100.0, 6]])
    assert num_groups.merge_heights(merges, 5).tolist() == [100, 50, 5, 4, 3]
    assert num_groups.merge_heights(merges, 6).tolist() == [100, 50, 5, 4, 3, 0]  # h_7: 6 singletons
    assert num_groups.estimate_from_tree(merges, 5) == 3
    assert num_groups.estimate_from_tree(merges, 2) == 2


@pytest.mark.parametrize("method", ["eigengap", "silhouette"])
def test_subsampled_estimates_are_deterministic_for_a_seed(method):
    x = groups(SIZES[4], 4, seed=2)[0]
    assert num_groups.estimate(x, method, seed=3) == num_groups.estimate(x, method, seed=3)


def test_mean_silhouette_is_sklearns():
    from scipy.spatial.distance import cdist

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    x[10:20] = x[10]  # identical rows: zero distances inside a group
    distances = cdist(x, x)
    for labels in (rng.integers(0, 4, 60), np.r_[0, np.ones(59, int)], np.repeat([5, 2, 9], 20)):  # a singleton
        assert num_groups.mean_silhouette(distances, labels) == pytest.approx(
            silhouette_score(distances, labels, metric="precomputed"), abs=1e-12)
    with pytest.raises(ValueError, match="at least 2 groups, got 1"):
        num_groups.mean_silhouette(distances, np.zeros(60, int))


@pytest.mark.parametrize("estimator", num_groups.ESTIMATORS)
def test_cluster_with_estimated_k_gives_that_many_groups(estimator):
    x = np.stack([groups(SIZES[k], 10, seed=k)[0][::2] for k in (2, 4)])  # [2, 1024, 57]
    labels, ks = cluster.cluster_with_counts(x, None, "ward", estimator=estimator, workers=1)
    assert ks.dtype == np.int32 and labels.dtype == np.int32
    assert ks.tolist() == [2, 4]
    assert [len(np.unique(l)) for l in labels] == ks.tolist()
    for image, k, found in zip(x, ks, labels):  # Ward's partition at the estimated k, whoever made the tree
        expected = AgglomerativeClustering(n_clusters=int(k), linkage="ward").fit_predict(image)
        assert adjusted_rand_score(expected, found) == 1.0
    np.testing.assert_array_equal(cluster.cluster(x, None, "ward", estimator=estimator, workers=1), labels)


def test_given_k_clusters_as_before_and_is_returned():
    x = np.stack([groups(SIZES[3], 4, seed=s)[0][::4] for s in range(2)])
    for method in cluster.METHODS:
        labels, ks = cluster.cluster_with_counts(x, [3, 5], method, workers=1)
        np.testing.assert_array_equal(labels, cluster.cluster(x, [3, 5], method, workers=1))
        assert ks.tolist() == [3, 5]
    expected = AgglomerativeClustering(n_clusters=5, linkage="ward").fit_predict(x[1])
    assert adjusted_rand_score(expected, cluster.cluster(x, [3, 5], "ward", workers=1)[1]) == 1.0


def test_estimates_in_worker_processes_match_one_process():
    """The estimate runs where the image is clustered: in a worker process, seeded per image (seed + i)."""
    x = np.stack([groups(SIZES[k], 10, seed=k)[0][::4] for k in (3, 5)])
    one = cluster.cluster_with_counts(x, None, "kmeans", estimator="eigengap", seed=7, workers=1)
    two = cluster.cluster_with_counts(x, None, "kmeans", estimator="eigengap", seed=7, workers=2)
    np.testing.assert_array_equal(one[0], two[0])
    assert one[1].tolist() == two[1].tolist() == [3, 5]
    assert one[1][1] == num_groups.estimate(x[1], "eigengap", seed=8)


def test_bad_estimator_and_k_max_are_named():
    x = groups(SIZES[2], 10)[0][:100]
    with pytest.raises(ValueError, match=r"'gap'.*\('ward_gap', 'eigengap', 'silhouette'\)"):
        num_groups.estimate(x, "gap")
    with pytest.raises(ValueError, match="'gap'"):
        cluster.cluster(x[None], None, "ward", estimator="gap")
    for k_max in (1, 101):
        with pytest.raises(ValueError, match=rf"k_max must be an integer in \[2, 100\].*got {k_max}"):
            num_groups.estimate(x, "ward_gap", k_max)
        with pytest.raises(ValueError, match=rf"got {k_max}"):
            cluster.cluster(x[None], None, "ward", k_max=k_max)
        with pytest.raises(ValueError, match=rf"got {k_max}"):
            num_groups.estimate_from_tree(linkage.ward_tree(x), k_max)
    with pytest.raises(ValueError, match=r"integer in \[2, 100\].*got 4.0"):
        num_groups.check_k_max(4.0, 100)
    with pytest.raises(ValueError, match=r"\[pixels, features\]"):
        num_groups.estimate(x[None], "eigengap")
    x[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"non-finite.*\[3, 1\]"):
        num_groups.estimate(x, "silhouette")
