"""Image datasets read from disk: CelebA (CelebAMask-HQ as the LNS reference builds it, or the plain aligned CelebA)
and any folder of images, decoded in parallel into one uint8 array, cached, and returned as float32 `ImageSplit`s
that the engine and LNS take like Good Gestalt splits. NumPy and PIL only; nothing is ever downloaded.

    from datasets import images
    test = images.load("celeba", "test", data_dir="~/data/CelebAMask-HQ")  # decoded on first use, then cached
    test.images.shape, test.masks.shape    # (100, 64, 64, 3) float32 in [0, 1], (100, 64, 64) uint8 parts 0-18
    images.merge_parts(test.masks)         # 0 background, 1 face, 2 hair
    photos = images.load("folder", "train", data_dir="~/photos", masks_dir="~/photo_masks")
    photos.names[:2], photos.num_clusters  # ('a/001.jpg', 'a/002.png'), int32 [n]
    train, valid = images.training_images("celeba", "~/data/CelebAMask-HQ", train_limit=1000)

Data: ``data_dir``, else ``$NOISEGROUP_CELEBA_DIR`` (CelebAMask-HQ) or ``$NOISEGROUP_CELEBA_ALIGNED_DIR``. Cache:
``$NOISEGROUP_DATA_DIR/images`` (else ``~/.cache/noisegroup/images``), one verified file per folder or split.
Modules: `celeba` and `folder` (the loaders), `decode` (PIL: RGB, fitting, mask labels, parallel reading), `cache`,
`core` (the result types).
"""

from __future__ import annotations

import os

import numpy as np

from datasets.images.cache import default_cache_dir
from datasets.images.celeba import (
    FACE_HAIR_BACKGROUND,
    GROUPS,
    PARTS,
    CelebAHQLayout,
    load_celeba_aligned,
    load_celeba_hq,
    merge_parts,
)
from datasets.images.core import ImageSplit, RawSplit
from datasets.images.decode import FITS, IMAGE_EXTENSIONS, UnreadableImageError
from datasets.images.folder import load_folder, split_of
from noisegroup.errors import BadInputError

LOADERS = {"celeba": load_celeba_hq, "celeba_aligned": load_celeba_aligned, "folder": load_folder}
NAMES = tuple(LOADERS)


def load(name: str, split: str, data_dir: str | os.PathLike | None = None, image_size: int = 64,
         cache_dir: str | os.PathLike | None = None, **options) -> ImageSplit:
    """A split of image dataset `name`: ``load_celeba_hq`` ("celeba", the reference's construction from
    CelebAMask-HQ), ``load_celeba_aligned`` ("celeba_aligned") or ``load_folder`` ("folder": `data_dir` is the image
    folder, required).

    Args:
        name: one of `NAMES`.
        split: "train", "valid" or "test" ("all" too for a folder).
        data_dir, image_size, cache_dir: as the loader takes them.
        **options: the loader's other arguments (``layout``, ``masks_dir``, ``fit``, ``on_bad``, ``limit`` ...).

    Raises:
        ValueError: an unknown name (names the valid ones), or what the loader raises.
    """
    if name not in LOADERS:
        raise ValueError(f"unknown image dataset {name!r}; expected one of {NAMES}")
    if name == "folder":
        if data_dir is None:
            raise BadInputError("the 'folder' dataset needs data_dir: the folder of images to read")
        return load_folder(data_dir, split, image_size, cache_dir=cache_dir, **options)
    return LOADERS[name](split, data_dir, image_size, cache_dir, **options)


def training_images(name: str, data_dir: str | os.PathLike | None = None, train_limit: int = 0, valid_limit: int = 0,
                    *, image_size: int = 64, cache_dir: str | os.PathLike | None = None,
                    **options) -> tuple[np.ndarray, np.ndarray]:
    """(train, valid) images float32 `[n, image_size, image_size, 3]` of dataset `name` for training, like
    `datasets.good_gestalt.training_images`: each split whole from the cache, or only its first `*_limit` images
    read (0: the whole split). For a folder, its hash-assigned train and valid splits."""
    def split(which: str, limit: int) -> np.ndarray:
        return load(name, which, data_dir, image_size, cache_dir, limit=int(limit), **options).images

    return split("train", train_limit), split("valid", valid_limit)


__all__ = [
    "FACE_HAIR_BACKGROUND",
    "FITS",
    "GROUPS",
    "IMAGE_EXTENSIONS",
    "LOADERS",
    "NAMES",
    "PARTS",
    "CelebAHQLayout",
    "ImageSplit",
    "RawSplit",
    "UnreadableImageError",
    "default_cache_dir",
    "load",
    "load_celeba_aligned",
    "load_celeba_hq",
    "load_folder",
    "merge_parts",
    "split_of",
    "training_images",
]
