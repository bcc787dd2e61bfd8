"""Image datasets read from disk (`datasets.images`): CelebA as the LNS reference builds it from CelebAMask-HQ, the
plain aligned CelebA, and any image folder, each on tiny layouts written here (nothing is downloaded); their
errors, the deterministic splits, the cache and the part merge. PIL's own decoding is the oracle throughout."""

import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from datasets import images as im
from datasets.images import celeba, core, decode, folder
from noisegroup.errors import BadInputError, NotFoundError

BILINEAR, NEAREST = Image.Resampling.BILINEAR, Image.Resampling.NEAREST
TINY = im.CelebAHQLayout(num_images=8, test=2, valid=2)  # test 0-1, valid 2-3, train 4-7


def as_float(pixels) -> np.ndarray:
    """The reference's conversion: uint8 / 255 in float64, then float32."""
    return (np.asarray(pixels, np.uint8) / 255.0).astype(np.float32)


def cache_file(cache_dir: Path) -> Path:
    (path,) = cache_dir.glob("*.npz")
    return path


# --- CelebAMask-HQ, the reference's construction -------------------------------------------------------------------

# Part masks of the two test images: (image, part) -> rows, cols (slices of the 512 x 512 mask) painted white.
# Image 0: hair overlaps skin (hair is later in PARTS, so it wins), a left eye inside the skin, no hat file.
# Image 1: a neck only. Edges off the 8-pixel grid check the stride's sampling.
PART_BOXES = {
    (0, "skin"): (slice(0, 261), slice(0, 512)),
    (0, "l_eye"): (slice(40, 81), slice(100, 157)),
    (0, "hair"): (slice(130, 390), slice(3, 509)),
    (1, "neck"): (slice(300, 512), slice(150, 350)),
}


def write_celeba_hq(root: Path, layout: im.CelebAHQLayout = TINY) -> Path:
    rng = np.random.default_rng(0)
    (root / celeba.HQ_IMAGE_DIR).mkdir(parents=True)
    for j in range(layout.num_images):
        # Constant 16 x 16 blocks of whole JPEG blocks, chroma not subsampled (4:4:4): JPEG keeps every pixel within
        # a few levels of its block value.
        blocks = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        pixels = blocks.repeat(16, axis=0).repeat(16, axis=1)
        Image.fromarray(pixels).save(root / celeba.HQ_IMAGE_DIR / f"{j}.jpg", quality=95, subsampling=0)
    masks = root / celeba.HQ_MASK_DIR / "0"
    masks.mkdir(parents=True)
    for (j, part), (rows, cols) in PART_BOXES.items():
        white = np.zeros((512, 512, 3), np.uint8)
        white[rows, cols] = 255
        Image.fromarray(white).save(masks / f"{j:05d}_{part}.png")  # RGB, as CelebAMask-HQ ships them
    return root


def expected_parts(j: int) -> np.ndarray:
    """The reference's rule on the boxes, at 512 x 512."""
    labels = np.zeros((512, 512), np.uint8)
    for label, part in enumerate(im.PARTS, 1):
        if (j, part) in PART_BOXES:
            labels[PART_BOXES[j, part]] = label
    return labels


@pytest.fixture(scope="module")
def celeba_hq_dir(tmp_path_factory) -> Path:
    return write_celeba_hq(tmp_path_factory.mktemp("celeba_hq") / "CelebAMask-HQ")


@pytest.fixture
def hq_copy(celeba_hq_dir, tmp_path) -> Path:
    """A copy of the tiny CelebAMask-HQ layout that a test may damage."""
    return Path(shutil.copytree(celeba_hq_dir, tmp_path / "copy"))


def test_celeba_hq_test_split_is_the_reference_rule(celeba_hq_dir, tmp_path):
    test = im.load_celeba_hq("test", celeba_hq_dir, cache_dir=tmp_path, layout=TINY)
    assert test.names == ("0.jpg", "1.jpg")
    assert test.images.shape == (2, 64, 64, 3) and test.images.dtype == np.float32
    for i, name in enumerate(test.names):
        decoded = np.array(Image.open(celeba_hq_dir / celeba.HQ_IMAGE_DIR / name).convert("RGB"))
        np.testing.assert_array_equal(test.images[i], as_float(decoded[::16, ::16]))
    np.testing.assert_array_equal(test.masks, np.stack([expected_parts(j)[::8, ::8] for j in range(2)]))
    assert test.masks.dtype == np.uint8 and test.detailed_masks is not None
    np.testing.assert_array_equal(test.detailed_masks, test.masks)
    assert test.masks[0, 20, 10] == im.PARTS.index("hair") + 1  # row 160: skin and hair, hair wins
    assert test.masks[0, 32, 0] == im.PARTS.index("skin") + 1  # row 256 < 261: skin at the stride's edge
    assert test.masks[0, 33, 0] == 0  # row 264: past the skin, left of the hair
    assert test.num_clusters.tolist() == [4, 2]  # background, skin, eye, hair / background, neck


def test_celeba_hq_pixels_match_the_block_pattern(celeba_hq_dir, tmp_path):
    """The stride samples the intended pixel: each block's value, within JPEG's few levels."""
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)  # image 0's blocks, as written
    test = im.load_celeba_hq("test", celeba_hq_dir, cache_dir=tmp_path, layout=TINY)
    assert np.abs(test.images[0] * 255 - blocks).max() <= 6


def test_celeba_hq_splits_and_256px(celeba_hq_dir, tmp_path):
    valid = im.load_celeba_hq("valid", celeba_hq_dir, cache_dir=tmp_path, layout=TINY)
    train = im.load_celeba_hq("train", celeba_hq_dir, cache_dir=tmp_path, layout=TINY)
    assert valid.names == ("2.jpg", "3.jpg") and train.names == ("4.jpg", "5.jpg", "6.jpg", "7.jpg")
    assert valid.masks is None and train.masks is None and train.num_clusters is None
    large = im.load_celeba_hq("test", celeba_hq_dir, image_size=256, cache_dir=tmp_path, layout=TINY)
    assert large.images.shape == (2, 256, 256, 3)
    np.testing.assert_array_equal(large.masks[1], expected_parts(1)[::2, ::2])
    assert im.CelebAHQLayout().indices("train") == range(400, 30_000)
    assert len(im.CelebAHQLayout().indices("valid")) == 300 and im.CelebAHQLayout().indices("test") == range(100)


def test_celeba_hq_second_load_reads_the_cache(celeba_hq_dir, tmp_path, monkeypatch):
    first = im.load_celeba_hq("test", celeba_hq_dir, cache_dir=tmp_path, layout=TINY)

    def no_decoding(path):
        raise AssertionError(f"decoded {path} although cached")

    monkeypatch.setattr(celeba, "open_image", no_decoding)
    second = im.load_celeba_hq("test", celeba_hq_dir, cache_dir=tmp_path, layout=TINY)
    np.testing.assert_array_equal(first.images, second.images)
    np.testing.assert_array_equal(first.masks, second.masks)
    assert second.names == first.names


def test_celeba_hq_missing_image_is_named(hq_copy, tmp_path):
    (hq_copy / celeba.HQ_IMAGE_DIR / "5.jpg").unlink()
    (hq_copy / celeba.HQ_IMAGE_DIR / "7.jpg").unlink()
    with pytest.raises(NotFoundError, match=r"2 of the 4 .*5\.jpg"):
        im.load_celeba_hq("train", hq_copy, cache_dir=tmp_path, layout=TINY)


def test_celeba_hq_incomplete_masks_are_refused(hq_copy, tmp_path):
    for part in hq_copy.glob(f"{celeba.HQ_MASK_DIR}/0/00001_*.png"):
        part.unlink()
    with pytest.raises(NotFoundError, match=r"test image 1 has no part mask.*00001_skin\.png"):
        im.load_celeba_hq("test", hq_copy, cache_dir=tmp_path, layout=TINY)
    shutil.rmtree(hq_copy / celeba.HQ_MASK_DIR / "0")
    with pytest.raises(NotFoundError, match=re.escape(str(hq_copy / celeba.HQ_MASK_DIR / "0"))):
        im.load_celeba_hq("test", hq_copy, cache_dir=tmp_path, layout=TINY)


def test_celeba_hq_wrong_size_truncated_and_grey_parts_are_refused(hq_copy, tmp_path):
    Image.new("RGB", (512, 512)).save(hq_copy / celeba.HQ_IMAGE_DIR / "3.jpg")
    with pytest.raises(BadInputError, match=r"3\.jpg' is 512x512, expected 1024x1024"):
        im.load_celeba_hq("valid", hq_copy, cache_dir=tmp_path, layout=TINY)
    path = hq_copy / celeba.HQ_IMAGE_DIR / "6.jpg"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(BadInputError, match=r"cannot read image .*6\.jpg.*truncated"):
        im.load_celeba_hq("train", hq_copy, cache_dir=tmp_path, layout=TINY)
    part = hq_copy / celeba.HQ_MASK_DIR / "0" / "00001_neck.png"
    Image.open(part).convert("L").save(part)  # grey: convert("P") maps white to 255, the rule would read nothing
    with pytest.raises(BadInputError, match=r"00001_neck\.png.*mode L"):
        im.load_celeba_hq("test", hq_copy, cache_dir=tmp_path, layout=TINY)


def test_celeba_hq_arguments(monkeypatch, tmp_path, celeba_hq_dir):
    monkeypatch.delenv(celeba.HQ_ENV, raising=False)
    with pytest.raises(BadInputError, match=celeba.HQ_ENV):
        im.load_celeba_hq("test", cache_dir=tmp_path, layout=TINY)
    with pytest.raises(NotFoundError, match="does not exist"):
        im.load_celeba_hq("test", tmp_path / "nowhere", cache_dir=tmp_path, layout=TINY)
    with pytest.raises(ValueError, match="must divide 512"):
        im.load_celeba_hq("test", celeba_hq_dir, image_size=48, layout=TINY)
    with pytest.raises(ValueError, match="unknown split"):
        im.load_celeba_hq("test_iid", celeba_hq_dir, layout=TINY)
    monkeypatch.setenv(celeba.HQ_ENV, str(celeba_hq_dir))
    assert im.load_celeba_hq("valid", cache_dir=tmp_path, layout=TINY).names == ("2.jpg", "3.jpg")


def test_merge_parts_on_a_hand_made_mask():
    label = {part: i for i, part in enumerate(im.PARTS, 1)}
    masks = np.array([[0, label["skin"], label["cloth"], label["hair"]],
                      [label["hat"], label["neck"], label["neck_l"], label["eye_g"]]], np.uint8)
    np.testing.assert_array_equal(im.merge_parts(masks), [[0, 1, 0, 2], [0, 1, 1, 1]])
    assert im.merge_parts(masks).dtype == np.uint8
    assert sorted(im.FACE_HAIR_BACKGROUND) == list(range(19)) and im.GROUPS == ("background", "face", "hair")
    with pytest.raises(ValueError, match="0-18"):
        im.merge_parts(np.array([19]))


# --- the plain aligned CelebA --------------------------------------------------------------------------------------

PARTITION = {"000001.jpg": 0, "000002.jpg": 0, "000003.jpg": 1, "000004.jpg": 2, "000005.jpg": 0, "000006.jpg": 2}


@pytest.fixture(scope="module")
def aligned_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("celeba_aligned")
    (root / "img_align_celeba").mkdir()
    rng = np.random.default_rng(1)
    for name in PARTITION:
        pixels = rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "img_align_celeba" / name)
    (root / "list_eval_partition.txt").write_text("".join(f"{n} {s}\n" for n, s in PARTITION.items()))
    return root


def test_celeba_aligned_crop_resize_and_partition(aligned_dir, tmp_path):
    train = im.load_celeba_aligned("train", aligned_dir, cache_dir=tmp_path)
    assert train.names == ("000001.jpg", "000002.jpg", "000005.jpg") and train.masks is None
    for i, name in enumerate(train.names):
        image = Image.open(aligned_dir / "img_align_celeba" / name).convert("RGB")
        want = image.crop((0, 20, 178, 198)).resize((64, 64), BILINEAR)
        np.testing.assert_array_equal(train.images[i], as_float(want))
    assert im.load_celeba_aligned("test", aligned_dir, cache_dir=tmp_path).names == ("000004.jpg", "000006.jpg")
    assert im.load_celeba_aligned("valid", aligned_dir, 32, tmp_path).images.shape == (1, 32, 32, 3)


def test_celeba_aligned_errors(aligned_dir, tmp_path, monkeypatch):
    root = Path(shutil.copytree(aligned_dir, tmp_path / "copy"))
    (root / "img_align_celeba" / "000004.jpg").unlink()
    with pytest.raises(NotFoundError, match=r"1 of the 2 .*000004\.jpg"):
        im.load_celeba_aligned("test", root, cache_dir=tmp_path)
    (root / "list_eval_partition.txt").write_text("000001.jpg 0\n000002.jpg train\n")
    with pytest.raises(BadInputError, match="line 2"):
        im.load_celeba_aligned("train", root, cache_dir=tmp_path)
    (root / "list_eval_partition.txt").unlink()
    with pytest.raises(NotFoundError, match=re.escape(str(root / "list_eval_partition.txt"))):
        im.load_celeba_aligned("train", root, cache_dir=tmp_path)
    monkeypatch.delenv(celeba.ALIGNED_ENV, raising=False)
    with pytest.raises(BadInputError, match=celeba.ALIGNED_ENV):
        im.load_celeba_aligned("train", cache_dir=tmp_path)


# --- any folder ----------------------------------------------------------------------------------------------------


def write_image(path: Path, image: Image.Image, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)
    return path


def noise(shape, seed) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture
def mixed_dir(tmp_path) -> Path:
    """Images of several sizes and modes, and files that are not images."""
    root = tmp_path / "mixed"
    write_image(root / "a" / "rgb.jpg", Image.fromarray(noise((30, 40, 3), 0)))
    write_image(root / "b" / "grey.png", Image.fromarray(noise((32, 32), 1)))
    write_image(root / "c_rgba.png", Image.fromarray(noise((70, 50, 4), 2)))
    write_image(root / "d_palette.gif", Image.fromarray(noise((20, 20, 3), 3)).convert("P"))
    write_image(root / "e_16bit.png", Image.fromarray(noise((24, 24), 4).astype(np.uint16) * 250))
    write_image(root / "F_UPPER.PNG", Image.fromarray(noise((16, 16, 3), 5)))
    write_image(root / ".hidden.png", Image.fromarray(noise((16, 16, 3), 6)))
    write_image(root / ".git" / "x.png", Image.fromarray(noise((16, 16, 3), 7)))
    (root / "notes.txt").write_text("not an image")
    return root


def pil_fit(path: Path, size: int, fit: str = "crop", resample=BILINEAR) -> np.ndarray:
    image = Image.open(path).convert("RGB")
    box = decode.fit_box(image.size, fit, size, path)
    return np.asarray(image.crop(box).resize((size, size), resample))


def test_folder_reads_every_mode_like_pil(mixed_dir, tmp_path):
    split = im.load_folder(mixed_dir, image_size=16, cache_dir=tmp_path)
    assert split.names == ("F_UPPER.PNG", "a/rgb.jpg", "b/grey.png", "c_rgba.png", "d_palette.gif", "e_16bit.png")
    assert split.images.shape == (6, 16, 16, 3) and split.images.dtype == np.float32 and split.masks is None
    for i, name in enumerate(split.names[:5]):  # RGB, grey, alpha dropped, palette colours: as PIL's convert
        np.testing.assert_array_equal(split.images[i], as_float(pil_fit(mixed_dir / name, 16)), err_msg=name)
    sixteen = np.asarray(Image.open(mixed_dir / "e_16bit.png")).astype(np.float64)
    grey = Image.fromarray(np.rint(sixteen / 257).astype(np.uint8)).convert("RGB").resize((16, 16), BILINEAR)
    np.testing.assert_array_equal(split.images[5], as_float(grey))  # 16-bit scaled, not clipped to white
    stretched = im.load_folder(mixed_dir, image_size=16, fit="stretch", cache_dir=tmp_path)
    np.testing.assert_array_equal(stretched.images[3], as_float(pil_fit(mixed_dir / "c_rgba.png", 16, "stretch")))


def test_folder_fit_none_needs_the_exact_size(mixed_dir, tmp_path):
    with pytest.raises(BadInputError, match=r"rgb\.jpg' is 40x30, not 16x16"):
        im.load_folder(mixed_dir, image_size=16, fit="none", cache_dir=tmp_path)
    exact = tmp_path / "exact"
    write_image(exact / "x.png", Image.fromarray(noise((16, 16, 3), 8)))
    split = im.load_folder(exact, image_size=16, fit="none", cache_dir=tmp_path)
    np.testing.assert_array_equal(split.images[0], as_float(noise((16, 16, 3), 8)))


def test_float_conversion_is_the_references():
    pixels = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(core.to_float32(pixels), (pixels / 255.0).astype(np.float32))


def test_folder_skips_a_truncated_jpeg_with_one_warning(mixed_dir, tmp_path, monkeypatch):
    bad = mixed_dir / "a" / "rgb.jpg"
    bad.write_bytes(bad.read_bytes()[:300])
    unreadable = write_image(mixed_dir / "z.png", Image.new("RGB", (8, 8)))
    unreadable.write_bytes(b"not a png")
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # set by someone else: still refused
    with pytest.warns(UserWarning, match=r"2 unreadable .*rgb\.jpg.*z\.png") as caught:
        split = im.load_folder(mixed_dir, image_size=16, cache_dir=tmp_path)
    assert len([w for w in caught if "unreadable" in str(w.message)]) == 1
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored
    assert "a/rgb.jpg" not in split.names and "z.png" not in split.names and len(split) == 5
    np.testing.assert_array_equal(split.images[1], as_float(pil_fit(mixed_dir / "b" / "grey.png", 16)))
    with pytest.raises(BadInputError, match=r"rgb\.jpg"):
        im.load_folder(mixed_dir, image_size=16, cache_dir=tmp_path, on_bad="error")  # from the cache
    with pytest.raises(BadInputError, match=r"rgb\.jpg"):
        im.load_folder(mixed_dir, image_size=16, cache_dir=tmp_path / "fresh", on_bad="error")


def test_folder_without_images(tmp_path):
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "readme.txt").write_text("")
    with pytest.raises(NotFoundError, match=re.escape(str(empty)) + r".*\.png"):
        im.load_folder(empty, cache_dir=tmp_path)
    (empty / "bad.jpg").write_bytes(b"garbage")
    with pytest.raises(BadInputError, match=r"none of the 1 image files.*bad\.jpg"):
        im.load_folder(empty, cache_dir=tmp_path)
    with pytest.raises(NotFoundError, match="does not exist"):
        im.load_folder(tmp_path / "absent", cache_dir=tmp_path)


def write_masked(root: Path, masks: Path) -> None:
    """Three images 24 x 32 with masks: grey labels, palette labels and an RGB colour mask."""
    labels = np.zeros((32, 24), np.uint8)
    labels[:10] = 3
    labels[20:, 5:] = 7
    for i, name in enumerate(("one", "sub/two", "three")):
        write_image(root / f"{name}.jpg", Image.fromarray(noise((32, 24, 3), 10 + i)))
    write_image(masks / "one.png", Image.fromarray(labels))
    write_image(masks / "sub" / "two.png", Image.fromarray(labels).convert("P"))
    colours = np.zeros((32, 24, 3), np.uint8)
    colours[:10] = (255, 0, 0)
    colours[20:, 5:] = (0, 0, 255)
    write_image(masks / "three.bmp", Image.fromarray(colours))


def test_folder_masks(tmp_path):
    root, masks = tmp_path / "images", tmp_path / "images" / "masks"  # a masks folder inside: not images
    write_masked(root, masks)
    split = im.load_folder(root, image_size=8, masks_dir=masks, cache_dir=tmp_path / "cache")
    assert split.names == ("one.jpg", "sub/two.jpg", "three.jpg")
    labels = np.asarray(Image.open(masks / "one.png"))
    want = np.asarray(Image.fromarray(labels).crop((0, 4, 24, 28)).resize((8, 8), NEAREST))
    np.testing.assert_array_equal(split.masks[0], want)  # the image's crop, NEAREST
    np.testing.assert_array_equal(split.masks[1], want)  # palette indices are the labels
    np.testing.assert_array_equal(split.masks[2], np.where(want == 3, 2, np.where(want == 7, 1, 0)))  # by colour
    assert split.num_clusters.tolist() == [3, 3, 3] and split.masks.dtype == np.uint8


def test_folder_masks_that_do_not_match(tmp_path):
    root, masks = tmp_path / "images", tmp_path / "masks"
    write_masked(root, masks)
    (masks / "one.png").rename(masks / "uno.png")
    with pytest.raises(BadInputError, match=r"1 image\(s\) without a mask .*one\.jpg.*1 mask\(s\) without an image "
                                            r".*uno\.png"):
        im.load_folder(root, masks_dir=masks, cache_dir=tmp_path)
    (masks / "uno.png").rename(masks / "one.png")
    write_image(masks / "three.png", Image.new("L", (24, 32)))
    with pytest.raises(BadInputError, match="three"):
        im.load_folder(root, masks_dir=masks, cache_dir=tmp_path)
    (masks / "three.png").unlink()
    Image.new("L", (10, 10)).save(masks / "one.png")
    with pytest.raises(BadInputError, match=r"one\.png' is 10x10 but its image .*one\.jpg' is 24x32"):
        im.load_folder(root, masks_dir=masks, cache_dir=tmp_path)
    write_image(masks / "one.png", Image.fromarray(noise((32, 24, 3), 0)))  # a colour mask of 768 colours
    with pytest.raises(BadInputError, match="colours besides black"):
        im.load_folder(root, masks_dir=masks, cache_dir=tmp_path)


def test_folder_splits_are_stable_when_files_are_added(tmp_path):
    root = tmp_path / "many"
    for i in range(40):
        write_image(root / f"{i:03d}.png", Image.new("RGB", (4, 4), (i, 0, 0)))
    fractions = {"valid_fraction": 0.3, "test_fraction": 0.3, "cache_dir": tmp_path / "cache", "image_size": 4}
    before = {s: im.load_folder(root, s, **fractions).names for s in ("train", "valid", "test")}
    assert all(before.values())
    assert sorted(sum(before.values(), ())) == list(im.load_folder(root, "all", **fractions).names)
    for i in range(40, 50):
        write_image(root / f"{i:03d}.png", Image.new("RGB", (4, 4)))
    with pytest.warns(UserWarning, match="is stale"):  # the cache of the whole folder, rebuilt once
        after = {s: im.load_folder(root, s, **fractions).names for s in ("train", "valid", "test")}
    for s, names in before.items():
        assert set(names) <= set(after[s])
    assert all(im.split_of(n, 0.3, 0.3) == s for s, names in after.items() for n in names)
    with pytest.raises(ValueError, match="exceeds 1"):
        im.load_folder(root, valid_fraction=0.6, test_fraction=0.5)


def test_folder_cache_is_used_verified_and_refreshed(mixed_dir, tmp_path, monkeypatch):
    first = im.load_folder(mixed_dir, image_size=16, cache_dir=tmp_path)
    path = cache_file(tmp_path)

    def no_reading(*args, **kwargs):
        raise AssertionError("read the folder although cached")

    with monkeypatch.context() as patch:
        patch.setattr(folder, "read_folder", no_reading)
        cached = im.load_folder(mixed_dir, image_size=16, cache_dir=tmp_path)
        assert im.load_folder(mixed_dir, "valid", image_size=16, cache_dir=tmp_path).images.shape[1:] == (16, 16, 3)
    np.testing.assert_array_equal(cached.images, first.images)
    assert cached.names == first.names

    path.write_bytes(path.read_bytes()[:-100])  # a torn file
    with pytest.warns(UserWarning, match=re.escape(str(path)) + ".*rebuilding"):
        rebuilt = im.load_folder(mixed_dir, image_size=16, cache_dir=tmp_path)
    np.testing.assert_array_equal(rebuilt.images, first.images)

    changed = mixed_dir / "b" / "grey.png"
    Image.fromarray(255 - np.asarray(Image.open(changed))).save(changed)
    stat = changed.stat()
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    with pytest.warns(UserWarning, match=re.escape(str(path)) + "' is stale \\(files were added, removed or changed"):
        fresh = im.load_folder(mixed_dir, image_size=16, cache_dir=tmp_path)
    np.testing.assert_array_equal(fresh.images[2], as_float(pil_fit(changed, 16)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and the rebuilt file is trusted again
        im.load_folder(mixed_dir, image_size=16, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 1
    im.load_folder(mixed_dir, image_size=8, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 2  # another size, another file


def test_folder_cache_that_cannot_be_written_costs_only_speed(mixed_dir, tmp_path, monkeypatch):
    def full_disk(raw, path, header):
        raise OSError(28, f"cannot write to the image cache directory {str(path.parent)!r}: No space left")

    monkeypatch.setattr(im.cache, "save", full_disk)
    with pytest.warns(UserWarning, match="No space left.*not cached"):
        split = im.load_folder(mixed_dir, image_size=16, cache_dir=tmp_path, progress=True)
    assert len(split) == 6 and not list(tmp_path.glob("*.npz"))


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("NOISEGROUP_DATA_DIR", str(tmp_path))
    assert im.default_cache_dir() == tmp_path / "images"
    monkeypatch.delenv("NOISEGROUP_DATA_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert im.default_cache_dir() == tmp_path / "xdg" / "noisegroup" / "images"


# --- the dispatcher ------------------------------------------------------------------------------------------------


def test_load_dispatches_and_training_images(mixed_dir, celeba_hq_dir, tmp_path):
    with pytest.raises(ValueError, match="celeba_aligned"):
        im.load("imagenet", "train")
    with pytest.raises(BadInputError, match="data_dir"):
        im.load("folder", "train")
    split = im.load("folder", "all", mixed_dir, 16, tmp_path, fit="stretch")
    np.testing.assert_array_equal(split.images, im.load_folder(mixed_dir, image_size=16, fit="stretch",
                                                               cache_dir=tmp_path).images)
    test = im.load("celeba", "test", celeba_hq_dir, cache_dir=tmp_path, layout=TINY)
    assert test.masks.shape == (2, 64, 64)
    train, valid = im.training_images("celeba", celeba_hq_dir, train_limit=3, cache_dir=tmp_path, layout=TINY)
    assert train.shape == (3, 64, 64, 3) and valid.shape == (2, 64, 64, 3) and train.dtype == np.float32
    whole = im.load_celeba_hq("train", celeba_hq_dir, cache_dir=tmp_path, layout=TINY)
    np.testing.assert_array_equal(train, whole.images[:3])
    train, valid = im.training_images("folder", mixed_dir, image_size=16, cache_dir=tmp_path,
                                      valid_fraction=0.5, test_fraction=0)
    assert len(train) + len(valid) == 6


def test_imports_no_jax():
    code = "import sys, datasets.images; print(sorted({'jax', 'tensorflow', 'torch'} & set(sys.modules)))"
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root).stdout
    assert out.strip() == "[]"
