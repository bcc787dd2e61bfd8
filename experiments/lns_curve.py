"""ARI against training steps: segments the test set with every checkpoint a training run kept, to see what the
features need (issue: LNS fidelity on a budget). Run it beside or after a training run; re-running evaluates only
the checkpoints not yet in the curve.

    python -m experiments.train --config.dataset=proximity --config.checkpoint_every=1000 \\
        --config.keep_checkpoints=30 --workdir=workdirs/curve_prox          # keep every checkpoint
    python -m experiments.lns_curve --runs=workdirs/curve_prox               # -> workdirs/curve_prox/curve.json
    python -m experiments.lns_curve --runs=workdirs/a,workdirs/b --plot=curves.png   # several runs, one figure

Per checkpoint (seed 0; the moving average of the weights when the run keeps one): LNS on the run's dataset's test
images over a small (sigma, N) grid, k-means with k from each mask, mean ARI at the best setting (the paper's
protocol) and at each setting; the test reconstruction error (mean squared error per pixel value); the share of
all-zero feature pixels; the coherence of the ground-truth groups in feature space at the best setting
(`noisegroup.lns.coherence`: the background's spread against its distance to the objects, the objects' spread).
"""

import json
import time
from pathlib import Path

import jax
import numpy as np
from absl import flags

from datasets import good_gestalt as gg
from noisegroup import atomic, cli
from noisegroup.engine import checkpoint, loop
from noisegroup.errors import BadInputError
from noisegroup.lns import coherence, results, sweep

_RUNS = flags.DEFINE_list("runs", None, "training workdirs (comma-separated)")
_NOISE_STDS = flags.DEFINE_list("noise_stds", ["0.01", "0.1", "0.5"], "sigma grid")
_NS = flags.DEFINE_list("num_noise_samples", ["20"], "N grid")
_TEST_LIMIT = flags.DEFINE_integer("test_limit", 100, "test images")
_RESTARTS = flags.DEFINE_integer("kmeans_restarts", 1, "k-means initialisations per image")
_EVERY = flags.DEFINE_integer("every", 1, "evaluate every k-th kept checkpoint")
_PLOT = flags.DEFINE_string("plot", "", "figure path (default: <first run>/curve.png)")


def checkpoint_steps(workdir: Path) -> list[int]:
    """Finished checkpoints of a run (read-only: this may run beside the live training run)."""
    if not (workdir / "checkpoints").exists():
        return []
    ckpt = checkpoint.Checkpointer(workdir / "checkpoints", read_only=True)
    try:
        return ckpt.steps()
    finally:
        ckpt.close()


def evaluate_step(workdir: Path, step: int, settings: sweep.SweepSettings, images, masks) -> dict:
    config, state = loop.restore(workdir, step=step)
    _, trainer, _ = loop.build(config, images.shape[1:])
    params = jax.tree.map(lambda x: x[:1], state.inference_params)
    key = jax.random.key(42)
    result = sweep.evaluate(trainer.graphdef, params, images, masks, key, settings)
    mean = result.ari[0].mean(-1)  # [sigma, N]
    best = results.best_setting(result.ari[:1])  # the paper's selection, seed 0
    per_image = result.ari[0][best]  # [b]
    sigma, n = float(settings.noise_stds[best[0]]), int(settings.num_noise_samples[best[1]])
    # The features at the best setting, as `evaluate` clustered them (seed 0's key), for their coherence.
    feats = sweep.setting_features(trainer.graphdef, jax.tree.map(lambda x: x[0], params), images,
                                   jax.random.fold_in(key, 0), sigma, n, settings.normalisation)
    return {"step": step, "ari": float(mean[best]), "sem": float(per_image.std(ddof=1) / np.sqrt(len(per_image))),
            "setting": [sigma, n], "ari_grid": mean.tolist(),
            "mse": float(np.mean((result.reconstructions[0] - images) ** 2)),
            "zero_features": float(result.zero_feature_fraction[0][best].mean()),
            "coherence": coherence.summary(np.asarray(feats), masks)}


def plot(curves: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_ari, ax_mse) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, points in curves.items():
        steps = [p["step"] for p in points]
        ax_ari.errorbar(steps, [p["ari"] for p in points], [p["sem"] for p in points], marker="o", ms=3, label=name)
        ax_mse.plot(steps, [p["mse"] for p in points], marker="o", ms=3, label=name)
    ax_ari.set(xlabel="training step", ylabel="test ARI (best setting, k-means)", ylim=(0, 1))
    ax_mse.set(xlabel="training step", ylabel="test reconstruction MSE", yscale="log")
    ax_ari.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv):
    del argv
    if not _RUNS.value:
        raise BadInputError("--runs is required")
    with cli.config_errors():
        settings = sweep.SweepSettings(noise_stds=tuple(float(s) for s in _NOISE_STDS.value),
                                       num_noise_samples=tuple(int(n) for n in _NS.value), method="kmeans",
                                       kmeans_restarts=_RESTARTS.value, workers=1)
    from tqdm.auto import tqdm

    curves = {}
    for run in map(Path, _RUNS.value):
        path = run / "curve.json"
        key = {"noise_stds": list(settings.noise_stds), "num_noise_samples": list(settings.num_noise_samples),
               "test_limit": _TEST_LIMIT.value, "kmeans_restarts": _RESTARTS.value}  # as JSON reads it back
        cached = json.loads(path.read_text()) if path.exists() else {}
        points = {p["step"]: p for p in cached.get("points", [])} if cached.get("settings") == key else {}
        dataset = json.loads((run / "config.json").read_text())["dataset"]
        data = gg.load(dataset, "test")
        images, masks = data.images[:_TEST_LIMIT.value], data.masks[:_TEST_LIMIT.value]
        todo = [s for s in checkpoint_steps(run)[::-1][::_EVERY.value][::-1] if s not in points]
        for step in tqdm(todo, desc=f"{run.name}: checkpoints", unit="ckpt"):
            tic = time.perf_counter()
            points[step] = evaluate_step(run, step, settings, images, masks)
            points[step]["seconds"] = time.perf_counter() - tic
            atomic.write_text(path, json.dumps({"settings": key, "dataset": dataset,
                                                "points": [points[s] for s in sorted(points)]}, indent=1))
        curves[run.name] = [points[s] for s in sorted(points)]
        print(f"\n{run} ({dataset}): step, best-setting ARI (sigma, N), test MSE, feature coherence there "
              f"(medians: background spread / separation, background spread, object spread)")
        for p in curves[run.name]:
            c = p.get("coherence")  # absent from points cached before it was measured
            spreads = "" if c is None else (f"  {c['ratio']:.2f}  {c['background_spread']:.2f}  "
                                            f"{c['object_spread']:.2f}")
            print(f"  {p['step']:>7}  {p['ari']:.3f} +- {p['sem']:.3f}  ({p['setting'][0]:g}, {p['setting'][1]})"
                  f"  {p['mse']:.5f}{spreads}")
    figure = Path(_PLOT.value) if _PLOT.value else Path(_RUNS.value[0]) / "curve.png"
    plot(curves, figure)
    print(f"\n{figure}")


if __name__ == "__main__":
    cli.run(main)
