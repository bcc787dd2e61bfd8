"""Benchmarks: figures and ratios measured side by side in one run (``python -m benchmarks.<name>``).

This package's own import takes no JAX (a benchmark sets the process's malloc options before JAX starts).
"""

import importlib
import os
import random
import resource
import statistics
import time
from typing import Callable, Hashable

from tqdm.auto import tqdm


def shuffled_rounds(cells: dict[Hashable, Callable[[], object]], rounds: int,
                    progress: bool = False) -> dict[Hashable, list[float]]:
    """{cell: [seconds per round]}: every cell (a warmed-up function of no arguments that blocks) run once per round,
    in a new random order each round, so a shared machine's drift falls on all cells alike."""
    times = {key: [] for key in cells}
    order = list(cells)
    for _ in tqdm(range(rounds), desc="rounds", unit="round", disable=not progress):
        random.shuffle(order)
        for key in order:
            start = time.perf_counter()
            cells[key]()
            times[key].append(time.perf_counter() - start)
    return times


def peak_rss_gb() -> float:
    """This process's peak resident memory in GB: VmHWM, the high-water mark of its own address space.

    Not `getrusage`'s ru_maxrss, which a child started by exec inherits from its parent (Linux carries the old
    address space's peak over the exec), so a fresh process would report at least its parent's size."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1e6  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB on Linux


def xla_cost(compiled, key: str = "flops") -> float | None:
    """A figure of XLA's cost analysis of a compiled program, if the backend gives one."""
    try:
        cost = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 - optional on some backends
        return None
    cost = cost[0] if isinstance(cost, (list, tuple)) and cost else cost
    return float(cost[key]) if isinstance(cost, dict) and key in cost else None


def xla_memory_gb(compiled) -> float | None:
    """Temp + argument bytes of XLA's memory analysis of a compiled program (GB), if the backend gives one."""
    try:
        memory = compiled.memory_analysis()
        return (memory.temp_size_in_bytes + memory.argument_size_in_bytes) / 1e9
    except Exception:  # noqa: BLE001 - optional on some backends
        return None


def ratios(times: dict, top: str, bottom: str, scale: float = 1.0) -> list[float]:
    """Per-round times[top] / (scale x times[bottom]), sorted."""
    return sorted(t / (scale * b) for t, b in zip(times[top], times[bottom]))


def print_step_table(cells: dict, times: dict, torch_timed: bool) -> None:
    """The seed cells' table of a step benchmark: per cell ("S=<n> <batching>") the median step, per seed, against S
    one-seed steps, compile seconds and XLA memory; then PyTorch's row and torch / JAX, when timed.

    Args:
        cells: {name: {"compile_s", "memory_gb", ...}} with "S=1" among them.
        times: `shuffled_rounds`' {"jax <name>" | "torch": [seconds per round]}.
    """
    medians = {k: statistics.median(v) for k, v in times.items()}
    print(f"  {'cell':15s} {'step s':>8s} {'s / seed':>9s} {'/ (S x one seed)':>17s} {'compile s':>10s} "
          f"{'XLA temp+arg GB':>16s}")
    for name, c in cells.items():
        s = int(name.split()[0][2:])
        per_seed = ratios(times, f"jax {name}", "jax S=1", s)
        memory = f"{c['memory_gb']:16.2f}" if c["memory_gb"] is not None else f"{'-':>16s}"
        compiled = "-" if c["compile_s"] is None else f"{c['compile_s']:.1f}"  # "loop": compiled in the warm-up
        print(f"  {'jax ' + name:15s} {medians[f'jax {name}']:8.3f} {medians[f'jax {name}'] / s:9.3f} "
              f"{statistics.median(per_seed):17.2f} {compiled:>10s} {memory}")
    if torch_timed:
        print(f"  {'torch':15s} {medians['torch']:8.3f} {medians['torch']:9.3f} {'':17s} {'-':>10s} {'-':>16s}")
        r = ratios(times, "torch", "jax S=1")
        print(f"  torch / jax (one seed): {statistics.median(r):.2f} (rounds: {r[0]:.2f} to {r[-1]:.2f}; above 1: "
              "JAX faster)")
    else:
        print("  torch: left out (--no-torch, or PyTorch not importable)")


def load_torch(statement: str, threads: int) -> str | None:
    """Imports PyTorch and a benchmark's PyTorch statement (the module named `statement`, which imports torch at its
    top) with `threads` threads (JAX's CPU threads: like for like); PyTorch's version, or None (said) when it is not
    importable."""
    try:
        import torch

        importlib.import_module(statement)
    except ImportError:
        print("PyTorch not importable (pip install torch==2.13.0): the PyTorch cells are left out")
        return None
    torch.set_num_threads(threads)
    return torch.__version__


def print_machine(jax, threads: int, torch_version: str | None, malloc_tuned: bool) -> None:
    """The machine line a step benchmark starts with: backend, cores, threads, versions, malloc settings, load (the
    `jax` module is passed in: this package's import takes no JAX)."""
    load = os.getloadavg()
    print(f"{jax.default_backend()} backend ({jax.devices()[0].device_kind}), {os.cpu_count()} cores "
          f"({threads} schedulable; PyTorch threads {threads if torch_version else '-'}), jax {jax.__version__}, "
          f"torch {torch_version or '-'}, noisegroup malloc settings {'on' if malloc_tuned else 'off'}, "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)

