"""Why a dataset's LNS ARI is what it is: the coherence of the true groups in feature space, per dataset and model,
at the setting a finished LNS run chose (paper's protocol), next to its ARI.

    python -m experiments.lns                                           # any LNS run with shipped weights ...
    python -m experiments.lns_coherence --workdir=workdirs/lns          # ... then this, on the same workdir

For each (dataset, model) row of `<workdir>/results.json`: the LNS features of the first `--test_limit` test images
at the row's (sigma, N) with the run's noise key (seed 0), and the medians over images of
`noisegroup.lns.coherence`: the background's spread, its distance to the objects, their ratio (small: the
background is one tight cluster away from the objects; near or above 1: k-means splits the background, which is
most of the pixels), and the objects' own spread (3 means unrelated directions under the reference's per-channel
normalisation). Writes `<workdir>/coherence.json` and `coherence.png` (ARI against both; when the run makes
figures). Needs the run's weights: `pretrained` runs only.
"""

import json
from pathlib import Path

import jax
import numpy as np
from absl import flags

from datasets import good_gestalt as gg
from noisegroup import atomic, cli
from noisegroup.engine import loop, pretrained
from noisegroup.lns import coherence, pipeline, sweep
from noisegroup.lns.pipeline import LNSConfig

_WORKDIR = flags.DEFINE_string("workdir", "workdirs/lns", "a finished LNS run's workdir (results.json)")
_TEST_LIMIT = flags.DEFINE_integer("test_limit", 100, "test images")


def main(argv):
    del argv
    workdir = Path(_WORKDIR.value)
    with cli.config_errors():
        results = json.loads((workdir / "results.json").read_text())
        config = LNSConfig.from_mapping(results["config"])
        if not config.pretrained:
            raise ValueError(f"{workdir} trained its own models; lns_coherence reads shipped weights only "
                             f"(--config.pretrained)")
    key = jax.random.key(int(config.lns_seed))
    rows = []
    print("dataset / model              ARI  (sigma, N)   bg spread / separation   bg spread   object spread")
    for r in results["rows"]:
        if r["protocol"] != "paper" or r["model"] not in config.models:
            continue
        dataset, model = r["dataset"], r["model"]
        run = config.run_configs[(model, dataset)]
        _, trainer, _ = loop.build(run, pipeline.GESTALT_IMAGE_SHAPE)
        params = jax.tree.map(lambda x: x[0], pretrained.load(config.weights_path(model, dataset), run))
        data = gg.load(dataset, "test")
        images, masks = data.images[:_TEST_LIMIT.value], data.masks[:_TEST_LIMIT.value]
        # The run's key of this (model, dataset), then `segment_model`'s test sweep and seed 0.
        model_key = pipeline.model_key(key, model, dataset)
        features = sweep.setting_features(trainer.graphdef, params, images,
                                          jax.random.fold_in(jax.random.fold_in(model_key, 0), 0), r["noise_std"],
                                          r["num_noise_samples"], config.normalisation)
        c = coherence.summary(np.asarray(features), masks)
        rows.append({"dataset": dataset, "model": model, "ari": r["ari"], "noise_std": r["noise_std"],
                     "num_noise_samples": r["num_noise_samples"], **c})
        print(f"{dataset + ' / ' + model:<26} {r['ari']:6.3f}  ({r['noise_std']:g}, {r['num_noise_samples']})"
              f"  {c['ratio']:14.2f}  {c['background_spread']:14.2f}  {c['object_spread']:14.2f}", flush=True)
    atomic.write_json(workdir / "coherence.json", {"test_limit": _TEST_LIMIT.value, "rows": rows})
    if config.figures and rows:
        plot(rows, workdir / "coherence.png")
    print(f"\n{workdir / 'coherence.json'}")


def plot(rows: list[dict], path: Path) -> None:
    """ARI against the background's spread and against its ratio to the separation, one labelled point per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], "background_spread", "background spread (3: unrelated directions)"),
                           (axes[1], "ratio", "background spread / separation from the objects")):
        for r in rows:
            marker = "o" if r["model"] == "ae" else "s"
            ax.scatter(r[key], r["ari"], marker=marker, color="C0" if r["model"] == "ae" else "C1")
            ax.annotate(f"{r['dataset'][:4]} {r['model']}", (r[key], r["ari"]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
        ax.set(xlabel=label, ylabel="test ARI at the chosen setting", ylim=(-0.05, 1.0))
    axes[1].set_xscale("log")
    fig.suptitle("coherence of the true groups in LNS feature space (medians over test images)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    cli.run(main)
