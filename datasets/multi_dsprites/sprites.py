"""The three dSprites shapes, rasterised: latent grids, inside-tests and a vectorised window renderer.

The original dSprites generator is not public; the geometry here is the one measured from the official
``dsprites.gif`` (spec section 3.2), in continuous image coordinates where pixel (row, col) has its centre at
(row + 0.5, col + 0.5) and y grows downwards:

* position: the sprite's centre is at 16 + 32 * pos px on each axis (pos on `POSITIONS`, the central half of the
  image); rotation is about that point.
* square: side 20 * scale px, so 10, 12, ..., 20 px and exactly 100 ... 400 px of area when axis-aligned.
* ellipse: semi-axes 13.4 * scale - 0.7 (horizontal at orientation 0) and 6.4 * scale + 0.8 px, the straight line
  through the two measured sizes (second-moment semi-axes 12.7 x 7.2 px, area 288 at scale 1; bounding box about
  12 x 8 px, area 76 at scale 0.5). The measured shape is rounder at small scales, so the axes are not
  proportional to the scale.
* heart, in units of its width W = 20 * scale px, bounding box W x 0.85 W centred on the position point: two
  discs of radius 0.25 W centred 0.24 W left and right of the axis and 0.25 W below the top, plus a trapezoid from
  the discs' centre row (half-width 0.49 W) down to a flat tip 0.85 W below the top (half-width 0.075 W). The spec's
  recipe has a pointed tip; cutting it flat (the measured "2-px tip") brings the mean area at scale 1 from 206 to
  221 px against the measured 222 (the other scales land within 6 % of 58, 84, 108, 140, 182).

Rendering is binary (no anti-aliasing): a pixel belongs to the sprite when its centre, rotated back into the shape's
own frame, passes the shape's inside-test. Orientation turns the sprite counter-clockwise on screen (the original's
sense is not recoverable from the measurements). Exact pixel parity with dSprites is not achievable without its
npz; sizes agree to about 1 px. One known difference: the original's square rotated by 45 degrees covers about
368 px at scale 1, ours the geometric 400.
"""

from __future__ import annotations

import math

import numpy as np

IMAGE_SIZE = 64
SHAPE_NAMES = ("square", "ellipse", "heart")  # shape index 0, 1, 2; dSprites' latent values are 1, 2, 3
SCALES = np.linspace(0.5, 1.0, 6)
ORIENTATIONS = np.linspace(0.0, 2 * math.pi, 40)  # both ends included, as in dSprites' metadata: 0 and 2 pi coincide
POSITIONS = np.linspace(0.0, 1.0, 32)
# cos/sin from the C library's correctly rounded scalar functions, so rasterisation is bit-identical across NumPy
# builds (their vectorised float64 sin/cos can differ in the last bit, which could move a boundary pixel).
_COS = np.array([math.cos(t) for t in ORIENTATIONS])
_SIN = np.array([math.sin(t) for t in ORIENTATIONS])

# Every sprite fits a 32 x 32 px window starting 16 px above and left of floor(centre): the farthest point of any
# shape from its centre is the rotated square's corner, 10 * sqrt(2) < 14.2 px, and pixel centres in the window span
# floor(c) - 15.5 ... floor(c) + 15.5, which covers c +- 14.2. With c in [16, 48] the window stays inside the image.
WINDOW = 32


def centre_px(position_index: np.ndarray) -> np.ndarray:
    """float64 `[...]`: the sprite centre in continuous pixel coordinates, 16 + 32 * pos."""
    return IMAGE_SIZE / 4 + IMAGE_SIZE / 2 * POSITIONS[position_index]


def inside_square(a: np.ndarray, b: np.ndarray, width: np.ndarray) -> np.ndarray:
    """bool: points (a, b) of the shape frame inside a square of side `width` (half-open, so exactly width^2 px)."""
    half = width / 2
    return (a >= -half) & (a < half) & (b >= -half) & (b < half)


def inside_ellipse(a: np.ndarray, b: np.ndarray, width: np.ndarray) -> np.ndarray:
    """bool: points inside the dSprites ellipse of scale width / 20 (major axis along a)."""
    scale = width / 20
    major, minor = 13.4 * scale - 0.7, 6.4 * scale + 0.8
    return (a / major) ** 2 + (b / minor) ** 2 <= 1


def inside_heart(a: np.ndarray, b: np.ndarray, width: np.ndarray) -> np.ndarray:
    """bool: points inside the dSprites heart of width `width` (lobes up, b grows downwards)."""
    top, bottom = -0.425 * width, 0.425 * width  # the bounding box is centred on the position point
    lobe_row, radius, lobe_dx = top + 0.25 * width, 0.25 * width, 0.24 * width
    lobes = ((np.abs(a) - lobe_dx) ** 2 + (b - lobe_row) ** 2) <= radius**2  # |a|: the two discs are mirror images
    # Trapezoid: half-width 0.49 W at the lobes' centre row, narrowing linearly to 0.075 W at the bottom.
    t = (bottom - b) / (bottom - lobe_row)  # 1 at the lobe row, 0 at the bottom
    half_width = 0.075 * width + (0.49 - 0.075) * width * t
    body = (b >= lobe_row) & (b <= bottom) & (np.abs(a) <= half_width)
    return lobes | body


INSIDE = (inside_square, inside_ellipse, inside_heart)  # indexed by shape index


def window_coordinates(cx: np.ndarray, cy: np.ndarray, orientation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The window's pixel centres in each sprite's own frame.

    Args:
        cx, cy: float64 `[m]` sprite centre relative to the window's top-left corner, px.
        orientation: integer `[m]` indices into `ORIENTATIONS`.

    Returns:
        (a, b): float64 `[m, 32, 32]`, a along the shape's horizontal axis, b downwards.
    """
    offsets = np.arange(WINDOW) + 0.5
    dy = offsets[None, :, None] - cy[:, None, None]  # [m, 32, 1] pixel centre minus sprite centre
    dx = offsets[None, None, :] - cx[:, None, None]  # [m, 1, 32]
    cos, sin = _COS[orientation][:, None, None], _SIN[orientation][:, None, None]
    # Rotate back by the orientation (screen counter-clockwise = [[c, s], [-s, c]] in y-down coordinates).
    return cos * dx - sin * dy, sin * dx + cos * dy


def render_windows(
    shape: np.ndarray, scale: np.ndarray, orientation: np.ndarray, x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rasterises `m` sprites, each into its own 32 x 32 window.

    Args:
        shape, scale, orientation, x, y: integer `[m]` latent indices into `SHAPE_NAMES`, `SCALES`,
            `ORIENTATIONS`, `POSITIONS` (x: horizontal, y: vertical, growing downwards).

    Returns:
        (inside, top, left): bool `[m, 32, 32]` sprite pixels of each window, and int64 `[m]` the window's first
        image row and column (so ``image[top:top + 32, left:left + 32]`` is the window).
    """
    cx, cy = centre_px(x), centre_px(y)
    top, left = np.floor(cy).astype(np.int64) - WINDOW // 2, np.floor(cx).astype(np.int64) - WINDOW // 2
    inside = np.empty((len(shape), WINDOW, WINDOW), bool)
    for index, test in enumerate(INSIDE):  # one group per shape: each test runs only on its own sprites
        group = np.flatnonzero(shape == index)
        if group.size:
            a, b = window_coordinates(cx[group] - left[group], cy[group] - top[group], orientation[group])
            inside[group] = test(a, b, (20 * SCALES[scale[group]])[:, None, None])
    return inside, top, left


def render_single(shape: int, scale: int, orientation: int, x: int, y: int) -> np.ndarray:
    """bool `[64, 64]`: one sprite on an empty image (latent indices as in `render_windows`)."""
    inside, top, left = render_windows(*(np.array([v]) for v in (shape, scale, orientation, x, y)))
    image = np.zeros((IMAGE_SIZE, IMAGE_SIZE), bool)
    image[top[0] : top[0] + WINDOW, left[0] : left[0] + WINDOW] = inside[0]
    return image
