"""The six Good Gestalt datasets of Latent Noise Segmentation (Lonnqvist, Wu & Herzog, ICML 2024), exact to the
reference generator, fast, and cached.

    from datasets import good_gestalt as gg
    test = gg.load("kanizsa", "test")      # generated on first use, then read from the cache
    test.images.shape                      # (100, 64, 64, 3) float32 in [0, 1]
    test.masks.shape, test.num_clusters    # (100, 64, 64) uint8, int32 [100]

Command line: ``python -m datasets.good_gestalt --name all --out DIR`` writes every split and a preview PNG.
"""

from datasets.good_gestalt.cache import CACHE_ENV, default_cache_dir, load, training_images
from datasets.good_gestalt.core import (
    IMAGE_SIZES,
    NAMES,
    SPLIT_SIZES,
    SPLITS,
    EncodedSplit,
    GestaltSplit,
    encode_splits,
    generate,
)

__all__ = [
    "CACHE_ENV",
    "IMAGE_SIZES",
    "NAMES",
    "SPLIT_SIZES",
    "SPLITS",
    "EncodedSplit",
    "GestaltSplit",
    "default_cache_dir",
    "encode_splits",
    "generate",
    "load",
    "training_images",
]
