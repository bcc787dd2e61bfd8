"""Good Gestalt generators: exactness against the reference, shapes, properties, cache, errors."""

import hashlib
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from datasets import good_gestalt as gg
from datasets.good_gestalt import cache, core
from datasets.good_gestalt.canvas import Canvas

# SHA-256 of the reference generator's arrays (images: float32 NHWC C-order bytes; masks: uint8 [n, 64, 64]) for
# the first 8 images of every split at 64 px (copied from the project's spec, gg_checksums.json).
GOLDEN = {
    "kanizsa": {
        "train/images": "9d04c926cb95910952584a59c9049a8ee3c3b5bc13b7812a500b2957a0f9a184",
        "valid/images": "fc74c59048d8b9130cb7cce3891346a4544e2d6a6693716eff7678b660e3e658",
        "test_iid/images": "17a02f7b76459175c29d4846c068ef865b4969044e0f1e6c770fb23f5fb85812",
        "test_iid/masks": "1dbbb730cc2a447a0f39309475dce7ab623d74754138714d49089e9f827abe65",
        "test/images": "c48272040bcb8c7c7f0e833337568d17fc10dec6478dec0e2b084af354287759",
        "test/masks": "d33a7411fb2940c184462311b5d82f43a84af996d23c849bc0a375d077f3defc",
    },
    "closure": {
        "train/images": "279117479d93046783c796bcf862ac8e37482cd87c1ad0955a601002b24b7013",
        "valid/images": "6aae76d8041a110ecc82690bb1de591e26d70d5ddc1aed50d691bb73d317cb02",
        "test_iid/images": "1059cdd7c9097b88dd29a56c79941f38635667924d5be5842c286e9b213b48a2",
        "test_iid/masks": "b4827a48cb6f919eaac23e42d29c737d1733a070a208094ca16b466e5505b514",
        "test/images": "6f61004da49ed95a4584f13f1235974cbcf2276afa55cae6b6486114f013154a",
        "test/masks": "5e6ec2e07f448264e088e519b523a7eb828bb448de6dd451614b5d9af824328a",
    },
    "continuity": {
        "train/images": "5082cb6f62891cc85c39f303d1b499009efca588be8b6fcc2f3ecb153ec19cac",
        "valid/images": "fbca0633f59727ca258e1cdff13e64a630fe115822ba004fc41e84a6ab8c40ee",
        "test_iid/images": "9541e70113db8cf9e45844110db3613d7995d001525526243e4f5e5cc1b7712e",
        "test_iid/masks": "daad26a958faf744ccc720d6cba04f8484fddeab1d785e1992b18f2d458fda55",
        "test/images": "676b37b0dd33c44b79a7cde951c02d6a380dbd304ad959fca9ea0c163c003fa9",
        "test/masks": "db5bc1dc13f026dd40d3ab7617736599d7f2fb395294ae665a873102716c588e",
    },
    "proximity": {
        "train/images": "b9b2729942b4e89b98851894d0dfdfe8e3b780bb1248df071c727ab65bb781b1",
        "valid/images": "3972bef853582c4888b2db29233b245f7f6b8d6f19946c4a5d0a55de8320aca7",
        "test_iid/images": "d013007b31ebcbae69b605ff56016f4e96cc3f5f6a3edaecef1267f847785559",
        "test_iid/masks": "69468add1e7a92cdd8e8d4c33493e5dcabb624d3dd9a4a40d6e30854475d6349",
        "test/images": "6eed921ce79eb0f1f7d61d6bdb301fa5cd9a9559c3ffb71167f2503968ec2142",
        "test/masks": "9ac767d3d271dd433b778564de96777ce6496fe9c04df29a41e7f71c9dec0f9d",
    },
    "gradient_occlusion": {
        "train/images": "387bd11c23927b5558958a59c9b544c0c4ec88105149b3c8e5fae2f02fe4f260",
        "valid/images": "b05cd6c72cb03726667f0af4ada6012f37e8ef7160269be61cd7854e385f0020",
        "test_iid/images": "496fbe67f80189f8378a88bc597f1d804b56d7c7aa0d8d3f5255d4c48f6e9293",
        "test_iid/masks": "b4abe61404e6287fa906ca7d5b816b547e98ca0678538508d42de3092e447eec",
        "test/images": "d2970d9e59d032697638828cacb19417811eaf933625a6dc601b3c88e9ce2f30",
        "test/masks": "bdda023eb24685dd41117ce70f77652bc4ce57a5accb02c6e8bff8dd65178fbe",
    },
    "illusory_occlusion": {
        "train/images": "12e13aea9b08fadfb3066b2625b7b7ab91b605bd6b51ff737d02deb9a53d9a48",
        "valid/images": "9384baddc711df3fb2d94976440e2716d81378b75c4a4d3bc7b38de1f978ea21",
        "test_iid/images": "916c350c16e9eb5d41f71b67f0c1703993116e214e37f87765acecf51f5f5009",
        "test_iid/masks": "728afc5df1a884c4d42f9975c90b0d01fdbe693510fdb59f5a56407041257653",
        "test/images": "a11d5929883a32fd08f6c14f72a333825841d75349a8ad5e0f15164805f54c88",
        "test/masks": "694b518ca777cdb4cc7260adeddd76ed16f2627b129881a5dbd8f024ec1aa085",
    },
}

# Labels (background included) the paper's test masks have.
TEST_LABEL_COUNTS = {
    "kanizsa": {3},
    "closure": {2},
    "continuity": {2},
    "proximity": {2, 4},
    "gradient_occlusion": {3},
    "illusory_occlusion": {2},
}
HAS_DETAILED = {
    "kanizsa": set(),
    "closure": {"test_iid", "test"},
    "continuity": {"test"},
    "proximity": set(),
    "gradient_occlusion": {"test_iid", "test"},
    "illusory_occlusion": {"test_iid", "test"},
}


def sha(a):
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def test_sets():
    """The full Gestalt test set of every dataset (100 images each; cheap)."""
    return {name: gg.generate(name, "test") for name in gg.NAMES}


@pytest.mark.parametrize("name", gg.NAMES)
@pytest.mark.parametrize("split", gg.SPLITS)
def test_first_images_equal_the_reference(name, split):
    s = gg.generate(name, split, limit=8)
    assert sha(s.images) == GOLDEN[name][f"{split}/images"]
    if f"{split}/masks" in GOLDEN[name]:
        assert sha(s.masks) == GOLDEN[name][f"{split}/masks"]


@pytest.mark.parametrize("name", gg.NAMES)
@pytest.mark.parametrize("split", gg.SPLITS)
def test_shapes_dtypes_and_ranges(name, split):
    n = 20
    s = gg.generate(name, split, limit=n)
    assert len(s) == n
    assert s.images.shape == (n, 64, 64, 3) and s.images.dtype == np.float32
    assert s.images.min() >= 0.0 and s.images.max() <= 1.0
    if split in ("train", "valid"):
        assert s.masks is None and s.detailed_masks is None and s.num_clusters is None
        return
    assert s.masks.shape == (n, 64, 64) and s.masks.dtype == np.uint8
    assert s.num_clusters.dtype == np.int32
    assert list(s.num_clusters) == [len(np.unique(m)) for m in s.masks]
    if split in HAS_DETAILED[name]:
        assert s.detailed_masks.shape == (n, 64, 64) and s.detailed_masks.dtype == np.uint8
    else:
        assert s.detailed_masks is None


@pytest.mark.parametrize("name", gg.NAMES)
def test_test_label_counts(name, test_sets):
    s = test_sets[name]
    assert len(s) == 100
    assert set(s.num_clusters.tolist()) <= TEST_LABEL_COUNTS[name]
    assert s.masks[:, 0].min() == 0  # background is 0


def test_proximity_has_both_modes(test_sets):
    counts = test_sets["proximity"].num_clusters
    assert 20 < np.sum(counts == 4) < 80 and 20 < np.sum(counts == 2) < 80


def test_colour_trick_scales_train_and_valid():
    # Kanizsa's square channel reaches 255/255 in some images: the maxima are exactly the scaled 1.0.
    train = gg.generate("kanizsa", "train", limit=200).images
    valid = gg.generate("kanizsa", "valid", limit=200).images
    test_iid = gg.generate("kanizsa", "test_iid").images
    assert train.max() == np.float32(255 / 255 * 999 / 1000)
    assert valid.max() == np.float32(255 / 255 * 998 / 1000)
    assert test_iid.max() == 1.0
    # Every train value is k/255 x 0.999 for an integer k, and no non-zero value is shared between the splits.
    k = train.astype(np.float64) * 1000 / 999 * 255
    np.testing.assert_allclose(k, np.round(k), atol=1e-3)
    values = [set(np.unique(x)) - {0.0} for x in (train, valid, test_iid)]
    assert not (values[0] & values[1]) and not (values[0] & values[2]) and not (values[1] & values[2])


def _colours(image, where):
    return np.unique(image[where], axis=0)


def test_kanizsa_test_square_has_the_background_colour(test_sets):
    s = test_sets["kanizsa"]
    for image, mask in zip(s.images, s.masks):
        background, square = _colours(image, mask == 0), _colours(image, mask == 2)
        assert len(background) == 1 and np.array_equal(square, background)
        assert len(_colours(image, mask == 1)) == 1  # the discs: one colour, different
        assert not np.array_equal(_colours(image, mask == 1), background)


def test_kanizsa_train_discs_are_jittered():
    # With jitter, some disc pixels fall outside the 4 corner-centred discs of the square.
    s = gg.generate("kanizsa", "test_iid", limit=20)
    assert np.all(s.num_clusters == 3)
    assert np.any(s.masks == 1)


def test_proximity_test_squares_share_one_colour(test_sets):
    s = test_sets["proximity"]
    for image, mask in zip(s.images, s.masks):
        assert len(_colours(image, mask > 0)) == 1


def test_proximity_test_groups_are_three_pixels_apart(test_sets):
    s = test_sets["proximity"]
    for mask in s.masks[s.num_clusters == 4]:
        columns = [np.flatnonzero((mask == g).any(0)) for g in (1, 2, 3)]
        assert [c[0] - p[-1] - 1 for p, c in zip(columns, columns[1:])] == [3, 3]


def test_closure_test_only_the_outline_is_visible(test_sets):
    s = test_sets["closure"]
    for image, detailed in zip(s.images, s.detailed_masks):
        assert np.array_equal(_colours(image, detailed == 0), _colours(image, detailed == 2))
    # Half of the images are erased and re-quantised to 2x2 blocks.
    blocky = [np.array_equal(im, im[::2, ::2].repeat(2, 0).repeat(2, 1)) for im in s.images]
    assert 25 < sum(blocky) < 75


def test_illusory_occlusion_test_part_of_the_square_has_the_background_colour(test_sets):
    s = test_sets["illusory_occlusion"]
    cases = []
    for image, detailed in zip(s.images, s.detailed_masks):
        background = _colours(image, detailed == 0)
        corners, cross = _colours(image, detailed == 2), _colours(image, detailed == 3)
        cases.append("a" if np.array_equal(corners, background) else "b")
        if cases[-1] == "b":
            assert np.array_equal(cross, background)
    assert 25 < cases.count("a") < 75


def test_gradient_occlusion_test_rectangles_overlap(test_sets):
    s = test_sets["gradient_occlusion"]
    overlapping = [np.any(d == 3) for d in s.detailed_masks]
    assert sum(overlapping) >= 90  # forced to overlap at 256 px; the overlap can vanish after subsampling
    # The wide rectangle's colour varies along its columns.
    image, mask = s.images[0], s.masks[0]
    assert len(_colours(image, mask == 2)) > 5


def test_continuity_test_ring_is_half_painted(test_sets):
    s = test_sets["continuity"]
    for image, mask, detailed in zip(s.images, s.masks, s.detailed_masks):
        assert set(np.unique(detailed)) <= {0, 1, 2}
        assert np.array_equal(detailed > 0, mask == 1)


def test_determinism():
    a = gg.generate("continuity", "test", limit=10)
    b = gg.generate("continuity", "test", limit=10)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.detailed_masks, b.detailed_masks)


@pytest.mark.parametrize("split", ["train", "test_iid"])
def test_limit_gives_a_prefix(split):
    a = gg.generate("gradient_occlusion", split, limit=5)
    b = gg.generate("gradient_occlusion", split, limit=12)
    np.testing.assert_array_equal(a.images, b.images[:5])
    if a.masks is not None:
        np.testing.assert_array_equal(a.masks, b.masks[:5])


def test_valid_does_not_render_train(monkeypatch):
    module = core.GENERATORS["closure"]
    calls = []
    render = module.render
    monkeypatch.setattr(module, "render", lambda p, m: calls.append(1) or render(p, m))
    gg.generate("closure", "valid", limit=3)
    assert len(calls) == 3


def test_parallel_rendering_equals_in_process(tmp_path):
    # In a fresh interpreter: forked workers are used only while JAX is not loaded (other tests may load it here).
    script = f"""
import numpy as np
from datasets.good_gestalt import core
used = []
parallel = core._render_parallel
core._render_parallel = lambda *a: used.append(1) or parallel(*a)
e = core.encode_splits("illusory_occlusion", {{"train": 2100}}, workers=2)["train"]
assert used, "the parallel path was not taken"
np.savez(r"{tmp_path / 'parallel.npz'}", index=e.index, palette=e.palette)
"""
    subprocess.run([sys.executable, "-c", script], check=True, cwd=Path(__file__).parents[1])
    serial = gg.encode_splits("illusory_occlusion", {"train": 2100}, workers=1)["train"]
    with np.load(tmp_path / "parallel.npz") as parallel:
        np.testing.assert_array_equal(serial.index, parallel["index"])
        np.testing.assert_array_equal(serial.palette, parallel["palette"])


@pytest.mark.parametrize("name", gg.NAMES)
def test_high_resolution_variant(name):
    high = gg.generate(name, "test", image_size=256, limit=3)
    low = gg.generate(name, "test", limit=3)
    assert high.images.shape == (3, 256, 256, 3) and high.masks.shape == (3, 256, 256)
    if core.GENERATORS[name].NATIVE_SIZE == 256:  # drawn at 256; the default is its [::4, ::4] subsampling
        np.testing.assert_array_equal(high.images[:, ::4, ::4], low.images)
        np.testing.assert_array_equal(high.masks[:, ::4, ::4], low.masks)
    else:  # drawn at 64; the 256 variant repeats pixels
        np.testing.assert_array_equal(high.images, low.images.repeat(4, 1).repeat(4, 2))
        np.testing.assert_array_equal(high.masks, low.masks.repeat(4, 1).repeat(4, 2))
    if high.detailed_masks is not None:
        assert high.detailed_masks.shape == (3, 256, 256)


def test_rectangles_match_pil():
    rng = np.random.default_rng(0)
    for _ in range(200):
        row, col = rng.integers(-20, 70, 2)
        height, width = rng.integers(1, 40, 2)
        ours = Canvas(64).rect(row, col, height, width, 1).labels
        image = Image.new("L", (64, 64))
        ImageDraw.Draw(image).rectangle(((col, row), (col + width - 1, row + height - 1)), fill=1)
        np.testing.assert_array_equal(ours, np.asarray(image))


# --- bad input ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(name="kanisza", split="test"), "kanisza"),
        (dict(name="kanizsa", split="test_1"), "test_1"),
        (dict(name="kanizsa", split="test", limit=0), "0"),
        (dict(name="kanizsa", split="test", limit=101), "101"),
        (dict(name="kanizsa", split="test", limit=2.5), "2.5"),
        (dict(name="kanizsa", split="test", limit=True), "True"),
        (dict(name="kanizsa", split="test", image_size=128), "128"),
    ],
)
def test_bad_arguments_name_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        gg.generate(**kwargs)


def test_bad_arguments_to_load_name_the_value(tmp_path):
    with pytest.raises(ValueError, match="'nope'"):
        gg.load("nope", "test", cache_dir=tmp_path)


# --- cache ----------------------------------------------------------------------------------------------------


def test_cache_round_trip(tmp_path, monkeypatch):
    first = gg.load("proximity", "test", cache_dir=tmp_path)
    files = list(tmp_path.iterdir())
    assert [f.name for f in files] == ["proximity_test_64px_v1.npz"]

    def must_not_generate(*a, **k):
        raise AssertionError("regenerated although the cache is intact")

    monkeypatch.setattr(cache, "encode_splits", must_not_generate)
    second = gg.load("proximity", "test", cache_dir=tmp_path)
    reference = gg.generate("proximity", "test")
    for s in (first, second):
        np.testing.assert_array_equal(s.images, reference.images)
        np.testing.assert_array_equal(s.masks, reference.masks)
        np.testing.assert_array_equal(s.num_clusters, reference.num_clusters)


def test_cache_directory_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(gg.CACHE_ENV, str(tmp_path / "here"))
    assert gg.default_cache_dir() == tmp_path / "here"
    gg.load("kanizsa", "test")
    assert (tmp_path / "here" / "kanizsa_test_64px_v1.npz").exists()


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "garbage"])
def test_corrupt_cache_is_regenerated(tmp_path, damage):
    gg.load("closure", "test", cache_dir=tmp_path)
    path = cache.cache_path(tmp_path, "closure", "test", 64)
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        middle = len(data) // 2
        path.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        path.write_bytes(b"not a zip file" * 100)
    with pytest.warns(UserWarning, match="regenerating"):
        again = gg.load("closure", "test", cache_dir=tmp_path)
    np.testing.assert_array_equal(again.images, gg.generate("closure", "test").images)
    cache.read(path)  # rewritten intact
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gg.load("closure", "test", cache_dir=tmp_path)


def test_digest_catches_a_consistent_but_wrong_file(tmp_path):
    encoded = gg.encode_splits("kanizsa", {"test": 4})["test"]
    path = cache.save(encoded, tmp_path / "x.npz")
    with np.load(path) as z:
        arrays = dict(z)
    arrays["palette"] = arrays["palette"] * 0.5  # a valid zip with a stale digest
    np.savez_compressed(path, **arrays)
    with pytest.raises(cache.CorruptCacheError, match="integrity"):
        cache.read(path)


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    encoded = gg.encode_splits("kanizsa", {"test": 4})["test"]

    def crash(f, **arrays):
        f.write(b"PK partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez_compressed", crash)
    with pytest.raises(KeyboardInterrupt):
        cache.save(encoded, tmp_path / "x.npz")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_cache_directory_is_named(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(OSError, match="a_file"):
        gg.load("kanizsa", "test", cache_dir=blocker / "cache")


# --- command line ---------------------------------------------------------------------------------------------


def test_command_line_writes_splits_and_preview(tmp_path, capsys):
    from datasets.good_gestalt.__main__ import main

    main(["--name", "kanizsa", "--out", str(tmp_path), "--splits", "test", "test_iid"])
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["kanizsa_64px_preview.png", "kanizsa_test_64px_v1.npz", "kanizsa_test_iid_64px_v1.npz"]
    with Image.open(tmp_path / "kanizsa_64px_preview.png") as picture:
        assert picture.width > 2 * 4 * 128  # two panels of 4 tiles of 128 px
    loaded = gg.load("kanizsa", "test_iid", cache_dir=tmp_path)
    np.testing.assert_array_equal(loaded.masks, gg.generate("kanizsa", "test_iid").masks)
    assert "wrote 1 dataset(s)" in capsys.readouterr().out


# --- tensorflow-datasets ----------------------------------------------------------------------------------------


def test_tfds_builder_round_trip(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")  # a pinned requirement: skipped only in a partial install
    from datasets.good_gestalt import tfds_builder

    builder = tfds_builder.GoodGestalt(config=tfds_builder.GoodGestaltConfig(name="closure_first6", dataset="closure", limit=6), data_dir=tmp_path)
    builder.download_and_prepare()
    sources = builder.as_data_source()
    assert set(sources) == set(gg.SPLITS)
    for split in gg.SPLITS:
        expected = gg.generate("closure", split, limit=6)
        source = sources[split]
        assert len(source) == 6
        images = np.stack([source[i]["image"] for i in range(6)])
        np.testing.assert_array_equal(images, expected.images)  # same values, same order
        masks = np.stack([source[i]["mask"] for i in range(6)])
        counts = np.array([source[i]["num_clusters"] for i in range(6)])
        if expected.masks is None:
            assert not masks.any() and not counts.any()
        else:
            np.testing.assert_array_equal(masks, expected.masks)
            np.testing.assert_array_equal(counts, expected.num_clusters)
    # Registered by name: readable through tfds.data_source.
    by_name = tfds.data_source("good_gestalt/closure_first6", data_dir=tmp_path)
    np.testing.assert_array_equal(by_name["test"][5]["image"], gg.generate("closure", "test", limit=6).images[5])


# --- whole splits ---------------------------------------------------------------------------------------------


def _chunked_sha(encoded, field):
    """SHA-256 of a whole split's images (decoded a chunk at a time) or masks."""
    digest = hashlib.sha256()
    for start in range(0, len(encoded), 2048):
        chunk = encoded[start : start + 2048]
        array = chunk.decode().images if field == "images" else getattr(chunk, field)
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


@pytest.mark.parametrize("name", gg.NAMES)
def test_whole_splits_equal_the_reference(name):
    """Every image and mask of every split at the default sizes (the strongest exactness check; ~10 s each)."""
    golden = json.loads((Path(__file__).parent / "data" / "gg_reference_digests.json").read_text())["splits"]
    encoded = gg.encode_splits(name, {split: None for split in gg.SPLITS})
    for split in gg.SPLITS:
        for field, expected in golden[f"{name}/{split}"].items():
            assert _chunked_sha(encoded[split], field) == expected, (split, field)
