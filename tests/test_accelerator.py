"""The accelerator job (`benchmarks/accelerator.py`): its `--smoke` run end to end on the CPU, its refusals of bad
input (a non-empty output folder, a budget below the first stage's need, no GPU without --smoke, a resumed folder of
another MONet variant), and stage 4's data of either Multi-dSprites variant.

Each case runs the script as a user does, in a fresh process (`python -m benchmarks.accelerator ...`)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import pytest

REPO = Path(__file__).resolve().parents[1]
SMOKE_BUDGET_MINUTES = 10.0


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    # conftest's four fake CPU devices are for the mesh tests; the script runs as a user runs it, on one device.
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if "host_platform_device_count" not in f]
    env = {**os.environ, "XLA_FLAGS": " ".join(flags), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "benchmarks.accelerator", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def error_line(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.strip().splitlines()
    assert lines, result.stdout
    return lines[-1]


def test_smoke_runs_every_stage_within_its_budget(tmp_path):
    out = tmp_path / "out"
    result = run(str(out), "--smoke", "--budget-minutes", str(SMOKE_BUDGET_MINUTES))
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["smoke"] is True
    assert results["stage_order"] == ["steps", "lns_features", "lns_curve", "monet"]
    assert sorted(results["stages"]) == sorted(results["stage_order"])
    for name, stage in results["stages"].items():
        assert stage["status"] in ("done", "partial"), (name, stage.get("error"), stage.get("skipped"))
    assert results["finished_under_budget"] is True
    assert results["elapsed_s"] < SMOKE_BUDGET_MINUTES * 60
    for figure in ("steps.png", "lns_curve.png", "monet.png"):
        assert (out / figure).stat().st_size > 0, figure

    steps = results["stages"]["steps"]
    for cell in ("ae S=1", "ae S=2", "monet S=1", "monet S=2"):
        assert steps["cells"][cell]["steps_per_s"] > 0, cell
    torch_cells = {"torch ae", "torch monet"} & set(steps["cells"])
    skipped = {s["what"] for s in steps.get("skipped", [])}
    assert torch_cells | ({"torch ae", "torch monet"} & skipped) == {"torch ae", "torch monet"}  # timed or noted

    features = results["stages"]["lns_features"]
    assert features["images"] == 4 and features["first_call_s"] > 0

    curve = results["stages"]["lns_curve"]
    assert [p["step"] for p in curve["points"]] == [2, 4]
    assert all(-1 <= p["ari"] <= 1 for p in curve["points"])

    monet = results["stages"]["monet"]
    for condition in ("nll_m", "ir_m"):
        validations = monet["runs"][condition]["validations"]
        assert [v["step"] for v in validations] == [1, 2]
        assert all(len(v["ari"]) == 2 and len(v["fg_ari"]) == 2 for v in validations)  # 2 seeds each


def test_refuses_a_non_empty_output_folder(tmp_path):
    (tmp_path / "something").write_text("x")
    result = run(str(tmp_path), "--smoke", timeout=60)
    assert result.returncode == 2
    line = error_line(result)
    assert line.startswith("error: ") and str(tmp_path) in line and "not empty" in line and "--resume" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["something"]  # nothing written


def test_refuses_a_budget_below_the_first_stage(tmp_path):
    result = run(str(tmp_path / "out"), "--smoke", "--budget-minutes", "0.2", timeout=60)
    assert result.returncode == 2
    line = error_line(result)
    assert line.startswith("error: ") and "first stage" in line and "at least 1.25 minutes" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(jax.default_backend() == "gpu", reason="a GPU is here: the job would run")
def test_refuses_to_run_without_a_gpu_unless_smoke(tmp_path):
    result = run(str(tmp_path / "out"), timeout=120)
    assert result.returncode == 2
    line = error_line(result)
    assert line.startswith("error: no GPU") and "--smoke" in line
    assert not (tmp_path / "out").exists()


def test_monet_stage_reads_either_variant():
    """Stage 4's K and scenes: the paper's K = 5 on colored_on_colored, K = 6 on 2-5 sprites on grey; the smoke size
    keeps its K = 3 and draws scenes that fit it."""
    from benchmarks import accelerator

    assert accelerator.monet_slots(accelerator.GPU, "colored_on_colored") == (5, 4)
    assert accelerator.monet_slots(accelerator.GPU, "colored_on_grayscale") == (6, 5)
    assert accelerator.monet_slots(accelerator.SMOKE, "colored_on_grayscale") == (3, 2)
    train, valid = accelerator.monet_data(accelerator.SMOKE, "colored_on_grayscale")
    assert train["images"].shape == (accelerator.SMOKE.monet_train_images, 16, 16, 3)
    assert len(valid["images"]) == accelerator.SMOKE.monet_valid_images
    assert train["masks"].max() <= 2  # at most K - 1 sprites
    background = train["images"][train["masks"] == 0]  # [pixels, 3]: grey, R = G = B
    assert (background[:, 0] == background[:, 1]).all() and (background[:, 1] == background[:, 2]).all()


def test_refuses_to_resume_a_folder_of_another_monet_variant(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({"smoke": True, "monet_variant": "colored_on_colored"}))
    result = run(str(tmp_path), "--smoke", "--resume", "--monet-variant", "colored_on_grayscale", timeout=120)
    assert result.returncode == 2
    line = error_line(result)
    assert line.startswith("error: ") and "--monet-variant colored_on_colored" in line and str(tmp_path) in line
