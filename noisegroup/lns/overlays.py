"""Pictures of segmentations a person looks at: per-image overlay PNGs and a grid of input / segmentation pairs.

    rgb = overlay(image, labels)                       # uint8 [h*scale, 2*w*scale, 3]: the image | its groups over it
    write_png(path, rgb)                               # atomically
    pairs_figure(images, labels, path, columns=10)     # the paper's Figures 8-9 layout (input above segmentation)
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from noisegroup import atomic

PALETTE = np.array(matplotlib.colormaps["tab10"].colors, np.float32)  # the run figures' palette (`lns.plots`)


def colour_labels(labels: np.ndarray) -> np.ndarray:
    """Label map `[h, w]` -> float32 RGB `[h, w, 3]` in [0, 1], one fixed colour per label (cycling after 10)."""
    return PALETTE[np.asarray(labels) % len(PALETTE)]


def overlay(image: np.ndarray, labels: np.ndarray, *, alpha: float = 0.55, scale: int = 4) -> np.ndarray:
    """One picture of a segmentation: the image beside the image blended with its groups' colours.

    Args:
        image: float32 `[h, w, 3]` in [0, 1]; labels: int `[h, w]`.
        alpha: the colours' weight in the blend; scale: nearest-neighbour upscaling (64 px is small on a screen).

    Returns:
        uint8 `[h*scale, 2*w*scale, 3]`.
    """
    image = np.asarray(image, np.float32)
    blend = (1 - alpha) * image + alpha * colour_labels(labels)
    both = np.concatenate([image, blend], axis=1)
    both = np.repeat(np.repeat(both, scale, axis=0), scale, axis=1)
    return np.round(np.clip(both, 0, 1) * 255).astype(np.uint8)


def write_png(path: str | Path, rgb: np.ndarray) -> None:
    """Writes a uint8 `[h, w, 3]` image to `path` atomically."""
    with atomic.open_for_write(path) as f:
        Image.fromarray(rgb).save(f, format="png")


def pairs_figure(images: np.ndarray, labels: np.ndarray, path: str | Path, *, columns: int = 10,
                 title: str = "") -> None:
    """Input / segmentation pairs in a grid (paper Figures 8-9: each input above its segmentation).

    Args:
        images: float32 `[b, h, w, 3]`; labels: int `[b, h, w]`; columns: pairs per row.
    """
    b = len(images)
    rows = -(-b // columns)
    fig = Figure(figsize=(1.1 * columns, 2.2 * rows + (0.4 if title else 0)))
    axes = fig.subplots(2 * rows, columns, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i in range(b):
        r, c = 2 * (i // columns), i % columns
        axes[r, c].imshow(images[i], interpolation="nearest")
        axes[r + 1, c].imshow(colour_labels(labels[i]), interpolation="nearest")
    if title:
        fig.suptitle(title)
    fig.subplots_adjust(wspace=0.05, hspace=0.05)
    with atomic.open_for_write(path) as f:
        fig.savefig(f, format="png", dpi=80, bbox_inches="tight")
