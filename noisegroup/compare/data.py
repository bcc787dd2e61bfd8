"""The images of every dataset of the comparison at one size, 64 x 64 x 3 in [0, 1], with label maps (0 =
background): the six Good Gestalt datasets (`datasets.good_gestalt`) and Multi-dSprites (colored_on_colored, 1-4
sprites, `datasets.multi_dsprites` through `noisegroup.komatsu.data`).

    images, masks = test_split("proximity", limit=100)
    images, masks = selection_split("multi_dsprites", limit=32)   # where LNS chooses (sigma, N): never the test set
    train, valid = training_split("kanizsa", train_limit=0, valid_limit=64)
"""

from __future__ import annotations

import numpy as np

from datasets import good_gestalt as gg
from datasets.multi_dsprites import core as md_core
from noisegroup.komatsu import data as md_data

IMAGE_SHAPE = (64, 64, 3)
MULTI_DSPRITES = "multi_dsprites"
MD_TRAIN_DEFAULT = 6_400  # Multi-dSprites training images when train_limit is 0 (the generator's split holds 60,000)


def _multi_dsprites(split: str, limit: int) -> tuple[np.ndarray, np.ndarray]:
    data = md_data.load_split(split, int(limit), IMAGE_SHAPE[0])
    return data["images"], data["masks"]


def test_split(dataset: str, limit: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(images `[n, 64, 64, 3]`, masks `[n, 64, 64]`) of the test split, its first `limit` images (0: all; Good
    Gestalt's test sets hold 100, Multi-dSprites' 1,000)."""
    if dataset == MULTI_DSPRITES:
        return _multi_dsprites("test", limit)
    data = gg.load(dataset, "test")
    n = int(limit) or len(data.images)
    return data.images[:n], data.masks[:n]


def test_size(dataset: str, limit: int = 0) -> int:
    """How many images `test_split(dataset, limit)` gives, without loading them."""
    full = md_core.SPLIT_SIZES["test"] if dataset == MULTI_DSPRITES else gg.SPLIT_SIZES["test"]
    return min(int(limit) or full, full)


def selection_split(dataset: str, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """The images LNS chooses its (sigma, N) on: Good Gestalt's `test_iid` (the fair protocol's), Multi-dSprites'
    `valid`; the first `limit`."""
    if dataset == MULTI_DSPRITES:
        return _multi_dsprites("valid", limit)
    data = gg.load(dataset, "test_iid")
    return data.images[:int(limit)], data.masks[:int(limit)]


def training_split(dataset: str, train_limit: int = 0, valid_limit: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train, valid) images of a dataset, the first `*_limit` of each (0: Good Gestalt's whole split;
    Multi-dSprites' first `MD_TRAIN_DEFAULT` training and 1,000 validation images)."""
    if dataset == MULTI_DSPRITES:
        return (_multi_dsprites("train", int(train_limit) or MD_TRAIN_DEFAULT)[0],
                _multi_dsprites("valid", int(valid_limit))[0])
    return gg.training_images(dataset, train_limit, valid_limit)
