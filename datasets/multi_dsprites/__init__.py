"""Multi-dSprites, procedurally (DeepMind's ``colored_on_colored`` and ``colored_on_grayscale``), cached; and
DeepMind's own TFRecord files (Multi-dSprites, Objects Room) read without TensorFlow. NumPy only.

    from datasets import multi_dsprites as md
    test = md.load("test")               # generated on first use, then read from the verified cache
    test.images.shape                    # (1000, 64, 64, 3) float32 in [0, 1]
    test.masks.shape                     # (1000, 64, 64) uint8 labels: 0 = background, 1..n sprites in paint order
    test.num_entities                    # int32 [1000]: 1 + number of sprites (2 ... 5)
    test.entity_masks().shape            # (1000, 5, 64, 64) uint8 one-hot, entity 0 = background
    few = md.generate("train", 16)       # no cache: exactly the first 16 images of the train split
    grey = md.load("test", variant="colored_on_grayscale")   # 2-5 HSV sprites on grey; entity axis 6

    data = md.read_tfrecord(path, "multi_dsprites", "colored_on_colored")   # DeepMind's files, no TensorFlow

Splits (`SPLIT_SIZES`): train 60,000, valid 1,000, test 1,000 by default, each its own random stream of (seed,
split); any `num_images` works and a smaller one is a prefix of a larger one. Geometry: `sprites`; latents, colours
and randomness: `core`; cache: `cache`; DeepMind files: `deepmind`, `tfrecord`, `example_proto`.
"""

from datasets.multi_dsprites.cache import CACHE_ENV, default_cache_dir, load, load_encoded
from datasets.multi_dsprites.core import (
    COLOUR_LAWS,
    DEFAULT_SEED,
    GENERATOR_VERSION,
    MAX_ENTITIES,
    SPLIT_SIZES,
    SPLITS,
    EncodedSplit,
    MultiDSpritesSplit,
    Options,
    generate,
    generate_encoded,
)
from datasets.multi_dsprites.core import (
    VARIANTS as GENERATED_VARIANTS,
)
from datasets.multi_dsprites.deepmind import (
    VARIANTS,
    DeepMindExamples,
    VariantMismatchError,
    from_split,
    iter_examples,
    read_tfrecord,
    write_tfrecord_examples,
)
from datasets.multi_dsprites.tfrecord import TFRecordError

__all__ = [
    "CACHE_ENV",
    "COLOUR_LAWS",
    "DEFAULT_SEED",
    "GENERATOR_VERSION",
    "MAX_ENTITIES",
    "SPLITS",
    "SPLIT_SIZES",
    "VARIANTS",
    "DeepMindExamples",
    "EncodedSplit",
    "GENERATED_VARIANTS",
    "MultiDSpritesSplit",
    "Options",
    "TFRecordError",
    "VariantMismatchError",
    "default_cache_dir",
    "from_split",
    "generate",
    "generate_encoded",
    "iter_examples",
    "load",
    "load_encoded",
    "read_tfrecord",
    "write_tfrecord_examples",
]
