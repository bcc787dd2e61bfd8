"""Illusory Occlusion: a square with a "plus" cross on a striped background (drawn at 256 px).

The background has anti-diagonal stripes (PIL lines 10 px wide, every 40 px; the bottom-right triangle has none);
the 80 px square has a centred cross 32 px wide. Stripe colour = background x (0.2, 0.6, 0.3), cross colour = square
x (0.8, 0.7, 0.3). In the Gestalt ``test`` set part of the square has exactly the background colour: either its
corners (case a) or its cross (case b), chosen with probability 0.5.

Mask: background (stripes included) 0, square 1. Detailed mask: background 0, stripe 1, square corners 2, cross 3.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from datasets.good_gestalt.base import Layers, palette, uniform_colour
from datasets.good_gestalt.canvas import Canvas

NATIVE_SIZE = 256
PALETTE_SIZE = 4
DETAILED = ("test_iid", "test")
SQUARE = 80
CROSS_OFFSET = 24  # floor(80 / 10 * 3): the cross starts 24 px into the square ...
CROSS_WIDTH = SQUARE - 2 * CROSS_OFFSET  # ... and is 32 px wide
STRIPE_RATIO = (0.2, 0.6, 0.3)
CROSS_RATIO = (0.8, 0.7, 0.3)
SQUARE_MIN, BACKGROUND_MAX = 2 / 7, 5 / 7  # the reference's fractional colour bounds (used by test case b)


class Params(NamedTuple):
    background: np.ndarray  # float [3] in [0, 1]
    stripe: np.ndarray
    square: np.ndarray
    cross: np.ndarray
    row: int
    col: int


def _draw_position(rng):
    rng.integers(SQUARE, SQUARE + 1)  # size: fixed, but drawn
    return tuple(int(rng.integers(0, NATIVE_SIZE - SQUARE + 1)) for _ in range(2))


def draw_iid(rng: np.random.Generator) -> Params:
    background = uniform_colour(rng, 0, 182) / 255
    square = uniform_colour(rng, 73, 255) / 255
    row, col = _draw_position(rng)
    return Params(background, background * np.asarray(STRIPE_RATIO), square, square * np.asarray(CROSS_RATIO), row, col)


def _case_b_bounds():
    """Per-channel integer bounds of case b, computed with the reference's float expressions: R 59..182,
    G 51..178, B 22..76 (the cross colour must be both a valid cross colour and a valid background colour)."""
    ratio = np.array(CROSS_RATIO)
    lows = np.ceil(np.asarray(SQUARE_MIN) * ratio * 255)
    highs = np.floor(np.minimum(BACKGROUND_MAX, 1 * ratio) * 255) + 1
    return [(int(lo), int(hi)) for lo, hi in zip(lows, highs)]


def draw_test(rng: np.random.Generator) -> Params:
    row, col = _draw_position(rng)
    if rng.uniform() < 0.5:  # case a: background = square corners
        c = uniform_colour(rng, 73, 182) / 255
        return Params(c, c * np.asarray(STRIPE_RATIO), c, c * np.asarray(CROSS_RATIO), row, col)
    # case b: background = cross; one call per channel, as the reference
    c = np.concatenate([rng.integers(lo, hi, 1).reshape(-1) / 255 for lo, hi in _case_b_bounds()])
    return Params(c, c * np.asarray(STRIPE_RATIO), c / np.asarray(CROSS_RATIO), c, row, col)


@functools.cache
def _stripes() -> np.ndarray:
    """uint8 `[256, 256]`: the background stripes (label 1), the same in every image."""
    segments = [((-10, y), (y, -10)) for y in range(2, 2 * NATIVE_SIZE, 40)]
    labels = Canvas(NATIVE_SIZE).lines(segments, width=10, label=1).labels
    labels.setflags(write=False)
    return labels


def _flag(canvas: Canvas, row: int, col: int) -> Canvas:
    """The square (label 2) with its cross (label 3)."""
    canvas.rect(row, col, SQUARE, SQUARE, 2)
    canvas.rect(row + CROSS_OFFSET, col, CROSS_WIDTH, SQUARE, 3)
    return canvas.rect(row, col + CROSS_OFFSET, SQUARE, CROSS_WIDTH, 3)


def render(p: Params, with_masks: bool) -> Layers:
    detailed = _flag(Canvas(NATIVE_SIZE, _stripes()), p.row, p.col).labels
    colours = palette(p.background, p.stripe, p.square, p.cross)
    if not with_masks:
        return Layers(detailed, colours)
    mask = Canvas(NATIVE_SIZE).rect(p.row, p.col, SQUARE, SQUARE, 1).labels
    return Layers(detailed, colours, mask, detailed.copy())
