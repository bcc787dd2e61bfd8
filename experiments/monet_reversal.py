"""Why our CPU runs reverse Komatsu's NLL+M vs IR+M order (issue 33): every study of
``experiments/configs/monet_reversal.py`` trained (or resumed) in turn, then one table and the curves.

    python -m experiments.monet_reversal                                   # every study (hours on 2 cores)
    python -m experiments.monet_reversal --studies=narrow,sigma            # some; two processes can share a workdir
    python -m experiments.monet_reversal --studies= --workdir=workdirs/monet_reversal   # only the table and figure

Outputs in the workdir: <study>/ (a MONet ablation run: results, figures, models; `budget.json` its cost over
every call), summary.md (the table), summary.json, curves.png (validation ARI and FG-ARI against the step).
"""

from noisegroup import malloc

malloc.reuse_freed_memory()  # before JAX starts its threads (noisegroup/malloc.py says why)

from pathlib import Path  # noqa: E402

from absl import flags  # noqa: E402

from experiments.configs import monet_reversal as configs  # noqa: E402
from noisegroup import atomic, cli  # noqa: E402
from noisegroup.komatsu import pipeline, reversal  # noqa: E402

_STUDIES = flags.DEFINE_list("studies", list(configs.STUDIES), f"studies to run, of {list(configs.STUDIES)}")
_WORKDIR = flags.DEFINE_string("workdir", "workdirs/monet_reversal", "one folder per study, and the summary")


def main(argv):
    del argv
    workdir = Path(_WORKDIR.value)
    with cli.config_errors():  # every study's config checked before any work
        unknown = [s for s in _STUDIES.value if s not in configs.STUDIES]
        if unknown:
            raise ValueError(f"unknown studies {unknown}; expected some of {list(configs.STUDIES)}")
        studies = {s: pipeline.AblationConfig.from_mapping(configs.get_config(s).to_dict()) for s in _STUDIES.value}
    for study, config in studies.items():
        print(f"== {study}: {configs.STUDIES[study][1]}", flush=True)
        budget = reversal.run_study(study, config, workdir / study, log=lambda line: print(line, flush=True))
        print(f"   {budget['cpu_s'] / 60:.1f} CPU-min, {budget['wall_s'] / 60:.1f} min, "
              f"peak {budget['peak_gb']:.2f} GB (every call so far)", flush=True)
    rows = reversal.summarise(workdir, configs.STUDIES)
    table = reversal.format_table(rows)
    atomic.write_text(workdir / "summary.md", table + "\n")
    atomic.write_json(workdir / "summary.json", rows)
    reversal.curves_figure(workdir, list(configs.STUDIES), workdir / "curves.png")
    print("\nMedians over 3 seeds of the test ARI / FG-ARI / slots covering the background:\n" + table)
    print(f"\nsummary.md, summary.json, curves.png in {workdir}/")


if __name__ == "__main__":
    cli.run(main)
