"""The cross-method comparison (`experiments.compare`, `noisegroup.compare`): quick end to end, resumed, its saved
segmentations scored as scikit-learn scores them; bad input refused before any work."""

import csv
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from experiments.configs import compare as compare_configs
from noisegroup import compare
from noisegroup.compare import cells, data
from noisegroup.compare.methods import parse_method
from noisegroup.models import FAMILIES

ROOT = Path(__file__).parents[1]


def _quick(**changes) -> dict:
    config = compare_configs.get_config("quick").to_dict()
    config.update(changes)
    return config


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("compare")
    result = subprocess.run([sys.executable, "-m", "experiments.compare",
                             "--config=experiments/configs/compare.py:quick", f"--workdir={workdir}"],
                            cwd=ROOT, capture_output=True, text=True, timeout=900,
                            env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir, result.stdout


def test_quick_comparison_writes_every_cell_table_and_figure(quick_run):
    workdir, stdout = quick_run
    config = compare.CompareConfig.from_mapping(_quick())
    rows = list(csv.DictReader((workdir / "results.csv").open()))
    assert {(r["method"], r["dataset"]) for r in rows} == {(m.name, d) for m in config.methods
                                                           for d in config.datasets}
    assert "| LNS AE, ward | 0." in stdout and "(0.86)" in stdout  # ours beside the paper's Table 1 value
    assert "Slot Attention" in stdout and "FG-ARI" in stdout and "steps" in stdout
    for dataset in config.datasets:
        assert (workdir / "figures" / f"{dataset}.png").stat().st_size > 1000
    record = json.loads((workdir / "results.json").read_text())
    assert record["this_run"]["cpu_seconds"] > 0 and record["this_run"]["peak_rss_mb"]["process"] > 0


def test_saved_segmentations_score_as_scikit_learn_scores_them(quick_run):
    workdir, _ = quick_run
    for dataset in ("kanizsa", "multi_dsprites"):
        _, masks = data.test_split(dataset, 4)
        for method in ("lns_ae_ward", "control_ae", "slot_attention"):
            with np.load(workdir / "cells" / f"{method}__{dataset}.npz") as cell:
                labels, ari, ari_fg = cell["labels"], cell["ari"], cell["ari_fg"]
            assert labels.shape == (1, 4, 64, 64)
            for i in range(4):
                true, pred = masks[i].ravel(), labels[0, i].ravel()
                assert ari[0, i] == pytest.approx(adjusted_rand_score(true, pred), abs=1e-5)
                assert ari_fg[0, i] == pytest.approx(adjusted_rand_score(true[true > 0], pred[true > 0]), abs=1e-5)


def test_a_rerun_resumes_from_the_cells_and_another_config_is_refused_naming_the_key(quick_run):
    workdir, _ = quick_run
    before = {p.name: p.stat().st_mtime_ns for p in (workdir / "cells").glob("*.npz")}
    rows = compare.run(_quick(), workdir)
    assert {p.name: p.stat().st_mtime_ns for p in (workdir / "cells").glob("*.npz")} == before  # nothing redone
    assert len(rows) == 6
    # A kept cell that lost an array (an edited or damaged file) is recomputed with a warning, not half-read.
    damaged = workdir / "cells" / "lns_ae_ward__kanizsa.npz"
    with np.load(damaged) as cell:
        kept = {k: cell[k] for k in cell.files if k != "ari_fg"}
    np.savez(damaged, **kept)
    with pytest.warns(UserWarning, match="missing array"):
        again = compare.run(_quick(), workdir)
    scores = [(r["method"], r["dataset"], r["ari"], r["ari_fg"]) for r in rows]
    assert [(r["method"], r["dataset"], r["ari"], r["ari_fg"]) for r in again] == scores  # the same key, labels
    with pytest.raises(compare.CellConfigError, match="test_limit=4, not the test_limit=3"):
        compare.run(_quick(test_limit=3), workdir)
    slots = _quick()
    slots["train"]["slot_attention"]["num_slots"] = 4
    with pytest.raises(compare.CellConfigError, match=r"train\.num_slots=5, not the train\.num_slots=4"):
        compare.run(slots, workdir)


@pytest.mark.parametrize("changes, message", [
    ({"methods": ("lns_ae_ward", "slot_atention")}, "unknown method 'slot_atention'.*slot_attention.*known: "),
    ({"datasets": ("kanisza",)}, "unknown dataset 'kanisza'.*kanizsa.*multi_dsprites"),
    ({"methds": ()}, "unknown compare config key 'methds'.*methods"),
    ({"noise_stds": (0.01, 0.1), "select_limit": 0}, "select_limit must be > 0"),
    ({"train": {"ae": {}}}, "train has no entry for model 'slot_attention'"),
])
def test_bad_config_is_refused_before_any_work_naming_the_value(changes, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        compare.run(_quick(**changes), tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_fewer_slots_than_groups_warns_once_with_the_counts():
    masks = np.zeros((2, 8, 8), np.int32)
    masks[1, :2], masks[1, 2:4], masks[1, 4:6] = 1, 2, 3  # four groups with the background
    family = FAMILIES["slot_attention"](num_slots=3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            cells.warn_few_slots(parse_method("slot_attention"), family, masks)
    assert len(caught) == 1 and "3 slots but some test images have 4 ground-truth groups" in str(caught[0].message)


def test_every_config_mode_parses():
    for mode in compare_configs.MODES:
        config = compare.CompareConfig.from_mapping(compare_configs.get_config(mode).to_dict())
        assert config.methods and config.datasets
