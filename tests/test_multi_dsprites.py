"""Multi-dSprites: the generator (determinism, geometry, occlusion, colours), its cache, and the TFRecord reader and
writer for DeepMind's files (framing, CRC-32C, tf.train.Example, every variant)."""

import dataclasses
import gzip
import hashlib
import shutil
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from datasets import multi_dsprites as md
from datasets.multi_dsprites import cache, core, deepmind, example_proto, sprites, tfrecord

SQUARE, ELLIPSE, HEART = range(3)


def _arrays(split) -> dict:
    return {f.name: getattr(split, f.name) for f in dataclasses.fields(split)}


def _assert_same(a, b):
    for name, value in _arrays(a).items():
        np.testing.assert_array_equal(value, getattr(b, name), err_msg=name)


# --- the generator -------------------------------------------------------------------------------------------------


def test_imports_neither_jax_nor_tensorflow():
    code = "import sys, datasets.multi_dsprites; print(sorted({'jax', 'tensorflow'} & set(sys.modules)))"
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root).stdout
    assert out.strip() == "[]"


def test_deterministic_prefix_and_pure_ranges():
    full = md.generate_encoded("train", 96, seed=3)
    _assert_same(full, md.generate_encoded("train", 96, seed=3))
    _assert_same(full[:17], md.generate_encoded("train", 17, seed=3))  # a prefix is the start of the split
    _assert_same(full[40:96], core.encode_range("train", 40, 96, 3, core.Options()))  # any range on its own
    assert not np.array_equal(full.labels, md.generate_encoded("train", 96, seed=4).labels)
    assert not np.array_equal(full.labels, md.generate_encoded("valid", 96, seed=3).labels)
    assert md.SPLIT_SIZES == {"train": 60_000, "valid": 1_000, "test": 1_000}


def test_generator_version_guard():
    """The first 64 test images at seed 0, frozen. If this fails the generator's output changed: bump
    `GENERATOR_VERSION` (old cache files are then regenerated) and update the digest."""
    encoded = md.generate_encoded("test", 64)
    sha = hashlib.sha256()
    for array in encoded.arrays():
        sha.update(array.tobytes())
    assert md.GENERATOR_VERSION == 1
    assert sha.hexdigest() == "b172bb08c570e481bc4a3886fb8c1d072311d480e7756ce462985d987b2d15ba"


def test_shapes_dtypes_and_ranges():
    split = md.generate("valid", 400)
    n = len(split)
    assert split.images.shape == (n, 64, 64, 3) and split.images.dtype == np.float32
    assert split.masks.shape == (n, 64, 64) and split.masks.dtype == np.uint8
    assert split.num_entities.dtype == np.int32 and set(np.unique(split.num_entities)) == {2, 3, 4, 5}
    np.testing.assert_array_equal(split.images * 255, np.round(split.images * 255))  # exactly uint8 / 255
    assert split.images.min() >= 0 and split.images.max() <= 1
    assert (split.masks.max(axis=(1, 2)) < split.num_entities).all()
    np.testing.assert_array_equal(split.visibility.sum(1), split.num_entities)
    assert set(np.unique(split.shape[:, 1:][split.visibility[:, 1:] == 1])) == {1, 2, 3}
    assert (split.shape[split.visibility == 0] == 0).all() and (split.shape[:, 0] == 0).all()
    assert np.isin(split.scale[:, 1:][split.visibility[:, 1:] == 1], sprites.SCALES.astype(np.float32)).all()
    levels = md.core.GENESIS_LEVELS / np.float32(255)
    assert np.isin(split.colours, levels.astype(np.float32)).all()  # default law: the 125 GENESIS colours
    counts = np.bincount(split.num_entities - 1, minlength=5)[1:] / n
    assert np.all(np.abs(counts - 0.25) < 0.07), counts  # 1 ... 4 sprites, uniform


def test_labels_match_image_colours():
    split = md.generate("test", 200)
    rows = np.arange(len(split))[:, None, None]
    # Each label region has exactly its entity's colour, the background included.
    np.testing.assert_array_equal(split.images, split.colours[rows, split.masks])
    entity = split.entity_masks()
    assert entity.shape == (200, 5, 64, 64) and entity.dtype == np.uint8
    np.testing.assert_array_equal(entity.sum(1), 1)  # one-hot
    unused = np.arange(5)[None, :] >= split.num_entities[:, None]
    assert not entity[unused].any()  # unused slots are all zero


def _paint_reference(encoded: core.EncodedSplit) -> np.ndarray:
    """Labels painted one sprite at a time on full 64 x 64 images (no windows, no vectorisation)."""
    labels = np.zeros_like(encoded.labels)
    for i, (count, latents) in enumerate(zip(encoded.num_sprites, encoded.latents)):
        for slot in range(count):
            labels[i][sprites.render_single(*latents[slot])] = slot + 1
    return labels


def test_occlusion_by_paint_order_matches_a_naive_painter():
    encoded = md.generate_encoded("train", 150, seed=11)
    np.testing.assert_array_equal(encoded.labels, _paint_reference(encoded))
    # The last sprite is never covered; an earlier one keeps exactly its pixels outside all later sprites.
    last = encoded.num_sprites.astype(int)
    covered = 0
    for i in range(len(encoded)):
        masks = [sprites.render_single(*encoded.latents[i, s]) for s in range(last[i])]
        np.testing.assert_array_equal(encoded.labels[i] == last[i], masks[-1])
        if last[i] > 1:
            later = np.any(masks[1:], axis=0)
            np.testing.assert_array_equal(encoded.labels[i] == 1, masks[0] & ~later)
            covered += int((masks[0] & later).any())
    assert covered > 5  # the sample does exercise occlusion


def _area_and_box(shape, scale, orientation=0, positions=range(0, 32, 3)):
    """Mean area, mean bounding box (width, height) and mean centroid offset from the position point over
    positions (sub-pixel phases differ between positions)."""
    areas, boxes, offsets = [], [], []
    for x in positions:
        for y in (0, 7, 19, 31):
            mask = sprites.render_single(shape, scale, orientation, x, y)
            rows, cols = np.nonzero(mask)
            areas.append(mask.sum())
            boxes.append((np.ptp(cols) + 1, np.ptp(rows) + 1))
            centre = sprites.centre_px(np.array([x, y]))
            offsets.append((cols.mean() + 0.5 - centre[0], rows.mean() + 0.5 - centre[1]))
    return np.mean(areas), np.mean(boxes, 0), np.mean(offsets, 0)


def test_measured_dsprites_geometry():
    for scale_index, scale in enumerate(sprites.SCALES):  # axis-aligned squares: exactly (20 * scale)^2 px
        for x, y in [(0, 0), (5, 17), (31, 31), (13, 2)]:
            mask = sprites.render_single(SQUARE, scale_index, 0, x, y)
            side = round(20 * scale)
            assert mask.sum() == side**2
            rows, cols = np.nonzero(mask)
            assert np.ptp(rows) + 1 == side and np.ptp(cols) + 1 == side
    area, box, _ = _area_and_box(ELLIPSE, 5)
    assert abs(area - 288) < 0.02 * 288 and np.all(np.abs(box - (26, 14)) <= 1), (area, box)
    area, box, _ = _area_and_box(ELLIPSE, 0)
    assert abs(area - 76) < 0.03 * 76 and np.all(np.abs(box - (12, 8)) <= 1), (area, box)
    area, box, offset = _area_and_box(HEART, 5)
    assert abs(area - 222) < 0.02 * 222 and np.all(np.abs(box - (20, 17)) <= 1), (area, box)
    assert -2.6 < offset[1] < -1.2 and abs(offset[0]) < 0.3  # lobes up: centroid ~1.9 px above the position
    measured = [58, 84, 108, 140, 182, 222]  # spec 3.2, per scale
    for scale_index, target in enumerate(measured):
        assert abs(_area_and_box(HEART, scale_index)[0] - target) < 0.06 * target


def test_rotation_about_the_position_point_counter_clockwise():
    quarter = 10  # orientation 10 * 2 pi / 39 = 92 degrees
    for orientation in range(0, 40, 7):  # a square's centroid stays on the position point
        _, _, offset = _area_and_box(SQUARE, 5, orientation, positions=(4, 20))
        assert np.all(np.abs(offset) < 0.3)
    _, box, _ = _area_and_box(ELLIPSE, 5, quarter)
    assert box[1] > box[0] + 8  # the major axis turned vertical
    _, _, offset = _area_and_box(HEART, 5, quarter)
    assert offset[0] < -1.2 and abs(offset[1]) < 0.6  # lobes up -> lobes left: counter-clockwise on screen
    np.testing.assert_array_equal(  # 0 and 2 pi coincide, as in dSprites' grid
        sprites.render_single(HEART, 3, 0, 9, 21), sprites.render_single(HEART, 3, 39, 9, 21)
    )


def test_colour_laws_and_unique_colours():
    shared = md.generate_encoded("train", 2000)
    colours = shared.palette.astype(np.int64) @ np.array([65536, 256, 1])  # [n, 5] one int per colour
    present = np.arange(5)[None, :] <= shared.num_sprites[:, None]
    repeats = [len(set(c[p])) < p.sum() for c, p in zip(colours, present)]
    assert sum(repeats) > 5  # colours may repeat (GENESIS's default): a sprite can match the background
    unique = md.generate_encoded("train", 2000, options=md.Options(unique_colours=True))
    colours = unique.palette.astype(np.int64) @ np.array([65536, 256, 1])
    present = np.arange(5)[None, :] <= unique.num_sprites[:, None]
    assert all(len(set(c[p])) == p.sum() for c, p in zip(colours, present))
    assert len(np.unique(colours[present])) == 125  # ... and still all 125 colours
    uniform = md.generate("test", 100, colours="uniform")
    assert len(np.unique(uniform.colours.reshape(-1, 3), axis=0)) > 300
    fixed = md.generate_encoded("test", 50, options=md.Options(min_sprites=3, max_sprites=3))
    assert (fixed.num_sprites == 3).all()


def test_colored_on_grayscale_statistics():
    """DeepMind's colored_on_grayscale (spec section 3.1): 2-5 HSV-coloured sprites on a random grey background,
    entity axis 6; hue, saturation and value uniform, the grey level uniform over 0 ... 255 (our reading)."""
    n = 4000
    split = md.generate("train", n, variant="colored_on_grayscale")
    assert split.visibility.shape == (n, 6) and split.colours.shape == (n, 6, 3)
    counts = np.bincount(split.num_entities - 1, minlength=6)
    assert counts[:2].sum() == 0 and (np.abs(counts[2:] - n / 4) < 4 * np.sqrt(n * 3 / 16)).all()  # uniform, 4 sd
    grey = np.round(split.colours[:, 0] * 255)  # [n, 3] the background
    assert (grey[:, 0] == grey[:, 1]).all() and (grey[:, 1] == grey[:, 2]).all()
    level = grey[:, 0]
    assert level.min() <= 5 and level.max() >= 250 and abs(level.mean() - 127.5) < 4  # sd of the mean: 1.2
    present = split.visibility[:, 1:] == 1
    rgb = np.round(split.colours[:, 1:][present] * 255) / 255  # [m, 3] every drawn sprite's colour
    value = rgb.max(1)
    saturation = np.where(value > 0, (value - rgb.min(1)) / np.maximum(value, 1e-9), 0)
    for name, x in (("value", value), ("saturation", saturation)):  # uniform on [0, 1): mean 1/2, variance 1/12
        assert abs(x.mean() - 0.5) < 0.02 and abs(x.var() - 1 / 12) < 0.01, name
    vivid = rgb[saturation > 0.5]  # the hue: each primary is the largest channel about a third of the time
    assert (np.abs(np.bincount(vivid.argmax(1), minlength=3) / len(vivid) - 1 / 3) < 0.03).all()
    rows = np.arange(n)[:, None, None]
    np.testing.assert_array_equal(split.images, split.colours[rows, split.masks])  # labels match colours
    entity = split.entity_masks()
    assert entity.shape == (n, 6, 64, 64) and (entity.sum(1) == 1).all()
    assert split.masks.max() == 5


def test_colored_on_grayscale_cache_identity(tmp_path):
    grey = md.Options(variant="colored_on_grayscale")
    assert (grey.colours, grey.min_sprites, grey.max_sprites, grey.max_entities) == ("hsv", 2, 5, 6)
    assert md.Options() == md.Options("genesis125", False, 1, 4) and md.Options().max_entities == 5
    # The default's file name and header are those from before variants existed, so old files stay valid.
    assert cache.cache_path(tmp_path, "test", 16, 0, md.Options()).name == "multi_dsprites_test_16_seed0_v1.npz"
    assert "variant" not in cache.header("test", 16, 0, md.Options())["options"]
    encoded = md.load_encoded("test", 16, options=grey, cache_dir=tmp_path)
    _assert_same(encoded, md.generate_encoded("test", 16, options=grey))
    (grey_path,) = tmp_path.glob("*.npz")
    assert grey_path.name != cache.cache_path(tmp_path, "test", 16, 0, md.Options()).name
    np.testing.assert_array_equal(md.load("test", 16, variant="colored_on_grayscale", cache_dir=tmp_path).images,
                                  md.generate("test", 16, variant="colored_on_grayscale").images)
    default_path = cache.cache_path(tmp_path, "test", 16, 0, md.Options())
    shutil.copy(grey_path, default_path)  # an intact grey file under the default's name is other data
    with pytest.warns(UserWarning, match=r"options\.colours: file has 'hsv'.*options\.variant: file has "
                                         r"'colored_on_grayscale', expected '<missing>'"):
        _assert_same(md.load_encoded("test", 16, cache_dir=tmp_path), md.generate_encoded("test", 16))
    # and a grey split exports as DeepMind's colored_on_grayscale records
    split = md.generate("test", 6, variant="colored_on_grayscale")
    path = tmp_path / "grey.tfrecords"
    md.write_tfrecord_examples(path, "multi_dsprites", "colored_on_grayscale", *md.from_split(split))
    data = md.read_tfrecord(path, "multi_dsprites", "colored_on_grayscale")
    np.testing.assert_array_equal(data.masks, split.masks)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"variant": "grayscale"}, "unknown Multi-dSprites variant 'grayscale'"),
        ({"variant": "colored_on_grayscale", "colours": "uniform"}, "colour law 'uniform' does not fit"),
        ({"variant": "colored_on_grayscale", "max_sprites": 6}, r"max_sprites <= 5 \(colored_on_grayscale\)"),
        ({"variant": "colored_on_colored", "max_sprites": 5}, r"max_sprites <= 4 \(colored_on_colored\)"),
        ({"variant": "colored_on_grayscale", "unique_colours": True}, "unique_colours needs a discrete colour law"),
    ],
)
def test_bad_variant_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        md.generate("test", 2, **kwargs)


def test_uniform_int_is_the_exact_multiply_shift():
    words = np.random.default_rng(5).integers(0, 2**64, 2000, dtype=np.uint64, endpoint=False)
    words = np.concatenate([words, np.array([0, 2**64 - 1], np.uint64)])
    for n in [1, 5, 125, 2**24 - 3, 2**32 - 1]:
        np.testing.assert_array_equal(core.uniform_int(words, n), [int(w) * n >> 64 for w in words])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"split": "training"}, "unknown split"),
        ({"num_images": 0}, "num_images"),
        ({"seed": -1}, "seed"),
        ({"colours": "hsv"}, "colour law"),
        ({"min_sprites": 0}, "min_sprites"),
        ({"max_sprites": 5}, "max_sprites"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        md.generate(**{"split": "test", "num_images": 2, **kwargs})


# --- the cache ------------------------------------------------------------------------------------------------------


def test_cache_round_trip_and_env(tmp_path, monkeypatch):
    monkeypatch.setenv(md.CACHE_ENV, str(tmp_path))
    assert md.default_cache_dir() == tmp_path
    first = md.load("valid", 32, seed=5)
    _assert_same(first, md.generate("valid", 32, seed=5))
    (path,) = tmp_path.glob("multi_dsprites_valid_32_seed5_*.npz")
    monkeypatch.setattr(core, "generate_encoded", lambda *a, **k: pytest.fail("regenerated a valid cache file"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _assert_same(first, md.load("valid", 32, seed=5))
    assert path.exists()


def test_damaged_cache_is_regenerated_with_a_warning(tmp_path):
    expected = md.generate_encoded("test", 24)
    md.load_encoded("test", 24, cache_dir=tmp_path)
    (path,) = tmp_path.glob("*.npz")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match=f"{path.name}.*regenerating"):
        _assert_same(md.load_encoded("test", 24, cache_dir=tmp_path), expected)
    path.write_bytes(path.read_bytes()[:300])  # truncated
    with pytest.warns(UserWarning, match="unreadable cache file"):
        _assert_same(md.load_encoded("test", 24, cache_dir=tmp_path), expected)
    with warnings.catch_warnings():  # and the rewritten file is good again
        warnings.simplefilter("error")
        md.load_encoded("test", 24, cache_dir=tmp_path)


def test_cache_file_of_other_data_is_detected(tmp_path):
    other = md.Options(colours="uniform", unique_colours=True)
    md.load_encoded("test", 16, options=other, cache_dir=tmp_path)
    (other_path,) = tmp_path.glob("*.npz")
    default_path = cache.cache_path(tmp_path, "test", 16, 0, md.Options())
    assert default_path != other_path
    shutil.copy(other_path, default_path)  # an intact file, but of other options, under the default name
    with pytest.warns(UserWarning, match=r"options\.colours: file has 'uniform', expected 'genesis125'") as record:
        _assert_same(md.load_encoded("test", 16, cache_dir=tmp_path), md.generate_encoded("test", 16))
    message = str(record[0].message)
    assert default_path.name in message and "options.unique_colours: file has True, expected False" in message
    # A file of another generator version, seed or size is caught the same way.
    old = cache.header("test", 16, 0, md.Options()) | {"generator_version": 0, "seed": 9}
    cache.save(md.generate_encoded("test", 16, seed=9), default_path, old)
    with pytest.warns(UserWarning, match="generator_version: file has 0, expected 1.*seed: file has 9, expected 0"):
        md.load_encoded("test", 16, cache_dir=tmp_path)


# --- TFRecord, CRC-32C, tf.train.Example ----------------------------------------------------------------------------


def test_crc32c_known_values_and_vectorised_against_bytewise():
    # RFC 3720 B.4 and the usual check value.
    assert tfrecord.crc32c(b"123456789") == 0xE3069283
    assert tfrecord.crc32c(bytes(32)) == 0x8A9136AA
    assert tfrecord.crc32c(b"\xff" * 32) == 0x62A8AB43
    assert tfrecord.crc32c(bytes(range(32))) == 0x46DD794E
    assert tfrecord.crc32c(b"") == 0
    rng = np.random.default_rng(0)
    for length in [1, 2, 7, 8, 9, 63, 64, 65, 1000, 4097, 20_011]:
        data = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
        assert tfrecord.crc32c(data) == tfrecord.crc32c_bytewise(data), length


def _protobuf_example_class():
    """tf.train.Example built at run time from a descriptor (no TensorFlow), as an oracle for our wire format."""
    pb = pytest.importorskip("google.protobuf")
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    del pb
    F = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="oracle_example.proto", package="oracle", syntax="proto3")
    for name, kind in [("BytesList", F.TYPE_BYTES), ("FloatList", F.TYPE_FLOAT), ("Int64List", F.TYPE_INT64)]:
        proto.message_type.add(name=name).field.add(name="value", number=1, type=kind, label=F.LABEL_REPEATED)
    feature = proto.message_type.add(name="Feature")
    feature.oneof_decl.add(name="kind")
    for number, name in enumerate(["bytes_list", "float_list", "int64_list"], 1):
        type_name = ".oracle." + name.title().replace("_", "")
        feature.field.add(
            name=name, number=number, type=F.TYPE_MESSAGE, label=F.LABEL_OPTIONAL, type_name=type_name, oneof_index=0
        )
    features = proto.message_type.add(name="Features")
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=F.TYPE_MESSAGE, label=F.LABEL_OPTIONAL, type_name=".oracle.Feature")
    features.field.add(
        name="feature", number=1, type=F.TYPE_MESSAGE, label=F.LABEL_REPEATED, type_name=".oracle.Features.FeatureEntry"
    )
    example = proto.message_type.add(name="Example")
    example.field.add(
        name="features", number=1, type=F.TYPE_MESSAGE, label=F.LABEL_OPTIONAL, type_name=".oracle.Features"
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("oracle.Example"))


def test_example_wire_format_against_protobuf():
    Example = _protobuf_example_class()
    reference = Example()
    reference.features.feature["image"].bytes_list.value.extend([bytes([v]) for v in range(0, 256, 5)])
    reference.features.feature["name"].bytes_list.value.extend([b"", b"multi", b"x" * 300])
    reference.features.feature["x"].float_list.value.extend([0.25, -1.5, 3e38])
    reference.features.feature["id"].int64_list.value.extend([0, 1, -7, 2**40, -(2**63)])
    reference.features.feature["empty"].float_list.value.extend([])
    ours = example_proto.serialize_example(
        {
            "image": example_proto.BytesList.from_single_bytes(np.arange(0, 256, 5, dtype=np.uint8)),
            "name": example_proto.BytesList.from_values([b"", b"multi", b"x" * 300]),
            "x": np.array([0.25, -1.5, 3e38], np.float32),
            "id": np.array([0, 1, -7, 2**40, -(2**63)]),
            "empty": np.zeros(0, np.float32),
        }
    )
    assert ours == reference.SerializeToString(deterministic=True)  # byte for byte
    parsed = example_proto.parse_example(reference.SerializeToString())
    np.testing.assert_array_equal(parsed["image"].single_bytes(), np.arange(0, 256, 5))
    assert parsed["name"].values() == [b"", b"multi", b"x" * 300]
    np.testing.assert_array_equal(parsed["x"], np.array([0.25, -1.5, 3e38], np.float32))
    np.testing.assert_array_equal(parsed["id"], [0, 1, -7, 2**40, -(2**63)])
    assert parsed["empty"].size == 0
    with pytest.raises(example_proto.ProtobufError, match="single bytes"):
        parsed["name"].single_bytes()


def test_example_unpacked_scalars_and_unknown_fields():
    def field(number, payload):  # a length-delimited field (payloads here are shorter than 128 bytes)
        return bytes([number << 3 | 2, len(payload)]) + payload

    def entry(key, feature):
        return field(1, field(1, key) + field(2, feature))

    # FloatList/Int64List written unpacked (a fixed32 or varint field per value), and an unknown field 7 (varint).
    floats = b"".join(b"\x0d" + struct.pack("<f", v) for v in (1.0, -2.0))
    ints = b"\x08\x05\x08\x7f"
    data = field(1, entry(b"f", field(2, floats)) + entry(b"i", field(3, ints))) + b"\x38\x01"
    parsed = example_proto.parse_example(data)
    np.testing.assert_array_equal(parsed["f"], [1.0, -2.0])
    np.testing.assert_array_equal(parsed["i"], [5, 127])


def _random_variant_arrays(v: deepmind.Variant, n: int, rng):
    images = rng.integers(0, 256, (n, 64, 64, v.channels), dtype=np.uint8)
    labels = rng.integers(0, v.max_num_entities, (n, 64, 64))
    labels[:, :8] = v.max_num_entities  # a band of pixels that no entity covers (label 0 there)
    entity = (labels[:, None] == np.arange(v.max_num_entities)[None, :, None, None]).astype(np.uint8) * 255
    factors = {
        f: rng.normal(size=(n, v.max_num_entities, v.channels) if f == "color" else (n, v.max_num_entities))
        for f in v.factors
    }
    return images, entity, factors, np.where(labels == v.max_num_entities, 0, labels)


@pytest.mark.parametrize("compression", ["GZIP", ""])
@pytest.mark.parametrize("key", list(deepmind.VARIANTS))
def test_tfrecord_every_variant_round_trip(tmp_path, key, compression):
    v = deepmind.VARIANTS[key]
    images, entity, factors, labels = _random_variant_arrays(v, 3, np.random.default_rng(len(key[1])))
    path = tmp_path / f"{v.name}.tfrecords"
    assert md.write_tfrecord_examples(path, *key, images, entity, factors, compression=compression) == 3
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (compression == "GZIP")
    data = md.read_tfrecord(path, *key, entity_masks=True)  # compression detected
    np.testing.assert_array_equal(data.images, images)
    np.testing.assert_array_equal(data.entity_masks, entity)
    np.testing.assert_array_equal(data.masks, labels)
    for f in v.factors:
        np.testing.assert_array_equal(data.factors[f], factors[f].astype(np.float32))
    assert len(md.read_tfrecord(path, *key, limit=2, compression=compression)) == 2


def test_tfrecord_layout_is_the_deepmind_one(tmp_path):
    """The bytes on disk: framing and CRCs by the textbook definition, mask axes as DeepMind stores them."""
    v = deepmind.VARIANTS[("multi_dsprites", "colored_on_colored")]
    images, entity, factors, _ = _random_variant_arrays(v, 2, np.random.default_rng(1))
    plain, zipped = tmp_path / "plain.tfrecords", tmp_path / "zipped.tfrecords"
    md.write_tfrecord_examples(plain, *("multi_dsprites", v.name), images, entity, factors, compression="")
    md.write_tfrecord_examples(zipped, *("multi_dsprites", v.name), images, entity, factors)
    raw = plain.read_bytes()
    assert gzip.decompress(zipped.read_bytes()) == raw  # GZIP is only a wrapper around the same stream

    def masked(crc):
        return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF

    (length,) = struct.unpack("<Q", raw[:8])
    assert struct.unpack("<I", raw[8:12])[0] == masked(tfrecord.crc32c_bytewise(raw[:8]))
    record = raw[12 : 12 + length]
    assert struct.unpack("<I", raw[12 + length : 16 + length])[0] == masked(tfrecord.crc32c_bytewise(record))
    stored = example_proto.parse_example(record)["mask"].single_bytes().reshape(64, 64, 5, 1)
    np.testing.assert_array_equal(stored[..., 0].transpose(2, 0, 1), entity[0])  # stored [64, 64, E, 1]


def test_generated_split_exports_as_colored_on_colored(tmp_path):
    split = md.generate("test", 12)
    path = tmp_path / "md.tfrecords"
    md.write_tfrecord_examples(path, "multi_dsprites", "colored_on_colored", *md.from_split(split))
    data = md.read_tfrecord(path, "multi_dsprites", "colored_on_colored")
    np.testing.assert_array_equal(data.images / np.float32(255), split.images)
    np.testing.assert_array_equal(data.masks, split.masks)
    np.testing.assert_array_equal(data.factors["visibility"], split.visibility)


@pytest.mark.parametrize("compression", ["GZIP", ""])
def test_tfrecord_corruption_names_file_and_record(tmp_path, compression):
    v = deepmind.VARIANTS[("objects_room", "empty_room")]
    images, entity, _, _ = _random_variant_arrays(v, 3, np.random.default_rng(2))
    plain = tmp_path / "plain.tfrecords"
    md.write_tfrecord_examples(plain, "objects_room", "empty_room", images, entity, compression="")
    raw = bytearray(plain.read_bytes())
    record = len(raw) // 3
    path = tmp_path / f"bad{compression}.tfrecords"

    def write(data: bytes):
        path.write_bytes(gzip.compress(data, mtime=0) if compression else data)

    damaged = raw.copy()
    damaged[record + record // 2] ^= 0x01  # one bit in the data of record 1
    write(damaged)
    with pytest.raises(md.TFRecordError, match=rf"{path.name}: record 1: data CRC mismatch"):
        md.read_tfrecord(path, "objects_room", "empty_room")
    assert len(md.read_tfrecord(path, "objects_room", "empty_room", limit=1)) == 1  # records before it are fine
    damaged = raw.copy()
    damaged[2 * record] ^= 0x01  # the length of record 2
    write(damaged)
    with pytest.raises(md.TFRecordError, match=rf"{path.name}: record 2: length CRC mismatch"):
        md.read_tfrecord(path, "objects_room", "empty_room")
    write(bytes(raw[:-100]))
    with pytest.raises(md.TFRecordError, match=rf"{path.name}: record 2: truncated data"):
        md.read_tfrecord(path, "objects_room", "empty_room")


def test_wrong_variant_is_named(tmp_path):
    v = deepmind.VARIANTS[("multi_dsprites", "binarized")]
    images, entity, factors, _ = _random_variant_arrays(v, 1, np.random.default_rng(3))
    path = tmp_path / "binarized.tfrecords"
    md.write_tfrecord_examples(path, "multi_dsprites", "binarized", images, entity, factors)
    expected = (
        f"{path}: record 0: expected multi_dsprites/colored_on_colored (mask [64,64,5,1], image 3 channels), "
        "found 4 entities and 1 channel: binarized?"
    )
    with pytest.raises(md.VariantMismatchError) as error:
        md.read_tfrecord(path, "multi_dsprites", "colored_on_colored")
    assert str(error.value) == expected
    v = deepmind.VARIANTS[("objects_room", "six_objects")]
    images, entity, _, _ = _random_variant_arrays(v, 1, np.random.default_rng(4))
    rooms = tmp_path / "rooms.tfrecords"
    md.write_tfrecord_examples(rooms, "objects_room", "six_objects", images, entity)
    with pytest.raises(md.VariantMismatchError, match=r"found 10 entities and 3 channels: six_objects or identical"):
        md.read_tfrecord(rooms, "objects_room", "train")
    with pytest.raises(md.VariantMismatchError, match=r"no Multi-dSprites factors x, y, .*objects_room/six_objects"):
        md.read_tfrecord(rooms, "multi_dsprites", "colored_on_colored")
    with pytest.raises(ValueError, match="unknown DeepMind dataset variant multi_dsprites/train"):
        md.read_tfrecord(rooms, "multi_dsprites", "train")


def test_writer_rejects_arrays_of_another_variant(tmp_path):
    v = deepmind.VARIANTS[("multi_dsprites", "colored_on_grayscale")]
    images, entity, factors, _ = _random_variant_arrays(v, 2, np.random.default_rng(6))
    path = tmp_path / "out.tfrecords"
    with pytest.raises(ValueError, match=r"needs entity masks \[2, 5, 64, 64\]"):
        md.write_tfrecord_examples(path, "multi_dsprites", "colored_on_colored", images, entity, factors)
    factors["color"] = factors["color"][:, :, :1]
    with pytest.raises(ValueError, match="needs factor 'color' of shape"):
        md.write_tfrecord_examples(path, "multi_dsprites", "colored_on_grayscale", images, entity, factors)
    assert list(tmp_path.iterdir()) == []  # nothing half-written left behind
