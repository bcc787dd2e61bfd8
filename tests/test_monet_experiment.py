"""The MONet ablation experiment: the `quick` config end to end in a subprocess (train, evaluate, tables, figures,
resume), config validation, the downsampling, and the paper's tests wired to `noisegroup.stats` on fixed per-seed
values. The run time is the subprocess (XLA:CPU compiles each condition's training program)."""

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from experiments.configs import monet as monet_configs
from experiments.configs import monet_reversal as monet_reversal_configs
from noisegroup import stats
from noisegroup.komatsu import analysis, data, pipeline

ROOT = Path(__file__).resolve().parents[1]


def quick(**overrides) -> dict:
    """The quick config with `overrides`; a dotted key sets a nested value ("train.num_slots",
    "conditions.ir_m.loss_weights.kl")."""
    config = monet_configs.get_config("quick").to_dict()
    for key, value in overrides.items():
        *path, last = key.split(".")
        node = config
        for part in path:
            node = node[part]
        node[last] = value
    return config


# --- config ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["quick", "default", "paper"])
def test_every_mode_validates(mode):
    config = pipeline.AblationConfig.from_mapping(monet_configs.get_config(mode).to_dict())
    assert set(config.conditions) == set(analysis.LABELS) and set(config.names) <= set(analysis.LABELS)


def test_paper_mode_is_the_papers_protocol():
    config = pipeline.AblationConfig.from_mapping(monet_configs.get_config("paper").to_dict())
    assert config.seeds == tuple(range(1, 101)) and config.image_size == 64
    assert config.names == ("11", "01", "10", "00", "nll_m", "ir_m", "mse_m", "mw_m")
    t = config.train_config("mw_m").as_dict()
    assert (t["num_slots"], t["unet_channels"], t["batch_size"], t["optimizer"], t["learning_rate"]) == \
        (5, 32, 64, "rmsprop", 1e-4)
    assert (t["num_steps"], t["eval_every"], t["early_stop_metric"], t["early_stop_below"]) == \
        (1_000_000, 100_000, "valid/mse", 0.001)
    assert t["loss_weights"] == {"nll": 0.0, "kl": 0.0, "mask_kl": 0.0, "ir": 0.0, "mse": 0.0, "mw": 1.0,
                                 "mask_mse": 0.01}
    runs = config.run_names()
    assert runs["nll_m"] == "01" and len(set(runs.values())) == 7  # NLL+M is condition 01: trained once
    assert [len(g) for g in config.seed_groups()] == [10] * 10
    assert config.run_dir(Path("w"), "01", (11, 12)) == Path("w/models/01/seeds_11-12")


@pytest.mark.parametrize("overrides, message", [
    ({"condtions": ("nll_m",)}, "did you mean 'conditions'"),
    ({"selected": ("nll+m",)}, "unknown condition 'nll+m' (did you mean 'nll_m'?)"),
    ({"selected": ("ir_m", "ir_m")}, "distinct"),
    ({"conditions": {}}, "conditions must map condition names to their loss weights"),
    ({"conditions.ir_m.loss_weights.mask_kll": 0.5},
     "(train + conditions.ir_m): unknown loss term 'mask_kll' (did you mean 'mask_kl'?)"),
    ({"conditions.mw_m.loss_weights.mw": -1.0}, "(train + conditions.mw_m): loss_weights.mw must be a finite number >= 0"),
    ({"conditions.mw_m.sample_latnt": True}, "unknown key conditions.mw_m.sample_latnt (did you mean 'sample_latent'?)"),
    ({"conditions.mw_m.sample_latent": "yes"}, "conditions.mw_m.sample_latent must be true, false or None"),
    ({"seeds": (1, 1)}, "distinct"),
    ({"dataset": "objects_room"}, "no offline source"),
    ({"image_size": 24}, "power of two"),
    ({"downsample": "bicubic"}, "downsample must be one of"),
    ({"eval_images": 0}, "eval_images must be an integer >= 1"),
    ({"test_metrics": ("ari", "mse")}, "test_metrics"),
    ({"train.num_slot": 3}, "did you mean 'num_slots'"),
    ({"train.loss_weights": {"nll": 1.0}}, "train.loss_weights is set by the pipeline"),
    ({"train.learning_rate": -1.0}, "learning_rate must be a finite number > 0"),
    ({"variant": "grayscale"}, "variant must be one of ('colored_on_colored', 'colored_on_grayscale')"),
    ({"max_sprites": 5}, "max_sprites must be an integer in [1, 4] (colored_on_colored), got 5"),
    ({"variant": "colored_on_grayscale", "max_sprites": 6}, "in [1, 5] (colored_on_grayscale), got 6"),
])
def test_config_errors_are_one_line_naming_the_key(overrides, message):
    with pytest.raises(ValueError, match=re.escape(message)) as error:
        pipeline.AblationConfig.from_mapping(quick(**overrides))
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("study", sorted(monet_reversal_configs.STUDIES))
def test_every_reversal_study_validates(study):
    """Issue 33's studies: each the CPU default with one change, NLL+M and IR+M, 3 seeds."""
    config = pipeline.AblationConfig.from_mapping(monet_reversal_configs.get_config(study).to_dict())
    assert config.names == ("nll_m", "ir_m") and config.seeds == (1, 2, 3)
    family = config.train_config("ir_m").family
    slots = {"scale32": 5, "scale64": 5, "grayscale32": 6, "grayscale32_k5": 5}.get(study, 3)
    assert family.num_slots == slots == config.max_sprites + 1
    assert (config.variant == "colored_on_grayscale") == study.startswith("grayscale")


def test_background_slots_against_a_hand_count():
    masks = np.zeros((3, 4, 5), np.uint8)
    masks[:, :2, :2] = 1  # 16 background pixels per image
    pred = np.zeros((3, 4, 5), np.int32)
    pred[1, 2:, :] = 1  # image 1: slot 0 holds 6 background pixels, slot 1 holds 10
    pred[2, 3, 4] = 2  # image 2: slot 2 holds 1 of 16 background pixels (6 % >= 5 %)
    pred[2, 3, 3] = 1  # ... and slot 1 one more
    np.testing.assert_array_equal(pipeline.background_slots(pred, masks, 3), [1, 2, 3])
    np.testing.assert_array_equal(pipeline.background_slots(pred, masks, 3, share=0.1), [1, 2, 1])
    assert np.isnan(pipeline.background_slots(pred, np.ones_like(masks), 3)).all()  # no background


def test_the_config_num_slots_is_the_familys_when_not_set():
    config = pipeline.AblationConfig.from_mapping(quick())
    assert config.train_config("ir_m").family.num_slots == 3
    without = quick()
    del without["train"]["num_slots"]
    assert pipeline.AblationConfig.from_mapping(without).train_config("ir_m").family.num_slots == 5  # Multi-dSprites'


def test_the_condition_table_is_the_papers():
    """The table of experiments/configs/monet.py (spec 2.2-2.4): every condition gives each of MONet's seven terms a
    weight; the eps = 0 rule samples the latent exactly where beta > 0; a weight set on the command line reaches the
    parsed config and only the weights differ between the default's conditions, so they share one program."""
    table = pipeline.AblationConfig.from_mapping(monet_configs.get_config("paper").to_dict())
    nonzero = {name: {t: w for t, w in run.weights.items() if w} for name, run in table.run_configs.items()}
    assert nonzero == {"11": {"nll": 1.0, "kl": 0.5, "mask_kl": 0.25}, "01": {"nll": 1.0, "mask_kl": 0.25},
                       "10": {"nll": 1.0, "kl": 0.5}, "00": {"nll": 1.0}, "nll_m": {"nll": 1.0, "mask_kl": 0.25},
                       "ir_m": {"ir": 1.0, "mask_kl": 0.25}, "mse_m": {"mse": 1.0, "mask_mse": 0.01},
                       "mw_m": {"mw": 1.0, "mask_mse": 0.01}}
    assert {n: r.family.sample_latent for n, r in table.run_configs.items()} == \
        {n: n in ("11", "10") for n in table.run_configs}
    room = monet_configs.ablation_conditions(monet_configs.MASK_MSE_GAMMA["objects_room"])
    assert room.mw_m.loss_weights.mask_mse == 0.1 and room.ir_m.loss_weights.mask_kl == 0.25
    forced = pipeline.AblationConfig.from_mapping(quick(**{"conditions.ir_m.sample_latent": True}))
    assert forced.train_config("ir_m").family.sample_latent
    default = pipeline.AblationConfig.from_mapping(monet_configs.get_config("default").to_dict())
    assert len({default.train_config(n).program_key() for n in default.names}) == 1
    assert len({default.train_config(n) for n in default.names}) == 4


def test_downsampling_keeps_labels_and_colours_together():
    rng = np.random.default_rng(0)
    masks = rng.integers(0, 5, (2, 64, 64)).astype(np.uint8)
    colours = rng.uniform(size=(5, 3)).astype(np.float32)
    images = colours[masks]
    for method in data.DOWNSAMPLING:
        small_images, small_masks = data.downsample(images, masks, 16, method)
        assert small_images.shape == (2, 16, 16, 3) and small_images.dtype == np.float32
        np.testing.assert_array_equal(small_masks, masks[:, 2::4, 2::4])
        if method == "nearest":  # every pixel keeps its entity's exact colour
            np.testing.assert_array_equal(small_images, colours[small_masks])
        else:
            np.testing.assert_allclose(small_images[0, 0, 0], images[0, :4, :4].mean(axis=(0, 1)), rtol=1e-6)
    assert data.downsample(images, masks, 64)[0] is images


# --- the paper's tests on fixed per-seed values ---------------------------------------------------------------------


def test_tests_of_all_eight_conditions_are_the_papers():
    rng = np.random.default_rng(1)
    per_seed = {c: rng.uniform(0.3, 0.8, 8) for c in ("11", "01", "10", "00", "ir_m", "mse_m", "mw_m")}
    per_seed["nll_m"] = per_seed["01"]
    groups = analysis.ablation_tests(per_seed)
    assert [g.section for g in groups] == ["3.1", "3.2", "3.3"]
    beta, gamma = groups[0].tests
    assert (beta.label, gamma.label) == ("beta", "gamma") and beta.n + beta.ties == 16  # 2S blocks
    assert beta == stats.factor_effect(per_seed, "beta")
    (nll_ir,) = groups[1].tests
    assert nll_ir.p_value == pytest.approx(scipy.stats.wilcoxon(per_seed["01"], per_seed["ir_m"]).pvalue)
    assert [t.label for t in groups[2].tests] == ["MSE+M vs MW+M", "MW+M vs NLL+M", "NLL+M vs MSE+M"]
    assert groups[2].correction == stats.holm_bonferroni([t.p_value for t in groups[2].tests])
    assert groups[0].correction is None and groups[1].correction is None


def test_wilcoxon_and_holm_values_on_fixed_arrays():
    # 7 seeds: MW+M beats MSE+M on every seed; NLL+M beats MSE+M on every seed; NLL+M vs MW+M: 5 of 7.
    mse = np.array([0.30, 0.31, 0.35, 0.28, 0.40, 0.33, 0.36])
    mw = mse + np.array([0.30, 0.25, 0.40, 0.35, 0.20, 0.32, 0.38])
    nll = mw + np.array([0.010, -0.020, 0.030, 0.045, -0.005, 0.060, 0.070])
    groups = analysis.ablation_tests({"nll_m": nll, "mse_m": mse, "mw_m": mw})
    assert [g.section for g in groups] == ["3.3"]
    mse_mw, mw_nll, nll_mse = groups[0].tests
    # Exact null distribution (7 pairs, no ties): all 7 one way -> T = 0, p = 2 / 2^7.
    assert (mse_mw.statistic, mse_mw.p_value, mse_mw.wins, mse_mw.losses) == (0.0, 2 / 128, 0, 7)
    assert (nll_mse.p_value, nll_mse.wins) == (2 / 128, 7)
    # MW+M - NLL+M: ranks of |d| 0.005 (1), 0.01 (2), 0.02 (3), 0.03 (4), 0.045 (5), 0.06 (6), 0.07 (7);
    # positive d (MW+M > NLL+M) at 0.005 and 0.02: T = min(1 + 3, 24) = 4; exact two-sided p = 2 P(T+ <= 4) = 14/128.
    assert (mw_nll.statistic, mw_nll.wins, mw_nll.losses, mw_nll.method) == (4.0, 2, 5, "exact")
    assert mw_nll.p_value == pytest.approx(14 / 128)
    holm = groups[0].correction
    # Holm: the two p = 1/64 are compared with 0.05/3 and 0.05/2 (rejected), 14/128 with 0.05 (retained).
    assert holm.rejected == (True, False, True)
    assert holm.adjusted == pytest.approx((3 / 64, 14 / 128, 3 / 64))
    assert holm.thresholds == pytest.approx((0.05 / 3, 0.05, 0.05 / 2))


def test_nll_m_is_condition_01_and_one_seed_runs_no_tests():
    groups = analysis.ablation_tests({"01": [0.6, 0.7, 0.65], "ir_m": [0.0, 0.1, 0.05]})
    assert [(g.section, g.tests[0].label, g.tests[0].wins) for g in groups] == [("3.2", "NLL+M vs IR+M", 3)]
    assert analysis.ablation_tests({"nll_m": [0.5], "ir_m": [0.1]}) == []
    assert "no tests" in analysis.format_test_groups([])


def test_test_table_shows_the_papers_p_values():
    groups = analysis.ablation_tests({"nll_m": [0.6, 0.7, 0.65], "ir_m": [0.0, 0.1, 0.05]})
    text = analysis.format_test_groups(groups, analysis.paper_p_values("multi_dsprites"))
    header, _, row = text.split("\n")[1:4]
    assert header.rstrip().endswith("paper p") and row.rstrip().endswith(" 0") and "NLL+M vs IR+M" in row
    assert analysis.paper_median("mw_m") == 0.68 and analysis.paper_median("ir_m", "objects_room") == 0.034


# --- end to end ------------------------------------------------------------------------------------------------------


def test_quick_experiment_end_to_end_and_resume(tmp_path):
    # A loss weight set on the command line (item 3 of issue 29) reaches the loss: its metrics log it.
    command = [sys.executable, "-m", "experiments.monet", "--config=experiments/configs/monet.py:quick",
               "--config.conditions.ir_m.loss_weights.mask_kl=0.5", f"--workdir={tmp_path}"]
    # One CPU device, as a user runs it: conftest's fake devices would put the seeds on a mesh, where XLA fails to
    # partition the U-Net's one-channel head conv under the seed vmap (reported to the engine's owner).
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if "host_platform_device_count" not in f]
    env = {**os.environ, "XLA_FLAGS": " ".join(flags)}
    first = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    table = first.stdout[first.stdout.index("Per condition"):first.stdout.rindex("\n\n")]
    for expected in ("NLL+M", "IR+M", "(0.690)", "(0.010)", "Section 3.2", "paper p"):
        assert expected in table, expected
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert [(r["condition"], r["seed"]) for r in rows] == [(c, s) for c in ("nll_m", "ir_m") for s in ("1", "2")]
    for r in rows:
        assert -1.0 <= float(r["ari"]) <= 1.0 and -1.0 <= float(r["fg_ari"]) <= 1.0 and r["steps"] == "6"
        assert 1.0 <= float(r["background_slots"]) <= 3.0  # K = 3
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["trained_steps"] == {"nll_m": 6, "ir_m": 6}
    assert [len(g) for g in results["tests"].values()] == [1, 1]  # NLL+M vs IR+M, on ARI and on FG-ARI
    records = [json.loads(line) for line in open(tmp_path / "models" / "ir_m" / "metrics.jsonl")]
    assert [r["step"] for r in records if "valid/ari" in r] == [3, 6]
    assert {tuple(r["train/mask_kl_weight"]) for r in records} == {(0.5, 0.5)}  # both seeds, every logged step
    assert json.loads((tmp_path / "models" / "ir_m" / "config.json").read_text())["loss_weights"]["mask_kl"] == 0.5
    for figure in ("boxplots.png", "slots.png", "training.png"):
        assert (tmp_path / figure).stat().st_size > 10_000, figure
    # A second run resumes: nothing is trained, the evaluation is cached, the table is the same.
    second = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "already trained; evaluation cached" in second.stdout
    assert second.stdout[second.stdout.index("Per condition"):second.stdout.rindex("\n\n")] == table
    assert json.loads((tmp_path / "results.json").read_text())["trained_steps"] == {"nll_m": 0, "ir_m": 0}
    assert list(csv.DictReader(open(tmp_path / "results.csv"))) == rows
    # Killed during IR+M's training after its step-3 checkpoint: its metrics go to step 6, its checkpoints to 3.
    # The report counts from the restored checkpoint (3 steps trained), not from the last metrics line (0).
    run_dir = tmp_path / "models" / "ir_m"
    shutil.rmtree(run_dir / "checkpoints" / "6")
    (run_dir / "checkpoints.digests" / "6.json").unlink()
    third = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert third.returncode == 0, third.stderr[-3000:]
    assert json.loads((tmp_path / "results.json").read_text())["trained_steps"] == {"nll_m": 0, "ir_m": 3}
    assert "ir_m seeds [1, 2]: step 6, trained 3 steps" in third.stdout
    # The workdir's data is fixed: other images are refused before any work, naming what differs.
    with pytest.raises(ValueError, match=r"image_size: 8 there, 16 now.*variant: 'colored_on_colored' there, "
                                         r"'colored_on_grayscale' now"):
        pipeline.run(quick(image_size=16, variant="colored_on_grayscale", max_sprites=3), tmp_path)
