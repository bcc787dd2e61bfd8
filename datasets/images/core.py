"""The result types of the image loaders: `ImageSplit` (float32, what training and LNS take) and `RawSplit` (the
uint8 pixels as read from disk, what the cache stores), and the exact uint8 -> float32 conversion between them."""

from __future__ import annotations

import dataclasses
import numbers

import numpy as np

from datasets.good_gestalt.core import GestaltSplit, num_clusters

CHUNK_VALUES = 2**20  # uint8 values converted to float32 at a time: the table lookup's int64 index temporary
# (NumPy casts uint8 indices to intp) stays at 8 MB whatever the image size


@dataclasses.dataclass(frozen=True)
class ImageSplit(GestaltSplit):
    """A split of an image dataset read from disk: a `GestaltSplit` (the engine and LNS take ``.images`` and
    ``.masks`` unchanged) that also knows where each image came from.

    Attributes:
        images: float32 `[n, h, w, 3]` in [0, 1], exactly ``(uint8 / 255.0).astype(float32)`` of the stored pixels.
        masks: uint8 `[n, h, w]` labels, 0 = background, or None without masks.
        detailed_masks: uint8 `[n, h, w]` part labels, or None.
        num_clusters: int32 `[n]`, distinct labels per mask including background, or None without masks.
        names: the relative file name of every image (POSIX form), in order.
    """

    names: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class RawSplit:
    """Images as read from disk, before the float32 conversion: what the cache stores (4x smaller than float32).

    Attributes:
        images: uint8 `[n, h, w, 3]`.
        masks, detailed_masks: uint8 `[n, h, w]` or None.
        names: relative file name per image, in order.
        skipped: the files that could not be read and are not in `images` (only a loader that skips bad files has
            any), as given by the loader (a path or a relative name).
    """

    images: np.ndarray
    masks: np.ndarray | None
    detailed_masks: np.ndarray | None
    names: tuple[str, ...]
    skipped: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.images)

    def decode(self, indices: np.ndarray | None = None) -> ImageSplit:
        """The float32 `ImageSplit` of images `indices` (int `[m]`, default all), converted in chunks straight into
        the result, so the only large allocation is the float32 array (no uint8 copy of the subset)."""
        indices = np.arange(len(self)) if indices is None else np.asarray(indices, np.int64)
        images = np.empty((len(indices), *self.images.shape[1:]), np.float32)
        chunk = max(1, CHUNK_VALUES // max(1, int(np.prod(self.images.shape[1:]))))
        for start in range(0, len(indices), chunk):
            rows = indices[start:start + chunk]
            np.take(_FLOAT32, self.images[rows], out=images[start:start + len(rows)])  # = to_float32, in place
        masks = None if self.masks is None else self.masks[indices]
        detailed = None if self.detailed_masks is None else self.detailed_masks[indices]
        names = tuple(self.names[i] for i in indices)
        return ImageSplit(images, masks, detailed, num_clusters(masks), names)


# float32(v / 255.0) for every uint8 v, the division in float64 as the reference does (it divides a uint8 array by
# 255 in NumPy, then training casts to float32). A table lookup gives exactly those values without a float64
# temporary of the whole array.
_FLOAT32 = (np.arange(256) / 255.0).astype(np.float32)


def to_float32(pixels: np.ndarray) -> np.ndarray:
    """float32 values in [0, 1] of uint8 `pixels` (any shape): exactly ``(pixels / 255.0).astype(np.float32)``."""
    if pixels.dtype != np.uint8:
        raise TypeError(f"expected uint8 pixels, got {pixels.dtype}")
    return _FLOAT32[pixels]


def check_image_size(image_size: int) -> None:
    """Raises ValueError unless `image_size` is a positive integer (not merely equal to one: 64.0 would reach the
    array shapes)."""
    if isinstance(image_size, bool) or not isinstance(image_size, numbers.Integral) or image_size < 1:
        raise ValueError(f"image_size must be a positive integer, got {image_size!r}")
