"""Benchmark: Slot Attention's object-discovery training step, JAX (the noisegroup engine) vs. PyTorch eager.

    python -m benchmarks.slot_attention_step            # PyTorch column: `pip install torch==2.13.0`
    python -m benchmarks.slot_attention_step --batch 8 --rounds 2 --seeds 1,2

The workload: the paper's training (appendix E.1, `noisegroup.models.slot_attention.PAPER_TRAINING`: Adam lr 4e-4
with a 10k-step linear warm-up, no clipping, the batch-mean of the per-example MSE; the engine has no exponential
decay schedule, so its lr stays 4e-4 after the warm-up, which changes no cost), K = 7 slots, T = 3 iterations,
64 x 64 x 3 images in [-1, 1], batch `--batch` (64) per seed, on this machine's default JAX backend:
  - one optimizer step as the engine compiles it (`loop.build` -> `Trainer.programs`, the loss weights an input;
    on CPU in the family's micro-batches of 8) with S = 1, 2, 4 seeds as an array axis (`--seeds`; `--batching`
    vmap, the default here, and/or loop, the engine's CPU default), each S in per-seed batches of `--batch`, and
    the PyTorch statement's step (`benchmarks.slot_attention_torch.train_step`: Adam with the paper's schedule, the
    whole batch in one pass; PyTorch threads = JAX's CPU threads, this process): every cell taken once per round,
    in a new random order each round (`benchmarks.shuffled_rounds`), after a warm-up, so a shared machine's drift
    falls on all alike. Printed: median seconds, the step with S seeds against S x the one-seed step (per-seed
    cost; below 1: seeds share work), torch / JAX one seed (per round: median and range);
  - compile seconds and XLA's memory analysis of each compiled step (temp + argument bytes; buffers donated);
  - forward FLOPs per image: XLA's cost analysis of the jitted loss at batch 1 and PyTorch's FlopCounterMode of its
    forward at batch 1;
  - the process's peak RSS (getrusage; a high-water mark, so cumulative over the run) after the JAX cells are
    compiled and warmed up, and after the rounds (PyTorch included).
`python -m benchmarks.slot_attention_torch` checks that the PyTorch statement is the same function (outputs and
gradients on identical weights, images and noise).
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
from noisegroup.engine import loop  # noqa: E402
from noisegroup.models.slot_attention import PAPER_TRAINING  # noqa: E402

SIZE, SLOTS = 64, 7


def step_config(batch: int, seeds: int) -> dict:
    """The paper's training settings (as far as the engine's keys go) at `batch` images per seed, `seeds` seeds."""
    return {"model": "slot_attention", "dataset": "kanizsa", "num_slots": SLOTS, "seeds": tuple(range(seeds)),
            "batch_size": batch, "optimizer": PAPER_TRAINING["optimizer"],
            "learning_rate": PAPER_TRAINING["learning_rate"], "lr_warmup_steps": PAPER_TRAINING["warmup_steps"],
            "lr_schedule": "constant", "grad_clip_norm": 0.0, "geco": False,
            "num_steps": PAPER_TRAINING["num_steps"], "progress": False}


def jax_step_cell(batch: int, seeds: int, batching: str = "vmap") -> dict:
    """{"run": one engine step of S seeds (blocks), "compile_s", "memory_gb", "flops", "micro", "parameters"};
    `batching` the seed axis's mapping (`noisegroup.engine.parallel`: "vmap", or "loop", the CPU's "auto")."""
    _, trainer, _ = loop.build(step_config(batch, seeds), (SIZE, SIZE, 3))
    init, step, _ = trainer.programs(batching)  # the jitted multi-seed step, the loss weights an input
    weights = trainer.weight_arrays()
    keys = jnp.stack([jax.random.key(s) for s in range(seeds)])
    images = {"images": jax.random.uniform(jax.random.key(1), (seeds, batch, SIZE, SIZE, 3))}
    holder = {"state": jax.block_until_ready(init(keys))}
    start = time.perf_counter()
    if hasattr(step, "lower"):
        compiled = step.lower(holder["state"], images, keys, weights).compile()
        compile_s = time.perf_counter() - start
    else:  # "loop": the one-seed program called per seed (compiled at its first call, the warm-up below)
        compiled, compile_s = step, None

    def run():
        holder["state"], metrics = compiled(holder["state"], images, keys, weights)  # the state is donated
        jax.block_until_ready(metrics)

    parameters = sum(math.prod(x.shape[1:]) for x in jax.tree.leaves(holder["state"].params))
    run()  # warm-up
    return {"run": run, "compile_s": compile_s, "memory_gb": xla_memory_gb(compiled), "flops": xla_cost(compiled),
            "micro": trainer.micro_batch_size, "parameters": parameters}


def jax_forward_flops() -> float | None:
    """XLA's FLOP count of the jitted loss (the model's forward and its MSE) of one image."""
    _, trainer, _ = loop.build(step_config(1, 1), (SIZE, SIZE, 3))
    state = trainer.init(jax.random.key(0))
    batch = {"images": jax.random.uniform(jax.random.key(1), (1, SIZE, SIZE, 3))}
    noise = trainer.family.sample_noise(jax.random.key(2), batch)
    forward = jax.jit(lambda p, b, n, g: trainer.loss(p, b, n, g)[0])
    return xla_cost(forward.lower(state.params, batch, noise, state.geco).compile())


def torch_step_cell(batch: int) -> dict:
    """{"run": one PyTorch training step (Adam, the paper's schedule; `.item()` blocks), "parameters", "flops": its
    forward's FlopCounterMode count per image at batch 1 (None if unavailable)}."""
    import torch

    from benchmarks import slot_attention_torch as st

    torch.manual_seed(0)
    net = st.SlotAttentionAutoEncoder(SIZE, SLOTS)
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(batch, SIZE, SIZE, 3, generator=generator)
    slot_dim = net.slot_attention.slots_mu.shape[-1]
    noise = torch.randn(batch, SLOTS, slot_dim, generator=generator)  # drawn once: the JAX step draws its own inside
    optimizer, scheduler = st.make_optimizer(net)
    try:
        from torch.utils.flop_counter import FlopCounterMode
    except ImportError:  # an older PyTorch
        flops = None
    else:
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            st.mse_loss(net, x[:1], noise[:1])
        flops = float(counter.get_total_flops())

    def run():
        st.train_step(net, optimizer, scheduler, x, noise)

    run()  # warm-up (Adam's state)
    return {"run": run, "parameters": sum(p.numel() for p in net.parameters()), "flops": flops}


def bench(batch: int, seed_counts: list[int], rounds: int, have_torch: bool, batchings: tuple[str, ...]) -> None:
    cells = {}
    for s in seed_counts:
        for batching in batchings if s > 1 else ("vmap",):
            name = f"S={s} {batching}" if s > 1 else "S=1"
            cells[name] = c = jax_step_cell(batch, s, batching)
            memory = "-" if c["memory_gb"] is None else f"{c['memory_gb']:.2f}"
            compiled = "in the warm-up" if c["compile_s"] is None else f"{c['compile_s']:.1f} s"
            print(f"  jax {name}: compiled ({compiled}; XLA temp+arg {memory} GB) and warmed up; peak RSS so far "
                  f"{peak_rss_gb():.2f} GB", flush=True)
    rss_jax = peak_rss_gb()
    forward = jax_forward_flops()
    torch_cell = torch_step_cell(batch) if have_torch else None
    runs = {f"jax {name}": c["run"] for name, c in cells.items()}
    if torch_cell:
        runs["torch"] = torch_cell["run"]
    times = shuffled_rounds(runs, rounds)
    medians = {k: statistics.median(v) for k, v in times.items()}
    one = cells["S=1"]
    parameters = f"{one['parameters']:,} parameters" + (f" (PyTorch {torch_cell['parameters']:,})" if torch_cell
                                                          else "")
    passes = f"passes of {one['micro']}" if one["micro"] and one["micro"] < batch else "one pass"
    print(f"\nSlot Attention: K = {SLOTS}, T = 3, {SIZE} x {SIZE} x 3, batch {batch} per seed (JAX {passes}; PyTorch "
          f"one pass), {parameters}; {rounds} shuffled round{'s' * (rounds != 1)}, median seconds", flush=True)
    print_step_table(cells, times, bool(torch_cell))
    line = "  forward GFLOP per image:"
    for name, flops in (("XLA (jitted loss, batch 1)", forward),
                        ("PyTorch FlopCounterMode (batch 1)", torch_cell and torch_cell["flops"])):
        line += f" {name} " + (f"{flops / 1e9:.2f};" if flops else "-;")
    print(line.rstrip(";"))
    if one["flops"] and forward:
        step = one["flops"] / batch
        print(f"  XLA's one-seed step: {step / 1e9:.2f} GFLOP per image = {step / forward:.2f} x its forward; "
              f"{one['flops'] / 1e9 / medians['jax S=1']:.1f} GFLOP/s at the median step")
    print(f"  peak RSS: {rss_jax:.2f} GB after the JAX cells compiled and warmed up, {peak_rss_gb():.2f} GB after the "
          f"rounds{' (PyTorch included)' if torch_cell else ''}; the process's high-water mark so far (XLA's compiles "
          "count in it)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=PAPER_TRAINING["batch_size"], help="images per seed")
    parser.add_argument("--rounds", type=int, default=5, help="shuffled rounds of every cell after a warm-up")
    parser.add_argument("--seeds", default="1,2,4", help="S of the seed cells, comma-separated (1 always added)")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    parser.add_argument("--batching", nargs="+", default=["vmap"], choices=["vmap", "loop", "unroll"],
                        help="how S > 1 seeds are mapped: vmap, an array axis (default here); the engine's CPU "
                             "default, 'auto', is 'loop'")
    args = parser.parse_args()
    seed_counts = sorted({1, *(int(s) for s in args.seeds.split(","))})
    threads = len(os.sched_getaffinity(0))  # XLA:CPU's thread pool: the schedulable cores
    torch_version = None if args.no_torch else load_torch("benchmarks.slot_attention_torch", threads)
    have_torch = torch_version is not None
    print_machine(jax, threads, torch_version, MALLOC_TUNED)
    bench(args.batch, seed_counts, args.rounds, have_torch, tuple(args.batching))
    load = os.getloadavg()
    print(f"\nload average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
