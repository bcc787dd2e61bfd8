"""The Good Gestalt datasets as a tensorflow-datasets builder (optional; no TensorFlow needed).

One builder, ``good_gestalt``, with a config per dataset (``good_gestalt/kanizsa``, ..., 64 px). Importing this
module registers it. It builds offline in the array_record format, reads back through TFDS's data sources (random
access, usable with grain), and keeps the reference's image order:

    import tensorflow_datasets as tfds
    from datasets.good_gestalt import tfds_builder  # registers "good_gestalt"

    builder = tfds.builder("good_gestalt/kanizsa", data_dir="~/tensorflow_datasets")
    builder.download_and_prepare()  # generates (or reads noisegroup's cache) and writes array_record files
    test = builder.as_data_source()["test"]  # or: tfds.data_source("good_gestalt/kanizsa", data_dir=...)
    test[0]["image"], test[0]["mask"], test[0]["num_clusters"]

Features: ``image`` float32 `[64, 64, 3]` (exact values, stored as raw bytes), ``mask`` and ``detailed_mask`` uint8
`[64, 64]`, ``num_clusters`` int32. TFDS needs the same features in every split: where the reference has no mask
(train, valid) or no detailed mask, the array is all zeros and ``num_clusters`` is 0.

Why not ``tfds.load``/``tfds.features.Image``: both need TensorFlow, which noisegroup does not depend on.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from datasets.good_gestalt import cache, core


@dataclasses.dataclass
class GoodGestaltConfig(tfds.core.BuilderConfig):
    """A Good Gestalt dataset (`dataset`, default: the config's name); `limit` keeps only the first images of every
    split (tests, quick looks: give such a config a name of its own, e.g. ``closure_first8``)."""

    dataset: str | None = None
    limit: int | None = None


class GoodGestalt(tfds.core.GeneratorBasedBuilder):
    """The six Good Gestalt datasets of Latent Noise Segmentation (ICML 2024), exact to the reference generator."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Exact reimplementation of the reference generator (seeds 42 and 41), 64 px."}
    BUILDER_CONFIGS = [GoodGestaltConfig(name=name, description=f"Good Gestalt: {name}") for name in core.NAMES]

    def __init__(self, *, file_format: str | None = "array_record", **kwargs):
        # array_record: written and read without TensorFlow (the default, tfrecord, needs it).
        super().__init__(file_format=file_format, **kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__.splitlines()[0],
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=(64, 64, 3), dtype=np.float32, encoding="bytes"),
                    "mask": tfds.features.Tensor(shape=(64, 64), dtype=np.uint8, encoding="bytes"),
                    "detailed_mask": tfds.features.Tensor(shape=(64, 64), dtype=np.uint8, encoding="bytes"),
                    "num_clusters": tfds.features.Scalar(dtype=np.int32),
                }
            ),
            disable_shuffling=True,  # keep the reference's order: image i of a split is image i here
            homepage="https://github.com/ZhengqingUUU/LatentNoiseSegmentation",
        )

    def _split_generators(self, dl_manager):
        return {split: self._generate_examples(split) for split in core.SPLITS}

    def _generate_examples(self, split: str):
        config = self.builder_config
        name, limit = config.dataset or config.name, config.limit
        if limit is None:
            encoded = cache.load_encoded(name, split)
        else:
            encoded = core.encode_splits(name, {split: min(limit, core.SPLIT_SIZES[split])})[split]
        zeros = np.zeros(encoded.index.shape[1:], np.uint8)
        for start in range(0, len(encoded), 256):  # decode a chunk at a time: train is 1.5 GB as float32
            chunk = encoded[start : start + 256].decode()
            for i in range(len(chunk)):
                yield start + i, {
                    "image": chunk.images[i],
                    "mask": zeros if chunk.masks is None else chunk.masks[i],
                    "detailed_mask": zeros if chunk.detailed_masks is None else chunk.detailed_masks[i],
                    "num_clusters": 0 if chunk.num_clusters is None else chunk.num_clusters[i],
                }
