"""Latent Noise Segmentation end to end: trains (or resumes) the models, segments every Good Gestalt test set,
prints ARI per dataset and model next to the paper's, and writes results and figures to the workdir.

    python -m experiments.lns                                              # the default config, workdirs/lns
    python -m experiments.lns --config=experiments/configs/lns.py:paper --workdir=workdirs/lns_paper
    python -m experiments.lns --config.clustering=ward --config.seeds="(0, 1, 2)"

Outputs: results.json, results.csv, segmentations.png, reconstructions.png, sweep.png (umap.png with umap-learn),
models/<model>_<dataset>/ (checkpoints), segmentation/<model>_<dataset>.npz. Re-running resumes.
With --config.features=tangent (the Jacobian limit, no sigma or N): segmentations_tangent.png, jacobian_rows.png,
gram_bridge.png and segmentation/<model>_<dataset>_tangent.npz instead.
"""

from noisegroup import malloc

malloc.reuse_freed_memory()  # before JAX starts its threads (noisegroup/malloc.py says why)

import time  # noqa: E402

from absl import flags  # noqa: E402

from noisegroup import cli  # noqa: E402
from noisegroup.lns import pipeline, results  # noqa: E402

_CONFIG = cli.define_config_file("experiments/configs/lns.py:default", "LNS experiment config")
_WORKDIR = flags.DEFINE_string("workdir", "workdirs/lns", "run directory (models, segmentations, results, figures)")


def main(argv):
    del argv
    with cli.config_errors():  # every key, value and shipped file checked before any work, and parsed once
        config = pipeline.LNSConfig.from_mapping(_CONFIG.value.to_dict())
    tic = time.perf_counter()
    rows = pipeline.run(config, _WORKDIR.value)
    minutes = (time.perf_counter() - tic) / 60
    for protocol, title in (("paper", "best setting chosen on test (the paper's protocol)"),
                            ("fair", "setting chosen on test_iid, reported on test")):
        if any(r["protocol"] == protocol for r in rows):
            baselines = " (baselines: the argmax of their masks)" if config.baselines else ""
            print(f"\nARI on the test sets, {config.clustering} clustering{baselines}, {title}; (paper's value):")
            print(results.format_table(rows, protocol))
    print(f"\n{minutes:.1f} min; results and figures in {_WORKDIR.value}/")


if __name__ == "__main__":
    cli.run(main)
