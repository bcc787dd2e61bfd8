"""The on-disk cache of images read from disk: one verified ``.npz`` per (dataset, what it was read with).

Decoding is the slow part (30,000 CelebA-HQ JPEGs of 1024 x 1024 take minutes), so a loader reads the files once
and keeps the uint8 pixels (`RawSplit`: images, masks, names, skipped files) in a compressed ``.npz`` with a JSON
header and a SHA-256 digest (`noisegroup.atomic.content_digest`) over the header and every array, written
atomically (`noisegroup.atomic.save_npz`: temporary file, fsync, rename). The header says what the file holds:
the absolute folder, every option the pixels depend on, the format version, and a fingerprint of the files read
(relative name, size and mtime_ns of each). A file whose fingerprint no longer matches the folder (a file added,
removed, replaced or touched) is stale; stale, unreadable, truncated or digest-failing files are rebuilt with a
warning naming the file and the reason.

Where: ``cache_dir`` if given, else ``$NOISEGROUP_DATA_DIR/images``, else ``$XDG_CACHE_HOME/noisegroup/images``
(``~/.cache/noisegroup/images``). A file's name holds a short hash of its folder and options, so two folders (or two
image sizes) never overwrite each other's cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from datasets.images.core import RawSplit
from noisegroup import atomic  # NumPy only: no JAX import

CACHE_ENV = "NOISEGROUP_DATA_DIR"
FORMAT_VERSION = 1  # bump when what a loader stores changes: old files are then stale and rebuilt
_OPTIONAL = ("masks", "detailed_masks")


class CorruptCacheError(Exception):
    """A cache file that cannot be trusted (unreadable, truncated, incomplete, or failing its digest)."""


class StaleCacheError(CorruptCacheError):
    """An intact cache file that holds other data than asked for: the files changed, or other options."""


def default_cache_dir() -> Path:
    """``$NOISEGROUP_DATA_DIR/images`` if set, else ``$XDG_CACHE_HOME/noisegroup/images`` (default ``~/.cache``)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser() / "images"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "noisegroup" / "images"


def files_fingerprint(entries: Iterable[tuple[str, os.stat_result]]) -> str:
    """SHA-256 of (relative name, size, mtime_ns) of every file, in the order given: any file added, removed,
    renamed, resized or rewritten changes it (a rewrite updates mtime_ns even at the same size)."""
    sha = hashlib.sha256()
    for name, stat in entries:
        sha.update(f"{name}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return sha.hexdigest()


def cache_path(cache_dir: str | os.PathLike | None, stem: str, key: dict) -> Path:
    """The file for data `key` (folder and options, not the file fingerprint: a changed folder keeps its file name
    and so replaces its own stale cache): ``<stem>_<hash of key>_v<format>.npz`` in `cache_dir` (None: default)."""
    directory = default_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()
    tag = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem)[:80]  # a folder's name may hold anything
    return directory / f"{stem}_{tag}_v{FORMAT_VERSION}.npz"


def _arrays(raw: RawSplit) -> dict[str, np.ndarray]:
    arrays = {
        "images": raw.images,
        "names": np.array(raw.names, dtype=str),
        "skipped": np.array(raw.skipped, dtype=str),
    }
    arrays.update({f: getattr(raw, f) for f in _OPTIONAL if getattr(raw, f) is not None})
    return arrays


def save(raw: RawSplit, path: str | os.PathLike, header: dict) -> Path:
    """Writes `raw` and its `header` to `path` atomically.

    Raises:
        OSError: naming the directory, if it cannot be created or written.
    """
    return atomic.save_sealed(path, header, _arrays(raw), "the image cache")


def read(path: str | os.PathLike, expected: dict) -> RawSplit:
    """Reads a cache file and checks that it is intact and holds what `expected` (its header) describes.

    Raises:
        CorruptCacheError: the file is unreadable, truncated, incomplete or fails its digest.
        StaleCacheError: the file is intact but its header differs from `expected` (names every differing entry).
    """
    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as z:  # our own handle: closed on any error
            arrays = {k: z[k] for k in z.files if k not in ("header", "digest")}
            header_json, digest = str(z["header"]), str(z["digest"])
    except Exception as e:  # zipfile, zlib, KeyError for a missing entry, numpy format and OS errors alike
        raise CorruptCacheError(f"unreadable image cache file {str(path)!r}: {e!r}") from e
    if not {"images", "names", "skipped"} <= set(arrays) or atomic.content_digest(header_json, arrays) != digest:
        raise CorruptCacheError(f"image cache file {str(path)!r} fails its SHA-256 integrity check")
    found = json.loads(header_json)
    differences = [f"{key}: file has {found.get(key, '<missing>')!r}, expected {want!r}"
                   for key, want in sorted(expected.items()) if found.get(key) != want and key != "files_fingerprint"]
    if found.get("files_fingerprint") != expected.get("files_fingerprint"):
        differences.insert(0, "files were added, removed or changed since it was written")
    if differences:
        raise StaleCacheError(f"image cache file {str(path)!r} is stale ({'; '.join(differences)})")
    return RawSplit(
        images=arrays["images"],
        masks=arrays.get("masks"),
        detailed_masks=arrays.get("detailed_masks"),
        names=tuple(arrays["names"].tolist()),
        skipped=tuple(arrays["skipped"].tolist()),
    )


def load(path: Path, header: dict, build: Callable[[], RawSplit]) -> RawSplit:
    """The data `header` describes: read from the cache file `path` if it holds it, else ``build()`` and cached.

    A cache that cannot be written (a read-only or full disk) costs speed, not the data: the images are returned
    with a warning naming the directory.
    """
    if path.exists():
        try:
            return read(path, header)
        except CorruptCacheError as e:
            warnings.warn(f"{e}; rebuilding it", stacklevel=3)
    raw = build()
    try:
        save(raw, path, header)
    except OSError as e:
        warnings.warn(f"{e}; the images are not cached", stacklevel=3)
    return raw
