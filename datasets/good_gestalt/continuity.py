"""Continuity: a ring (drawn at 256 px).

Training images show a full ring (160 px box, 10 px line). In the Gestalt ``test`` set only six 30-degree arcs of
the ring are painted (every other 30 degrees), and 5 to 19 distractor arcs of the same size in two other random
colours are drawn on top, possibly partly outside the image.

Mask: background 0, the full ring 1 (distractors are background). Detailed mask (test): 0 elsewhere, 1 ring gaps,
2 painted arcs.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from datasets.good_gestalt.base import Layers, palette, uniform_colour
from datasets.good_gestalt.canvas import Canvas

NATIVE_SIZE = 256
PALETTE_SIZE = 4
DETAILED = ("test",)
RING = 160  # px@256, bounding box
WIDTH = 10  # px@256
ARC = 30  # degrees, painted arcs and distractors
PAINTED = tuple(range(0, 360, 60))  # start angles of the painted arcs


class Params(NamedTuple):
    ring_colour: np.ndarray  # int [3]
    background: np.ndarray  # int [3]
    row: int
    col: int
    distractor_colours: tuple = ()  # two int [3] colours (test only)
    distractors: tuple = ()  # (colour 0/1, start angle, row, col) per distractor arc (test only)


def _draw_position(rng):
    rng.integers(RING, RING + 1)  # size: fixed, but drawn
    return tuple(int(rng.integers(0, NATIVE_SIZE - RING + 1)) for _ in range(2))


def draw_iid(rng: np.random.Generator) -> Params:
    ring_colour = uniform_colour(rng, 0, 182)
    background = uniform_colour(rng, 219, 255)
    row, col = _draw_position(rng)
    return Params(ring_colour, background, row, col)


def draw_test(rng: np.random.Generator) -> Params:
    ring_colour = uniform_colour(rng, 0, 182)
    background = uniform_colour(rng, 219, 255)
    distractor_colours = (uniform_colour(rng, 0, 255), uniform_colour(rng, 0, 255))
    row, col = _draw_position(rng)
    distractors = []
    for _ in range(int(rng.integers(5, 20))):  # U{5..19}
        which = int(rng.choice(2, p=[0.5, 0.5]))
        start = int(rng.integers(0, 361))
        r, c = (int(rng.integers(-RING, NATIVE_SIZE + 1)) for _ in range(2))
        distractors.append((which, start, r, c))
    return Params(ring_colour, background, row, col, distractor_colours, tuple(distractors))


def _ring(canvas: Canvas, p: Params, label: int, starts=None) -> Canvas:
    if starts is None:
        return canvas.arc(p.row, p.col, RING, 0, 360, WIDTH, label)
    for start in starts:
        canvas.arc(p.row, p.col, RING, start, start + ARC, WIDTH, label)
    return canvas


def render(p: Params, with_masks: bool) -> Layers:
    canvas = Canvas(NATIVE_SIZE)
    if not p.distractors:
        index = _ring(canvas, p, 1).labels
        colours = palette(p.background / 255, p.ring_colour / 255, p.background / 255, p.background / 255)
        return Layers(index, colours, index.copy() if with_masks else None)

    _ring(canvas, p, 1, PAINTED)
    for which, start, r, c in p.distractors:
        canvas.arc(r, c, RING, start, start + ARC, WIDTH, 2 + which)
    colours = palette(p.background / 255, p.ring_colour / 255, *(d / 255 for d in p.distractor_colours))
    if not with_masks:
        return Layers(canvas.labels, colours)
    mask = _ring(Canvas(NATIVE_SIZE), p, 1).labels
    detailed = _ring(Canvas(NATIVE_SIZE, mask), p, 2, PAINTED).labels
    return Layers(canvas.labels, colours, mask, detailed)
