"""Reading image files with PIL: checked decoding (a truncated file is an error, never silently padded), the
conversion to RGB, fitting to a square, labels from mask images, and the thread pool that fills one preallocated
array in parallel (PIL releases the GIL while it decodes and resizes, so threads scale without copying pixels
between processes).

Conventions, shared by every loader:
    * RGB: ``image.convert("RGB")``; an alpha channel is dropped, not composited (what torchvision's default
      ``ImageFolder`` loader does, so pixels match PyTorch pipelines); a palette image takes its palette colours;
      16-bit grey (PNG modes ``I;16`` and ``I``) is scaled to 8 bits as ``round(v / 257)`` (PIL's own conversion
      would clip every value above 255 to white). EXIF orientation is not applied: pixels are used as stored.
    * Fitting (`fit_box`): "crop" takes the centred square of the shorter side, "stretch" the whole image; then a
      resize to ``image_size`` x ``image_size`` with PIL's BILINEAR filter (antialiased when shrinking; masks use
      NEAREST over the same box). "none" takes the image as it is and requires that exact size.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
from collections.abc import Callable, Iterator

import numpy as np
from PIL import Image, ImageFile
from tqdm.auto import tqdm

from noisegroup.errors import BadInputError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif")  # matched case-insensitively
FITS = ("crop", "stretch", "none")
TASK_SIZE = 32  # files per thread-pool task: few enough futures, and a progress bar that moves


class UnreadableImageError(BadInputError):
    """An image file that PIL cannot decode in full (not an image, truncated, damaged); names the file.

    Attributes:
        path: the file, as given.
    """

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        super().__init__(f"cannot read image {self.path!r}: {reason}")


def default_workers() -> int:
    """Decoding threads: the CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def strict_decoding() -> Iterator[None]:
    """PIL refuses truncated files for the duration: with ``ImageFile.LOAD_TRUNCATED_IMAGES`` set (by the user or
    another library) PIL pads a truncated image with grey and returns it as if whole. Restored afterwards."""
    before = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = before


def open_image(path: str | os.PathLike) -> Image.Image:
    """The image at `path`, decoded in full (its first frame).

    Raises:
        UnreadableImageError: naming `path`, if PIL cannot decode it in full. Call inside `strict_decoding`.
    """
    try:
        with Image.open(path) as image:
            image.load()  # decode now: Image.open reads only the header, and a truncated body fails here
            return image
    except Exception as e:  # a damaged file makes PIL raise OSError, SyntaxError, ValueError, zlib or struct
        # errors, even IndexError: all mean "this file cannot be read"
        raise UnreadableImageError(path, f"{type(e).__name__}: {e}") from e


def to_rgb(image: Image.Image) -> Image.Image:
    """`image` in mode RGB (see the module docstring for alpha, palettes and 16-bit grey)."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        values = np.asarray(image).astype(np.float64)
        grey = np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8)  # 65535 / 257 = 255
        return Image.fromarray(grey).convert("RGB")
    if image.mode in ("P", "PA") and ("transparency" in image.info or image.mode == "PA"):
        image = image.convert("RGBA")  # the palette's colours; going through RGBA avoids PIL's transparency warning
    return image.convert("RGB")


def fit_box(size: tuple[int, int], fit: str, image_size: int, path: str | os.PathLike) -> tuple[int, int, int, int]:
    """The region (left, top, right, bottom) of an image of `size` (width, height) that becomes the output.

    Raises:
        ValueError: `fit` is not one of `FITS`.
        BadInputError: fit "none" and the image is not `image_size` square (names `path` and its size).
    """
    width, height = size
    if fit == "crop":
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        return left, top, left + side, top + side
    if fit == "stretch":
        return 0, 0, width, height
    if fit == "none":
        if size != (image_size, image_size):
            raise BadInputError(f"image {str(path)!r} is {width}x{height}, not {image_size}x{image_size} "
                                "(fit='none' takes images as they are; use fit='crop' or 'stretch' to resize)")
        return 0, 0, width, height
    raise ValueError(f"unknown fit {fit!r}; expected one of {FITS}")


def fitted(image: Image.Image, box: tuple[int, int, int, int], image_size: int, resample: int) -> Image.Image:
    """`image` cropped to `box` and resized to `image_size` square with `resample` (a no-op where it already is)."""
    if box != (0, 0, *image.size):
        image = image.crop(box)
    if image.size != (image_size, image_size):
        image = image.resize((image_size, image_size), resample)
    return image


def mask_labels(image: Image.Image, path: str | os.PathLike) -> np.ndarray:
    """uint8 `[h, w]` labels of a mask image.

    Grey (1, L, LA: alpha dropped), palette (P: the indices) and 16-bit (I, I;16) masks hold the labels themselves.
    Colour masks (RGB, RGBA: alpha dropped) get one label per distinct colour, per image: black is 0 and the
    other colours 1, 2, ... in the order of their value (0xRRGGBB). So one colour may get different labels in two
    images, but a mask's labels never depend on which other files the folder holds; ARI does not mind.

    Raises:
        BadInputError: naming `path`, for labels above 255 or more than 255 colours besides black (a JPEG mask,
            whose compression invents colours, is the usual cause).
    """
    if image.mode in ("1", "L", "P"):
        return np.asarray(image, dtype=np.uint8)
    if image.mode in ("LA", "PA"):
        return np.asarray(image.getchannel(0), dtype=np.uint8)
    if image.mode.startswith("I"):
        values = np.asarray(image)
        if values.min() < 0 or values.max() > 255:
            raise BadInputError(f"mask {str(path)!r} has labels from {values.min()} to {values.max()}; labels must "
                                "be 0-255")
        return values.astype(np.uint8)
    rgb = np.asarray(image.convert("RGB"), dtype=np.uint32)
    packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    colours, labels = np.unique(packed, return_inverse=True)  # sorted, so black (0) is first when present
    labels = labels.reshape(packed.shape)
    if colours[0] != 0:
        labels = labels + 1  # no black: labels start at 1, 0 stays "black"
    others = len(colours) - (colours[0] == 0)
    if others > 255:
        raise BadInputError(f"mask {str(path)!r} has {others} colours besides black; a colour mask may have at most "
                            "255 (save masks as PNG: JPEG compression invents colours)")
    return labels.astype(np.uint8)


def fill(count: int, read_one: Callable[[int], None], *, workers: int | None = None, progress: bool = False,
         description: str = "reading images") -> dict[int, BadInputError]:
    """Calls ``read_one(i)`` for every ``i < count`` on a thread pool, with PIL refusing truncated files; each call
    writes its image into slices of preallocated arrays, so no image is ever held twice.

    Returns:
        {i: error} for every call that raised `BadInputError` (a file that is unreadable or wrong): all files are
        tried, so the caller can report every bad one at once. Any other exception stops the pool and propagates.
    """
    failures: dict[int, BadInputError] = {}

    def task(start: int) -> int:
        stop = min(start + TASK_SIZE, count)
        for i in range(start, stop):
            try:
                read_one(i)
            except BadInputError as e:
                failures[i] = e  # a dict item assignment: atomic under the GIL
        return stop - start

    workers = default_workers() if workers is None else max(1, int(workers))
    bar = tqdm(total=count, desc=description, unit="img", disable=not progress)
    with bar, strict_decoding(), concurrent.futures.ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(task, start) for start in range(0, count, TASK_SIZE)]
        try:
            for future in concurrent.futures.as_completed(futures):
                bar.update(future.result())
        except BaseException:  # an unexpected error (or Ctrl-C): do not start the tasks still queued
            for future in futures:
                future.cancel()
            raise
    return dict(sorted(failures.items()))


def describe_failures(failures: dict[int, BadInputError], limit: int = 5) -> str:
    """One line: the first `limit` failures' messages, and how many there are."""
    messages = [str(e) for e in list(failures.values())[:limit]]
    more = len(failures) - len(messages)
    return f"{len(failures)} bad file(s): " + "; ".join(messages) + (f"; and {more} more" if more else "")
