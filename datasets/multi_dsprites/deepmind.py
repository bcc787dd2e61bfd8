"""DeepMind's multi-object TFRecord files (Multi-dSprites, Objects Room), read and written without TensorFlow.

    from datasets.multi_dsprites import deepmind
    data = deepmind.read_tfrecord("multi_dsprites_colored_on_colored.tfrecords", "multi_dsprites",
                                  "colored_on_colored", limit=1000)
    data.images        # uint8 [1000, 64, 64, 3]
    data.masks         # uint8 [1000, 64, 64] labels: the entity whose mask is 255, 0 where none (0 = background)
    data.factors["x"]  # float32 [1000, 5] (Multi-dSprites only)

The format (google-deepmind/multi_object_datasets ``multi_dsprites.py``, ``objects_room.py``): one GZIP-compressed
TFRecord file of `tf.train.Example`s. ``image`` and ``mask`` are BytesLists of prod(S) one-byte strings, reshaped
row-major to S: image S = [64, 64, C]; Multi-dSprites mask S = [64, 64, E, 1], transposed to [E, 64, 64, 1];
Objects Room mask S = [E, 64, 64, 1]. Mask values are 0 or 255, entities are disjoint, unused slots all zero,
entity 0 is the background (Objects Room: entities 0-3 are sky, floor and two wall halves). Multi-dSprites also
has float32 factors x, y, shape, visibility, orientation, scale `[E]` and color `[E, C]`.

The variant fixes E and C, and TensorFlow's reader silently needs the right one; here every record is checked and a
mismatch raises `VariantMismatchError` naming the variant asked for, what the file holds, and the variants that fit.
`write_tfrecord_examples` writes the same format byte for byte (CRCs included), for tests and for exporting
generated data (`from_split`) to tools that expect DeepMind's files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from datasets.multi_dsprites import example_proto, tfrecord

IMAGE_SHAPE = (64, 64)
MULTI_DSPRITES_FACTORS = ("x", "y", "shape", "color", "visibility", "orientation", "scale")  # color is [E, C]


@dataclasses.dataclass(frozen=True)
class Variant:
    """One DeepMind dataset variant.

    Attributes:
        dataset: "multi_dsprites" or "objects_room".
        name: the variant, e.g. "colored_on_colored".
        max_num_entities: E, the number of masks per image (background included).
        channels: C, image channels (1 for binarized Multi-dSprites).
        factors: the float features besides image and mask.
    """

    dataset: str
    name: str
    max_num_entities: int
    channels: int
    factors: tuple[str, ...]

    @property
    def stored_mask_shape(self) -> tuple[int, ...]:
        """The mask's shape in the file: Multi-dSprites keeps the entity axis third, Objects Room first."""
        height, width = IMAGE_SHAPE
        if self.dataset == "multi_dsprites":
            return (height, width, self.max_num_entities, 1)
        return (self.max_num_entities, height, width, 1)

    def __str__(self) -> str:
        mask = ",".join(map(str, self.stored_mask_shape))
        return f"{self.dataset}/{self.name} (mask [{mask}], image {_channels(self.channels)})"


def _channels(count: int) -> str:
    return f"{count} channel" + ("" if count == 1 else "s")


def _variants() -> dict[tuple[str, str], Variant]:
    sprites = {"binarized": (4, 1), "colored_on_grayscale": (6, 3), "colored_on_colored": (5, 3)}  # (E, C)
    rooms = {"train": 7, "six_objects": 10, "empty_room": 4, "identical_color": 10}  # E; C = 3
    out = {
        ("multi_dsprites", n): Variant("multi_dsprites", n, e, c, MULTI_DSPRITES_FACTORS)
        for n, (e, c) in sprites.items()
    }
    out.update({("objects_room", n): Variant("objects_room", n, e, 3, ()) for n, e in rooms.items()})
    return out


VARIANTS = _variants()
DATASETS = ("multi_dsprites", "objects_room")


class VariantMismatchError(ValueError):
    """A file (record) whose shapes or features do not fit the variant asked for."""


def variant(dataset: str, name: str) -> Variant:
    """The `Variant` (dataset, name).

    Raises:
        ValueError: an unknown dataset or variant, listing the known ones.
    """
    if (dataset, name) not in VARIANTS:
        known = ", ".join(f"{d}/{n}" for d, n in VARIANTS)
        raise ValueError(f"unknown DeepMind dataset variant {dataset}/{name}; known: {known}")
    return VARIANTS[(dataset, name)]


@dataclasses.dataclass(frozen=True)
class DeepMindExamples:
    """Decoded examples of one variant (entity axis e: 0 = background).

    Attributes:
        variant: what the file holds.
        images: uint8 `[n, 64, 64, C]`.
        masks: uint8 `[n, 64, 64]` label maps, the entity whose mask is 255 (0 where none).
        entity_masks: uint8 `[n, E, 64, 64]` as stored (0/255), if asked for, else None.
        factors: {name: float32 `[n, E]` (color: `[n, E, C]`)}; empty for Objects Room.
    """

    variant: Variant
    images: np.ndarray
    masks: np.ndarray
    entity_masks: np.ndarray | None
    factors: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.images)


def _mismatch(where: str, expected: Variant, entities: int, channels: int, factors: tuple[str, ...]) -> ValueError:
    """The error for a record that does not fit `expected`, with the variants that would fit it."""
    found = [f"{entities} entities and {_channels(channels)}"]
    has_factors = len(factors) == len(MULTI_DSPRITES_FACTORS)
    if expected.factors and not has_factors:
        missing = [f for f in MULTI_DSPRITES_FACTORS if f not in factors]
        found.append(f"no Multi-dSprites factor{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    elif not expected.factors and has_factors:
        found.append("Multi-dSprites factors (x, y, shape, ...)")
    fits = [
        v.name if v.dataset == expected.dataset else f"{v.dataset}/{v.name}"
        for v in VARIANTS.values()
        if (v.max_num_entities, v.channels, bool(v.factors)) == (entities, channels, has_factors)
    ]
    guess = " or ".join(fits) + "?" if fits else "no known variant fits"
    return VariantMismatchError(f"{where}: expected {expected}, found {', '.join(found)}: {guess}")


def decode_example(features: Mapping[str, example_proto.Feature], expected: Variant, where: str = "example") -> dict:
    """Checks a parsed Example against `expected` and decodes it.

    Args:
        features: from `example_proto.parse_example`.
        expected: the variant the file should hold.
        where: names the record in error messages, e.g. "FILE: record 3".

    Returns:
        {"image": uint8 `[64, 64, C]`, "entity_masks": uint8 `[E, 64, 64]` (0/255), and the factors}.

    Raises:
        VariantMismatchError: a missing feature or a shape that does not fit `expected`.
    """
    pixels = IMAGE_SHAPE[0] * IMAGE_SHAPE[1]
    try:
        image = features["image"].single_bytes()
        mask = features["mask"].single_bytes()
    except (KeyError, AttributeError, example_proto.ProtobufError) as e:
        raise VariantMismatchError(f"{where}: expected {expected}, but 'image'/'mask' are not byte lists: {e!r}") from e
    if image.size % pixels or mask.size % pixels:
        raise VariantMismatchError(
            f"{where}: expected {expected}, found an image of {image.size} and a mask of {mask.size} bytes"
        )
    entities, channels = mask.size // pixels, image.size // pixels
    present = tuple(f for f in MULTI_DSPRITES_FACTORS if f in features)
    has_factors = len(present) == len(MULTI_DSPRITES_FACTORS)
    if (entities, channels, has_factors) != (expected.max_num_entities, expected.channels, bool(expected.factors)):
        raise _mismatch(where, expected, entities, channels, present)
    for f in expected.factors:
        size, value = entities * (channels if f == "color" else 1), features[f]
        if not (isinstance(value, np.ndarray) and value.dtype == np.float32 and value.size == size):
            raise VariantMismatchError(
                f"{where}: expected {expected}, so factor {f!r} as {size} floats, found {value!r}"
            )
    stored = mask.reshape(expected.stored_mask_shape)
    if expected.dataset == "multi_dsprites":
        stored = stored.transpose(2, 0, 1, 3)  # [64, 64, E, 1] -> [E, 64, 64, 1], as DeepMind's reader does
    out = {"image": image.reshape(*IMAGE_SHAPE, channels), "entity_masks": np.ascontiguousarray(stored[..., 0])}
    for name in expected.factors:
        shape = (entities, channels) if name == "color" else (entities,)
        out[name] = np.asarray(features[name], np.float32).reshape(shape)
    return out


def labels_from_masks(entity_masks: np.ndarray) -> np.ndarray:
    """uint8 `[..., H, W]`: for `[..., E, H, W]` masks, the entity whose mask is 255 (0 where none)."""
    return np.argmax(entity_masks == 255, axis=-3).astype(np.uint8)


def iter_examples(
    path: str | os.PathLike,
    dataset: str,
    name: str,
    *,
    compression: str | None = None,
    verify_crc: bool = True,
    allow_empty: bool = False,
) -> Iterator[dict]:
    """Yields the decoded examples of a DeepMind TFRecord file one at a time (the files hold up to 1M images).

    Args:
        path: the file.
        dataset, name: the variant, e.g. ("multi_dsprites", "colored_on_colored").
        compression: "GZIP", "" or None (default: detect; the DeepMind files are GZIP).
        verify_crc: check each record's data CRC.
        allow_empty: a file without records is an empty split (default: `TFRecordError`, naming the file).

    Yields:
        `decode_example`'s dictionaries.

    Raises:
        ValueError: an unknown variant.
        tfrecord.TFRecordError: a damaged or truncated record, naming the file and the record.
        VariantMismatchError: a record that does not fit the variant, naming the file and the record.
    """
    expected = variant(dataset, name)
    records = tfrecord.read_records(path, compression=compression, verify_crc=verify_crc, allow_empty=allow_empty)
    with contextlib.closing(records):
        for index, record in enumerate(records):
            where = f"{Path(path)}: record {index}"
            try:
                features = example_proto.parse_example(record)
            except example_proto.ProtobufError as e:
                raise tfrecord.TFRecordError(f"{where}: not a tf.train.Example: {e}") from e
            yield decode_example(features, expected, where)


def read_tfrecord(
    path: str | os.PathLike,
    dataset: str,
    name: str,
    *,
    limit: int | None = None,
    entity_masks: bool = False,
    compression: str | None = None,
    verify_crc: bool = True,
    allow_empty: bool = False,
) -> DeepMindExamples:
    """Reads (the first `limit` examples of) a DeepMind TFRecord file into arrays.

    Args:
        path, dataset, name, compression, verify_crc, allow_empty: as in `iter_examples`.
        limit: read at most this many examples (default all).
        entity_masks: also return the per-entity masks (E times the labels' memory).

    Returns:
        A `DeepMindExamples`.

    Raises:
        As `iter_examples`.
    """
    expected = variant(dataset, name)
    images, labels, masks, factors = [], [], [], {f: [] for f in expected.factors}
    # closing(): stopping at `limit` closes the file now, not at garbage collection.
    examples = iter_examples(path, dataset, name, compression=compression, verify_crc=verify_crc,
                             allow_empty=allow_empty)
    with contextlib.closing(examples) as it:
        for example in itertools.islice(it, limit):
            images.append(example["image"])
            labels.append(labels_from_masks(example["entity_masks"]))
            if entity_masks:
                masks.append(example["entity_masks"])
            for f in expected.factors:
                factors[f].append(example[f])
    height, width = IMAGE_SHAPE
    e, c = expected.max_num_entities, expected.channels
    return DeepMindExamples(
        variant=expected,
        images=_stack(images, (height, width, c), np.uint8),
        masks=_stack(labels, (height, width), np.uint8),
        entity_masks=_stack(masks, (e, height, width), np.uint8) if entity_masks else None,
        factors={f: _stack(v, (e, c) if f == "color" else (e,), np.float32) for f, v in factors.items()},
    )


def _stack(arrays: list[np.ndarray], shape: tuple[int, ...], dtype) -> np.ndarray:
    """`[n, *shape]`, also for n = 0."""
    return np.stack(arrays) if arrays else np.zeros((0, *shape), dtype)


def encode_example(
    expected: Variant, image: np.ndarray, entity_masks: np.ndarray, factors: Mapping[str, np.ndarray]
) -> bytes:
    """A serialized Example of `expected`'s format.

    Args:
        expected: the variant.
        image: uint8 `[64, 64, C]`.
        entity_masks: uint8 `[E, 64, 64]` with values 0/255 (canonical layout; stored as the variant stores it).
        factors: {name: float `[E]` (color `[E, C]`)} for each of `expected.factors`.

    Raises:
        ValueError: an array of the wrong shape for `expected`.
    """
    e, c = expected.max_num_entities, expected.channels
    if image.shape != (*IMAGE_SHAPE, c) or entity_masks.shape != (e, *IMAGE_SHAPE):
        raise ValueError(
            f"{expected} needs an image [64, 64, {c}] and masks [{e}, 64, 64], got {image.shape} and "
            f"{entity_masks.shape}"
        )
    stored = entity_masks[..., None]  # [E, 64, 64, 1]
    if expected.dataset == "multi_dsprites":
        stored = stored.transpose(1, 2, 0, 3)  # -> [64, 64, E, 1], the file's layout
    features: dict[str, example_proto.Feature] = {
        "image": example_proto.BytesList.from_single_bytes(image),
        "mask": example_proto.BytesList.from_single_bytes(stored),
    }
    for name in expected.factors:
        features[name] = np.asarray(factors[name], np.float32).reshape(-1)
        if features[name].size != e * (c if name == "color" else 1):
            raise ValueError(f"{expected} needs factor {name!r} of shape {(e, c) if name == 'color' else (e,)}")
    return example_proto.serialize_example(features)


def write_tfrecord_examples(
    path: str | os.PathLike,
    dataset: str,
    name: str,
    images: np.ndarray,
    entity_masks: np.ndarray,
    factors: Mapping[str, np.ndarray] | None = None,
    *,
    compression: str = "GZIP",
) -> int:
    """Writes examples in a DeepMind variant's exact TFRecord format (atomically).

    Args:
        path: the file to write.
        dataset, name: the variant.
        images: uint8 `[n, 64, 64, C]`.
        entity_masks: `[n, E, 64, 64]`, 0/255 uint8 or bool (True becomes 255).
        factors: Multi-dSprites' {name: float `[n, E]` (color `[n, E, C]`)}; missing ones are written as zeros,
            except visibility, which defaults to "the entity has a pixel".
        compression: "GZIP" (as DeepMind's files) or "" (none).

    Returns:
        The number of examples written.

    Raises:
        ValueError: an unknown variant or arrays of the wrong shape for it (no file is then left behind).
    """
    expected = variant(dataset, name)
    masks = np.asarray(entity_masks)
    masks = np.where(masks, np.uint8(255), np.uint8(0)) if masks.dtype == bool else masks.astype(np.uint8)
    n, e, c = len(images), expected.max_num_entities, expected.channels
    if masks.shape != (n, e, *IMAGE_SHAPE):
        raise ValueError(f"{expected} needs entity masks [{n}, {e}, 64, 64] for {n} images, got {masks.shape}")
    factors = dict(factors or {})
    pixels = IMAGE_SHAPE[0] * IMAGE_SHAPE[1]  # not -1: an empty split (n = 0) cannot infer it
    defaults = {"visibility": masks.reshape(n, e, pixels).any(-1).astype(np.float32), "color": np.zeros((n, e, c))}
    full = {f: factors[f] if f in factors else defaults.get(f, np.zeros((n, e))) for f in expected.factors}
    records = (
        encode_example(expected, np.asarray(images[i], np.uint8), masks[i], {f: v[i] for f, v in full.items()})
        for i in range(n)
    )
    return tfrecord.write_records(path, records, compression=compression)


def from_split(split) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """A generated `MultiDSpritesSplit` as DeepMind's Multi-dSprites arrays of its variant (``colored_on_colored``:
    e = 5 entities; ``colored_on_grayscale``: e = 6).

    Returns:
        (images uint8 `[n, 64, 64, 3]`, entity_masks uint8 `[n, e, 64, 64]` 0/255, factors {name: float32 `[n, e]`,
        color `[n, e, 3]`}), ready for `write_tfrecord_examples(path, "multi_dsprites", <variant>, ...)`.
    """
    images = np.round(split.images * 255).astype(np.uint8)  # exact: the images are uint8 / 255
    factors = {
        "x": split.x,
        "y": split.y,
        "shape": split.shape.astype(np.float32),
        "color": split.colours,
        "visibility": split.visibility.astype(np.float32),
        "orientation": split.orientation,
        "scale": split.scale,
    }
    return images, split.entity_masks() * np.uint8(255), factors
