"""TFRecord files without TensorFlow: CRC-32C, the record framing, GZIP.

A TFRecord file is a sequence of records, each::

    uint64 length            little-endian
    uint32 masked_crc32c(length bytes)
    byte   data[length]
    uint32 masked_crc32c(data)

where ``masked(crc) = ((crc >> 15) | (crc << 17)) + 0xa282ead8`` (mod 2^32) and CRC-32C is the Castagnoli CRC
(reflected polynomial 0x82F63B78, initial value and final XOR 0xFFFFFFFF). A GZIP-compressed file (TensorFlow's
``compression_type="GZIP"``, the DeepMind multi-object files) is that byte stream inside a gzip stream.

CRC-32C is computed in NumPy by a tree of partial CRCs rather than byte by byte: the CRC register update is linear
over GF(2), so the register of a block A followed by a block B, both started from 0, is Z_|B|(reg(A)) xor reg(B),
where Z_L is the linear map "feed L zero bytes" (four 256-entry tables). The registers of all 8-byte blocks come
from eight table lookups per block (slicing-by-8), then pairing adjacent blocks halves their number at each level,
so a 100 kB record costs about 20 vectorised steps instead of 100,000 Python iterations (see
`benchmarks/multi_dsprites.py` for the read rate). `crc32c_bytewise` is the plain byte-at-a-time definition, kept as
the oracle the tests compare against.
"""

from __future__ import annotations

import contextlib
import gzip
import itertools
import os
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from noisegroup import atomic
from noisegroup.errors import BadInputError

COMPRESSIONS = ("GZIP", "")  # TensorFlow's compression_type strings; "" = uncompressed
_POLY = 0x82F63B78
_MASK_DELTA = 0xA282EAD8
_GZIP_MAGIC = b"\x1f\x8b"


class TFRecordError(BadInputError):
    """A TFRecord file that is damaged, truncated, empty or not a TFRecord file; the message names file and record
    (bad input: the entry points report it in one line)."""


def _byte_table() -> np.ndarray:
    """uint32 `[256]`: the register after feeding one byte into a zero register."""
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(_POLY), table >> 1).astype(np.uint32)
    return table


_TABLE = _byte_table()
_TABLE_LIST = _TABLE.tolist()


def _apply(tables: np.ndarray, register: np.ndarray) -> np.ndarray:
    """A linear map of the register, given as its four per-byte tables uint32 `[4, 256]`."""
    out = tables[0][register & 0xFF]
    for k in range(1, 4):
        out = out ^ tables[k][(register >> np.uint32(8 * k)) & 0xFF]
    return out


def _zero_feed_tables(levels: int) -> np.ndarray:
    """uint32 `[levels, 4, 256]`: level j is Z_(2^j), the map "feed 2^j zero bytes", as per-byte tables."""
    # Z_1(r) = table[r & 0xff] ^ (r >> 8), applied to every value of every byte position; Z_2L = Z_L o Z_L.
    values = (np.arange(256, dtype=np.uint32)[None, :] << (8 * np.arange(4, dtype=np.uint32))[:, None]).astype(
        np.uint32
    )  # [4, 256]: byte value v at byte position k
    tables = [(_TABLE[values & 0xFF] ^ (values >> np.uint32(8))).astype(np.uint32)]
    for _ in range(1, levels):
        tables.append(_apply(tables[-1], tables[-1]))
    return np.stack(tables)


_ZERO_FEED = _zero_feed_tables(48)  # blocks up to 2^47 bytes
_SLICE = 8  # the tree starts from 8-byte blocks: one table lookup per byte instead of ~3
# _SLICE_TABLES[k][v]: register of an 8-byte block, from 0, whose byte k is v and the others are 0 (= Z_(7-k)(T[v])).
_SLICE_TABLES = [_TABLE]
for _ in range(_SLICE - 1):
    _SLICE_TABLES.insert(0, _apply(_ZERO_FEED[0], _SLICE_TABLES[0]))
_SLICE_TABLES = np.stack(_SLICE_TABLES)


def _register(data: np.ndarray) -> int:
    """The CRC register after feeding `data` (uint8 `[L]`) into a zero register."""
    length = len(data)
    if length == 0:
        return 0
    levels = max(int(length - 1).bit_length(), 3)
    # Leading zero bytes leave a zero register at zero, so padding on the left to 2^levels changes nothing.
    padded = np.zeros(1 << levels, np.uint8)
    padded[len(padded) - length :] = data
    columns = padded.reshape(-1, _SLICE)
    blocks = _SLICE_TABLES[0][columns[:, 0]]  # [2^levels / 8] registers of 8-byte blocks
    for k in range(1, _SLICE):
        blocks ^= _SLICE_TABLES[k][columns[:, k]]
    for level in range(3, levels):
        pairs = blocks.reshape(-1, 2)
        blocks = _apply(_ZERO_FEED[level], pairs[:, 0]) ^ pairs[:, 1]  # reg(AB) = Z_|B|(reg(A)) ^ reg(B)
    return int(blocks[0])


def _zero_feed(register: int, length: int) -> int:
    """Z_length(register): feed `length` zero bytes, composing the power-of-two maps of length's bits."""
    r = np.array([register], np.uint32)
    for level in range(length.bit_length()):
        if length >> level & 1:
            r = _apply(_ZERO_FEED[level], r)
    return int(r[0])


def crc32c(data: bytes | bytearray | memoryview | np.ndarray) -> int:
    """CRC-32C (Castagnoli) of `data`, e.g. ``crc32c(b"123456789") == 0xE3069283``."""
    array = np.frombuffer(data, np.uint8) if not isinstance(data, np.ndarray) else data.reshape(-1).view(np.uint8)
    # reg(init, data) = Z_len(init) ^ reg(0, data), by linearity; then the final XOR.
    return _zero_feed(0xFFFFFFFF, len(array)) ^ _register(array) ^ 0xFFFFFFFF


def crc32c_bytewise(data: bytes) -> int:
    """CRC-32C by the textbook byte-at-a-time table loop (slow; the reference for `crc32c`)."""
    crc = 0xFFFFFFFF
    for byte in bytes(data):
        crc = _TABLE_LIST[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data) -> int:
    """TFRecord's masked CRC-32C (rotate right by 15, add a constant), which keeps CRCs of CRCs well-behaved."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def encode_record(data: bytes) -> bytes:
    """One framed record: length, its masked CRC, the data, its masked CRC."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc32c(length)) + bytes(data) + struct.pack("<I", masked_crc32c(data))


def _check_compression(compression: str) -> None:
    if compression not in COMPRESSIONS:
        raise ValueError(f"unknown compression {compression!r}; expected 'GZIP' or '' (none)")


def write_records(path: str | os.PathLike, records: Iterable[bytes], *, compression: str = "GZIP") -> int:
    """Writes a TFRecord file atomically (a temporary file renamed into place when complete).

    Args:
        path: the file to write.
        records: the serialized records, in order.
        compression: "GZIP" (the DeepMind files' format) or "" (none).

    Returns:
        The number of records written.
    """
    _check_compression(compression)
    count = 0
    with atomic.open_for_write(path) as raw:
        # Level 6 is zlib's default, which TensorFlow's GZIP writer uses; mtime=0 makes the bytes reproducible.
        stream = gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) if compression == "GZIP" else raw
        for record in records:
            stream.write(encode_record(record))
            count += 1
        if stream is not raw:
            stream.close()  # writes the gzip trailer; leaves `raw` open for the atomic rename
    return count


@contextlib.contextmanager
def _open(path: Path, compression: str | None) -> Iterator[BinaryIO]:
    """The file's record stream; compression None = detect from the gzip magic bytes."""
    with open(path, "rb") as raw:
        if compression is None:
            compression = "GZIP" if raw.read(2) == _GZIP_MAGIC else ""
            raw.seek(0)
        _check_compression(compression)
        if compression != "GZIP":
            yield raw
            return
        with gzip.GzipFile(fileobj=raw, mode="rb") as stream:  # closing it leaves `raw` to the outer block
            yield stream


def _read(stream: BinaryIO, size: int, path: Path, index: int, what: str) -> bytes:
    """Up to `size` bytes; decompression errors become a `TFRecordError` naming file and record."""
    try:
        return stream.read(size)
    except (OSError, EOFError) as e:  # gzip: bad header, bad gzip CRC, truncated stream
        raise TFRecordError(f"{path}: record {index}: cannot read the {what}: {e}") from e


def read_records(
    path: str | os.PathLike, *, compression: str | None = None, verify_crc: bool = True, allow_empty: bool = False
) -> Iterator[bytes]:
    """Yields the records of a TFRecord file, checking every CRC.

    Args:
        path: the file.
        compression: "GZIP", "" (none) or None (default: detect from the first bytes).
        verify_crc: check the data CRCs too (the length CRCs are always checked; they are cheap and catch
            reading a file with the wrong compression).
        allow_empty: a file without records is a valid, empty dataset (default: an error, see Raises).

    Yields:
        Each record's data.

    Raises:
        TFRecordError: a CRC mismatch or truncation, naming the file and the record's index (0-based); or a file
            that holds no record at all (zero bytes, or an empty gzip stream) unless `allow_empty`: an interrupted
            download or copy looks like that, and would otherwise read as a dataset of zero examples.
    """
    path = Path(path)
    with _open(path, compression) as stream:
        for index in itertools.count():
            head = _read(stream, 12, path, index, "header")
            if not head:
                if index == 0 and not allow_empty:
                    raise TFRecordError(f"{path} holds no records ({path.stat().st_size} bytes): an empty dataset "
                                        f"file (pass allow_empty=True if an empty split is meant)")
                return
            if len(head) < 12:
                raise TFRecordError(f"{path}: record {index}: truncated header ({len(head)} of 12 bytes)")
            length_bytes, length_crc = head[:8], struct.unpack("<I", head[8:])[0]
            if masked_crc32c(length_bytes) != length_crc:
                raise TFRecordError(
                    f"{path}: record {index}: length CRC mismatch (not a TFRecord file, damaged, or read with the "
                    f"wrong compression?)"
                )
            length = struct.unpack("<Q", length_bytes)[0]
            body = _read(stream, length + 4, path, index, "data")
            if len(body) != length + 4:
                raise TFRecordError(f"{path}: record {index}: truncated data ({len(body)} of {length + 4} bytes)")
            data, data_crc = body[:-4], struct.unpack("<I", body[-4:])[0]
            if verify_crc and masked_crc32c(data) != data_crc:
                raise TFRecordError(f"{path}: record {index}: data CRC mismatch (the record is damaged)")
            yield data
