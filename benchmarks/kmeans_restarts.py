"""Benchmark: k-means with 1 against 10 initialisations on the same LNS features, side by side (a segmentation
lever: scikit-learn's default was 10 when the paper was written, 1 for k-means++ since 1.4).

    python -m benchmarks.kmeans_restarts                       # shipped AEs, each dataset at sigma 0.5, N = 40
    python -m benchmarks.kmeans_restarts --lns_workdir=workdirs/lns   # each dataset at the setting that run chose

Per dataset: the shipped AE's LNS features of the 100 test images at one setting (the same draws for both), then
k-means with k from each mask, 1 and 10 initialisations (the lowest inertia wins), mean test ARI +- SEM, the
paired difference and the clustering time of each.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from datasets import good_gestalt as gg
from experiments.configs import lns as lns_configs
from noisegroup import metrics
from noisegroup.lns import cluster, pipeline, results, sweep


def setting_of(lns_workdir: str | None, dataset: str, config) -> tuple[float, int]:
    if not lns_workdir:
        return 0.5, 40
    with np.load(results.segmentation_path(lns_workdir, "ae", dataset)) as seg:
        i, j = seg["paper_setting"]
    return float(config.noise_stds[i]), int(config.num_noise_samples[j])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lns_workdir", default="", help="take each dataset's setting from this default LNS run")
    parser.add_argument("--restarts", type=int, default=10)
    args = parser.parse_args()
    config = pipeline.LNSConfig.from_mapping(lns_configs.get_config("default").to_dict())
    print(f"{'dataset':<20}{'setting':>14}{'1 init':>16}{f'{args.restarts} inits':>16}{'difference':>18}"
          f"{'time 1 / n':>16}")
    for dataset in gg.NAMES:
        graphdef, params, _ = pipeline.model_params(config, None, "ae", dataset)  # the shipped weights: no workdir
        data = gg.load(dataset, "test")
        sigma, n = setting_of(args.lns_workdir, dataset, config)
        params0 = jax.tree.map(lambda x: x[0], params)
        features = np.asarray(sweep.setting_features(graphdef, params0, data.images, jax.random.key(42),
                                                     sigma, n, config.normalisation))
        ks = cluster.num_clusters_from_masks(data.masks)
        aris, seconds = [], []
        for restarts in (1, args.restarts):
            tic = time.perf_counter()
            labels = cluster.cluster(features, ks, "kmeans", seed=0, workers=1, restarts=restarts)
            seconds.append(time.perf_counter() - tic)
            aris.append(metrics.batch_ari(labels.reshape(data.masks.shape), data.masks))
        diff = aris[1] - aris[0]
        sem = lambda x: x.std(ddof=1) / np.sqrt(len(x))  # noqa: E731
        print(f"{dataset:<20}{f'({sigma:g}, {n})':>14}{aris[0].mean():>10.3f} +-{sem(aris[0]):.3f}"
              f"{aris[1].mean():>10.3f} +-{sem(aris[1]):.3f}{diff.mean():>+12.3f} +-{sem(diff):.3f}"
              f"{seconds[0]:>8.1f} / {seconds[1]:.1f} s")


if __name__ == "__main__":
    main()
