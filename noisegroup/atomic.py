"""The one way this project writes a file: never half-written, never a temporary file left behind.

    atomic.write_bytes(path, data)
    atomic.write_text(path, text)
    atomic.write_json(path, obj)               # NumPy and JAX arrays become lists / numbers
    atomic.save_npz(path, **arrays)            # np.savez_compressed
    atomic.read_npz_cache(path, fingerprint)   # a cache file's arrays if it holds this fingerprint
    atomic.content_digest(header, arrays)      # SHA-256 of a text and named arrays: what a file seals itself with
    with atomic.open_for_write(path) as f:     # anything else that writes a binary file object
        ...

Each writes a hidden temporary file in the target's directory, fsyncs it, renames it over the target (atomic on
POSIX) and fsyncs the directory, so after a crash or kill -9 the path holds either the old content or the new,
never a mix. On any error (a full disk, an exception in the writer) the temporary file is removed and the error
re-raised with the path named. NumPy only: `datasets/` uses it too.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np


def jsonable(value: Any) -> Any:
    """`value` with mappings, sequences and arrays (NumPy, JAX) turned into JSON types."""
    if isinstance(value, Mapping):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.ndarray, np.generic)) or hasattr(value, "__array__"):
        array = np.asarray(value)
        return array.tolist() if array.ndim else array.item()
    return value


def content_digest(header: str, arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 of `header` (a file's JSON meta or identity) and of every array, sorted by name: its name, dtype,
    shape and bytes. The seal of shipped weights and dataset caches: any changed byte, array or header changes it."""
    sha = hashlib.sha256(header.encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        sha.update(f";{name}:{a.dtype.str}:{a.shape};".encode())
        sha.update(memoryview(a).cast("B"))
    return sha.hexdigest()


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some platforms cannot open directories; the rename itself is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def open_for_write(path: str | Path, mode: str = "wb") -> Iterator[Any]:
    """A file object whose content replaces `path` atomically when the block exits without error.

    Raises:
        OSError: the write failed (e.g. no space left); the message names `path`, and no temporary file remains.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(e, OSError) and str(path) not in str(e):
            raise OSError(e.errno, f"cannot write {path}: {e.strerror or e}") from e
        raise
    _fsync_directory(path.parent)


def write_bytes(path: str | Path, data: bytes) -> None:
    with open_for_write(path) as f:
        f.write(data)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(jsonable(obj), indent=2, sort_keys=True))


def save_npz(path: str | Path, **arrays) -> None:
    """`np.savez_compressed(path, **arrays)`, atomically."""
    with open_for_write(path) as f:
        np.savez_compressed(f, **arrays)


def read_npz_cache(path: str | Path, fingerprint: str) -> dict | None:
    """The arrays (less "fingerprint") of a cache file written with `save_npz(path, fingerprint=..., ...)`, or None:
    absent, of another fingerprint, or unreadable (then with a warning naming the file, so it is recomputed)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        with np.load(path) as f:
            if str(f["fingerprint"]) != fingerprint:
                return None
            return {k: f[k] for k in f.files if k != "fingerprint"}
    except Exception as e:  # noqa: BLE001 - a torn or damaged file: BadZipFile, EOFError, KeyError, ValueError
        warnings.warn(f"{path} cannot be read ({type(e).__name__}: {e}); recomputing it", stacklevel=3)
        return None
