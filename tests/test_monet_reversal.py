"""The MONet reversal study (issue 33): its budget adds up over resumed calls, its table and curves are read from
what the runs wrote (results.json, metrics.jsonl, budget.json). The studies' configs are validated in
test_monet_experiment.py; the pipeline they run is tested end to end there."""

import json

import numpy as np
import pytest

from experiments.configs import monet_reversal as configs
from noisegroup.komatsu import pipeline, reversal


def _write_study(root, study, ari, fg_ari, background, steps=(1000, 2000)):
    """A study's files as the pipeline writes them: results.json and each condition's metrics.jsonl."""
    rows = [{"condition": c, "steps": [steps[-1]] * 3, "median_ari": float(np.median(ari[c])),
             "median_fg_ari": float(np.median(fg_ari[c])), "median_background_slots": background[c],
             "per_seed_ari": ari[c]} for c in reversal.CONDITIONS]
    (root / study).mkdir(parents=True)
    (root / study / "results.json").write_text(json.dumps({"config": {"image_size": 16}, "conditions": rows}))
    for c in reversal.CONDITIONS:
        run = root / study / "models" / c
        run.mkdir(parents=True)
        lines = [{"step": s, "train/loss": [1.0] * 3} for s in steps]  # training lines carry no validation
        lines += [{"step": s, "valid/ari": [a * s / steps[-1] for a in ari[c]],
                   "valid/fg_ari": [a * s / steps[-1] for a in fg_ari[c]]} for s in steps]
        run.joinpath("metrics.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")


def test_summary_table_and_curves_from_the_runs_files(tmp_path):
    ari = {"nll_m": [0.1, 0.3, 0.2], "ir_m": [0.9, 0.7, 0.8]}
    fg_ari = {"nll_m": [0.4, 0.5, 0.6], "ir_m": [0.5, 0.5, 0.5]}
    _write_study(tmp_path, "narrow", ari, fg_ari, {"nll_m": 2.0, "ir_m": 1.0})
    (tmp_path / "narrow" / "budget.json").write_text(json.dumps({"wall_s": 600, "cpu_s": 1200, "peak_gb": 1.5,
                                                                 "calls": 2}))
    rows = reversal.summarise(tmp_path, configs.STUDIES, common_step=1000)
    assert [r["study"] for r in rows] == ["narrow"]  # studies without results are left out
    row = rows[0]
    assert (row["nll_m_ari"], row["ir_m_ari"], row["nll_m_fg_ari"], row["nll_m_bg_slots"]) == (0.2, 0.8, 0.5, 2.0)
    assert (row["cpu_min"], row["wall_min"], row["variant"]) == (20.0, 10.0, "colored_on_colored")
    table = reversal.format_table(rows, common_step=1000)
    assert "| narrow | a c d |" in table and "| 2000/2000 | 20 | 1.5 | 0.20 / 0.50 / 2.0 | 0.80 / 0.50 / 1.0 |" in table
    assert row["ir_m_valid_ari_at_common"] == pytest.approx(0.4)  # the median of the curve at step 1000
    assert np.isnan(reversal.summarise(tmp_path, configs.STUDIES, common_step=1500)[0]["ir_m_valid_ari_at_common"])
    steps, values = reversal.curves(tmp_path / "narrow", "ir_m")
    np.testing.assert_array_equal(steps, [1000, 2000])
    np.testing.assert_allclose(values, [[0.45, 0.35, 0.4], [0.9, 0.7, 0.8]])
    reversal.curves_figure(tmp_path, list(configs.STUDIES), tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 10_000


def test_the_budget_adds_up_over_calls_that_train(tmp_path, monkeypatch):
    trained = iter([{"nll_m": 10, "ir_m": 10}, {"nll_m": 0, "ir_m": 0}, {"nll_m": 5, "ir_m": 0}])
    monkeypatch.setattr(pipeline, "run", lambda config, workdir, log: {"trained_steps": next(trained)})
    first = reversal.run_study("narrow", None, tmp_path)
    assert first["calls"] == 1 and first["wall_s"] >= 0 and first["peak_gb"] > 0
    assert reversal.run_study("narrow", None, tmp_path) == first  # only re-evaluated: nothing added
    third = reversal.run_study("narrow", None, tmp_path)
    assert third["calls"] == 2 and third["cpu_s"] >= first["cpu_s"]
    assert json.loads((tmp_path / "budget.json").read_text()) == pytest.approx(third)
