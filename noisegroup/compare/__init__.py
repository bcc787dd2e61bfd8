"""Every method on every dataset under one evaluation: LNS (its clustering variants), its control, MONet, Slot
Attention, GENESIS and GENESIS-v2 on the six Good Gestalt test sets and Multi-dSprites.

    from noisegroup import compare
    rows = compare.run(compare.CompareConfig.from_mapping(mapping), "workdirs/compare")

Modules: `methods` (names, datasets, the papers' numbers), `data` (every dataset at 64 x 64), `config` (the parsed
config), `cells` (one method on one dataset: train or load, segment, score), `report` (tables, results, figures),
`run` (the resumable loop). The scoring is `noisegroup.evaluation`, shared with every other experiment.
"""

from noisegroup.compare import data, report
from noisegroup.compare.config import CompareConfig
from noisegroup.compare.methods import DATASETS, METHODS
from noisegroup.compare.run import CellConfigError, run

__all__ = ["DATASETS", "METHODS", "CellConfigError", "CompareConfig", "data", "report", "run"]
