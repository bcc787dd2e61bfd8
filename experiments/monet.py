"""The MONet loss ablation of Komatsu, Ohmura & Kuniyoshi end to end: trains (or resumes) every condition's seeds on
Multi-dSprites, scores the attention masks on held-out images, prints the medians next to the paper's and the
paper's tests between conditions, and writes results and figures to the workdir.

    python -m experiments.monet                                             # the default config, workdirs/monet
    python -m experiments.monet --config=experiments/configs/monet.py:paper --workdir=workdirs/monet_paper
    python -m experiments.monet --config.conditions="('nll_m', 'ir_m')" --config.seeds="(1, 2, 3, 4, 5, 6)"

Outputs: results.json, results.csv, boxplots.png, slots.png, training.png, models/<condition>/ (checkpoints,
metrics.jsonl), evaluation/<condition>.npz. Re-running resumes.
"""

from noisegroup.engine import malloc

malloc.reuse_freed_memory()  # before JAX starts its threads (noisegroup/engine/malloc.py says why)

import time  # noqa: E402

from absl import flags  # noqa: E402

from noisegroup import cli  # noqa: E402
from noisegroup.komatsu import pipeline  # noqa: E402

_CONFIG = cli.define_config_file("experiments/configs/monet.py:default", "MONet ablation config")
_WORKDIR = flags.DEFINE_string("workdir", "workdirs/monet", "run directory (models, evaluations, results, figures)")


def main(argv):
    del argv
    with cli.config_errors():  # every key and value checked before any work
        pipeline.AblationConfig.from_mapping(_CONFIG.value.to_dict())
    tic = time.perf_counter()
    results = pipeline.run(_CONFIG.value.to_dict(), _WORKDIR.value, log=lambda line: print(line, flush=True))
    print()
    print(pipeline.format_report(results))
    print(f"\n{(time.perf_counter() - tic) / 60:.1f} min; results and figures in {_WORKDIR.value}/")


if __name__ == "__main__":
    cli.run(main)
