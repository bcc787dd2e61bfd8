"""Fault injection: files damaged, copied, torn or never finished, disks full, two runs at once, bad settings.

Each section is one of the numbered failures of the integrity issue; each test damages something the way a crash, a
disk or a user would and checks that the project either refuses with a message naming the file, key or value, or
recovers and says what it did, never silently computing with what it was given. Elsewhere, for the same failures:
kill -9 at any moment and a zeroed newest checkpoint (tests/test_engine.py: test_kill_9_mid_training_then_resume,
test_a_damaged_latest_checkpoint_falls_back_to_the_previous), damaged dataset caches (tests/test_good_gestalt.py,
tests/test_multi_dsprites.py), NaN features for the host clustering methods and bad sweep images (tests/test_lns.py).
"""

import collections
import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from toy_family import tiny_config, tiny_images

from datasets import good_gestalt as gg
from datasets.good_gestalt import cache as gg_cache
from experiments.configs import lns as lns_configs
from experiments.configs import train as train_configs
from noisegroup import atomic, cli, metrics
from noisegroup.engine import checkpoint, loop, pretrained, runlog, workdir_lock
from noisegroup.engine import config as engine_config
from noisegroup.errors import BadInputError
from noisegroup.lns import features as lns_features
from noisegroup.lns import sweep
from noisegroup.lns.pipeline import LNSConfig

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def tiny_data():
    return tiny_images()


def flip_middle_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))


# --- 1. silent corruption is trusted --------------------------------------------------------------------------------


def test_a_flipped_byte_in_a_checkpoint_is_caught_by_its_seal(tmp_path):
    ckpt = checkpoint.Checkpointer(tmp_path / "checkpoints", keep=3)
    for step in (1, 2):
        ckpt.save(step, {"w": jnp.full((1000,), float(step))})
    ckpt.wait()
    data = max((p for p in (tmp_path / "checkpoints" / "2").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    flip_middle_byte(data)  # one bit: without the seal orbax may read this as a slightly different weight
    with pytest.warns(UserWarning, match=f"step 2 cannot be restored .*{data.name} is changed since it was saved"):
        step, state = ckpt.restore_latest({"w": jax.ShapeDtypeStruct((1000,), jnp.float32)})
    assert step == 1 and np.all(np.asarray(state["w"]) == 1.0)
    ckpt.close()


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """(train config, path) of a two-seed quick AE saved as shipped weights of the dataset "kanizsa"."""
    train_config = {**train_configs.get_config("quick").to_dict(), "dataset": "kanizsa"}
    _, trainer, _ = loop.build(train_config, (64, 64, 3))
    params = jax.vmap(trainer.init)(jax.random.split(jax.random.key(0), 2)).params
    path = tmp_path_factory.mktemp("weights") / "ae_kanizsa.npz"
    pretrained.save(path, params, {"model": "ae", "dataset": "kanizsa", "latent_dim": train_config["latent_dim"]})
    return train_config, path


def rewrite_weights(source: Path, target: Path, change) -> None:
    """Copies a weights file with `change(arrays)` applied and a digest that matches: damage no digest can see."""
    with np.load(source) as f:
        meta_json, arrays = str(f["__meta__"]), {k: f[k] for k in f.files if not k.startswith("__")}
    change(arrays)
    np.savez(target, __meta__=np.array(meta_json),
             __digest__=np.array(atomic.content_digest(meta_json, arrays)), **arrays)


def test_a_flipped_byte_in_shipped_weights_is_named(tmp_path, weights_file):
    train_config, path = weights_file
    with np.load(path) as f:
        meta_json, arrays = str(f["__meta__"]), {k: f[k] for k in f.files if not k.startswith("__")}
        digest = str(f["__digest__"])
    name = sorted(arrays)[0]
    arrays[name] = arrays[name].copy()
    arrays[name].reshape(-1)[0] += np.float16(0.5)  # a valid file, one weight changed, the old digest kept
    damaged = tmp_path / "ae_kanizsa.npz"
    np.savez(damaged, __meta__=np.array(meta_json), __digest__=np.array(digest), **arrays)
    for check in (pretrained.verify, pretrained.load):
        with pytest.raises(ValueError, match=f"{damaged}.*fails its SHA-256 content digest"):
            check(damaged, train_config)
    shutil.copy(path, damaged)
    flip_middle_byte(damaged)  # inside the compressed stream: unreadable or failing the digest, never trusted
    with pytest.raises(ValueError, match=str(damaged)):
        pretrained.load(damaged, train_config)


def test_shipped_weights_of_another_dataset_type_or_seed_axis_are_refused(tmp_path, weights_file):
    train_config, path = weights_file
    with pytest.raises(ValueError, match=r"holds dataset='kanizsa', not the dataset='closure' asked for"):
        pretrained.load(path, {**train_config, "dataset": "closure"})
    as_float32 = tmp_path / "float32.npz"
    rewrite_weights(path, as_float32, lambda a: a.update({k: v.astype(np.float32) for k, v in a.items()}))
    with pytest.raises(ValueError, match=r"float32.npz: parameter .* is float32, shipped weights are float16 or int8"):
        pretrained.verify(as_float32, train_config)
    as_int8 = tmp_path / "int8.npz"  # int8 without the per-channel scales that give it its values
    rewrite_weights(path, as_int8, lambda a: a.update({k: v.astype(np.int8) for k, v in a.items()}))
    with pytest.raises(ValueError, match=r"int8.npz: int8 parameter .* needs a scale of shape"):
        pretrained.verify(as_int8, train_config)
    one_short = tmp_path / "seeds.npz"
    name = sorted(np.load(path).files)[-1]
    rewrite_weights(path, one_short, lambda a: a.update({name: a[name][:1]}))
    with pytest.raises(ValueError, match=rf"disagree on the number of seeds .*{name} has 1"):
        pretrained.verify(one_short, train_config)
    unsealed = tmp_path / "old.npz"
    with np.load(path) as f:
        np.savez(unsealed, **{k: f[k] for k in f.files if k != "__digest__"})
    with pytest.raises(ValueError, match="old.npz has no content digest"):
        pretrained.load(unsealed, train_config)


def test_shipped_weights_of_another_recipe_are_refused_by_field(tmp_path, weights_file):
    train_config, path = weights_file
    recipe = tmp_path / "ae_kanizsa.npz"
    with np.load(path) as f:
        params = {k: f[k] for k in f.files if not k.startswith("__")}
    meta = {"model": "ae", "dataset": "kanizsa", "latent_dim": train_config["latent_dim"],
            "train": {**train_config, "ema_decay": 0.999, "seeds": (5,), "progress": True}}  # how it ran: ignored
    atomic.save_npz(recipe, __meta__=np.array(json.dumps(meta, sort_keys=True)),
                    __digest__=np.array(atomic.content_digest(json.dumps(meta, sort_keys=True), params)), **params)
    with pytest.raises(ValueError, match=r"trained with ema_decay=0.999, not the ema_decay=0.0 of the config"):
        pretrained.verify(recipe, train_config)
    pretrained.verify(recipe, {**train_config, "ema_decay": 0.999})  # the recipe it names: accepted


def test_a_damaged_shipped_file_stops_lns_before_any_work(tmp_path):
    shutil.copytree(ROOT / "pretrained", tmp_path / "weights")
    flip_middle_byte(tmp_path / "weights" / "ae_proximity.npz")
    config = {**lns_configs.get_config("quick").to_dict(), "pretrained": str(tmp_path / "weights")}
    with pytest.raises(ValueError, match="ae_proximity.npz"):
        LNSConfig.from_mapping(config)


def test_a_cache_file_of_another_setting_or_torn_is_recomputed(tmp_path):
    path = tmp_path / "segmentation.npz"
    atomic.save_npz(path, fingerprint=np.array("setting-a"), labels=np.arange(4))
    assert atomic.read_npz_cache(path, "setting-b") is None  # another setting's result is not used
    np.testing.assert_array_equal(atomic.read_npz_cache(path, "setting-a")["labels"], np.arange(4))
    path.write_bytes(path.read_bytes()[:40])
    with pytest.warns(UserWarning, match=f"{path.name} cannot be read .*recomputing it"):
        assert atomic.read_npz_cache(path, "setting-a") is None


def test_a_dataset_cache_file_copied_under_another_name_is_regenerated(tmp_path):
    gg.load("kanizsa", "test", cache_dir=tmp_path)
    copied = gg_cache.cache_path(tmp_path, "closure", "test", 64)
    shutil.copy(gg_cache.cache_path(tmp_path, "kanizsa", "test", 64), copied)  # intact, but the wrong dataset
    with pytest.warns(UserWarning, match=f"{copied.name}' holds dataset='kanizsa', not dataset='closure'"):
        closure = gg.load("closure", "test", cache_dir=tmp_path)
    np.testing.assert_array_equal(closure.images, gg.generate("closure", "test").images)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gg.load("closure", "test", cache_dir=tmp_path)  # rewritten with its own header


# --- 2. a restore error destroys good progress ----------------------------------------------------------------------


def test_a_restore_error_moves_nothing_unless_an_older_step_restores(tmp_path):
    ckpt = checkpoint.Checkpointer(tmp_path, keep=3)
    for step in (1, 2):
        ckpt.save(step, {"w": jnp.full((3,), float(step))})
    ckpt.wait()
    wrong = {"w": jax.ShapeDtypeStruct((4,), jnp.float32)}  # another run's shapes: every step fails alike
    with pytest.raises(ValueError, match="step 2.*nothing was moved or deleted"):
        ckpt.restore_latest(wrong)
    assert ckpt.steps() == [1, 2]
    for f in (tmp_path / "2").rglob("*"):  # now damage the newest: the older one restores, the newest goes aside
        if f.is_file() and f.stat().st_size > 0:
            f.write_bytes(b"\0" * 7)
    with pytest.warns(UserWarning, match="step 2 cannot be restored.*changed since it was saved"):
        step, state = ckpt.restore_latest({"w": jax.ShapeDtypeStruct((3,), jnp.float32)})
    assert step == 1 and float(state["w"][0]) == 1.0 and ckpt.steps() == [1]
    assert any(p.name.startswith("damaged-2-") for p in tmp_path.iterdir())
    ckpt.close()


def test_metrics_past_the_restored_checkpoint_are_dropped_never_the_covered_ones(tmp_path, tiny_data):
    loop.train(tiny_config(), tmp_path, *tiny_data)  # checkpoints at 3 and 6, metrics at 3 and 6
    shutil.rmtree(tmp_path / "checkpoints" / "6")  # as if killed before step 6 was saved
    (tmp_path / "checkpoints.digests" / "6.json").unlink(missing_ok=True)
    loop.train(tiny_config(), tmp_path, *tiny_data)
    steps = [r["step"] for r in runlog.read_metrics(tmp_path / "metrics.jsonl") if "train/loss" in r]
    assert steps == sorted(set(steps)) and steps[-1] == 6 and 3 in steps


def test_a_checkpoint_from_before_a_state_field_existed_restores(tmp_path):
    """A field added to the state (e.g. `ema_params`, None when off) must not strand checkpoints written before it."""
    from flax import struct

    @struct.dataclass
    class Before:
        step: jax.Array
        params: dict
        geco: object = None

    @struct.dataclass
    class After:
        step: jax.Array
        params: dict
        geco: object = None
        ema_params: object = None

    ckpt = checkpoint.Checkpointer(tmp_path, keep=2)
    ckpt.save(5, Before(jnp.int32(5), {"w": jnp.arange(4.0)}))
    ckpt.close()
    abstract = After(jax.ShapeDtypeStruct((), jnp.int32), {"w": jax.ShapeDtypeStruct((4,), jnp.float32)})
    step, state = checkpoint.Checkpointer(tmp_path, read_only=True).restore_latest(abstract)
    assert step == 5 and isinstance(state, After) and state.ema_params is None
    np.testing.assert_array_equal(state.params["w"], np.arange(4.0))
    with_ema = abstract.replace(ema_params={"w": jax.ShapeDtypeStruct((4,), jnp.float32)})  # the feature on: absent
    with pytest.raises(ValueError, match="no checkpoint .* restores into this run's state"):
        checkpoint.Checkpointer(tmp_path, read_only=True).restore_latest(with_ema)


# --- 3. two runs in one workdir -------------------------------------------------------------------------------------


def test_two_runs_in_one_workdir_are_refused_naming_the_holder(tmp_path, tiny_data):
    with workdir_lock.hold(tmp_path):
        with pytest.raises(workdir_lock.WorkdirBusyError, match=f"in use by pid {os.getpid()} on "):
            loop.train(tiny_config(), tmp_path, *tiny_data)
    assert np.all(np.asarray(loop.train(tiny_config(num_steps=3), tmp_path, *tiny_data).step) == 3)  # released


def test_a_reader_beside_a_live_run_leaves_its_unfinished_checkpoint_alone(tmp_path, tiny_data):
    """`loop.restore` (export, lns_curve) may run while the workdir's training writes its next checkpoint: it must
    not remove the run's temporary directory (a writing Checkpointer cleans such directories up when it opens), nor
    move a checkpoint it cannot read aside (the run does that itself when it resumes)."""
    loop.train(tiny_config(), tmp_path, *tiny_data)  # checkpoints 3 and 6
    in_progress = tmp_path / "checkpoints" / "9.orbax-checkpoint-tmp-1234"
    in_progress.mkdir()
    _, state = loop.restore(tmp_path)
    assert int(state.step[0]) == 6 and in_progress.exists()
    for f in (tmp_path / "checkpoints" / "6").rglob("*"):  # unreadable to the reader
        if f.is_file() and f.stat().st_size > 0:
            f.write_bytes(b"\0" * 7)
    with pytest.warns(UserWarning, match=r"step 6 cannot be restored .*skipped \(read-only: left in place\)"):
        _, state = loop.restore(tmp_path)
    assert int(state.step[0]) == 3 and (tmp_path / "checkpoints" / "6").is_dir() and in_progress.exists()


# --- 4. torn logs ---------------------------------------------------------------------------------------------------


def test_a_torn_last_metrics_line_is_dropped_with_a_warning(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "lo')
    with pytest.warns(UserWarning, match="torn last line"):
        assert runlog.read_metrics(path) == [{"step": 1, "loss": 2.0}]
    path.write_text('{"step": 1, "lo\n{"step": 2}\n')
    with pytest.raises(ValueError, match="metrics.jsonl, line 1, is damaged"):
        runlog.read_metrics(path)


def test_a_truncated_config_json_is_named(tmp_path, tiny_data):
    loop.train(tiny_config(num_steps=3), tmp_path, *tiny_data)
    path = tmp_path / "config.json"
    path.write_text(path.read_text()[:30])
    with pytest.raises(ValueError, match=f"{path} is damaged"):
        loop.train(tiny_config(), tmp_path, *tiny_data)


# --- 5. bad settings fail late or obscurely -------------------------------------------------------------------------


@pytest.mark.parametrize("override, message", [
    ({"nosie_stds": (0.1,)}, r"unknown LNS config key 'nosie_stds' \(did you mean 'noise_stds'\?\)"),
    ({"noise_stds": "(nan,)"}, r"noise_stds must be a sequence, got '\(nan,\)'"),
    ({"noise_stds": (float("nan"),)}, "noise_std must be a finite number > 0, got nan"),
    ({"num_noise_samples": (1,)}, "num_noise_samples must be an integer >= 2"),
    ({"test_limit": -1}, "test_limit must be >= 0"),
    ({"control_limit": -2}, "control_limit must be >= 0"),
    ({"datasets": ("kanisza",)}, r"unknown dataset 'kanisza' \(did you mean 'kanizsa'\?\)"),
    ({"clustering": "kmeans++"}, "'kmeans\\+\\+'"),
    ({"control_clustering": "dbscan"}, "unknown clustering method 'dbscan'"),
    ({"control_space": "rgb"}, "unknown control_space 'rgb'"),
    ({"kmeans_restarts": 0}, "kmeans_restarts must be >= 1"),
    ({"train": {**train_configs.get_config("quick").to_dict(), "learnig_rate": 1.0}}, "'learnig_rate'"),
    ({"model_train": {"vea": {"num_steps": 3}}}, r"model_train names model 'vea' \(did you mean 'vae'\?\)"),
    ({"model_train": {"ae": {"num_step": 3}}}, r"'num_step' \(did you mean 'num_steps'\?\)"),
    ({"model_train": {"ae": 3}}, "model_train.ae must map training keys to values, got 3"),
])
def test_every_lns_setting_is_checked_before_any_work(override, message):
    with pytest.raises(ValueError, match=message):
        LNSConfig.from_mapping({**lns_configs.get_config("quick").to_dict(), **override})


def test_model_train_overrides_one_models_recipe():
    config = LNSConfig.from_mapping({**lns_configs.get_config("quick").to_dict(), "models": ("ae", "vae"),
                                     "model_train": {"vae": {"num_steps": 7, "learning_rate": 0.5}}})
    vae, ae = config.model_train_config("vae", "proximity"), config.model_train_config("ae", "proximity")
    assert (vae["num_steps"], vae["learning_rate"], vae["model"]) == (7, 0.5, "vae")
    assert ae == {**vae, "model": "ae", "num_steps": config.train["num_steps"],
                  "learning_rate": config.train["learning_rate"]}


def test_a_config_typo_on_the_command_line_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "experiments.lns", "--config=experiments/configs/lns.py:quick",
                             "--config.noise_stds=(0.1, -1.0)", f"--workdir={tmp_path}"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: noise_std must be a finite number > 0, got -1.0"]
    assert not (tmp_path / "models").exists()  # nothing was trained


@pytest.mark.parametrize("images, message", [
    (np.full((1, 64, 64, 3), 200, np.uint8), "dtype uint8"),
    (np.full((1, 64, 64, 3), 200.0, np.float32), r"in \[0, 1\], got values in \[200.0, 200.0\]"),
    (np.full((1, 64, 64, 3), np.nan, np.float32), "non-finite"),
])
def test_lns_decodes_refuse_images_outside_the_models_domain(images, message):
    with pytest.raises(ValueError, match=message):  # checked before the model is touched
        lns_features.noisy_decodes(None, None, images, None, (0.1,), 5)


# --- issue 28, second round: history, resume and one-line errors ---------------------------------------------------


def test_when_no_kept_checkpoint_restores_nothing_is_moved_and_the_history_is_kept(tmp_path, tiny_data):
    loop.train(tiny_config(), tmp_path, *tiny_data)
    for step_dir in (tmp_path / "checkpoints").iterdir():  # every kept step's metadata zeroed
        metadata = step_dir / "_CHECKPOINT_METADATA"
        metadata.write_bytes(b"\0" * len(metadata.read_bytes()))
    history = (tmp_path / "metrics.jsonl").read_bytes()
    with pytest.raises(checkpoint.NoRestorableCheckpointError,
                       match=r"no checkpoint .* restores .*step 6: .*_CHECKPOINT_METADATA is changed since it was "
                             r"saved; step 3: .*nothing was moved or deleted. To start this run afresh, move"):
        loop.train(tiny_config(), tmp_path, *tiny_data)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["3", "6"]  # nothing moved aside
    assert (tmp_path / "metrics.jsonl").read_bytes() == history  # nor the metrics rewritten


def test_an_empty_newest_step_directory_is_set_aside_and_the_previous_step_restores(tmp_path, tiny_data):
    first = loop.train(tiny_config(), tmp_path, *tiny_data)
    (tmp_path / "checkpoints" / "9").mkdir()  # a directory with no file cannot be a checkpoint
    with pytest.warns(UserWarning, match=r"step 9 cannot be restored \(.*checkpoints/9 holds no file\): moved to"):
        resumed = loop.train(tiny_config(num_steps=9), tmp_path, *tiny_data)
    assert np.all(np.asarray(resumed.step) == 9)
    assert not (tmp_path / "checkpoints" / "9").exists() or any((tmp_path / "checkpoints" / "9").iterdir())
    fresh = loop.train(tiny_config(num_steps=9), tmp_path / "fresh", *tiny_data)  # the same as never interrupted
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(resumed.params), jax.tree.leaves(fresh.params)))
    assert int(np.asarray(first.step)[0]) == 6


def test_the_step_training_starts_from_is_the_restored_checkpoints_not_the_last_metrics_line(tmp_path, tiny_data):
    loop.train(tiny_config(), tmp_path, *tiny_data)
    shutil.rmtree(tmp_path / "checkpoints" / "6")  # killed after logging step 6, before its checkpoint was saved
    (tmp_path / "checkpoints.digests" / "6.json").unlink(missing_ok=True)
    started = []
    loop.train(tiny_config(), tmp_path, *tiny_data, on_start=started.append)
    assert started == [3]


@pytest.mark.parametrize("weights, message", [
    ({"reconstruction": float("nan")}, "loss_weights.reconstruction must be a finite number >= 0, got nan"),
    ({"reconstruction": float("inf")}, "loss_weights.reconstruction must be a finite number >= 0, got inf"),
    ({"reconstruction": -1.0}, "loss_weights.reconstruction must be a finite number >= 0, got -1.0"),
    ({"kl": float("-inf")}, "loss_weights.kl must be a finite number >= 0, got -inf"),
])
def test_a_non_finite_or_negative_loss_weight_is_refused_before_training(weights, message):
    config = {**train_configs.get_config("quick").to_dict(), "model": "vae", "loss_weights": weights}
    with pytest.raises(ValueError, match=re.escape(message)):
        engine_config.parse(config)


def test_a_workdir_that_is_a_file_or_under_one_is_named(tmp_path, tiny_data):
    (tmp_path / "a_file").write_text("not a directory")
    with pytest.raises(BadInputError, match=r"workdir '.*a_file' is a file, not a directory"):
        loop.train(tiny_config(), tmp_path / "a_file", *tiny_data)
    with pytest.raises(BadInputError, match=r"workdir '.*a_file/run' cannot be created: '.*a_file' is a file"):
        loop.train(tiny_config(), tmp_path / "a_file" / "run", *tiny_data)


def test_clustering_more_groups_than_pixels_is_refused_before_training():
    with pytest.raises(ValueError, match=r"num_clusters must be at most the number of pixels of an image \(4096"):
        LNSConfig.from_mapping({**lns_configs.get_config("quick").to_dict(), "num_clusters": 5000})


@pytest.mark.parametrize("module, args, status, line", [
    ("experiments.train", ["--config=experiments/configs/train.py:quick", "--config.learnig_rate=0.1"], 2,
     "error: unknown config key 'learnig_rate' in --config.learnig_rate (did you mean 'learning_rate'?)"),
    ("experiments.train", ["--config=experiments/configs/train.py:quick", "--config.loss_weights.reconstrction=1"],
     2, "error: unknown config key 'reconstrction' in --config.loss_weights.reconstrction (did you mean "
        "'reconstruction'?)"),
    ("experiments.lns", ["--config.nosie_stds=(0.1,)"], 2,  # the default config file: overridden at import
     "error: unknown config key 'nosie_stds' in --config.nosie_stds (did you mean 'noise_stds'?)"),
    ("experiments.monet", ["--config=experiments/configs/monet.py:quick", "--config.seedz=(1,)"], 2,
     "error: unknown config key 'seedz' in --config.seedz (did you mean 'seeds'?)"),
    ("experiments.lns", ["--config=experiments/configs/nowhere.py:quick"], 2,
     "error: cannot load --config=experiments/configs/nowhere.py:quick: [Errno 2] No such file or directory: "
     "'experiments/configs/nowhere.py'"),
    ("experiments.train", ["--config=experiments/configs/train.py:quick", "--config.loss_weights.reconstruction=nan"],
     2, "error: loss_weights.reconstruction must be a finite number >= 0, got nan"),
    ("experiments.train", ["--config=experiments/configs/train.py:quick", "--workdir=README.md"], 2,
     "error: workdir 'README.md' is a file, not a directory; choose another workdir"),
])
def test_command_line_mistakes_are_one_line_and_exit_status_2(tmp_path, module, args, status, line):
    args = args if any(a.startswith("--workdir") for a in args) else [*args, f"--workdir={tmp_path}/run"]
    result = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                            timeout=300, env={k: v for k, v in os.environ.items() if k != cli.DEBUG_ENV})
    assert (result.returncode, result.stderr.strip().splitlines()) == (status, [line])
    assert not (tmp_path / "run").exists()  # nothing was written


def test_the_debug_switch_shows_the_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "experiments.train", "--config=experiments/configs/train.py:quick",
                             "--config.learnig_rate=0.1", f"--workdir={tmp_path}"], cwd=ROOT, capture_output=True,
                            text=True, timeout=300, env={**os.environ, cli.DEBUG_ENV: "1"})
    assert result.returncode != 0 and "Traceback (most recent call last)" in result.stderr


def test_expected_errors_are_one_line_with_their_status_and_bugs_keep_their_traceback(capfd):
    """`cli.one_line_errors` in a child process (it exits the process): an expected error is one line with its
    status; an unexpected one propagates."""
    script = ("import sys\nfrom noisegroup import cli\nfrom noisegroup.errors import ExpectedError\n"
              "with cli.one_line_errors():\n"
              "    if sys.argv[1] == 'expected':\n        raise ExpectedError('the run cannot go on\\n(really)')\n"
              "    raise KeyError('a bug')\n")
    expected = subprocess.run([sys.executable, "-c", script, "expected"], cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert (expected.returncode, expected.stderr) == (1, "error: the run cannot go on (really)\n")
    bug = subprocess.run([sys.executable, "-c", script, "bug"], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert bug.returncode == 1 and "Traceback (most recent call last)" in bug.stderr and "KeyError" in bug.stderr


# --- 6. the NaN check for every clustering method -------------------------------------------------------------------


@pytest.mark.parametrize("method", sweep.CLUSTER_METHODS)
def test_nan_features_are_named_by_every_clustering_method(method):
    features = np.random.default_rng(0).normal(size=(2, 16, 4)).astype(np.float32)
    features[1, 3, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        sweep.segment(features, np.array([2, 2]), method, jax.random.key(0), workers=1)


# --- 7. ARI memory and overflow -------------------------------------------------------------------------------------


def test_host_ari_memory_follows_the_labels_present_not_the_largest():
    pred = np.zeros((2, 8, 8), np.int64)
    pred[:, :4] = 2**40  # a huge label: relabelled to 1 before any table is built
    true = np.zeros((2, 8, 8), np.int64)
    true[:, 4:] = 9999
    np.testing.assert_allclose(metrics.batch_ari(pred, true), 1.0)
    with pytest.raises(ValueError, match="integer labels"):
        metrics.batch_ari(pred.astype(np.float32), true)


# --- 8. a full disk -------------------------------------------------------------------------------------------------


def _run_under_a_file_size_limit(tmp_path, body):
    """Runs `body` (Python source) in a child process that may lower RLIMIT_FSIZE for itself.

    Writes past the limit fail with EFBIG, as writes to a full disk fail with ENOSPC. The limit is never set in the
    pytest process: it would also apply to pytest's own output when that goes to a file (as it does in CI).
    """
    preamble = ("import resource, signal\n"
                "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
                "def file_size_limit(size):\n"
                "    resource.setrlimit(resource.RLIMIT_FSIZE, (size, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))\n")
    result = subprocess.run([sys.executable, "-c", preamble + body, str(tmp_path)], cwd=ROOT, capture_output=True,
                            text=True, timeout=600, env={**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}"})
    assert result.returncode == 0, result.stderr[-3000:]


def test_an_atomic_write_on_a_full_disk_names_the_file_and_leaves_nothing(tmp_path):
    _run_under_a_file_size_limit(tmp_path, """
import sys
from pathlib import Path
import numpy as np
from noisegroup import atomic, cli
tmp_path = Path(sys.argv[1])
atomic.save_npz(tmp_path / "kept.npz", x=np.zeros(10))
before = (tmp_path / "kept.npz").read_bytes()
file_size_limit(4096)
try:
    atomic.save_npz(tmp_path / "kept.npz", x=np.random.default_rng(0).random(100_000))
    raise AssertionError("the write past the limit did not fail")
except OSError as error:
    assert "cannot write" in str(error) and "kept.npz" in str(error), error
    assert cli.is_disk_error(error), error
assert [p.name for p in tmp_path.iterdir()] == ["kept.npz"], list(tmp_path.iterdir())
assert (tmp_path / "kept.npz").read_bytes() == before
""")


def test_a_checkpoint_write_that_fails_midway_is_named_and_removed(tmp_path):
    _run_under_a_file_size_limit(tmp_path, """
import resource, sys
from pathlib import Path
import jax, jax.numpy as jnp, numpy as np
from noisegroup import cli
from noisegroup.engine import checkpoint
tmp_path = Path(sys.argv[1])
ckpt = checkpoint.Checkpointer(tmp_path, keep=3)
ckpt.save(1, {"w": jnp.ones((10,))})
ckpt.wait()
file_size_limit(64 * 1024)
ckpt.save(2, {"w": jnp.asarray(np.random.default_rng(0).random(1_000_000), jnp.float32)})  # 4 MB
try:
    ckpt.wait()
    raise AssertionError("the write past the limit did not fail")
except checkpoint.CheckpointWriteError as error:
    assert f"{tmp_path / '2'}: File too large" in str(error), error
    assert cli.is_disk_error(error), error
assert not [p for p in tmp_path.iterdir() if "tmp" in p.name], list(tmp_path.iterdir())  # orbax's temporary dir
file_size_limit(resource.RLIM_INFINITY)
assert ckpt.steps() == [1], ckpt.steps()
step, state = ckpt.restore_latest({"w": jax.ShapeDtypeStruct((10,), jnp.float32)})
assert step == 1 and np.all(np.asarray(state["w"]) == 1.0)
ckpt.close()
""")


def test_a_full_disk_is_one_line_before_orbax_writes(tmp_path, monkeypatch):
    full = collections.namedtuple("usage", "total used free")(10**9, 10**9 - 50_000, 50_000)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: full)
    ckpt = checkpoint.Checkpointer(tmp_path / "checkpoints", keep=3)
    with pytest.raises(checkpoint.CheckpointWriteError, match=r"checkpoints/1: No space left on device \(it needs"):
        ckpt.save(1, {"w": jnp.ones((1_000_000,))})
    assert list((tmp_path / "checkpoints").iterdir()) == []
    ckpt.close()


def test_a_full_disk_ends_a_training_command_in_one_line(tmp_path):
    """The command line: exit status 1 and exactly one line on stderr, naming the checkpoint and the reason."""
    script = ("import collections, runpy, shutil, sys\n"
              "shutil.disk_usage = lambda p: collections.namedtuple('u', 'total used free')(10**9, 10**9, 0)\n"
              "sys.argv = ['train', *sys.argv[1:]]\n"
              "runpy.run_module('experiments.train', run_name='__main__')\n")
    result = subprocess.run([sys.executable, "-c", script, "--config=experiments/configs/train.py:quick",
                             "--config.num_steps=2", "--config.checkpoint_every=2", "--config.progress=False",
                             f"--workdir={tmp_path}"], cwd=ROOT, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 1, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and re.fullmatch(
        rf"error: \[Errno 28\] cannot write the checkpoint {tmp_path}/checkpoints/2: No space left on device "
        r"\(it needs ~[0-9.]+ MB, 0.0 MB are free\)", lines[0]), lines
    assert not [p for p in tmp_path.rglob("*") if "tmp" in p.name]
    assert json.loads((tmp_path / "config.json").read_text())["num_steps"] == 2


# --- issue 28, second round: caches, data files, library inputs, shipped weights ------------------------------------


def _fake_lns_segmentation(calls: list, seeds: int = 2):
    """A stand-in for `pipeline.segment_model`: the arrays it writes for the config of
    `test_a_segmentation_cache_missing_an_array_or_misshapen_is_recomputed` (4 test images, 2 x 2 grid, 4 test_iid
    images, control on 2), random ARIs; `calls` counts the segmentations."""

    def segment(config, graphdef, params, dataset, key, model=""):
        calls.append(dataset)
        rng = np.random.default_rng(len(calls))
        b, grid = 4, (seeds, 2, 2)
        return {"test_ari": rng.random((*grid, b), np.float32), "test_ari_fg": rng.random((*grid, b), np.float32),
                "zero_feature_fraction": np.zeros((*grid, b), np.float32),
                "reconstructions": np.zeros((b, 64, 64, 3), np.float32), "images": np.zeros((b, 64, 64, 3), np.float32),
                "masks": np.zeros((b, 64, 64), np.uint8), "paper_setting": np.array([1, 0]),
                "labels": np.zeros((b, 64, 64), np.int32), "umap_features": np.zeros((1, 64 * 64, 3), np.float32),
                "test_iid_ari": rng.random((*grid, 4), np.float32), "fair_setting": np.array([0, 1]),
                "control_ari": rng.random((seeds, 2), np.float32)}

    return segment


def test_a_segmentation_cache_missing_an_array_or_misshapen_is_recomputed(tmp_path, monkeypatch):
    from noisegroup.lns import pipeline, results

    calls = []
    monkeypatch.setattr(pipeline, "model_params", lambda *args: (None, {"w": np.zeros((2, 3))}, {"steps": 0}))
    monkeypatch.setattr(pipeline, "segment_model", _fake_lns_segmentation(calls))
    config = {**lns_configs.get_config("quick").to_dict(), "datasets": ("kanizsa",), "models": ("ae",),
              "pretrained": "", "noise_stds": (0.01, 0.1), "num_noise_samples": (2, 5), "test_limit": 4,
              "control_limit": 2, "umap_images": 1, "fair_protocol": True, "control": True, "figures": False,
              "progress": False}
    rows = pipeline.run(config, tmp_path)
    assert pipeline.run(config, tmp_path) == rows and len(calls) == 1  # what this run writes: used as it is
    path = results.segmentation_path(tmp_path, "ae", "kanizsa")
    with np.load(path) as f:
        written = {k: f[k] for k in f.files}
    atomic.save_npz(path, **{k: v for k, v in written.items() if k != "test_ari_fg"})  # one array lost
    with pytest.warns(UserWarning, match=r"ae_kanizsa.npz does not hold what this run writes \(missing array\(s\) "
                                         r"\['test_ari_fg'\]\); recomputing it"):
        assert len(pipeline.run(config, tmp_path)) == len(rows)
    assert len(calls) == 2
    with np.load(path) as f:
        written = {k: f[k] for k in f.files}
    atomic.save_npz(path, **{**written, "test_ari": written["test_ari"][..., :3]})  # an image short: another ARI
    with pytest.warns(UserWarning, match=r"array 'test_ari' has shape \(2, 2, 2, 3\), expected "
                                         r"\(seeds=2, sigmas=2, Ns=2, images=4\)\); recomputing it"):
        pipeline.run(config, tmp_path)
    assert len(calls) == 3
    with np.load(path) as f:
        assert f["test_ari"].shape == (2, 2, 2, 4)


def test_an_empty_tfrecord_file_is_named_unless_an_empty_split_is_allowed(tmp_path):
    from datasets import multi_dsprites as md

    zero_bytes = tmp_path / "copied.tfrecords"
    zero_bytes.write_bytes(b"")  # an interrupted copy or download
    no_records = tmp_path / "written.tfrecords"  # a valid gzip stream that holds no record
    md.write_tfrecord_examples(no_records, "multi_dsprites", "colored_on_colored", np.zeros((0, 64, 64, 3), np.uint8),
                               np.zeros((0, 5, 64, 64), np.uint8))
    for path, size in ((zero_bytes, 0), (no_records, no_records.stat().st_size)):
        message = rf"{path} holds no records \({size} bytes\): an empty dataset file \(pass allow_empty=True"
        with pytest.raises(md.TFRecordError, match=message):
            md.read_tfrecord(path, "multi_dsprites", "colored_on_colored")
        with pytest.raises(md.TFRecordError, match=message):
            next(md.iter_examples(path, "multi_dsprites", "colored_on_colored"))
        empty = md.read_tfrecord(path, "multi_dsprites", "colored_on_colored", allow_empty=True)  # the user says so
        assert len(empty) == 0 and empty.images.shape == (0, 64, 64, 3)


def _lns_entry_points():
    """{name: call(graphdef, params, stacked params, images, masks)} of the public LNS feature functions."""
    from noisegroup.lns import tangent

    key = jax.random.key(0)
    settings = sweep.SweepSettings(noise_stds=(0.1,), num_noise_samples=(3,), method="kmeans", workers=1)
    keys = lambda images: lns_features.image_keys(key, jnp.arange(len(images)))  # noqa: E731
    return {
        "noisy_decodes": lambda g, p, s, x, m: lns_features.noisy_decodes(g, p, x, keys(x), 0.1, 3),
        "setting_features": lambda g, p, s, x, m: sweep.setting_features(g, p, x, key, 0.1, 3),
        "sweep.evaluate": lambda g, p, s, x, m: sweep.evaluate(g, s, x, m, key, settings),
        "jacobians": lambda g, p, s, x, m: tangent.jacobians(g, p, x),
        "tangent_features": lambda g, p, s, x, m: tangent.tangent_features(g, p, x),
        "bridge": lambda g, p, s, x, m: tangent.bridge(g, p, x, key, (0.1,), (3,)),
        "tangent.evaluate": lambda g, p, s, x, m: tangent.evaluate(g, s, x, m, key, settings),
    }


@pytest.mark.parametrize("entry_point", list(_lns_entry_points()))
def test_lns_entry_points_name_images_of_another_size_or_channel_count(entry_point):
    """Each public feature function, given images the AE does not take, names them and the model's shape before any
    work (abstract weights: the check needs the model's shapes only; a call that got past it would fail on them)."""
    from flax import nnx

    from noisegroup.models import AutoEncoder

    graphdef, params = nnx.split(nnx.eval_shape(lambda: AutoEncoder(15, rngs=nnx.Rngs(params=0))), nnx.Param)
    stacked = jax.tree.map(lambda x: jax.ShapeDtypeStruct((2, *x.shape), x.dtype), params)
    call = _lns_entry_points()[entry_point]
    for shape in ((32, 32, 3), (48, 48, 3), (65, 65, 3), (128, 128, 3), (64, 64, 1)):
        images, masks = np.full((2, *shape), 0.5, np.float32), np.zeros((2, *shape[:2]), np.int32)
        message = rf"images must have the model's shape \[n, 64, 64, 3\], got \[2, {', '.join(map(str, shape))}\]"
        with pytest.raises(ValueError, match=message):
            call(graphdef, params, stacked, images, masks)


def test_a_float_image_size_is_named_by_the_good_gestalt_loaders(tmp_path):
    for call in (lambda: gg.load("kanizsa", "test", image_size=64.0, cache_dir=tmp_path),
                 lambda: gg.generate("kanizsa", "test", image_size=64.0, limit=2)):
        with pytest.raises(ValueError, match=r"image_size must be an integer in \(64, 256\), got 64.0"):
            call()
    assert list(tmp_path.iterdir()) == []  # refused before any file was named after "64.0px"


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_jax_kmeans_called_directly_names_non_finite_features(bad):
    from noisegroup.lns import kmeans

    features = np.random.default_rng(0).normal(size=(3, 16, 4)).astype(np.float32)
    features[2, 5, 1] = bad
    with pytest.raises(ValueError, match=r"non-finite features in image 2 \(1 image\(s\) in all\)"):
        kmeans.batch_kmeans(jnp.asarray(features), 2, jax.random.key(0))
    with pytest.raises(ValueError, match=r"features must be \[images, pixels, features\], got shape \(16, 4\)"):
        kmeans.batch_kmeans(features[0], 2, jax.random.key(0))


def _set_first(name: str, value):
    """A `rewrite_weights` change: the first weight of parameter `name` set to `value`."""

    def change(arrays):
        arrays[name] = arrays[name].copy()
        arrays[name].reshape(-1)[0] = value

    return change


def test_sealed_weights_with_nan_or_a_missing_unknown_or_misshapen_parameter_are_refused_at_verify(
        tmp_path, weights_file):
    train_config, path = weights_file
    with np.load(path) as f:
        names = sorted(k for k in f.files if not k.startswith("__"))
        kernel = next(k for k in names if f[k].ndim >= 3)
    cases = {  # file name: (change with a matching digest, what the one-line error says)
        "nan.npz": (_set_first(kernel, np.nan), rf"nan.npz: {kernel} holds non-finite values \(NaN or inf\), at "
                                                r"index \[0, 0"),
        "inf.npz": (_set_first(kernel, np.inf), rf"inf.npz: {kernel} holds non-finite values"),
        "missing.npz": (lambda a: a.pop(kernel), rf"missing.npz lacks parameters \['{kernel}'\]"),
        "unknown.npz": (lambda a: a.update({"encoder/extra/kernel": np.zeros((2, 3), np.float16)}),
                        r"unknown.npz holds parameters \['encoder/extra/kernel'\] that the model does not have"),
        "shape.npz": (lambda a: a.update({kernel: a[kernel][..., :-1]}),
                      rf"shape.npz: parameter {kernel} has shape \(.*\), the model wants \("),
    }
    for file_name, (change, message) in cases.items():
        damaged = tmp_path / file_name
        rewrite_weights(path, damaged, change)
        for check in (pretrained.verify, pretrained.load):  # verify: what LNS runs on every file before any work
            with pytest.raises(ValueError, match=message) as error:
                check(damaged, train_config)
            assert "\n" not in str(error.value)
    pretrained.verify(path, train_config)  # the intact file passes
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    rewrite_weights(path, shipped / "ae_kanizsa.npz", _set_first(kernel, np.nan))
    lns_config = {**lns_configs.get_config("quick").to_dict(), "datasets": ("kanizsa",), "models": ("ae",),
                  "train": train_config, "pretrained": str(shipped)}
    with pytest.raises(ValueError, match=rf"ae_kanizsa.npz: {kernel} holds non-finite values"):
        LNSConfig.from_mapping(lns_config)  # the config check: one line from the command line, no work done


def test_a_killed_writers_temporary_files_are_swept_when_a_dataset_cache_folder_is_next_written(tmp_path):
    """Only provably dead writers' files go: a live writer's, a fresh one (maybe another host's writer on a shared
    folder) and files not named as our temporary files stay."""
    import time

    from datasets import multi_dsprites as md

    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()  # its pid: no process now
    dead, live = finished.pid, os.getppid()
    hour, now = 3600.0, time.time()
    for writer, folder in ((lambda: md.load("valid", 2, cache_dir=tmp_path / "md"), tmp_path / "md"),
                           (lambda: gg.load("kanizsa", "test", cache_dir=tmp_path / "gg"), tmp_path / "gg")):
        folder.mkdir()
        ages = {f".a.npz.{dead}.tmp": hour, f".b.npz.{dead}.tmp": 0.0, f".c.npz.{live}.tmp": hour,
                f".d.npz.{live}.tmp": 48 * hour, ".e.npz.tmp": 48 * hour, "f.npz.123.tmp": 48 * hour}
        for name, age in ages.items():
            (folder / name).write_bytes(b"partial")
            os.utime(folder / name, (now - age, now - age))
        writer()
        left = sorted(p.name for p in folder.iterdir() if p.name in ages)
        assert left == [f".b.npz.{dead}.tmp", f".c.npz.{live}.tmp", ".e.npz.tmp", "f.npz.123.tmp"], left
