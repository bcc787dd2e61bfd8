"""Label canvases: the drawing primitives of the Good Gestalt generators.

Every generator draws *label maps* (uint8, one small integer per region) rather than colours; the image is then
`palette[label]`. This keeps colours exact (the reference's float colours never pass through uint8) and makes the
on-disk encoding compact. Coordinates are (row, col) and inclusive of both corners, as in the reference's PIL calls.

Rectangles use NumPy slicing (a PIL rectangle with integer corners covers exactly the inclusive slice; a test
checks this against PIL). Ellipses, arcs and lines are drawn by Pillow itself, so their rasterisation is the
reference's by construction.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw


class Canvas:
    """A square uint8 label map that shapes are painted onto in order (later shapes cover earlier ones).

    Attributes:
        labels: uint8 `[size, size]`, 0 where nothing was drawn.
    """

    def __init__(self, size: int, labels: np.ndarray | None = None):
        self.size = size
        self.labels = np.zeros((size, size), np.uint8) if labels is None else labels.copy()

    def rect(self, row: int, col: int, height: int, width: int, label: int) -> "Canvas":
        """Fills rows `row..row+height-1` and columns `col..col+width-1` (clipped to the canvas)."""
        r0, c0 = max(int(row), 0), max(int(col), 0)
        r1, c1 = int(row) + int(height), int(col) + int(width)
        if r1 > r0 and c1 > c0:
            self.labels[r0:r1, c0:c1] = label
        return self

    def _pil(self, draw_fn) -> "Canvas":
        image = Image.fromarray(self.labels)  # 2-D uint8 -> mode "L"
        draw_fn(ImageDraw.Draw(image))
        self.labels = np.array(image, dtype=np.uint8)
        return self

    def discs(self, corners, size: int, label: int) -> "Canvas":
        """Filled circles, each in the `size` x `size` box whose top-left corner is one of `corners` (row, col)."""

        def draw(d):
            for row, col in corners:
                d.ellipse(((int(col), int(row)), (int(col) + size - 1, int(row) + size - 1)), fill=label)

        return self._pil(draw)

    def arc(self, row: int, col: int, size: int, start: float, end: float, width: int, label: int) -> "Canvas":
        """A PIL arc of the ellipse in the `size` box at (row, col), from `start` to `end` degrees (0 = 3 o'clock,
        clockwise), `width` px thick, drawn inwards from the box."""
        box = ((int(col), int(row)), (int(col) + size - 1, int(row) + size - 1))
        return self._pil(lambda d: d.arc(box, start=start, end=end, fill=label, width=width))

    def lines(self, segments, width: int, label: int) -> "Canvas":
        """PIL lines through `segments`, a list of ((x0, y0), (x1, y1)) pairs in PIL's (x = col, y = row) order."""

        def draw(d):
            for xy in segments:
                d.line(xy, fill=label, width=width)

        return self._pil(draw)
