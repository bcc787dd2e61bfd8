"""Proximity: six small squares in a row, grouped by spacing (drawn at 64 px).

Squares are 7 px with a 1 px gap inside a group. Training images are either one group of six in one colour (30%)
or three groups of two with independent colours and gaps of 3 to 8 px between groups. In the Gestalt ``test`` set
all squares share one colour, and the three groups are exactly 3 px apart (50% of images) or form one group of six.

Mask: background 0, then 1 for a single group, or 1, 2, 3 for the groups from left to right (2 or 4 labels).
No detailed masks.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import numpy as np

from datasets.good_gestalt.base import Layers, palette, uniform_colour
from datasets.good_gestalt.canvas import Canvas

NATIVE_SIZE = 64
PALETTE_SIZE = 4
DETAILED = ()
SQUARE = 7
STEP = SQUARE + 1  # a square and the 1 px gap inside a group
GROUP = 2 * SQUARE + 1  # width of a group of two
MIN_GAP = 3  # between groups
BOX = (8, 56)  # training bounding box (rows, cols) that the groups are placed in
# The non-decreasing triples i <= j <= k over {0..5} in lexicographic order: the free columns before each group.
_FREE = tuple(t for t in itertools.product(range(6), repeat=3) if t[0] <= t[1] <= t[2])


class Params(NamedTuple):
    background: np.ndarray  # int [3]
    colours: tuple  # one int [3] colour per group
    positions: tuple  # (row, col) of each group's first square
    squares_per_group: int  # 6 (one group) or 2 (three groups)


def draw_iid(rng: np.random.Generator) -> Params:
    background = uniform_colour(rng, 219, 255)
    box_row, box_col = (int(rng.integers(0, NATIVE_SIZE - BOX[k] + 1)) for k in range(2))
    if rng.uniform() < 0.3:  # one group of six
        colour = uniform_colour(rng, 110, 182)
        d_row, d_col = (int(rng.integers(0, BOX[k] - size + 1)) for k, size in enumerate((SQUARE, 6 * STEP - 1)))
        return Params(background, (colour,), ((box_row + d_row, box_col + d_col),), 6)
    colours = tuple(uniform_colour(rng, 110, 182) for _ in range(3))
    d_rows = [int(rng.integers(0, BOX[0] - SQUARE + 1)) for _ in range(3)]
    free = _FREE[int(rng.choice(len(_FREE)))]
    d_cols = [free[g] + g * (GROUP + MIN_GAP) for g in range(3)]
    positions = tuple((box_row + d_rows[g], box_col + d_cols[g]) for g in range(3))
    return Params(background, colours, positions, 2)


def draw_test(rng: np.random.Generator) -> Params:
    background = uniform_colour(rng, 219, 255)
    colour = uniform_colour(rng, 110, 182)
    if rng.uniform() < 0.5:  # one group of six
        row, col = (int(rng.integers(0, NATIVE_SIZE - size + 1)) for size in (SQUARE, 6 * STEP - 1))
        return Params(background, (colour,), ((row, col),), 6)
    width = 6 * SQUARE + 3 + 2 * MIN_GAP
    row, col = (int(rng.integers(0, NATIVE_SIZE - size + 1)) for size in (SQUARE, width))
    positions = tuple((row, col + g * (GROUP + MIN_GAP)) for g in range(3))
    return Params(background, (colour,) * 3, positions, 2)


def render(p: Params, with_masks: bool) -> Layers:
    canvas = Canvas(NATIVE_SIZE)
    for label, (row, col) in enumerate(p.positions, start=1):
        for k in range(p.squares_per_group):
            canvas.rect(row, col + k * STEP, SQUARE, SQUARE, label)
    # Colour indices are the mask labels (group g has index g).
    colours = [p.background / 255, *(c / 255 for c in p.colours)]
    colours += [p.background / 255] * (PALETTE_SIZE - len(colours))
    return Layers(canvas.labels, palette(*colours), canvas.labels.copy() if with_masks else None)
