"""Any folder of images (with optional label masks) as a dataset: read in parallel into one uint8 array, cached,
and split deterministically by file name.

    split = load_folder("~/photos", "train", image_size=64)        # decoded on first use, then from the cache
    split.images.shape, split.names[:2]                              # (n, 64, 64, 3) float32, ('a/1.jpg', 'a/2.png')

Files: every ``.png .jpg .jpeg .bmp .webp .gif`` (any case) under the folder, recursively, in the order of their
relative POSIX names; hidden files and folders (name starting with ".") are ignored, and so is a masks folder placed
inside the image folder. Symbolic links to folders are not followed. Pixels: see `datasets.images.decode` (RGB
conversion, alpha dropped, centre crop or stretch, BILINEAR resize).

Splits: an image's split is decided by its relative name alone, ``u = first 8 bytes of sha256(name) / 2**64``:
test if ``u < test_fraction``, valid if ``u < test_fraction + valid_fraction``, else train. So adding or removing
files never moves another image between splits. "all" is every image in name order. The whole folder is cached
once and the splits are derived from it.
"""

from __future__ import annotations

import hashlib
import numbers
import os
import warnings
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from datasets.images import cache
from datasets.images.core import ImageSplit, RawSplit, check_image_size
from datasets.images.decode import (
    FITS,
    IMAGE_EXTENSIONS,
    UnreadableImageError,
    describe_failures,
    fill,
    fit_box,
    fitted,
    mask_labels,
    open_image,
    to_rgb,
)
from noisegroup.errors import BadInputError, NotFoundError

SPLITS = ("all", "train", "valid", "test")
ON_BAD = ("skip", "error")


def list_files(root: Path, exclude: Path | None = None) -> dict[str, os.stat_result]:
    """{relative POSIX name: stat} of the image files under `root` (recursive; hidden entries and the folder
    `exclude` skipped), sorted by name."""
    found = {}
    pending = [root]
    while pending:
        folder = pending.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as e:
            raise NotFoundError(f"cannot list the image folder {str(folder)!r}: {e.strerror or e}") from e
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=False):
                if exclude is None or Path(entry.path) != exclude:
                    pending.append(Path(entry.path))
            elif entry.name.lower().endswith(IMAGE_EXTENSIONS) and entry.is_file():
                found[Path(entry.path).relative_to(root).as_posix()] = entry.stat()
    return dict(sorted(found.items()))


def split_of(name: str, valid_fraction: float, test_fraction: float) -> str:
    """"train", "valid" or "test": the split of the image with relative name `name` (see the module docstring)."""
    u = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") / 2.0**64  # uniform in [0, 1)
    if u < test_fraction:
        return "test"
    return "valid" if u < test_fraction + valid_fraction else "train"


def split_indices(names: tuple[str, ...] | list[str], split: str, valid_fraction: float,
                  test_fraction: float) -> np.ndarray:
    """int64 `[m]`: the positions in `names` of the images of `split` (all of them for "all"), in order."""
    if split == "all":
        return np.arange(len(names))
    return np.array([i for i, name in enumerate(names) if split_of(name, valid_fraction, test_fraction) == split],
                    np.int64)


def match_masks(masks_dir: Path, images: list[str], masks: list[str]) -> list[str]:
    """The mask file of every image: the one with the same relative name less extension (``a/1.jpg`` ->
    ``a/1.png``).

    Raises:
        BadInputError: two masks (or two images) share a name less extension, or images and masks do not pair up
            (names the first few unmatched of each side and the counts).
    """
    by_stem: dict[str, str] = {}
    for name in masks:
        stem = PurePosixPath(name).with_suffix("").as_posix()
        if stem in by_stem:
            raise BadInputError(f"masks {by_stem[stem]!r} and {name!r} in {str(masks_dir)!r} are both the mask of "
                                f"{stem!r}; keep one")
        by_stem[stem] = name
    image_stems = [PurePosixPath(name).with_suffix("").as_posix() for name in images]
    if len(set(image_stems)) != len(image_stems):
        twice = sorted({s for s in image_stems if image_stems.count(s) > 1})[:5]
        raise BadInputError(f"images that differ only by extension cannot share a mask: {twice}")
    unmatched_images = [name for name, stem in zip(images, image_stems) if stem not in by_stem]
    unmatched_masks = sorted(set(by_stem) - set(image_stems))
    if unmatched_images or unmatched_masks:
        raise BadInputError(
            f"the masks in {str(masks_dir)!r} do not match the images: {len(unmatched_images)} image(s) without a "
            f"mask (first: {unmatched_images[:5]}), {len(unmatched_masks)} mask(s) without an image "
            f"(first: {[by_stem[s] for s in unmatched_masks[:5]]})")
    return [by_stem[stem] for stem in image_stems]


def check_args(split: str, image_size: int, fit: str, valid_fraction: float, test_fraction: float,
               on_bad: str) -> None:
    """Raises ValueError naming the first bad argument."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    check_image_size(image_size)
    if fit not in FITS:
        raise ValueError(f"unknown fit {fit!r}; expected one of {FITS}")
    for name, value in (("valid_fraction", valid_fraction), ("test_fraction", test_fraction)):
        if not isinstance(value, numbers.Real) or not 0 <= value <= 1:
            raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    if valid_fraction + test_fraction > 1:
        raise ValueError(f"valid_fraction + test_fraction = {valid_fraction + test_fraction} exceeds 1")
    if on_bad not in ON_BAD:
        raise ValueError(f"unknown on_bad {on_bad!r}; expected one of {ON_BAD}")


def read_folder(root: Path, names: list[str], image_size: int, fit: str, masks_dir: Path | None = None,
                mask_names: list[str] | None = None, *, progress: bool = False) -> RawSplit:
    """Reads `names` (relative to `root`) and their masks into one uint8 array, in parallel; unreadable files are
    left out and listed in ``skipped``.

    Returns:
        `RawSplit`: images uint8 `[m, image_size, image_size, 3]`, masks uint8 `[m, image_size, image_size]` (or
        None without `mask_names`), the m readable images' names, and the unreadable files' paths.

    Raises:
        BadInputError: a file that is readable but wrong (fit "none" and another size, a mask of another size than
            its image, a mask with too many labels), naming the first few and the count.
    """
    n, size = len(names), image_size
    images = np.empty((n, size, size, 3), np.uint8)  # the one allocation the pixels live in
    masks = None if mask_names is None else np.empty((n, size, size), np.uint8)

    def read_one(i: int) -> None:
        path = root / names[i]
        image = open_image(path)
        box = fit_box(image.size, fit, size, path)
        if masks is not None:
            mask_path = masks_dir / mask_names[i]
            mask = open_image(mask_path)
            if mask.size != image.size:
                raise BadInputError(f"mask {str(mask_path)!r} is {mask.size[0]}x{mask.size[1]} but its image "
                                    f"{str(path)!r} is {image.size[0]}x{image.size[1]}")
            labels = Image.fromarray(mask_labels(mask, mask_path))
            masks[i] = np.asarray(fitted(labels, box, size, Image.Resampling.NEAREST))
        images[i] = np.asarray(fitted(to_rgb(image), box, size, Image.Resampling.BILINEAR))

    failures = fill(n, read_one, progress=progress, description=f"reading {root.name}")
    wrong = {i: e for i, e in failures.items() if not isinstance(e, UnreadableImageError)}
    if wrong:
        raise BadInputError(f"images under {str(root)!r}: {describe_failures(wrong)}")
    keep = [i for i in range(n) if i not in failures]
    for new, old in enumerate(keep):  # close the gaps in place (new <= old): the pixels are never held twice
        if new != old:
            images[new] = images[old]
            if masks is not None:
                masks[new] = masks[old]
    m = len(keep)
    return RawSplit(
        images=images[:m],
        masks=None if masks is None else masks[:m],
        detailed_masks=None,
        names=tuple(names[i] for i in keep),
        skipped=tuple(e.path for e in failures.values()),
    )


def load_folder(
    root: str | os.PathLike,
    split: str = "all",
    image_size: int = 64,
    masks_dir: str | os.PathLike | None = None,
    fit: str = "crop",
    cache_dir: str | os.PathLike | None = None,
    valid_fraction: float = 0.05,
    test_fraction: float = 0.05,
    on_bad: str = "skip",
    progress: bool = False,
    *,
    limit: int = 0,
) -> ImageSplit:
    """A split of the images under `root` (and their masks): read on first use, then from the on-disk cache.

    Args:
        root: the image folder (searched recursively).
        split: "all" (every image, in name order), "train", "valid" or "test" (see the module docstring).
        image_size: the side of the square output images.
        masks_dir: optional folder of label masks, one per image, with the image's relative name and any image
            extension (``a/1.jpg`` -> ``a/1.png``); see `datasets.images.decode.mask_labels` for how labels are read.
            Masks are cropped like their image and resized with NEAREST.
        fit: "crop" (centre square, then resize), "stretch" (resize the whole image) or "none" (every image must
            already be `image_size` square).
        cache_dir: where the cache lives; default `datasets.images.cache.default_cache_dir()`.
        valid_fraction, test_fraction: the expected share of images in the valid and test splits.
        on_bad: "skip" leaves unreadable or truncated files out with one warning naming them all (on every load:
            the cache remembers them); "error" raises, naming them.
        progress: show a progress bar while decoding.
        limit: 0 reads and caches the whole folder; n > 0 reads only the first n images of `split`, uncached (a
            quick look at a big folder).

    Returns:
        `ImageSplit`: images float32 `[n, image_size, image_size, 3]`, masks uint8 `[n, image_size, image_size]` and
        num_clusters int32 `[n]` (None without `masks_dir`), detailed_masks None, names (relative to `root`).

    Raises:
        ValueError: a bad argument, naming it.
        NotFoundError: `root` or `masks_dir` is not a folder, or `root` holds no image (names the extensions).
        BadInputError: masks that do not match the images; a file that is readable but wrong (see `read_folder`);
            with on_bad="error", an unreadable file; no readable image at all.
    """
    check_args(split, image_size, fit, valid_fraction, test_fraction, on_bad)
    root = _folder(root, "image folder")
    masks_root = None if masks_dir is None else _folder(masks_dir, "masks folder")
    if masks_root == root:
        raise BadInputError(f"masks_dir is the image folder {str(root)!r}; keep the masks in a folder of their own")
    files = list_files(root, exclude=masks_root)
    if not files:
        raise NotFoundError(f"no image files under {str(root)!r} (looked for {', '.join(IMAGE_EXTENSIONS)}, "
                            "any case, hidden files excluded)")
    names = list(files)
    mask_files = {} if masks_root is None else list_files(masks_root)
    mask_names = None if masks_root is None else match_masks(masks_root, names, list(mask_files))

    if limit:
        chosen = split_indices(names, split, valid_fraction, test_fraction)[:int(limit)]
        raw = read_folder(root, [names[i] for i in chosen], image_size, fit, masks_root,
                          None if mask_names is None else [mask_names[i] for i in chosen], progress=progress)
        _report_skipped(raw, root, on_bad)
        return raw.decode()

    key = {"dataset": "folder", "root": str(root), "masks_dir": None if masks_root is None else str(masks_root),
           "image_size": int(image_size), "fit": fit}
    entries = list(files.items()) + [(f"masks/{name}", stat) for name, stat in mask_files.items()]
    header = {**key, "format": cache.FORMAT_VERSION, "num_files": len(entries),
              "files_fingerprint": cache.files_fingerprint(entries)}
    path = cache.cache_path(cache_dir, f"folder_{root.name}_{image_size}px_{fit}", key)

    def build() -> RawSplit:
        raw = read_folder(root, names, image_size, fit, masks_root, mask_names, progress=progress)
        if not len(raw):
            raise BadInputError(f"none of the {len(names)} image files under {str(root)!r} can be read: "
                                f"{', '.join(raw.skipped[:5])}{' ...' if len(raw.skipped) > 5 else ''}")
        return raw

    raw = cache.load(path, header, build)
    _report_skipped(raw, root, on_bad)
    return raw.decode(split_indices(raw.names, split, valid_fraction, test_fraction))


def _folder(path: str | os.PathLike, what: str) -> Path:
    folder = Path(path).expanduser().resolve()
    if not folder.is_dir():
        raise NotFoundError(f"the {what} {str(folder)!r} does not exist or is not a folder")
    return folder


def _report_skipped(raw: RawSplit, root: Path, on_bad: str) -> None:
    """One warning naming every unreadable file left out (on_bad="skip"), or an error naming them ("error")."""
    if not raw.skipped:
        return
    message = f"{len(raw.skipped)} unreadable image file(s) under {str(root)!r}: {', '.join(raw.skipped)}"
    if on_bad == "error":
        raise BadInputError(message + " (on_bad='skip' leaves them out)")
    warnings.warn(message + "; left out", stacklevel=3)
