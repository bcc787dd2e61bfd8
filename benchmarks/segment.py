"""Benchmark: `noisegroup.lns.segment` (one call) against the experiment pipeline's `sweep.evaluate` at the same
setting, on the same images, side by side: the same labels, and the time of each.

    python -m benchmarks.segment                           # shipped VAE, proximity test, 100 images, k-means and Ward
    python -m benchmarks.segment --images 25 --methods kmeans

Both are timed warm (a first call compiles the decoder); the clustering is the same code (`sweep.segment`), so the
ratio measures what `segment` adds around it (checks, chunking, the features it keeps).
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from datasets import good_gestalt as gg
from noisegroup import lns
from noisegroup.lns import cluster, sweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="proximity")
    parser.add_argument("--model", default="vae")
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--methods", default="kmeans,ward")
    parser.add_argument("--noise_std", type=float, default=0.1)
    parser.add_argument("--num_noise_samples", type=int, default=20)
    args = parser.parse_args()
    graphdef, params = lns.load_model(f"pretrained/{args.model}_{args.dataset}.npz")
    stacked = jax.tree.map(lambda v: v[None], params)
    test = gg.load(args.dataset, "test")
    images, masks = test.images[: args.images], test.masks[: args.images]
    ks = cluster.num_clusters_from_masks(masks)
    key = jax.random.key(42)
    print(f"{args.model} on {args.dataset}: {len(images)} test images, sigma {args.noise_std}, "
          f"N {args.num_noise_samples}, {jax.devices()[0].platform}")
    print(f"{'clustering':<12}{'pipeline s':>12}{'segment s':>12}{'ratio':>8}{'same labels':>13}")
    for method in args.methods.split(","):
        settings = sweep.SweepSettings(noise_stds=(args.noise_std,), num_noise_samples=(args.num_noise_samples,),
                                       method=method)

        def pipeline_run():
            return sweep.evaluate(graphdef, stacked, images, masks, key, settings, keep_labels=True).labels[0, 0, 0]

        def segment_run():
            return lns.segment((graphdef, params), images, key=key, num_groups=ks, noise_std=args.noise_std,
                               num_noise_samples=args.num_noise_samples, clustering=method).labels

        pipeline_run(), segment_run()  # compile both
        tic = time.perf_counter()
        want = pipeline_run()
        pipeline_s = time.perf_counter() - tic
        tic = time.perf_counter()
        got = segment_run()
        segment_s = time.perf_counter() - tic
        print(f"{method:<12}{pipeline_s:>12.2f}{segment_s:>12.2f}{segment_s / pipeline_s:>8.2f}"
              f"{str(bool(np.array_equal(got, want))):>13}")


if __name__ == "__main__":
    main()
