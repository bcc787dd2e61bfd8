"""Benchmarks: figures and ratios measured side by side in one run (``python -m benchmarks.<name>``).

This package's own import takes no JAX (a benchmark sets the process's malloc options before JAX starts).
"""

import random
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
