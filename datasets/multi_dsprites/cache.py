"""The on-disk cache of generated Multi-dSprites splits: compact, verified, written atomically.

One ``.npz`` file per (split, number of images, seed, options) holds an `EncodedSplit` (uint8 labels, palettes and
latent indices), a JSON header saying what the file is (generator version, split, size, seed, options) and a
SHA-256 digest over the header and the arrays. On load the digest proves the file intact and the header proves it
is the data asked for; a file that is unreadable, damaged, or describes other data (say an older generator version,
or a file copied over from other options) is regenerated with a warning that names the file and the reason.
Files are written by `noisegroup.atomic.save_npz`, so a crash never leaves a half-written file behind (the
temporary file of a writer killed mid-write is removed the next time the folder is written:
`atomic.remove_stale_temporaries`).

Where: ``cache_dir`` if given, else ``$NOISEGROUP_DATA_DIR``, else ``$XDG_CACHE_HOME/noisegroup/multi_dsprites``
(``~/.cache/noisegroup/multi_dsprites``). File names start with ``multi_dsprites_``, so the directory can be shared
with the other datasets' caches.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np

from datasets.multi_dsprites import core
from noisegroup import atomic

CACHE_ENV = "NOISEGROUP_DATA_DIR"
_FIELDS = tuple(f.name for f in dataclasses.fields(core.EncodedSplit))


class CorruptCacheError(Exception):
    """A cache file that cannot be trusted (unreadable, truncated, or failing its digest)."""


class CacheMismatchError(Exception):
    """An intact cache file that holds other data than the one asked for."""


def default_cache_dir() -> Path:
    """``$NOISEGROUP_DATA_DIR`` if set, else ``$XDG_CACHE_HOME/noisegroup/multi_dsprites`` (default ``~/.cache``)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "noisegroup" / "multi_dsprites"


def header(split: str, num_images: int, seed: int, options: core.Options) -> dict:
    """What a cache file is: everything its arrays depend on."""
    return {
        "dataset": "multi_dsprites",
        "generator_version": core.GENERATOR_VERSION,
        "split": split,
        "num_images": int(num_images),
        "seed": int(seed),
        "options": options.record(),
    }


def cache_path(cache_dir: str | os.PathLike, split: str, num_images: int, seed: int, options: core.Options) -> Path:
    """The file of one split; default options give a plain name, others a short hash of the options."""
    options_json = json.dumps(options.record(), sort_keys=True)
    tag = "" if options == core.DEFAULT_OPTIONS else "_" + _sha256(options_json)[:8]
    name = f"multi_dsprites_{split}_{num_images}_seed{seed}{tag}_v{core.GENERATOR_VERSION}.npz"
    return Path(cache_dir) / name


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


digest = atomic.content_digest  # SHA-256 of the header text and of every array's name, dtype, shape and bytes


def save(encoded: core.EncodedSplit, path: str | os.PathLike, file_header: dict) -> Path:
    """Writes `encoded` and its header to `path` atomically.

    Raises:
        OSError: naming the path, if it cannot be written.
    """
    path = Path(path)
    arrays = {f: getattr(encoded, f) for f in _FIELDS}
    header_json = json.dumps(file_header, sort_keys=True)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OSError(e.errno, f"cannot create the Multi-dSprites cache directory {str(path.parent)!r}: {e}") from e
    atomic.remove_stale_temporaries(path.parent)  # what killed writers left here (only provably dead ones)
    atomic.save_npz(path, header=np.array(header_json), digest=np.array(digest(header_json, arrays)), **arrays)
    return path


def read(path: str | os.PathLike, expected_header: dict) -> core.EncodedSplit:
    """Reads a cache file and checks that it is intact and is the data `expected_header` describes.

    Raises:
        CorruptCacheError: the file is unreadable, truncated, incomplete or fails its digest.
        CacheMismatchError: the file is intact but its header differs from `expected_header` (the message lists
            every differing entry).
    """
    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as z:  # our own handle: closed on any error
            arrays = {f: z[f] for f in _FIELDS}
            header_json, stored_digest = str(z["header"]), str(z["digest"])
    except Exception as e:  # zipfile, zlib, KeyError for a missing array, numpy format and OS errors alike
        raise CorruptCacheError(f"unreadable cache file {str(path)!r}: {e!r}") from e
    if digest(header_json, arrays) != stored_digest:
        raise CorruptCacheError(f"cache file {str(path)!r} fails its SHA-256 integrity check")
    differences = _differences(json.loads(header_json), expected_header)
    if differences:
        raise CacheMismatchError(f"cache file {str(path)!r} holds other data: {'; '.join(differences)}")
    if len(arrays["labels"]) != expected_header["num_images"]:  # cannot happen with a matching digest and header
        raise CorruptCacheError(f"cache file {str(path)!r} has {len(arrays['labels'])} images")
    return core.EncodedSplit(**arrays)


def _differences(found: dict, expected: dict, prefix: str = "") -> list[str]:
    """'key: file has X, expected Y' for every entry that differs (nested dictionaries flattened with dots)."""
    out = []
    for key in sorted(set(found) | set(expected)):
        f, e = found.get(key, "<missing>"), expected.get(key, "<missing>")
        if isinstance(f, dict) and isinstance(e, dict):
            out += _differences(f, e, f"{prefix}{key}.")
        elif f != e:
            out.append(f"{prefix}{key}: file has {f!r}, expected {e!r}")
    return out


def load_encoded(
    split: str = "train",
    num_images: int | None = None,
    *,
    seed: int = core.DEFAULT_SEED,
    options: core.Options = core.DEFAULT_OPTIONS,
    cache_dir: str | os.PathLike | None = None,
) -> core.EncodedSplit:
    """Like `load`, but returns the compact `EncodedSplit` and takes the options as one `Options`."""
    count = core.check_args(split, num_images, seed)
    expected = header(split, count, seed, options)
    path = cache_path(default_cache_dir() if cache_dir is None else cache_dir, split, count, seed, options)
    if path.exists():
        try:
            return read(path, expected)
        except (CorruptCacheError, CacheMismatchError) as e:
            warnings.warn(f"{e}; regenerating it", stacklevel=2)
    encoded = core.generate_encoded(split, count, seed=seed, options=options)
    save(encoded, path, expected)
    return encoded


def load(
    split: str = "train",
    num_images: int | None = None,
    *,
    seed: int = core.DEFAULT_SEED,
    colours: str | None = None,
    unique_colours: bool = False,
    min_sprites: int | None = None,
    max_sprites: int | None = None,
    variant: str = "colored_on_colored",
    cache_dir: str | os.PathLike | None = None,
) -> core.MultiDSpritesSplit:
    """A Multi-dSprites split: generated on first use, then read from the verified on-disk cache.

    Args:
        split, num_images, seed, colours, unique_colours, min_sprites, max_sprites, variant: as in `generate`.
        cache_dir: where the cache lives; default `default_cache_dir()` (``$NOISEGROUP_DATA_DIR`` overrides it).

    Returns:
        The same `MultiDSpritesSplit` as `generate` with the same arguments.

    Raises:
        ValueError: naming a bad argument.
        OSError: the cache directory cannot be written.
    """
    options = core.Options(colours, unique_colours, min_sprites, max_sprites, variant)
    return load_encoded(split, num_images, seed=seed, options=options, cache_dir=cache_dir).decode()
