"""Kanizsa Squares: four "pacman" discs at the corners of a square (drawn at 256 px).

Training images show an opaque square (its colour range overlaps the background's) over four discs whose positions
are jittered by up to 20 px each, so a disc may be hidden or fully visible. In the Gestalt ``test`` set the square
has exactly the background colour and the discs sit on its corners without jitter: only the illusory square is left.
Mask: background 0, discs 1, square 2 (3 labels).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from datasets.good_gestalt.base import Layers, palette, uniform_colour
from datasets.good_gestalt.canvas import Canvas

NATIVE_SIZE = 256
PALETTE_SIZE = 3
DETAILED = ()
SQUARE = 100  # px@256
DISC = 48  # px@256, the discs' bounding box
JITTER = 20  # px@256, per disc and axis, training stream only


class Params(NamedTuple):
    background: np.ndarray  # int [3], 0..255
    square_colour: np.ndarray  # int [3]
    disc_colour: np.ndarray  # int [3]
    row: int  # square top-left
    col: int
    disc_offsets: tuple  # 4 x (d_row, d_col) jitter, in corner order


def _corners(row, col):
    """Top-left corners of the four discs centred on the square's corners, in the reference's order."""
    r, c = row - DISC // 2, col - DISC // 2
    return ((r, c), (r + SQUARE, c), (r, c + SQUARE), (r + SQUARE, c + SQUARE))


def draw_iid(rng: np.random.Generator) -> Params:
    background = uniform_colour(rng, 183, 218)
    square_colour = uniform_colour(rng, 183, 255)
    disc_colour = uniform_colour(rng, 73, 109)
    rng.integers(SQUARE, SQUARE + 1)  # the square size: fixed, but the reference draws it
    lo, hi = DISC // 2 + JITTER, NATIVE_SIZE - SQUARE - DISC // 2 - JITTER  # 44..112
    row, col = (int(rng.integers(lo, hi + 1)) for _ in range(2))
    offsets = tuple(tuple(int(rng.integers(-JITTER, JITTER + 1)) for _ in range(2)) for _ in range(4))
    return Params(background, square_colour, disc_colour, row, col, offsets)


def draw_test(rng: np.random.Generator) -> Params:
    colour = uniform_colour(rng, 183, 218)  # background and square alike
    disc_colour = uniform_colour(rng, 73, 109)
    rng.integers(SQUARE, SQUARE + 1)
    lo, hi = DISC // 2, NATIVE_SIZE - SQUARE - DISC // 2  # 24..132: wider than in training
    row, col = (int(rng.integers(lo, hi + 1)) for _ in range(2))
    return Params(colour, colour, disc_colour, row, col, ((0, 0),) * 4)


def render(p: Params, with_masks: bool) -> Layers:
    canvas = Canvas(NATIVE_SIZE)
    corners = [(r + dr, c + dc) for (r, c), (dr, dc) in zip(_corners(p.row, p.col), p.disc_offsets)]
    canvas.discs(corners, DISC, label=1)
    canvas.rect(p.row, p.col, SQUARE, SQUARE, label=2)
    # The colour indices are the mask labels (background 0, discs 1, square 2), in test too, where the square's
    # colour equals the background's.
    colours = palette(p.background / 255, p.disc_colour / 255, p.square_colour / 255)
    mask = canvas.labels.copy() if with_masks else None
    return Layers(canvas.labels, colours, mask)
