"""What every Good Gestalt generator module provides, and the small helpers they share.

A generator module (``kanizsa.py``, ``closure.py``, ...) defines:

* ``NATIVE_SIZE``: the resolution the reference draws at (64 or 256);
* ``PALETTE_SIZE``: the number of colour indices its label maps use;
* ``DETAILED``: the splits that have detailed masks;
* ``draw_iid(rng)`` / ``draw_test(rng)``: the parameters of one image of the in-distribution stream
  (train/valid/test_iid, seed 42) or of the Gestalt ``test`` stream (seed 41). They make *exactly* the reference's
  calls on ``rng``, in its order and with its sizes (NumPy's bounded integers buffer 32-bit draws per call, so
  ``integers(a, b, 3)`` and three calls of size 1 are different streams);
* ``render(params, with_masks)``: the image as ``Layers`` at ``NATIVE_SIZE``; pure, no randomness, so images can be
  rendered in any order and in parallel.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Layers(NamedTuple):
    """One rendered image at native resolution.

    Attributes:
        index: uint8 `[S, S]`, the colour index of every pixel.
        palette: float64 `[P, 3]`, the colour of every index in [0, 1], computed with the reference's float64
            arithmetic (so that casting to float32 later gives the reference's values bit for bit).
        mask: uint8 `[S, S]` ground-truth labels, 0 = background; None if not asked for or not defined.
        detailed_mask: uint8 `[S, S]` part labels; None if not asked for or not defined.
    """

    index: np.ndarray
    palette: np.ndarray
    mask: np.ndarray | None = None
    detailed_mask: np.ndarray | None = None


def uniform_colour(rng: np.random.Generator, lo: int, hi: int) -> np.ndarray:
    """Three independent channels, each U{lo..hi} (inclusive), in one call as the reference draws them."""
    return rng.integers(lo, hi + 1, 3)


def palette(*colours) -> np.ndarray:
    """Stacks colours (each `[3]`, in [0, 1]) into a float64 `[P, 3]` palette."""
    return np.stack([np.asarray(c, np.float64) for c in colours])
