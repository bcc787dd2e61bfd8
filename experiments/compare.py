"""Every method on every dataset under one evaluation: trains (or resumes) what needs training, segments every test
set, prints the methods x datasets tables (ARI and FG-ARI, the papers' numbers in brackets where a paper has one) and
each cell's budget, and writes results and a side-by-side figure per dataset to the workdir.

    python -m experiments.compare                                                     # default config, workdirs/compare
    python -m experiments.compare --config=experiments/configs/compare.py:quick --workdir=/tmp/compare_quick
    python -m experiments.compare --config.methods="('lns_ae_ward', 'slot_attention')" --config.datasets="('closure',)"

Outputs: results.json, results.csv, figures/<dataset>.png, cells/, models/. Re-running resumes; a cell computed under
another config is refused, naming the key.
"""

from noisegroup import malloc

malloc.reuse_freed_memory()  # before JAX starts its threads (noisegroup/malloc.py says why)

import time  # noqa: E402

from absl import flags  # noqa: E402

from noisegroup import cli  # noqa: E402
from noisegroup.compare import CompareConfig, report, run  # noqa: E402

_CONFIG = cli.define_config_file("experiments/configs/compare.py:default", "comparison config")
_WORKDIR = flags.DEFINE_string("workdir", "workdirs/compare", "run directory (models, cells, results, figures)")


def main(argv):
    del argv
    with cli.config_errors():  # every key, name and training config checked before any work, and parsed once
        config = CompareConfig.from_mapping(_CONFIG.value.to_dict())
    tic = time.perf_counter()
    rows = run(config, _WORKDIR.value)
    minutes = (time.perf_counter() - tic) / 60
    for metric, title in (("ari", "ARI (all pixels)"), ("ari_fg", "FG-ARI (foreground pixels)")):
        print(f"\n{title} on the test sets, mean over seeds and images; (paper's value):")
        print(report.table(rows, config.methods, config.datasets, metric))
    print("\nBudget of each cell (training steps; wall-clock minutes of training and evaluation here):")
    print(report.budget_table(rows, config.methods, config.datasets))
    print(f"\n{minutes:.1f} min; results and figures in {_WORKDIR.value}/")


if __name__ == "__main__":
    cli.run(main)
