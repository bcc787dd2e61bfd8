"""CelebA from a local copy, in two layouts; nothing is ever downloaded.

`load_celeba_hq`: CelebAMask-HQ as the LNS reference builds its CelebA (``generate_celebA_dataset`` in the
reference's ``datasets/create_datasets.py``), pixel for pixel::

    <data_dir>/CelebA-HQ-img/0.jpg ... 29999.jpg                       1024 x 1024 JPEG, no zero padding
    <data_dir>/CelebAMask-HQ-mask-anno/<j // 2000>/<j:05d>_<part>.png   512 x 512 part masks, white on black

    image j = np.array(Image.open(path).convert("RGB"))[::s, ::s]       s = 1024 // image_size (16 at 64 px)
    labels  = zeros; for l, part in enumerate(PARTS, 1): labels[convert("P") == 225] = l   (a later part wins)
              then labels[::s_m, ::s_m]                                  s_m = 512 // image_size (8 at 64 px)

Strided sampling, not resizing: the reference's choice, kept. Splits by index: test = images 0-99 (the only ones
with masks: ``masks`` and ``detailed_masks`` are both the 18 part labels), valid = 100-399, train = 400-29,999
(29,600); `CelebAHQLayout` holds these sizes. No colour trick. `merge_parts` maps the 18 parts to background /
face / hair.

`load_celeba_aligned`: the plain aligned CelebA (``img_align_celeba/000001.jpg`` ..., 178 x 218, and
``list_eval_partition.txt``: 0 train, 1 valid, 2 test), centre-cropped to the 178 x 178 square and resized with
PIL's BILINEAR filter; no masks.

A copy that is incomplete or damaged is refused, never silently used: a missing image (the error names the first
path and how many are missing), an image of the wrong size, an unreadable or truncated JPEG, a test image without
any part mask, a missing mask folder. Both are cached like `load_folder` (`datasets.images.cache`), one file per
split, so the test split alone decodes 100 images, not 30,000.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from types import MappingProxyType

import numpy as np
from PIL import Image

from datasets.images import cache
from datasets.images.core import ImageSplit, RawSplit, check_image_size
from datasets.images.decode import describe_failures, fill, fit_box, fitted, open_image, to_rgb
from noisegroup.errors import BadInputError, NotFoundError

SPLITS = ("train", "valid", "test")
HQ_ENV = "NOISEGROUP_CELEBA_DIR"
ALIGNED_ENV = "NOISEGROUP_CELEBA_ALIGNED_DIR"
HQ_IMAGE_DIR, HQ_MASK_DIR = "CelebA-HQ-img", "CelebAMask-HQ-mask-anno"
HQ_IMAGE_SIDE, HQ_MASK_SIDE = 1024, 512
IMAGES_PER_MASK_FOLDER = 2000  # mask-anno/0 holds images 0-1999, /1 holds 2000-3999, ...
PART_WHITE = 225  # white's index in PIL's web palette: what convert("P") makes of a part's white pixels
ALIGNED_IMAGE_DIR, ALIGNED_PARTITION = "img_align_celeba", "list_eval_partition.txt"
ALIGNED_SPLIT_CODES = {"0": "train", "1": "valid", "2": "test"}

# The part labels, 1-18 in this order (0 is background): the reference's order, which decides overlaps.
PARTS = ("skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear", "ear_r",
         "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat")
GROUPS = ("background", "face", "hair")
# Part label -> group (index into GROUPS). Face: the skin and everything on it, labels 1-15, neck and necklace
# included (the neck is skin continuous with the face; glasses and earrings sit on it). Hair: hair (17) only.
# Background: 0, cloth (16) and hat (18): a hat covers the hair but is not hair, and it is as separate from the
# face as clothing is.
FACE_HAIR_BACKGROUND = MappingProxyType(
    {0: 0, **{label: 1 for label in range(1, 16)}, PARTS.index("cloth") + 1: 0, PARTS.index("hair") + 1: 2,
     PARTS.index("hat") + 1: 0})
_GROUP_OF = np.array([FACE_HAIR_BACKGROUND[label] for label in range(len(PARTS) + 1)], np.uint8)


@dataclasses.dataclass(frozen=True)
class CelebAHQLayout:
    """How many images CelebAMask-HQ has and how the reference splits them: test = the first `test` images (with
    masks), valid = the next `valid`, train = the rest. Tests use a tiny layout."""

    num_images: int = 30_000
    test: int = 100
    valid: int = 300

    def __post_init__(self):
        if min(self.num_images, self.test, self.valid) < 0 or self.test + self.valid > self.num_images:
            raise ValueError(f"bad CelebA-HQ layout {self}: need 0 <= test + valid <= num_images")

    def indices(self, split: str) -> range:
        """The image numbers j of `split`."""
        bounds = {"test": (0, self.test), "valid": (self.test, self.test + self.valid),
                  "train": (self.test + self.valid, self.num_images)}
        if split not in bounds:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        return range(*bounds[split])


def merge_parts(masks: np.ndarray) -> np.ndarray:
    """The 18 CelebAMask-HQ part labels merged into three: 0 background (incl. cloth and hat), 1 face (skin, brows,
    eyes, glasses, ears, earrings, nose, mouth, lips, neck, necklace), 2 hair; see `FACE_HAIR_BACKGROUND`.

    Args:
        masks: integer labels 0-18, any shape (uint8 `[n, h, w]` from `load_celeba_hq`).

    Returns:
        uint8 labels 0-2 of the same shape.

    Raises:
        ValueError: a label outside 0-18.
    """
    masks = np.asarray(masks)
    if masks.size and (masks.min() < 0 or masks.max() > len(PARTS)):
        raise ValueError(f"part labels must be 0-{len(PARTS)}, got {masks.min()}-{masks.max()}")
    return _GROUP_OF[masks]


def data_folder(data_dir: str | os.PathLike | None, env: str, what: str, layout: str) -> Path:
    """`data_dir`, else ``$env``, as an absolute folder.

    Raises:
        BadInputError: neither is given (says how to give it).
        NotFoundError: the folder does not exist.
    """
    if data_dir is None:
        data_dir = os.environ.get(env) or None
    if data_dir is None:
        raise BadInputError(f"no {what} folder given: pass data_dir=... or set ${env} to the folder that holds "
                            f"{layout} (nothing is downloaded)")
    folder = Path(data_dir).expanduser().resolve()
    if not folder.is_dir():
        raise NotFoundError(f"the {what} folder {str(folder)!r} does not exist")
    return folder


def stat_all(paths: list[Path], what: str) -> list[os.stat_result]:
    """The stat of every path (the cache's fingerprint).

    Raises:
        NotFoundError: naming the first missing file and how many of `paths` are missing.
    """
    stats, missing = [], []
    for path in paths:
        try:
            stats.append(path.stat())
        except FileNotFoundError:
            missing.append(path)
    if missing:
        raise NotFoundError(f"{len(missing)} of the {len(paths)} {what} files are missing, the first "
                            f"{str(missing[0])!r}: the copy of the dataset is incomplete")
    return stats


def _part_files(root: Path, indices: range) -> list[list[tuple[int, Path, os.stat_result]]]:
    """(label, path, stat) of the part masks that exist, per image of `indices`, in label order.

    Raises:
        NotFoundError: a mask-anno subfolder is missing, or an image has no part mask at all (a partial copy).
    """
    listings: dict[int, dict[str, os.DirEntry]] = {}
    parts = []
    for j in indices:
        sub = j // IMAGES_PER_MASK_FOLDER
        folder = root / HQ_MASK_DIR / str(sub)
        if sub not in listings:
            if not folder.is_dir():
                raise NotFoundError(f"the CelebAMask-HQ part-mask folder {str(folder)!r} is missing (it holds the "
                                    f"masks of images {sub * IMAGES_PER_MASK_FOLDER}-"
                                    f"{(sub + 1) * IMAGES_PER_MASK_FOLDER - 1}): the copy is incomplete")
            listings[sub] = {entry.name: entry for entry in os.scandir(folder)}
        found = [(label, folder / f"{j:05d}_{part}.png") for label, part in enumerate(PARTS, 1)]
        found = [(label, path, listings[sub][path.name].stat()) for label, path in found if path.name in listings[sub]]
        if not found:
            raise NotFoundError(f"test image {j} has no part mask: expected files like "
                                f"{str(folder / f'{j:05d}_skin.png')!r}: the copy of CelebAMask-HQ is incomplete")
        parts.append(found)
    return parts


def _read_part_labels(parts: list[tuple[int, Path, os.stat_result]]) -> np.ndarray:
    """uint8 `[512, 512]` part labels of one image, by the reference's rule (module docstring).

    Raises:
        BadInputError: a part file of another size, or one with marked pixels that the rule reads as empty (not
            white in RGB, e.g. a copy re-saved in grey: the reference would silently lose that part).
    """
    labels = np.zeros((HQ_MASK_SIDE, HQ_MASK_SIDE), np.uint8)
    for label, path, _ in parts:
        part = open_image(path)
        if part.size != (HQ_MASK_SIDE, HQ_MASK_SIDE):
            raise BadInputError(f"part mask {str(path)!r} is {part.size[0]}x{part.size[1]}, expected "
                                f"{HQ_MASK_SIDE}x{HQ_MASK_SIDE}")
        marked = np.asarray(part.convert("P")) == PART_WHITE
        if not marked.any() and np.asarray(part.convert("L")).any():
            raise BadInputError(f"part mask {str(path)!r} (mode {part.mode}) has marked pixels but none is white in "
                                "RGB, so the reference's rule (convert('P') == 225) reads it as empty")
        labels[marked] = label
    return labels


def load_celeba_hq(
    split: str,
    data_dir: str | os.PathLike | None = None,
    image_size: int = 64,
    cache_dir: str | os.PathLike | None = None,
    layout: CelebAHQLayout = CelebAHQLayout(),
    progress: bool = False,
    *,
    limit: int = 0,
) -> ImageSplit:
    """A split of CelebA as the LNS reference builds it from CelebAMask-HQ (module docstring): read on first use,
    then from the on-disk cache.

    Args:
        split: "train", "valid" or "test" (the only split with masks).
        data_dir: the CelebAMask-HQ folder (holding ``CelebA-HQ-img/`` and ``CelebAMask-HQ-mask-anno/``); default
            ``$NOISEGROUP_CELEBA_DIR``.
        image_size: the output side; must divide 512 (the reference uses 64 and 256).
        cache_dir: where the cache lives; default `datasets.images.cache.default_cache_dir()`.
        layout: the dataset's size and split sizes (`CelebAHQLayout`).
        progress: show a progress bar while decoding.
        limit: 0 reads and caches the whole split; n > 0 reads only its first n images, uncached.

    Returns:
        `ImageSplit`: images float32 `[n, image_size, image_size, 3]`; for test, masks = detailed_masks = uint8 part
        labels 0-18 `[n, image_size, image_size]` and num_clusters; names ``("0.jpg", ...)``.

    Raises:
        ValueError: a bad split or image_size.
        BadInputError: no data_dir and no ``$NOISEGROUP_CELEBA_DIR``; an image that is not 1024 x 1024, unreadable or
            truncated; a bad part mask (names the file).
        NotFoundError: a missing folder, image (names the first and the count) or test image without part masks.
    """
    check_image_size(image_size)
    if HQ_MASK_SIDE % image_size:
        raise ValueError(f"image_size must divide {HQ_MASK_SIDE} (the images are sampled with a stride of "
                         f"{HQ_IMAGE_SIDE} // image_size, the masks of {HQ_MASK_SIDE} // image_size), got "
                         f"{image_size}; the reference uses 64 and 256")
    indices = layout.indices(split)
    indices = indices[:int(limit)] if limit else indices
    root = data_folder(data_dir, HQ_ENV, "CelebAMask-HQ", f"{HQ_IMAGE_DIR}/ and {HQ_MASK_DIR}/")
    image_dir = root / HQ_IMAGE_DIR
    if not image_dir.is_dir():
        raise NotFoundError(f"the CelebA-HQ image folder {str(image_dir)!r} is missing")
    names = tuple(f"{j}.jpg" for j in indices)
    image_paths = [image_dir / name for name in names]
    stats = stat_all(image_paths, f"CelebA-HQ {split}")
    parts = _part_files(root, indices) if split == "test" else None

    def build() -> RawSplit:
        n, stride = len(names), HQ_IMAGE_SIDE // image_size
        images = np.empty((n, image_size, image_size, 3), np.uint8)
        masks = None if parts is None else np.empty((n, image_size, image_size), np.uint8)

        def read_one(i: int) -> None:
            image = open_image(image_paths[i])
            if image.size != (HQ_IMAGE_SIDE, HQ_IMAGE_SIDE):
                raise BadInputError(f"CelebA-HQ image {str(image_paths[i])!r} is {image.size[0]}x{image.size[1]}, "
                                    f"expected {HQ_IMAGE_SIDE}x{HQ_IMAGE_SIDE}")
            images[i] = np.asarray(image.convert("RGB") if image.mode != "RGB" else image)[::stride, ::stride]
            if masks is not None:
                mask_stride = HQ_MASK_SIDE // image_size
                masks[i] = _read_part_labels(parts[i])[::mask_stride, ::mask_stride]

        failures = fill(n, read_one, progress=progress, description=f"CelebA-HQ {split}")
        if failures:
            raise BadInputError(f"CelebAMask-HQ {split} split in {str(root)!r}: {describe_failures(failures)} "
                                "(the copy must be complete and intact)")
        return RawSplit(images, masks, masks, names)

    if limit:
        return build().decode()
    key = {"dataset": "celeba_hq", "data_dir": str(root), "split": split, "image_size": int(image_size),
           "layout": dataclasses.asdict(layout)}
    entries = [(f"{HQ_IMAGE_DIR}/{name}", stat) for name, stat in zip(names, stats)]
    for image_parts in parts or []:
        entries += [(path.relative_to(root).as_posix(), stat) for _, path, stat in image_parts]
    header = {**key, "format": cache.FORMAT_VERSION, "num_files": len(entries),
              "files_fingerprint": cache.files_fingerprint(entries)}
    path = cache.cache_path(cache_dir, f"celeba_hq_{split}_{image_size}px", key)
    return cache.load(path, header, build).decode()


def read_partition(path: Path) -> dict[str, list[str]]:
    """{split: image file names, in file order} from CelebA's ``list_eval_partition.txt`` ("000001.jpg 0" lines).

    Raises:
        NotFoundError: the file is missing.
        BadInputError: a line that is not "<name> <0|1|2>" (names the file and line number).
    """
    try:
        text = path.read_text()
    except FileNotFoundError as e:
        raise NotFoundError(f"the CelebA partition file {str(path)!r} is missing") from e
    splits: dict[str, list[str]] = {split: [] for split in SPLITS}
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in ALIGNED_SPLIT_CODES:
            raise BadInputError(f"{str(path)!r} line {number}: expected '<image name> <0, 1 or 2>', got {line!r}")
        splits[ALIGNED_SPLIT_CODES[fields[1]]].append(fields[0])
    return splits


def load_celeba_aligned(
    split: str,
    data_dir: str | os.PathLike | None = None,
    image_size: int = 64,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = False,
    *,
    limit: int = 0,
) -> ImageSplit:
    """A split of the plain aligned CelebA: each image centre-cropped to the square of its shorter side (178 x 178
    from 178 x 218: rows 20-197) and resized to `image_size` with PIL's BILINEAR filter (antialiased); read on first
    use, then from the on-disk cache.

    Args:
        split: "train", "valid" or "test", as ``list_eval_partition.txt`` assigns them (162,770 / 19,867 / 19,962).
        data_dir: the folder holding ``img_align_celeba/`` and ``list_eval_partition.txt``; default
            ``$NOISEGROUP_CELEBA_ALIGNED_DIR``.
        image_size, cache_dir, progress, limit: as in `load_celeba_hq` (any positive image_size).

    Returns:
        `ImageSplit`: images float32 `[n, image_size, image_size, 3]`, no masks, names ``("000001.jpg", ...)``.

    Raises:
        ValueError: a bad split or image_size.
        BadInputError: no data_dir and no ``$NOISEGROUP_CELEBA_ALIGNED_DIR``; a bad partition line; an unreadable
            or truncated image.
        NotFoundError: the partition file or an image is missing (names the first and the count).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    check_image_size(image_size)
    root = data_folder(data_dir, ALIGNED_ENV, "aligned CelebA", f"{ALIGNED_IMAGE_DIR}/ and {ALIGNED_PARTITION}")
    partition = root / ALIGNED_PARTITION
    names = read_partition(partition)[split]
    names = tuple(names[:int(limit)] if limit else names)
    image_paths = [root / ALIGNED_IMAGE_DIR / name for name in names]
    stats = stat_all(image_paths, f"aligned CelebA {split}")

    def build() -> RawSplit:
        images = np.empty((len(names), image_size, image_size, 3), np.uint8)

        def read_one(i: int) -> None:
            image = open_image(image_paths[i])
            box = fit_box(image.size, "crop", image_size, image_paths[i])
            images[i] = np.asarray(fitted(to_rgb(image), box, image_size, Image.Resampling.BILINEAR))

        failures = fill(len(names), read_one, progress=progress, description=f"CelebA {split}")
        if failures:
            raise BadInputError(f"aligned CelebA {split} split in {str(root)!r}: {describe_failures(failures)} "
                                "(the copy must be complete and intact)")
        return RawSplit(images, None, None, names)

    if limit:
        return build().decode()
    key = {"dataset": "celeba_aligned", "data_dir": str(root), "split": split, "image_size": int(image_size),
           "fit": "crop", "resample": "bilinear"}
    entries = [(ALIGNED_PARTITION, partition.stat())]
    entries += [(f"{ALIGNED_IMAGE_DIR}/{name}", stat) for name, stat in zip(names, stats)]
    header = {**key, "format": cache.FORMAT_VERSION, "num_files": len(entries),
              "files_fingerprint": cache.files_fingerprint(entries)}
    path = cache.cache_path(cache_dir, f"celeba_aligned_{split}_{image_size}px", key)
    return cache.load(path, header, build).decode()
