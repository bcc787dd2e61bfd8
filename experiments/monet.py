"""The MONet loss ablation of Komatsu, Ohmura & Kuniyoshi end to end: trains (or resumes) every condition's seeds on
Multi-dSprites, scores the attention masks on held-out images, prints the medians next to the paper's and the
paper's tests between conditions, and writes results and figures to the workdir.

    python -m experiments.monet                                             # the default config, workdirs/monet
    python -m experiments.monet --config=experiments/configs/monet.py:paper --workdir=workdirs/monet_paper
    python -m experiments.monet --config.selected="('nll_m', 'ir_m')" --config.seeds="(1, 2, 3, 4, 5, 6)"
    python -m experiments.monet --config.conditions.ir_m.loss_weights.mask_kl=0.5   # a weight of the table
    python -m experiments.monet "--config.conditions['11'].loss_weights.kl=0.1"     # names that are not identifiers

Outputs: results.json, results.csv, boxplots.png, slots.png, training.png, models/<condition>/ (checkpoints,
metrics.jsonl), evaluation/<condition>.npz. Re-running resumes.
"""

from noisegroup import malloc

malloc.reuse_freed_memory()  # before JAX starts its threads (noisegroup/malloc.py says why)

import time  # noqa: E402

from absl import flags  # noqa: E402

from noisegroup import cli  # noqa: E402
from noisegroup.komatsu import pipeline  # noqa: E402

_CONFIG = cli.define_config_file("experiments/configs/monet.py:default", "MONet ablation config")
_WORKDIR = flags.DEFINE_string("workdir", "workdirs/monet", "run directory (models, evaluations, results, figures)")


def main(argv):
    del argv
    with cli.config_errors():  # every key and value checked before any work, and parsed once
        config = pipeline.AblationConfig.from_mapping(_CONFIG.value.to_dict())
    tic = time.perf_counter()
    results = pipeline.run(config, _WORKDIR.value, log=lambda line: print(line, flush=True))
    print()
    print(pipeline.format_report(results))
    print(f"\n{(time.perf_counter() - tic) / 60:.1f} min; results and figures in {_WORKDIR.value}/")


if __name__ == "__main__":
    cli.run(main)
