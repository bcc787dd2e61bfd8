"""Benchmark: estimating each image's number of groups from its LNS features, against one Ward clustering of it.

    python -m benchmarks.num_groups                          # 5 proximity test images, shipped AE, sigma 0.1, N = 20
    python -m benchmarks.num_groups --images 10 --datasets proximity,kanizsa --model vae

Per image (the LNS features `[4096, 3(N-1)]` of the shipped model's seed 0, drawn as `sweep.evaluate` draws them):
the seconds of one exact Ward clustering at the mask's k (`cluster.ward_tree` + `cut_tree_at`, the cost the
estimators are held to), the seconds of each estimator of `noisegroup.lns.num_groups` and its ratio to Ward, and
its k against the mask's. "ward_gap" is timed as `estimate` runs it, tree included; clustering with Ward reuses that
tree, so there its cost is the few microseconds of `estimate_from_tree`. Everything runs on one thread, as a
clustering worker does, after one untimed pass (imports).
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np
from threadpoolctl import threadpool_limits

from datasets import good_gestalt as gg
from experiments.configs import lns as lns_configs
from noisegroup.lns import cluster, num_groups, pipeline, sweep


def stopwatch(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def ward_clustering(x: np.ndarray, k: int) -> np.ndarray:
    """One exact Ward clustering, as `cluster.cluster(..., "ward")` makes it in a worker."""
    return cluster.cut_tree_at(cluster.ward_tree(x), k)


def image_features(config: pipeline.LNSConfig, model: str, dataset: str, images: int, noise_std: float,
                   num_noise_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """(LNS features `[n, 4096, 3(N-1)]` of the first `images` test images, the masks' k `[n]`) for the shipped
    weights of (model, dataset), seed 0."""
    graphdef, params, _ = pipeline.model_params(config, None, model, dataset)  # shipped weights: no workdir
    test = gg.load(dataset, "test")
    params0 = jax.tree.map(lambda x: x[0], params)
    features = sweep.setting_features(graphdef, params0, test.images[:images], jax.random.key(0), noise_std,
                                      num_noise_samples, config.normalisation)
    return np.asarray(jax.device_get(features)), cluster.num_clusters_from_masks(test.masks[:images])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=5, help="test images per dataset")
    parser.add_argument("--datasets", default="proximity", help="comma-separated Good Gestalt datasets")
    parser.add_argument("--model", default="ae", help="ae or vae (the shipped weights in pretrained/)")
    parser.add_argument("--noise_std", type=float, default=0.1)
    parser.add_argument("--num_noise_samples", type=int, default=20)
    parser.add_argument("--k_max", type=int, default=num_groups.DEFAULT_K_MAX)
    args = parser.parse_args()
    config = pipeline.LNSConfig.from_mapping(lns_configs.get_config("default").to_dict())
    methods = num_groups.ESTIMATORS

    print(f"shipped {args.model}, sigma {args.noise_std}, N {args.num_noise_samples}, k in 2..{args.k_max}, "
          f"1 thread; seconds per image; ratio = estimator / Ward\n")
    header = f"{'dataset':<20}{'image':>6}{'k':>3}{'Ward s':>8}" + "".join(
        f"{m + ' k':>14}{'s':>7}{'ratio':>7}" for m in methods)
    print(header)
    print("-" * len(header))
    found, ratios = {m: [] for m in methods}, {m: [] for m in methods}
    truths = []
    for dataset in args.datasets.split(","):
        features, ks = image_features(config, args.model, dataset, args.images, args.noise_std,
                                      args.num_noise_samples)
        with threadpool_limits(1):
            for method in methods:  # untimed: first-call imports
                num_groups.estimate(features[0][:64], method, min(args.k_max, 64))
            for i, (x, k) in enumerate(zip(features, ks)):
                _, ward = stopwatch(ward_clustering, x, int(k))
                row = f"{dataset:<20}{i:>6}{k:>3}{ward:>8.2f}"
                for method in methods:
                    k_hat, seconds = stopwatch(num_groups.estimate, x, method, args.k_max, seed=i)
                    found[method].append(k_hat)
                    ratios[method].append(seconds / ward)
                    row += f"{k_hat:>14}{seconds:>7.2f}{seconds / ward:>7.2f}"
                truths.append(int(k))
                print(row, flush=True)
    truths = np.array(truths)
    print("-" * len(header))
    summary = f"{'exact k / max ratio':<37}"
    for method in methods:
        exact = int((np.array(found[method]) == truths).sum())
        summary += f"{f'{exact}/{len(truths)}':>14}{'':>7}{max(ratios[method]):>7.2f}"
    print(summary)
    print(f"{'mean |k_hat - k|':<37}" + "".join(
        f"{np.abs(np.array(found[m]) - truths).mean():>14.2f}{'':>14}" for m in methods))


if __name__ == "__main__":
    main()
