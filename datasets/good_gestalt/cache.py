"""The on-disk cache of the Good Gestalt datasets: compact, verified, written atomically.

One ``.npz`` file per (dataset, split, image size) holds an `EncodedSplit` (uint8 index maps, float32 palettes,
masks), a JSON header saying what it is (dataset, split, image size, cache format) and a SHA-256 digest of the
header and the arrays. A file is written to a temporary name in the same directory and renamed into place only when
complete and flushed, so a crash never leaves a file that a later load trusts (and the temporary file of a writer
killed mid-write is removed the next time the folder is written: `atomic.remove_stale_temporaries`); a file that
is unreadable, truncated, fails its digest, or is intact but holds another split (a file copied under another
name) is regenerated with a warning that names the file and the field.

Where: ``cache_dir`` if given, else ``$NOISEGROUP_DATA_DIR``, else ``$XDG_CACHE_HOME/noisegroup/good_gestalt``
(``~/.cache/noisegroup/good_gestalt``).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np

from noisegroup import atomic  # NumPy only: no JAX import

from datasets.good_gestalt.core import EncodedSplit, GestaltSplit, check_args, encode_splits, generate

CACHE_ENV = "NOISEGROUP_DATA_DIR"
FORMAT_VERSION = 1  # bump when the generated data or the file layout changes: old files are then ignored
_FIELDS = ("index", "palette", "masks", "detailed_masks")


class CorruptCacheError(Exception):
    """A cache file that cannot be trusted."""


class CacheMismatchError(CorruptCacheError):
    """An intact cache file that holds another split than the one asked for."""


def default_cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "noisegroup" / "good_gestalt"


def cache_path(cache_dir: str | os.PathLike, name: str, split: str, image_size: int) -> Path:
    return Path(cache_dir) / f"{name}_{split}_{image_size}px_v{FORMAT_VERSION}.npz"


def identity(name: str, split: str, image_size: int) -> dict:
    """What a cache file holds: everything its arrays depend on."""
    return {"dataset": name, "split": split, "image_size": int(image_size), "format": FORMAT_VERSION}




def save(encoded: EncodedSplit, path: str | os.PathLike, header: dict | None = None) -> Path:
    """Writes `encoded` and its `header` (`identity(...)`; {} for a file outside the cache) to `path` atomically
    (temporary file, fsync, rename).

    Raises:
        OSError: naming the directory, if it cannot be created or written.
    """
    arrays = {f: getattr(encoded, f) for f in _FIELDS if getattr(encoded, f) is not None}
    return atomic.save_sealed(path, header or {}, arrays, "the Good Gestalt cache")


def read(path: str | os.PathLike, expected: dict | None = None) -> EncodedSplit:
    """Reads and verifies a cache file (and, given `expected`, that its header is that identity).

    Raises:
        CorruptCacheError: the file is unreadable, truncated, incomplete, without a header (an older format) or
            fails its digest.
        CacheMismatchError: the file is intact but its header differs from `expected` (names the field).
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {f: z[f] for f in _FIELDS if f in z.files}
            digest = str(z["digest"])
            header_json = str(z["header"]) if "header" in z.files else None
    except Exception as e:  # zipfile, zlib, numpy format and OS errors alike
        raise CorruptCacheError(f"unreadable cache file {str(path)!r}: {e!r}") from e
    if header_json is None:
        raise CorruptCacheError(f"cache file {str(path)!r} has no header saying what it holds (an older format)")
    if "index" not in arrays or "palette" not in arrays or atomic.content_digest(header_json, arrays) != digest:
        raise CorruptCacheError(f"cache file {str(path)!r} fails its integrity check")
    header = json.loads(header_json)
    for field, want in (expected or {}).items():
        if header.get(field) != want:
            raise CacheMismatchError(f"cache file {str(path)!r} holds {field}={header.get(field)!r}, "
                                     f"not {field}={want!r}")
    return EncodedSplit(**{f: arrays.get(f) for f in _FIELDS})


def load_encoded(name: str, split: str, *, image_size: int = 64, cache_dir=None, progress=None) -> EncodedSplit:
    """Like `load`, but returns the compact `EncodedSplit` (no float32 images are materialised)."""
    check_args(name, split, image_size)
    path = cache_path(default_cache_dir() if cache_dir is None else cache_dir, name, split, image_size)
    header = identity(name, split, image_size)
    if path.exists():
        try:
            return read(path, header)
        except CorruptCacheError as e:
            warnings.warn(f"{e}; regenerating it", stacklevel=2)
    encoded = encode_splits(name, {split: None}, image_size=image_size, progress=progress)[split]
    save(encoded, path, header)
    return encoded


def load(name: str, split: str, *, image_size: int = 64, cache_dir: str | os.PathLike | None = None) -> GestaltSplit:
    """A split of a Good Gestalt dataset: generated on first use, then read from the on-disk cache.

    Args:
        name: one of `NAMES`.
        split: one of `SPLITS`.
        image_size: 64 or 256.
        cache_dir: where the cache lives; default `default_cache_dir()` (``$NOISEGROUP_DATA_DIR`` overrides it).

    Returns:
        The same `GestaltSplit` as `generate(name, split, image_size=image_size)`.

    Raises:
        ValueError: bad name, split or image_size.
        OSError: the cache directory cannot be written.
    """
    return load_encoded(name, split, image_size=image_size, cache_dir=cache_dir).decode()


def training_images(name: str, train_limit: int = 0, valid_limit: int = 0):
    """(train, valid) images `[n, 64, 64, 3]` of dataset `name` for training: each split whole from the cache, or
    its first `*_limit` images generated (0: the whole split)."""
    def split(which: str, limit: int):
        return generate(name, which, limit=limit).images if limit else load(name, which).images

    return split("train", int(train_limit)), split("valid", int(valid_limit))
