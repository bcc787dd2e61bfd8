"""Several processes on JAX's own distributed runtime: two local CPU processes (gloo collectives, coordinator on
127.0.0.1) train one run of the toy family (tests/toy_train.py: the engine is the same for every family, and the
toy compiles in seconds); it equals the single-process run and resumes from its checkpoint on one process."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
import toy_family  # noqa: F401  (registers the "tiny" family, which loop.restore looks up)

from noisegroup.engine import loop, runlog

ROOT = Path(__file__).parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env() -> dict:
    """One CPU device per process (not the test session's four fake ones)."""
    return {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"} | {"JAX_PLATFORMS": "cpu"}


def train_command(workdir: Path, num_steps: int, data_parallel: int = 1, *multi_process) -> list[str]:
    multi = [f"{k}={v}" for k, v in zip(("coordinator", "num_processes", "process_id"), multi_process)]
    return [sys.executable, str(ROOT / "tests" / "toy_train.py"), str(workdir), f"num_steps={num_steps}",
            f"data_parallel={data_parallel}", *multi]


def run_processes(workdir: Path, count: int, num_steps: int, data_parallel: int) -> None:
    port = free_port()
    procs = [subprocess.Popen(train_command(workdir, num_steps, data_parallel, f"127.0.0.1:{port}", count, i),
                              cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(count)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]


def run_single(workdir: Path, num_steps: int) -> str:
    done = subprocess.run(train_command(workdir, num_steps), cwd=ROOT, env=env(), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stderr


def losses_of(workdir: Path) -> np.ndarray:
    return np.array([r["train/loss"] for r in runlog.read_metrics(workdir / "metrics.jsonl")])


@pytest.fixture(scope="module")
def single_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("single")
    run_single(workdir, 6)
    return workdir


@pytest.mark.parametrize("data_parallel", [1, 2])
def test_two_processes_equal_one_and_resume_on_one(tmp_path, single_run, data_parallel):
    """data_parallel=1: each process holds one seed; 2: both seeds, each process half of every batch."""
    run_processes(tmp_path, 2, 4, data_parallel)
    reference = losses_of(single_run)
    np.testing.assert_allclose(losses_of(tmp_path), reference[:2], rtol=1e-5)
    # The checkpoint written by two processes restores on one, and the run resumes there (saying so).
    config, state = loop.restore(tmp_path)
    _, single_state = loop.restore(single_run, step=4)
    # Same seeds, batches and keys; only float reduction order differs between the programs (and with it the
    # CPU threads XLA gets: one pinned core gave 0.027 %), and Adam's sign-like first steps amplify it in near-zero
    # gradients: a few values in ten thousand differ beyond 1e-5, none by more than Adam's steps can move them. A
    # wrong batch split or seed would move most of the values.
    diffs = np.concatenate([np.abs(a - b).ravel() for a, b in zip(
        jax.tree.leaves(jax.device_get(state.params)), jax.tree.leaves(jax.device_get(single_state.params)))])
    assert np.mean(diffs > 1e-5) < 1e-3 and diffs.max() <= 2 * config["learning_rate"] * 4
    warnings = run_single(tmp_path, 6)  # one device: no data axis (a resumable key)
    assert "resuming a run of 2 process(es) on 1" in warnings
    np.testing.assert_allclose(losses_of(tmp_path), reference, rtol=1e-4)


def test_an_unreachable_coordinator_fails_within_its_timeout():
    code = ("from noisegroup.engine import parallel\n"
            f"parallel.initialize('127.0.0.1:{free_port()}', 2, 1, timeout_s=5)")
    tic = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env(), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0
    assert "could not join the run at coordinator '127.0.0.1:" in done.stderr and "within 5 s" in done.stderr
    assert time.perf_counter() - tic < 60


@pytest.mark.parametrize("kwargs, message", [
    (dict(coordinator="127.0.0.1:1"), r"missing \['num_processes', 'process_id'\]"),
    (dict(coordinator="127.0.0.1:1", num_processes=2, process_id=2), r"process_id must lie in \[0, num_processes=2\)"),
])
def test_incomplete_settings_are_named(kwargs, message):
    from noisegroup.engine import parallel

    with pytest.raises(ValueError, match=message):
        parallel.initialize(**kwargs)
