"""Benchmark: what the MONet default's conditions cost to compile, in this tree or another (issue 29, item 3).

    python -m benchmarks.monet_compile                       # this tree
    python -m benchmarks.monet_compile --base HEAD~5         # also a base commit, side by side (a git worktree)

Builds each condition of `experiments/configs/monet.py:default` in one process, as `python -m experiments.monet`
does, and times its first train and validation step (tracing and XLA compilation, plus one step) and three more
steps. The loss weights are an input of the step, so conditions that differ only in their weights reuse the first
one's program: from the second condition on, the first call costs about one step. Trees before that compiled every
condition anew. Prints per condition and the total "compile" time (first calls less one step each).
"""

try:
    from noisegroup import malloc
except ImportError:  # trees before issue 29 kept it in the engine package
    from noisegroup.engine import malloc

malloc.reuse_freed_memory()  # before JAX starts its threads

import argparse  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).parents[1]


def measure() -> float:
    """Times this process's tree; returns the total compile seconds."""
    import jax
    import jax.numpy as jnp

    from experiments.configs import monet as monet_configs
    from noisegroup.engine import loop
    from noisegroup.komatsu import pipeline

    ablation = pipeline.AblationConfig.from_mapping(monet_configs.get_config("default").to_dict())
    names = getattr(ablation, "names", ablation.conditions)  # trees before the condition table: a tuple of names
    size, seeds = ablation.image_size, len(ablation.seeds)
    total = 0.0
    for name in names:
        train_config = ablation.train_config(name)
        tic = time.perf_counter()
        _, _, (init, step, evaluate) = loop.build(train_config, (size, size, 3), "loop")  # the default's batching
        keys = jnp.stack([jax.random.key(s) for s in range(seeds)])
        state = init(keys)
        batch = {"images": jnp.zeros((seeds, 8, size, size, 3)), "masks": jnp.zeros((seeds, 8, size, size), jnp.uint8)}
        state, metrics = step(state, batch, keys)
        state, valid = evaluate(state, batch, keys, jnp.int32(0))
        jax.block_until_ready((state, metrics, valid))
        first = time.perf_counter() - tic
        tic = time.perf_counter()
        for _ in range(3):
            state, metrics = step(state, batch, keys)
        jax.block_until_ready(state)
        per_step = (time.perf_counter() - tic) / 3
        total += first - per_step
        print(f"  {name:<6} first train + validation step {first:5.1f} s; then {per_step * 1e3:4.0f} ms a step",
              flush=True)
    print(f"  total compile (first calls less one step each): {total:.1f} s", flush=True)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="", help="a commit to time as well, in a temporary git worktree")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        measure()
        return
    trees = [("this tree", ROOT)]
    with tempfile.TemporaryDirectory() as tmp:
        if args.base:
            base = Path(tmp) / "base"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base), args.base], check=True,
                           capture_output=True)
            trees.insert(0, (f"base {args.base}", base))
        try:
            for label, tree in trees:
                print(f"{label}:", flush=True)
                # The child runs this file from this tree against the tree's own packages (run_path: the file's
                # folder does not go on sys.path, where benchmarks/datasets.py would hide the datasets package).
                child = (f"import runpy, sys; sys.argv = ['monet_compile', '--child']; "
                         f"runpy.run_path({str(Path(__file__).resolve())!r}, run_name='__main__')")
                subprocess.run([sys.executable, "-c", child], cwd=tree, check=True,
                               env={**os.environ, "PYTHONPATH": str(tree)})
        finally:
            if args.base:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=False)


if __name__ == "__main__":
    main()
