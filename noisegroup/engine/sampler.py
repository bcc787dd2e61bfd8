"""Which examples each seed's step sees: shuffled epochs without replacement (the reference's DataLoader, drop_last).

A pure function of (seed, step), so a resumed run sees the same batches, and every process of a multi-process run
computes the same indices without talking to the others.
"""

from __future__ import annotations

import numpy as np


class EpochSampler:
    """Batch indices per seed: shuffled epochs without replacement, the last partial batch dropped.

    ``indices(step)[s]`` is batch ``step % steps_per_epoch`` of seed `s`'s epoch ``step // steps_per_epoch``,
    whose order is ``default_rng([seed, stream, epoch]).permutation(n)``: a pure function of (seed, step).
    """

    def __init__(self, num_examples: int, batch_size: int, seeds, stream: int = 0):
        if batch_size > num_examples:
            raise ValueError(f"batch_size {batch_size} exceeds the {num_examples} examples")
        self.n, self.batch_size, self.seeds, self.stream = num_examples, batch_size, list(seeds), stream
        self.steps_per_epoch = num_examples // batch_size
        self._cache: dict[int, np.ndarray] = {}

    def _order(self, epoch: int) -> np.ndarray:
        if epoch not in self._cache:
            self._cache = {epoch: np.stack([np.random.default_rng([s, self.stream, epoch]).permutation(self.n)
                                            for s in self.seeds])}
        return self._cache[epoch]

    def indices(self, step: int) -> np.ndarray:
        """int `[S, batch_size]`."""
        epoch, i = divmod(step, self.steps_per_epoch)
        return self._order(epoch)[:, i * self.batch_size:(i + 1) * self.batch_size]
