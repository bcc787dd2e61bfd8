"""Gradient Occlusion: a uniform "tall" rectangle over a "wide" one with a horizontal gradient (drawn at 256 px).

The wide rectangle (60 x 120 px) goes from 0.4 x its colour at the left edge to its full colour at the right; the
tall rectangle (120 x 60 px) is drawn on top. In training the two are placed independently (they may not touch); in
the Gestalt ``test`` set the wide one is forced to overlap the tall one.

Mask: background 0, tall 1, wide 2. Detailed mask: background 0, tall only 1, wide only 2, overlap 3.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from datasets.good_gestalt.base import Layers, uniform_colour
from datasets.good_gestalt.canvas import Canvas

NATIVE_SIZE = 256
TALL = (120, 60)  # (rows, cols) px@256
WIDE = (60, 120)
START_RATIO = 0.4  # the wide rectangle's colour ratio at its left edge
PALETTE_SIZE = 2 + WIDE[1]  # background, tall, one colour per gradient column
DETAILED = ("test_iid", "test")


class Params(NamedTuple):
    tall_colour: np.ndarray  # int [3]
    wide_colour: np.ndarray  # int [3]
    background: np.ndarray  # int [3]
    tall_position: tuple  # (row, col)
    wide_position: tuple


def _colours(rng):
    return uniform_colour(rng, 110, 182), uniform_colour(rng, 110, 182), uniform_colour(rng, 219, 255)


def _tall_position(rng):
    return tuple(int(rng.integers(0, NATIVE_SIZE - TALL[k] + 1)) for k in range(2))


def draw_iid(rng: np.random.Generator) -> Params:
    colours = _colours(rng)
    tall = _tall_position(rng)
    wide = tuple(int(rng.integers(0, NATIVE_SIZE - WIDE[k] + 1)) for k in range(2))
    return Params(*colours, tall, wide)


def draw_test(rng: np.random.Generator) -> Params:
    colours = _colours(rng)
    tall = _tall_position(rng)
    bounds = [(max(0, tall[k] - WIDE[k] + 1), min(NATIVE_SIZE - WIDE[k], tall[k] + TALL[k] - 1)) for k in range(2)]
    wide = tuple(int(rng.integers(lo, hi + 1)) for lo, hi in bounds)
    return Params(*colours, tall, wide)


def gradient_coefficients() -> np.ndarray:
    """float64 `[120]`: the wide rectangle's per-column colour factor, with the reference's float expression."""
    n = WIDE[1]
    return np.array([START_RATIO + j / (n - 1) * (1 - START_RATIO) for j in range(n)])


_COEFFICIENTS = gradient_coefficients()


def render(p: Params, with_masks: bool) -> Layers:
    (wr, wc), (tr, tc) = p.wide_position, p.tall_position
    index = np.zeros((NATIVE_SIZE, NATIVE_SIZE), np.uint8)
    columns = np.arange(wc, wc + WIDE[1])
    index[wr:wr + WIDE[0], wc:wc + WIDE[1]] = 2 + (columns - wc)[None, :]  # index 2 + j for gradient column j
    index[tr:tr + TALL[0], tc:tc + TALL[1]] = 1
    colours = np.empty((PALETTE_SIZE, 3))
    colours[0] = p.background / 255
    colours[1] = (1.0 * p.tall_colour) / 255  # the reference's "gradient" with ratio 1: colour x 1.0
    colours[2:] = (_COEFFICIENTS[:, None] * p.wide_colour[None, :]) / 255
    if not with_masks:
        return Layers(index, colours)
    wide = Canvas(NATIVE_SIZE).rect(wr, wc, *WIDE, 2).labels
    tall = Canvas(NATIVE_SIZE).rect(tr, tc, *TALL, 1).labels
    mask = np.where(tall > 0, tall, wide)  # tall drawn over wide
    return Layers(index, colours, mask, wide + tall)
