"""Benchmark: the GENESIS and GENESIS-v2 training steps, JAX (the noisegroup engine) vs. PyTorch eager, side by side.

    python -m benchmarks.genesis_step                # PyTorch column: `pip install torch==2.13.0`
    python -m benchmarks.genesis_step --batch 4 --rounds 1 --seeds 1,2 --models genesis_v2

The workload: the official training (`noisegroup.baselines.training_config`: Adam 1e-4, GECO on the NLL weighting
the KL), K = 5, 64 x 64 x 3 images, batch `--batch` (64) per seed, on this machine's default JAX backend. Per model:
  - one optimizer step as the engine compiles it (`Trainer.programs`, the loss weights an input, as
    `loop.build` binds them; GENESIS-v2 in its CPU micro-batches of 8, GENESIS in one pass) with S = 1, 2, 4 seeds
    vmapped and looped (`--seeds`, `--batching`; the engine's CPU default is the loop), each S in per-seed batches of
    `--batch`, and the PyTorch statement of the same model
    (`benchmarks.genesis_torch.train_step`, PyTorch threads = JAX's CPU threads, this process): every cell taken
    once per round, in a new random order each round (`benchmarks.shuffled_rounds`), after a warm-up, so a shared
    machine's drift falls on all alike. Printed: median seconds, the step with S seeds against S x the one-seed step
    (per-seed cost; below 1: seeds share work), torch / JAX one seed (per round: median and range);
  - compile seconds and XLA's memory analysis of each compiled step (temp + argument bytes; buffers donated);
  - forward FLOPs per image: XLA's cost analysis of the jitted loss at batch 1, PyTorch's FlopCounterMode of its
    forward at batch 1, the spec's count (`shared/spec/genesis_reference.md` C.5: 2 x MACs of convs, transposed convs
    on the input side, linears and LSTMs; GENESIS-v2 with feat_head once), their ratios, and the one-seed step's
    XLA FLOPs per image / forward (C.5 says ~3);
  - the process's peak RSS (getrusage; a high-water mark, so cumulative over the run) after the model's JAX cells
    are compiled and warmed up, and after its rounds (PyTorch included).
"""

from __future__ import annotations

from noisegroup import malloc

MALLOC_TUNED = malloc.reuse_freed_memory()  # before JAX starts its threads, as every entry point

import argparse  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from benchmarks import (  # noqa: E402
    load_torch,
    peak_rss_gb,
    print_machine,
    print_step_table,
    shuffled_rounds,
    xla_cost,
    xla_memory_gb,
)
from noisegroup import baselines  # noqa: E402
from noisegroup.engine import loop  # noqa: E402

SIZE, SLOTS = 64, 5
NAMES = {"genesis": "GENESIS", "genesis_v2": "GENESIS-v2"}
SPEC_FLOPS = {"genesis": 2 * 3029.7e6, "genesis_v2": 2 * 1555.9e6}  # C.5's totals in MACs (6.1 / 3.1 GFLOP)


def step_config(model: str, batch: int, seeds: int) -> dict:
    """The official training settings of a baseline at `batch` images per seed, `seeds` seeds."""
    return baselines.training_config(model, "kanizsa", range(seeds), "default", {"batch_size": batch,
                                                                                  "progress": False})


def jax_step_cell(model: str, batch: int, seeds: int, batching: str = "vmap") -> dict:
    """{"run": one engine step of S seeds (blocks), "compile_s", "memory_gb", "flops", "micro", "parameters"};
    `batching` the seed axis's mapping (`noisegroup.engine.parallel`: "vmap", or "loop", the CPU's "auto")."""
    _, trainer, _ = loop.build(step_config(model, batch, seeds), (SIZE, SIZE, 3))
    init, step, _ = trainer.programs(batching)  # the jitted multi-seed step, the loss weights an input
    weights = trainer.weight_arrays()
    keys = jnp.stack([jax.random.key(s) for s in range(seeds)])
    images = {"images": jax.random.uniform(jax.random.key(1), (seeds, batch, SIZE, SIZE, 3))}
    holder = {"state": jax.block_until_ready(init(keys))}
    start = time.perf_counter()
    if hasattr(step, "lower"):
        compiled = step.lower(holder["state"], images, keys, weights).compile()
    else:  # "loop": the one-seed program called per seed (compiled at its first call, the warm-up below)
        compiled = step
    compile_s = time.perf_counter() - start if hasattr(step, "lower") else None

    def run():
        holder["state"], metrics = compiled(holder["state"], images, keys, weights)  # the state is donated
        jax.block_until_ready(metrics)

    parameters = sum(math.prod(x.shape[1:]) for x in jax.tree.leaves(holder["state"].params))
    run()  # warm-up
    return {"run": run, "compile_s": compile_s, "memory_gb": xla_memory_gb(compiled), "flops": xla_cost(compiled),
            "micro": trainer.micro_batch_size, "parameters": parameters}


def jax_forward_flops(model: str) -> float | None:
    """XLA's FLOP count of the jitted loss (the model's forward and its loss terms) of one image."""
    _, trainer, _ = loop.build(step_config(model, 1, 1), (SIZE, SIZE, 3))
    state = trainer.init(jax.random.key(0))
    batch = {"images": jax.random.uniform(jax.random.key(1), (1, SIZE, SIZE, 3))}
    noise = trainer.family.sample_noise(jax.random.key(2), batch)
    forward = jax.jit(lambda p, b, n, g: trainer.loss(p, b, n, g)[0])
    return xla_cost(forward.lower(state.params, batch, noise, state.geco).compile())


def torch_step_cell(model: str, batch: int) -> dict:
    """{"run": one PyTorch training step (Adam, the GECO objective; `.item()` blocks), "parameters", "flops": its
    forward's FlopCounterMode count per image at batch 1 (None if unavailable)}."""
    import torch

    from benchmarks import genesis_torch as gt

    torch.manual_seed(0)
    net = (gt.Genesis if model == "genesis" else gt.GenesisV2)(SLOTS)
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(batch, SIZE, SIZE, 3, generator=generator)
    noise = gt._noise(net, batch, generator)  # drawn once: the JAX step draws its noise inside, a negligible cost
    optimizer = gt.make_optimizer(net)
    try:
        from torch.utils.flop_counter import FlopCounterMode
    except ImportError:  # an older PyTorch
        flops = None
    else:
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            net(x[:1], *gt._noise(net, 1, generator))
        flops = float(counter.get_total_flops())

    def run():
        gt.train_step(net, optimizer, x, *noise)

    run()  # warm-up (Adam's state)
    return {"run": run, "parameters": gt.parameter_count(net), "flops": flops}


def bench_model(model: str, batch: int, seed_counts: list[int], rounds: int, have_torch: bool,
                batchings: tuple[str, ...]) -> None:
    cells = {"S=1": jax_step_cell(model, batch, 1)}
    for s in seed_counts[1:]:
        for batching in batchings:
            cells[f"S={s} {batching}"] = jax_step_cell(model, batch, s, batching)
    rss_jax = peak_rss_gb()
    forward = jax_forward_flops(model)
    torch_cell = torch_step_cell(model, batch) if have_torch else None
    runs = {f"jax {name}": c["run"] for name, c in cells.items()}
    if torch_cell:
        runs["torch"] = torch_cell["run"]
    times = shuffled_rounds(runs, rounds)
    medians = {k: statistics.median(v) for k, v in times.items()}
    one = cells["S=1"]
    parameters = f"{one['parameters']:,} parameters" + (f" (PyTorch {torch_cell['parameters']:,})" if torch_cell
                                                          else "")
    passes = f"passes of {one['micro']}" if one["micro"] else "one pass"
    print(f"\n{NAMES[model]}: K = {SLOTS}, {SIZE} x {SIZE} x 3, batch {batch} per seed ({passes}), {parameters}; "
          f"{rounds} shuffled round{'s' * (rounds != 1)}, median seconds", flush=True)
    print_step_table(cells, times, bool(torch_cell))
    spec = SPEC_FLOPS[model]
    line = f"  forward GFLOP per image: spec C.5 {spec / 1e9:.2f}"
    for name, flops in (("XLA (jitted loss, batch 1)", forward),
                        ("PyTorch FlopCounterMode (batch 1)", torch_cell and torch_cell["flops"])):
        line += f"; {name} " + (f"{flops / 1e9:.2f} ({flops / spec:.2f} x spec)" if flops else "-")
    print(line)
    if one["flops"] and forward:
        step = one["flops"] / batch
        print(f"  XLA's one-seed step: {step / 1e9:.2f} GFLOP per image = {step / forward:.2f} x its forward "
              f"(spec C.5: ~3); {one['flops'] / 1e9 / medians['jax S=1']:.1f} GFLOP/s at the median step")
    print(f"  peak RSS: {rss_jax:.2f} GB after the JAX cells compiled and warmed up, {peak_rss_gb():.2f} GB after the "
          f"rounds{' (PyTorch included)' if torch_cell else ''}; the process's high-water mark so far (XLA's compiles "
          "count in it)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64, help="images per seed")
    parser.add_argument("--rounds", type=int, default=5, help="shuffled rounds of every cell after a warm-up")
    parser.add_argument("--seeds", default="1,2,4", help="S of the seed cells, comma-separated (1 always added)")
    parser.add_argument("--models", nargs="+", default=list(NAMES), choices=list(NAMES))
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    parser.add_argument("--batching", nargs="+", default=["vmap", "loop"], choices=["vmap", "loop", "unroll"],
                        help="how S > 1 seeds are mapped (the engine's CPU default, 'auto', is 'loop')")
    args = parser.parse_args()
    seed_counts = sorted({1, *(int(s) for s in args.seeds.split(","))})
    threads = len(os.sched_getaffinity(0))  # XLA:CPU's thread pool: the schedulable cores
    torch_version = None if args.no_torch else load_torch("benchmarks.genesis_torch", threads)
    have_torch = torch_version is not None
    print_machine(jax, threads, torch_version, MALLOC_TUNED)
    for model in args.models:
        bench_model(model, args.batch, seed_counts, args.rounds, have_torch, tuple(args.batching))
    load = os.getloadavg()
    print(f"\nload average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
