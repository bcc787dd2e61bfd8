"""Closure: the outline of a square (drawn at 64 px).

Training images show a 40 px square with a 2 px outline (outline colour = interior colour x (0.4, 0.5, 0.7)); the
background and interior colour ranges overlap. In the Gestalt ``test`` set background and interior share one colour,
so only the outline is visible, and in half of the images 20 background-coloured squares erase parts of it.

Copied on purpose: after erasing, the reference re-quantises the *whole image* to 2 x 2 blocks (``[::2, ::2]`` then
repeat). Whenever the square's row or column is odd, the visible outline moves by 1 px relative to the (unchanged)
mask. This is part of the benchmark's difficulty, so it is reproduced exactly.

Mask: background 0, square (outline included) 1. Detailed mask: background 0, outline 1, interior 2.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from datasets.good_gestalt.base import Layers, palette, uniform_colour
from datasets.good_gestalt.canvas import Canvas

NATIVE_SIZE = 64
PALETTE_SIZE = 3
DETAILED = ("test_iid", "test")
SQUARE = 40
OUTLINE = 2  # px; also the re-quantisation block size
OUTLINE_RATIO = (0.4, 0.5, 0.7)
ERASERS = 20


class Params(NamedTuple):
    background: np.ndarray  # float [3] in [0, 1]
    interior: np.ndarray  # float [3]
    row: int
    col: int
    erasers: tuple = ()  # (size, row, col) of each background-coloured square; empty if not erased


def _draw_square(rng):
    rng.integers(SQUARE, SQUARE + 1)  # size: fixed, but drawn
    return tuple(int(rng.integers(0, NATIVE_SIZE - SQUARE + 1)) for _ in range(2))


def draw_iid(rng: np.random.Generator) -> Params:
    row, col = _draw_square(rng)
    background = uniform_colour(rng, 0, 145) / 255
    interior = uniform_colour(rng, 110, 255) / 255
    return Params(background, interior, row, col)


def draw_test(rng: np.random.Generator) -> Params:
    row, col = _draw_square(rng)
    colour = uniform_colour(rng, 110, 145) / 255
    erasers = ()
    if rng.uniform() >= 0.5:
        erasers = []
        for _ in range(ERASERS):
            size = int(rng.integers(5, 11))
            r, c = (int(x) for x in rng.integers(0, NATIVE_SIZE - size, size=2))  # upper bound exclusive, as ref
            erasers.append((size, r, c))
        erasers = tuple(erasers)
    return Params(colour, colour, row, col, erasers)


def _outlined_square(row, col) -> np.ndarray:
    """0 background, 1 outline, 2 interior."""
    inner = SQUARE - 2 * OUTLINE
    canvas = Canvas(NATIVE_SIZE).rect(row, col, SQUARE, SQUARE, 1)
    return canvas.rect(row + OUTLINE, col + OUTLINE, inner, inner, 2).labels


def render(p: Params, with_masks: bool) -> Layers:
    detailed = _outlined_square(p.row, p.col)
    index = detailed.copy()
    if p.erasers:
        erased = Canvas(NATIVE_SIZE)
        for size, r, c in p.erasers:
            erased.rect(r, c, size, size, 1)
        index[erased.labels == 1] = 0
        index = index[::OUTLINE, ::OUTLINE].repeat(OUTLINE, 0).repeat(OUTLINE, 1)
    colours = palette(p.background, p.interior * np.asarray(OUTLINE_RATIO), p.interior)
    if not with_masks:
        return Layers(index, colours)
    return Layers(index, colours, (detailed > 0).astype(np.uint8), detailed)
