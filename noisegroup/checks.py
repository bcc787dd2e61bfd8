"""Input checks shared by the engine and both methods: one place that says what valid images and k are."""

from __future__ import annotations

import difflib
from pathlib import Path

import numpy as np

from noisegroup.errors import BadInputError


def closest(name: str, known) -> str:
    """' (did you mean X?)' for the closest of `known` to a mistyped `name`, or ''."""
    match = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


def check_workdir(workdir, what: str = "workdir") -> Path:
    """A directory a run may create or write: an existing directory, or a path whose first existing ancestor is a
    directory.

    Raises:
        BadInputError: the path, or a folder above it, is a file (naming which).
    """
    path = Path(workdir)
    if path.exists() and not path.is_dir():
        raise BadInputError(f"{what} {str(path)!r} is a file, not a directory; choose another {what}")
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise BadInputError(f"{what} {str(path)!r} cannot be created: {str(parent)!r} is a file")
            break
    return path


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


def check_features(features: np.ndarray) -> np.ndarray:
    """`features` as float `[b, p, f]`; raises ValueError naming the first image with NaN or inf features (every
    clustering method, on the host or the device, calls this: NaN distances would cluster without an error)."""
    if features.ndim != 3:
        raise ValueError(f"features must be [images, pixels, features], got shape {features.shape}")
    bad = ~np.isfinite(features).all(axis=(1, 2))
    if bad.any():
        raise ValueError(f"non-finite features in image {int(np.flatnonzero(bad)[0])} "
                         f"({int(bad.sum())} image(s) in all): the decoder produced NaN or inf")
    return features


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
