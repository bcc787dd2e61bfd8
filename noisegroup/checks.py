"""Input checks shared by the engine and both methods: one place that says what valid images and k are."""

from __future__ import annotations

import numpy as np


def check_images(images, what: str = "images", shape: tuple[int, int, int] | None = None) -> np.ndarray:
    """Validates images: a float32 array `[n, h, w, c]`, finite, in [0, 1] (and of `shape` `(h, w, c)` if given).

    Returns:
        The images as a NumPy array.

    Raises:
        ValueError: naming the problem and the offending value.
    """
    if not hasattr(images, "shape") or len(images.shape) != 4:
        raise ValueError(f"{what} must be an array [n, h, w, c], got shape {getattr(images, 'shape', None)}")
    images = np.asarray(images)
    if shape is not None and images.shape[1:] != tuple(shape):
        raise ValueError(f"{what} must have shape [n, {', '.join(map(str, shape))}], got {list(images.shape)}")
    if images.dtype != np.float32:
        raise ValueError(f"{what} must be float32 in [0, 1], got dtype {images.dtype}")
    bad = ~np.isfinite(images)
    if bad.any():
        raise ValueError(f"{what} contain non-finite values (first at index {np.argwhere(bad)[0].tolist()})")
    if images.size:
        lo, hi = float(images.min()), float(images.max())
        if lo < 0 or hi > 1:
            raise ValueError(f"{what} must lie in [0, 1], got values in [{lo}, {hi}]")
    return images


def check_num_clusters(num_clusters, num_images: int, num_pixels: int) -> np.ndarray:
    """k per image as int64 `[b]` (an int broadcasts), each in [1, num_pixels].

    Raises:
        ValueError: naming the first bad k.
    """
    ks = np.broadcast_to(np.asarray(num_clusters), (num_images,))
    if not np.issubdtype(ks.dtype, np.integer):
        raise ValueError(f"number of clusters must be integers, got {ks.dtype}")
    ks = ks.astype(np.int64)
    bad = (ks < 1) | (ks > num_pixels)
    if bad.any():
        raise ValueError(f"number of clusters must be in [1, {num_pixels}], got {int(ks[bad][0])}")
    return ks
