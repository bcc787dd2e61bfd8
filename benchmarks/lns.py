"""Benchmark: the LNS segmentation pipeline, the reference's way vs noisegroup's, on a whole test set, side by side.

    python -m benchmarks.lns                                   # kanizsa test (100 images), N = 40, k from masks
    python -m benchmarks.lns --checkpoint workdirs/lns/models/ae_kanizsa   # a trained model instead of a fresh one

Reference (restated from `segmentation.py` / `experiments.py`; needs `pip install torch==2.13.0`): one image at a
time, a Python loop of N decoder calls, differences, `F.normalize(dim=0)`, then scikit-learn's Ward clustering of
4096 pixels x 3(N-1) features. noisegroup: every image's N decodes, differences and normalisation in one jitted
program (`noisegroup.lns.sweep.setting_features`), then clustering: exact Ward spread over processes, scikit-learn k-means, or
batched k-means on the device. Clustering is timed on the same features for both (the reference's call is exactly
`AgglomerativeClustering(linkage="ward")` on them), so it compares algorithms, not inputs. Compilation is reported
apart. Timing does not depend on what the weights are, so a fresh model is the default.
"""

from __future__ import annotations

from noisegroup import malloc

malloc.reuse_freed_memory()  # before JAX starts its threads, as every entry point

import argparse  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from experiments.configs import train as train_configs  # noqa: E402
from noisegroup import atomic, metrics  # noqa: E402
from noisegroup.engine import loop  # noqa: E402
from noisegroup.lns import cluster, kmeans, sweep  # noqa: E402


def stopwatch(fn):
    start = time.perf_counter()
    out = fn()
    jax.block_until_ready(out) if isinstance(out, jax.Array) else None
    return out, time.perf_counter() - start


def reference_features(images: np.ndarray, noise_std: float, num_samples: int, latent_dim: int) -> tuple[float, int]:
    """Seconds for the reference's pre-clustering loop over `images` (PyTorch, batch 1, N sequential decodes)."""
    import torch
    import torch.nn.functional as F

    from benchmarks.train_step import torch_networks

    torch.manual_seed(42)
    _, encoder, decoder = torch_networks(vae=False)
    start = time.perf_counter()
    with torch.no_grad():
        for image in images:
            x = torch.from_numpy(image).permute(2, 0, 1)[None]
            mean = encoder(x)[:, :latent_dim]
            torch.sigmoid(decoder(mean))  # the unperturbed reconstruction, kept for output
            ys = [torch.sigmoid(decoder(mean + noise_std * torch.randn(1, latent_dim))) for _ in range(num_samples)]
            y = torch.cat(ys)  # [N, 3, 64, 64]
            d = F.normalize(y[:-1] - y[1:], dim=0)
            d.reshape(-1, 64 * 64).T.numpy()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="kanizsa")
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--noise-std", type=float, default=1e-3)
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--checkpoint", help="a training workdir (config.json + checkpoints) to load the model from")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()

    from datasets import good_gestalt as gg

    test = gg.load(args.dataset, "test")
    images, masks = test.images[: args.images], test.masks[: args.images]
    ks = cluster.num_clusters_from_masks(masks)
    if args.checkpoint:  # the newest checkpoint as it is: no data, no training
        config, state = loop.restore(args.checkpoint)
        params = jax.tree.map(lambda x: x[0], state.params)
    else:
        config = train_configs.get_config("paper").to_dict()
    _, trainer, _ = loop.build(config, (64, 64, 3))
    if not args.checkpoint:
        params = trainer.init(jax.random.key(0)).params
    graphdef, key = trainer.graphdef, jax.random.key(42)
    print(f"{args.dataset} test: {len(images)} images, N = {args.samples}, sigma = {args.noise_std}, k from masks "
          f"({np.bincount(ks).nonzero()[0].tolist()}), {args.workers} cores, backend {jax.default_backend()}\n")

    rows = {}
    # -- before clustering -------------------------------------------------------------------------------------
    run = lambda: sweep.setting_features(graphdef, params, images, key, args.noise_std, args.samples)  # noqa: E731
    _, compile_and_run = stopwatch(run)
    feats, ours_pre = stopwatch(run)
    feats = np.asarray(jax.device_get(feats))
    rows["ours: decode + features (one program)"] = ours_pre
    try:
        rows["reference: decode loop + features (PyTorch)"] = reference_features(
            images, args.noise_std, args.samples, 15)
    except ImportError:
        print("(PyTorch not installed: no reference decode column; pip install torch==2.13.0)")

    # -- clustering on the same features -----------------------------------------------------------------------
    from sklearn.cluster import AgglomerativeClustering

    def reference_ward():
        return np.stack([AgglomerativeClustering(n_clusters=int(k), linkage="ward").fit_predict(f)
                         for f, k in zip(feats, ks)])

    ref_labels, rows["reference: sklearn Ward, one image at a time"] = stopwatch(reference_ward)
    cluster.cluster(feats[:2], ks[:2], "ward", workers=args.workers)  # start the worker processes
    ward_labels, rows[f"ours: exact Ward, {args.workers} processes"] = stopwatch(
        lambda: cluster.cluster(feats, ks, "ward", workers=args.workers))
    _, rows["ours: exact Ward, 1 process"] = stopwatch(lambda: cluster.cluster(feats, ks, "ward", workers=1))
    _, rows["reference-style: sklearn k-means, one image at a time"] = stopwatch(
        lambda: cluster.cluster(feats, ks, "kmeans", workers=1))
    km_labels, rows[f"ours: sklearn k-means, {args.workers} processes"] = stopwatch(
        lambda: cluster.cluster(feats, ks, "kmeans", workers=args.workers))
    jax_km = lambda: kmeans.batch_kmeans(jnp.asarray(feats), ks, key)  # noqa: E731
    stopwatch(jax_km)
    jkm_labels, rows["ours: k-means in JAX, all images at once"] = stopwatch(jax_km)

    same = metrics.batch_ari(ward_labels.reshape(masks.shape), ref_labels.reshape(masks.shape))
    print(f"exact Ward: our partitions equal scikit-learn's on {int((same > 0.99999).sum())}/{len(same)} images")
    for name, labels in (("Ward", ward_labels), ("sklearn k-means", km_labels), ("JAX k-means", np.asarray(jkm_labels))):
        print(f"mean ARI with {name}: {metrics.batch_ari(labels.reshape(masks.shape), masks).mean():.3f}")
    print(f"\n{'stage':<58}{'seconds':>9}{'per image':>11}")
    for name, seconds in rows.items():
        print(f"{name:<58}{seconds:9.2f}{seconds / len(images):11.4f}")
    print(f"(ours, decode + features, first call incl. compilation: {compile_and_run:.2f} s)")

    ref_pre = rows.get("reference: decode loop + features (PyTorch)")
    ref_ward = rows["reference: sklearn Ward, one image at a time"]
    ratios = {}
    if ref_pre:
        ratios["before clustering"] = ref_pre / ours_pre
        ratios["whole pipeline, Ward"] = (ref_pre + ref_ward) / (ours_pre + rows[f"ours: exact Ward, {args.workers} processes"])
        ratios["whole pipeline, reference Ward vs our sklearn k-means"] = (ref_pre + ref_ward) / (
            ours_pre + rows[f"ours: sklearn k-means, {args.workers} processes"])
        ratios["whole pipeline, reference Ward vs our JAX k-means"] = (ref_pre + ref_ward) / (
            ours_pre + rows["ours: k-means in JAX, all images at once"])
    ratios["Ward clustering alone"] = ref_ward / rows[f"ours: exact Ward, {args.workers} processes"]
    print("\nspeed-ups (reference time / ours):")
    for name, ratio in ratios.items():
        print(f"  {name:<58}{ratio:7.1f}x")
    if args.json:
        atomic.write_json(args.json, {"seconds": rows, "speedups": ratios})


if __name__ == "__main__":
    main()
