"""Benchmark: tangent-limit LNS (the decoder's Jacobian, z forward-mode products an image) against LNS, in one run.

    python -m benchmarks.tangent                        # kanizsa test (100 images), the shipped AE (pretrained/)
    python -m benchmarks.tangent --dataset closure --json tangent.json

On one dataset's test images, with the weights the default LNS run segments with (`pretrained/ae_<dataset>.npz`, the
default config's training recipe, loaded as `noisegroup.lns.pipeline.model_params` loads them), it times:

* tangent features (`noisegroup.lns.tangent.tangent_features`): the Jacobian by `jax.jvp` vmapped over the z latent
  directions, with the fast CPU conv layers' forward-mode twins ("fast_jvp") and with XLA's native layers;
* LNS features at one setting, N = 40 (`sweep.setting_features`: N decodes an image);
* the default's full (sigma, N) sweep on `test` (`sweep.evaluate`: 4 sigmas x N up to 40 decodes an image,
  then 12 feature sets clustered), against the tangent path end to end (`tangent.evaluate`: one feature set,
  clustered once);

each program's first call (compilation included) apart from a second, timed call. Then the ARI (k-means, k from
the masks) of the tangent features against the best point of the LNS grid (chosen on test: the paper's protocol).
"""

from __future__ import annotations

from noisegroup import malloc

malloc.reuse_freed_memory()  # before JAX starts its threads, as every entry point

import argparse  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402

from experiments.configs import lns as lns_configs  # noqa: E402
from noisegroup import atomic, stats  # noqa: E402
from noisegroup.lns import pipeline, sweep, tangent  # noqa: E402


def stopwatch(fn):
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    return out, time.perf_counter() - start


def first_and_second(fn):
    """(result, seconds of the first call (compilation included), seconds of a second call)."""
    _, first = stopwatch(fn)
    out, second = stopwatch(fn)
    return out, first, second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="kanizsa")
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--noise-std", type=float, default=1e-3, help="sigma of the one LNS setting timed")
    parser.add_argument("--samples", type=int, default=40, help="N of the one LNS setting timed")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)), help="clustering processes")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()

    from datasets import good_gestalt as gg

    config = lns_configs.get_config("default").to_dict()
    config.update(datasets=(args.dataset,), progress=False, cluster_workers=args.workers)
    config = pipeline.LNSConfig.from_mapping(config)
    graphdef, stacked, _ = pipeline.model_params(config, Path("."), "ae", args.dataset)
    params = jax.tree.map(lambda x: x[0], stacked)
    test = gg.load(args.dataset, "test")
    images, masks = test.images[: args.images], test.masks[: args.images]
    key = jax.random.key(int(config.lns_seed))
    print(f"{args.dataset} test: {len(images)} images, weights {config.weights_path('ae', args.dataset)}, "
          f"{len(os.sched_getaffinity(0))} cores, backend {jax.default_backend()}; k-means, k from the masks\n")

    rows: dict[str, tuple[float, float]] = {}  # name: (first call incl. compilation, second call)
    for impl in ("fast_jvp", "native"):
        _, *rows[f"tangent features, {impl} layers (z = 15 jvps an image)"] = first_and_second(
            lambda impl=impl: tangent.tangent_features(graphdef, params, images, config.normalisation, conv_impl=impl))
    _, *rows[f"LNS features, one setting (sigma {args.noise_std:g}, N = {args.samples})"] = first_and_second(
        lambda: sweep.setting_features(graphdef, params, images, key, args.noise_std, args.samples,
                                       config.normalisation))

    settings = config.sweep
    grid = f"{len(settings.noise_stds)} sigmas x N in {settings.num_noise_samples}"
    sweep_run = lambda: sweep.evaluate(graphdef, stacked, images, masks, key, settings)  # noqa: E731
    tangent_run = lambda: tangent.evaluate(graphdef, stacked, images, masks, key, settings)  # noqa: E731
    lns_result, *rows[f"LNS full sweep + clustering ({grid})"] = first_and_second(sweep_run)
    tangent_result, *rows["tangent features + clustering (one feature set)"] = first_and_second(tangent_run)

    print(f"{'stage':<62}{'1st call (s)':>13}{'2nd call (s)':>13}{'compile (s)':>12}")
    for name, (first, second) in rows.items():
        print(f"{name:<62}{first:13.2f}{second:13.2f}{max(first - second, 0.0):12.2f}")
    seconds = {name: second for name, (_, second) in rows.items()}
    names = list(rows)
    print("\nspeed-ups (second calls):")
    ratios = {
        "tangent features: fast_jvp vs native layers": seconds[names[1]] / seconds[names[0]],
        f"tangent features vs one LNS setting at N = {args.samples}": seconds[names[2]] / seconds[names[0]],
        "tangent end to end vs the full LNS sweep end to end": seconds[names[3]] / seconds[names[4]],
    }
    for name, ratio in ratios.items():
        print(f"  {name:<62}{ratio:7.1f}x")

    best = stats.select_setting(lns_result.ari)
    lns_ari = stats.summarise(lns_result.ari, best)
    tangent_ari = stats.mean_sem(tangent_result.ari)
    sigma, n = settings.noise_stds[best[0]], settings.num_noise_samples[best[1]]
    print(f"\nmean test ARI +- SEM, {args.dataset}, k-means (1 init):")
    print(f"  tangent limit (no setting to choose)              {tangent_ari['mean']:.3f} +- {tangent_ari['sem']:.3f}")
    print(f"  LNS, best grid point (sigma {sigma:g}, N = {n}) on test  {lns_ari['mean']:.3f} +- {lns_ari['sem']:.3f}")
    if args.json:
        atomic.write_json(args.json, {"seconds": {k: {"first": f, "second": s} for k, (f, s) in rows.items()},
                                      "speedups": ratios, "ari": {"tangent": tangent_ari["mean"],
                                                                  "lns_best": lns_ari["mean"],
                                                                  "lns_best_setting": [sigma, n]}})


if __name__ == "__main__":
    main()
