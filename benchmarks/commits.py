"""Benchmark: this tree against an earlier commit, side by side in one run (no slowdown from a refactor).

    python -m benchmarks.commits --base cc17650            # the commit before the engine refactor
    python -m benchmarks.commits --base HEAD~3 --rounds 3 --seeds 1 2 4

Checks the base commit out in a temporary git worktree, then times the same workloads in fresh processes of each
tree, alternating trees round by round (so drift in the machine's load falls on both), each at its own defaults:
the AE and VAE train step at batch 64 (the paper's Adam settings, micro-batches and seed mapping as each tree does
on this backend), S seeds, the LNS features of 100 Kanizsa test images at sigma 1e-3, N = 40, and with --monet the
MONet step (batch 64, 64 x 64, K = 5, RMSProp; trees with the engine package only). Medians over
rounds; ratio = base / this tree (> 1: this tree is faster).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).parents[1]

# Runs in either tree: it finds the API it has (the engine package, or the old flat modules).
PROBE = r'''
import json, statistics, sys, time
try:
    try:
        from noisegroup import malloc
    except ImportError:  # trees before the house (issue 29) kept it in the engine package
        from noisegroup.engine import malloc
    malloc.reuse_freed_memory()
    NEW = True
except ImportError:
    import noisegroup  # the old tree tunes malloc at import
    NEW = False
import jax, jax.numpy as jnp
from experiments.configs import train as train_configs

def timed(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        tic = time.perf_counter(); fn(); times.append(time.perf_counter() - tic)
    return statistics.median(times)

def programs(model, seeds):
    if model == "monet":  # condition 11 (the family's defaults, K = 5) with MONet's optimiser (engine trees only)
        c = {"model": "monet", "dataset": "multi_dsprites", "optimizer": "rmsprop", "learning_rate": 1e-4,
             "seeds": tuple(range(seeds)), "batch_size": 64, "progress": False}
    else:
        c = train_configs.get_config("paper").to_dict()
        c.update(model=model, seeds=tuple(range(seeds)), batch_size=64)
    if NEW:
        from noisegroup.engine import loop, parallel
        _, trainer, progs = loop.build(c, (64, 64, 3), parallel.resolve_seed_batching("auto", False))
        return trainer, progs, lambda x: {"images": x}
    from noisegroup import train
    items = tuple((k, c[k]) for k in train.TRAINER_KEYS)
    trainer, progs = train._trainer_and_programs(items, train.resolve_seed_batching("auto", False))
    return trainer, progs, lambda x: x

def step_time(model, seeds, repeats):
    _, (init, step, _), wrap = programs(model, seeds)
    keys = jnp.stack([jax.random.key(s) for s in range(seeds)])
    batch = wrap(jax.random.uniform(jax.random.key(1), (seeds, 64, 64, 64, 3)))
    holder = {"state": init(keys)}
    def run():
        holder["state"], metrics = step(holder["state"], batch, keys)
        jax.block_until_ready(metrics)
    return timed(run, repeats)

def features_time(repeats):
    from datasets import good_gestalt as gg
    trainer, _, _ = programs("ae", 1)
    params = trainer.init(jax.random.key(0)).params
    images = gg.load("kanizsa", "test").images
    if NEW:
        from noisegroup.lns import sweep
        fn = sweep.setting_features
    else:
        from noisegroup import sweep
        fn = sweep.features
    return timed(lambda: jax.block_until_ready(fn(trainer.graphdef, params, images, jax.random.key(42), 1e-3, 40)),
                 repeats)

task, repeats = sys.argv[1], int(sys.argv[2])
if task == "features":
    print(json.dumps(features_time(repeats)))
else:
    model, seeds = task.split(":")
    print(json.dumps(step_time(model, int(seeds), repeats)))
'''


def measure(tree: Path, task: str, repeats: int) -> float:
    out = subprocess.run([sys.executable, "-c", PROBE, task, str(repeats)], cwd=tree, capture_output=True,
                         text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="cc17650", help="the commit to compare with")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--monet", action="store_true", help="also the MONet step (batch 64, 64 x 64, K = 5)")
    args = parser.parse_args()
    tasks = [f"ae:{s}" for s in args.seeds] + ["vae:1", "features"] + (["monet:1"] if args.monet else [])
    with tempfile.TemporaryDirectory() as tmp:
        base_tree = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", str(base_tree), args.base], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            times = {(tree, task): [] for tree in ("base", "this") for task in tasks}
            for _ in range(args.rounds):
                for task in tasks:
                    for tree, path in (("base", base_tree), ("this", ROOT)):
                        times[tree, task].append(measure(path, task, args.repeats))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base_tree)], cwd=ROOT, capture_output=True)
    print(f"seconds (median of {args.rounds} rounds x {args.repeats} repeats), base {args.base} vs this tree")
    print(f"{'workload':34s} {'base':>9s} {'this':>9s} {'base/this':>10s}")
    rows = {}
    for task in tasks:
        base, this = (statistics.median(times[tree, task]) for tree in ("base", "this"))
        label = "LNS features, 100 images, N=40" if task == "features" else \
            f"{task.split(':')[0].upper()} step, batch 64, S={task.split(':')[1]}"
        rows[label] = {"base": base, "this": this}
        print(f"{label:34s} {base:9.3f} {this:9.3f} {base / this:10.2f}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
