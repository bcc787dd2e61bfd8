"""The one way this project writes a file: never half-written, never a temporary file left behind.

    atomic.write_bytes(path, data)
    atomic.write_text(path, text)
    atomic.write_json(path, obj)               # NumPy and JAX arrays become lists / numbers
    atomic.save_npz(path, **arrays)            # np.savez_compressed
    atomic.read_npz_cache(path, fingerprint, shapes)  # a cache file's arrays if it holds this fingerprint and layout
    atomic.check_arrays(arrays, shapes)        # ValueError naming an array missing, unexpected or misshapen
    atomic.remove_stale_temporaries(directory) # a crashed writer's temporary files, when provably dead
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
import re
import time
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
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # the pid tells `remove_stale_temporaries` its writer
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


def save_sealed(path: str | Path, header: Mapping[str, Any], arrays: Mapping[str, np.ndarray], what: str) -> Path:
    """Writes `arrays`, their `header` (JSON) and the seal of both (`content_digest`) to `path` atomically, first
    removing what killed writers left in its folder: a dataset cache file that a reader verifies before trusting it.

    Raises:
        OSError: naming `what` (e.g. "the Good Gestalt cache") and the directory, if it cannot be created or written.
    """
    path = Path(path)
    header_json = json.dumps(dict(header), sort_keys=True)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path.parent)  # only provably dead writers' files
        seal = content_digest(header_json, arrays)
        save_npz(path, header=np.array(header_json), digest=np.array(seal), **arrays)
    except OSError as e:
        raise OSError(e.errno, f"cannot write to {what} directory {str(path.parent)!r}: {e}") from e
    return path


Shape = tuple  # of ints (that size), None (any size) and names (one size wherever the name appears)


def check_arrays(arrays: Mapping[str, np.ndarray], shapes: Mapping[str, Shape], *, optional: tuple[str, ...] = (),
                 sizes: Mapping[str, int] | None = None) -> None:
    """Checks that `arrays` holds exactly the arrays `shapes` names (those in `optional` may be absent), each of its
    shape. A shape entry is an int, None (any size) or a name: a size that must agree wherever the name appears
    (`sizes` may fix it), e.g. {"ari": ("seeds", "images"), "images": ("images", 64, 64, 3)}.

    Raises:
        ValueError: naming the first array that is missing, unexpected, or of another shape (with the shape wanted).
    """
    missing = [k for k in shapes if k not in arrays and k not in optional]
    if missing:
        raise ValueError(f"missing array(s) {missing}")
    unexpected = sorted(k for k in arrays if k not in shapes)
    if unexpected:
        raise ValueError(f"unexpected array(s) {unexpected}")
    bound = dict(sizes or {})  # name -> size, from `sizes` or the first array that has the name
    for key, want in shapes.items():
        if key in arrays and not _shape_fits(tuple(np.shape(arrays[key])), want, bound):
            wanted = ", ".join(f"{e}={bound[e]}" if isinstance(e, str) and e in bound else str(e) for e in want)
            raise ValueError(f"array {key!r} has shape {np.shape(arrays[key])}, expected ({wanted})")


def _shape_fits(got: tuple[int, ...], want: Shape, bound: dict[str, int]) -> bool:
    """Whether `got` is `want` (`check_arrays`' entries); binds the names not yet in `bound` to their sizes."""
    if len(got) != len(want):
        return False
    for size, entry in zip(got, want):
        if isinstance(entry, str):
            if bound.setdefault(entry, size) != size:
                return False
        elif entry is not None and entry != size:
            return False
    return True


def read_npz_cache(path: str | Path, fingerprint: str, shapes: Mapping[str, Shape] | None = None, *,
                   optional: tuple[str, ...] = (), sizes: Mapping[str, int] | None = None) -> dict | None:
    """The arrays (less "fingerprint") of a cache file written with `save_npz(path, fingerprint=..., ...)`, or None:
    absent, of another fingerprint, unreadable, or, given `shapes` (`check_arrays`' `shapes`, `optional`, `sizes`:
    what this run would write), not holding those arrays; the last two with a warning naming the file, so it is
    recomputed. A fingerprint names the settings, not the content: a file that lost an array or holds arrays of
    another layout (an older version's, an edited file) would crash the caller or change its numbers."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        with np.load(path) as f:
            if str(f["fingerprint"]) != fingerprint:
                return None
            arrays = {k: f[k] for k in f.files if k != "fingerprint"}
    except Exception as e:  # noqa: BLE001 - a torn or damaged file: BadZipFile, EOFError, KeyError, ValueError
        warnings.warn(f"{path} cannot be read ({type(e).__name__}: {e}); recomputing it", stacklevel=3)
        return None
    if shapes is not None:
        try:
            check_arrays(arrays, shapes, optional=optional, sizes=sizes)
        except ValueError as e:
            warnings.warn(f"{path} does not hold what this run writes ({e}); recomputing it", stacklevel=3)
            return None
    return arrays


# A writer's temporary file (`open_for_write`): ".<target name>.<writer pid>.tmp".
_TEMPORARY = re.compile(r"\.(?P<target>.+)\.(?P<pid>\d+)\.tmp")
DEAD_WRITER_AGE_S = 10 * 60  # untouched this long and no such process here: its writer is gone
ABANDONED_AGE_S = 24 * 3600  # untouched this long: abandoned, whatever process now has its pid


def _process_exists(pid: int) -> bool:
    """Whether a process `pid` runs on this host (signal 0 checks without signalling; EPERM: it exists)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OverflowError:  # beyond any pid this system can have
        return False
    except OSError:  # EPERM: another user's live process; anything else: assume alive, keep the file
        return True
    return True


def remove_stale_temporaries(directory: str | Path, *, now: float | None = None) -> list[Path]:
    """Removes the temporary files that writers killed mid-write (kill -9, a power cut) left in `directory`; returns
    the paths removed. Call it where a folder is written: nothing else would ever remove them.

    A temporary file (".<name>.<pid>.tmp") is removed only when its writer is provably gone, never a live
    writer's:
      * no process `pid` runs on this host and the file is untouched for `DEAD_WRITER_AGE_S`: the pid alone is not
        proof, as the folder may be shared with other hosts (NFS), where `pid` is another machine's process; but a
        live writer writes its file from start to end in one go (the data is computed before the write starts),
        so ten minutes without a write and no such local process mean it died;
      * the file is untouched for `ABANDONED_AGE_S`, whatever the pid: pids are reused, so a dead writer's pid may
        now belong to an unrelated live process, and no writer goes a day without writing.
    Files that vanish meanwhile (another process sweeping too) and files that cannot be removed are skipped.
    """
    directory = Path(directory)
    now = time.time() if now is None else now
    removed = []
    try:
        entries = list(directory.iterdir())
    except OSError:
        return removed
    for path in entries:
        match = _TEMPORARY.fullmatch(path.name)
        if match is None:
            continue
        try:
            age = now - path.stat().st_mtime
            dead = age > DEAD_WRITER_AGE_S and not _process_exists(int(match["pid"]))
            if dead or age > ABANDONED_AGE_S:
                path.unlink()
                removed.append(path)
        except OSError:  # gone already, or not ours to remove: the write at hand matters more
            continue
    return removed
