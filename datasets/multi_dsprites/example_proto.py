"""`tf.train.Example` in the protobuf wire format, by hand (no protobuf or TensorFlow needed).

The messages (tensorflow/core/example/example.proto, feature.proto)::

    Example   { Features features = 1; }
    Features  { map<string, Feature> feature = 1; }      // on the wire: repeated {string key = 1; Feature value = 2;}
    Feature   { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3; } }
    BytesList { repeated bytes value = 1; }
    FloatList { repeated float value = 1 [packed = true]; }
    Int64List { repeated int64 value = 1 [packed = true]; }

Wire format: each field is a varint key ``(field_number << 3) | wire_type`` followed by a varint (type 0), 8 bytes
(type 1), a varint length and that many bytes (type 2) or 4 bytes (type 5). The decoder follows protobuf's rules
where they matter here: unknown fields are skipped, a repeated message field seen twice is merged (for a BytesList
that is concatenation), the last of a map key or oneof wins, and packed and unpacked repeated scalars are both read.

DeepMind's ``image`` and ``mask`` features are BytesLists of one-byte strings (64 x 64 x C of them). On the wire that
is the 3-byte pattern ``0a 01 <byte>`` repeated, which `BytesList.single_bytes` recognises and slices with NumPy
instead of walking 20,000 entries in Python.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


class ProtobufError(ValueError):
    """Bytes that are not a well-formed serialized message."""


@dataclasses.dataclass(frozen=True)
class BytesList:
    """A serialized BytesList message, decoded on demand.

    Attributes:
        payload: the message's bytes (its fields, without the enclosing key and length).
    """

    payload: bytes

    @classmethod
    def from_values(cls, values: list[bytes]) -> BytesList:
        return cls(b"".join(_key(1, _LENGTH) + _varint(len(v)) + bytes(v) for v in values))

    @classmethod
    def from_single_bytes(cls, array: np.ndarray) -> BytesList:
        """One single-byte entry per element of a uint8 array (row-major), DeepMind's image/mask encoding."""
        flat = np.asarray(array, np.uint8).reshape(-1)
        wire = np.empty((flat.size, 3), np.uint8)
        wire[:, 0], wire[:, 1], wire[:, 2] = 0x0A, 0x01, flat  # key (field 1, length-delimited), length 1, byte
        return cls(wire.tobytes())

    def values(self) -> list[bytes]:
        """The entries, in order."""
        out = []
        for field, wire_type, value in _fields(self.payload):
            if field == 1:
                _expect(wire_type, _LENGTH, "BytesList.value")
                out.append(bytes(value))
        return out

    def single_bytes(self) -> np.ndarray:
        """uint8 `[n]`: the entries as bytes, each of which must be exactly one byte long.

        Raises:
            ProtobufError: an entry is not one byte long.
        """
        wire = np.frombuffer(self.payload, np.uint8)
        if wire.size % 3 == 0 and np.all(wire[0::3] == 0x0A) and np.all(wire[1::3] == 0x01):
            return wire[2::3].copy()  # the regular layout: every entry is "0a 01 <byte>"
        values = self.values()  # anything else that is valid protobuf (unknown fields, ...) takes the slow path
        if any(len(v) != 1 for v in values):
            lengths = sorted({len(v) for v in values})
            raise ProtobufError(f"expected a BytesList of single bytes, found entries of lengths {lengths}")
        return np.frombuffer(b"".join(values), np.uint8).copy()


Feature = BytesList | np.ndarray  # BytesList, float32 array (FloatList) or int64 array (Int64List)


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64 values are encoded as their 64-bit two's complement
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
    return _varint(field << 3 | wire_type)


def _length_delimited(field: int, payload: bytes) -> bytes:
    return _key(field, _LENGTH) + _varint(len(payload)) + payload


def _read_varint(data: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ProtobufError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ProtobufError("varint longer than 10 bytes")


def _fields(data: bytes | memoryview):
    """Yields (field number, wire type, value) of a message: an int for varints, a memoryview otherwise."""
    data = memoryview(data)
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        field, wire_type = key >> 3, key & 7
        if wire_type == _VARINT:
            value, pos = _read_varint(data, pos)
        elif wire_type in (_FIXED64, _FIXED32, _LENGTH):
            if wire_type == _LENGTH:
                size, pos = _read_varint(data, pos)
            else:
                size = 8 if wire_type == _FIXED64 else 4
            if pos + size > len(data):
                raise ProtobufError(f"field {field} runs past the end of its message")
            value, pos = data[pos : pos + size], pos + size
        else:
            raise ProtobufError(f"unsupported wire type {wire_type} (field {field})")
        yield field, wire_type, value


def _expect(wire_type: int, expected: int, what: str) -> None:
    if wire_type != expected:
        raise ProtobufError(f"{what}: wire type {wire_type}, expected {expected}")


def _decode_floats(payload: memoryview) -> np.ndarray:
    """FloatList: packed (one length-delimited field of float32s) or unpacked (a fixed32 field per value)."""
    parts = []
    for field, wire_type, value in _fields(payload):
        if field != 1:
            continue
        if wire_type == _LENGTH:
            if len(value) % 4:
                raise ProtobufError("packed FloatList length is not a multiple of 4")
            parts.append(np.frombuffer(value, "<f4"))
        else:
            _expect(wire_type, _FIXED32, "FloatList.value")
            parts.append(np.frombuffer(value, "<f4"))
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)


def _decode_int64s(payload: memoryview) -> np.ndarray:
    """Int64List: packed (varints in one length-delimited field) or unpacked (a varint field per value)."""
    values = []
    for field, wire_type, value in _fields(payload):
        if field != 1:
            continue
        if wire_type == _LENGTH:
            pos = 0
            while pos < len(value):
                v, pos = _read_varint(value, pos)
                values.append(v)
        else:
            _expect(wire_type, _VARINT, "Int64List.value")
            values.append(value)
    return np.array(values, np.uint64).view(np.int64)  # wrap: varints carry int64 as two's complement


def _decode_feature(payload: memoryview) -> Feature | None:
    """The Feature's `kind` (the last one set wins; repeated occurrences of one list are merged)."""
    kind, parts = None, []
    for field, wire_type, value in _fields(payload):
        if field not in (1, 2, 3):
            continue
        _expect(wire_type, _LENGTH, "Feature.kind")
        if field != kind:
            kind, parts = field, []
        parts.append(bytes(value))
    if kind is None:
        return None
    merged = memoryview(b"".join(parts))  # merging serialized messages = concatenating them
    return {1: lambda p: BytesList(bytes(p)), 2: _decode_floats, 3: _decode_int64s}[kind](merged)


def parse_example(data: bytes) -> dict[str, Feature]:
    """Decodes a serialized `tf.train.Example`.

    Args:
        data: the serialized message (one TFRecord record).

    Returns:
        {feature name: `BytesList` | float32 `[n]` (FloatList) | int64 `[n]` (Int64List)}; features without a
        kind are left out.

    Raises:
        ProtobufError: the bytes are not a well-formed Example.
    """
    entries: dict[str, bytes] = {}
    for field, wire_type, features in _fields(data):
        if field != 1:
            continue
        _expect(wire_type, _LENGTH, "Example.features")
        for f_field, f_type, entry in _fields(features):
            if f_field != 1:
                continue
            _expect(f_type, _LENGTH, "Features.feature")
            key, value = None, b""
            for e_field, e_type, e_value in _fields(entry):
                if e_field == 1:
                    _expect(e_type, _LENGTH, "map key")
                    key = bytes(e_value).decode()
                elif e_field == 2:
                    _expect(e_type, _LENGTH, "map value")
                    value += bytes(e_value)
            entries[key or ""] = value  # map semantics: the last entry of a key wins
    out = {}
    for key, value in entries.items():
        feature = _decode_feature(memoryview(value))
        if feature is not None:
            out[key] = feature
    return out


def _encode_feature(value: Feature) -> bytes:
    """A serialized Feature: BytesList as is; float arrays packed as float32; integer arrays packed varints."""
    if isinstance(value, BytesList):
        return _length_delimited(1, value.payload)
    array = np.asarray(value).reshape(-1)
    if array.dtype.kind not in "fiub":
        raise TypeError(f"cannot encode a feature of dtype {array.dtype}; use BytesList for bytes")
    if array.dtype.kind == "f":
        field, packed = 2, array.astype("<f4").tobytes()
    else:
        field, packed = 3, b"".join(_varint(int(v)) for v in array)
    # An empty packed list is omitted altogether, as protobuf serializes it.
    return _length_delimited(field, _length_delimited(1, packed) if array.size else b"")


def serialize_example(features: Mapping[str, Feature]) -> bytes:
    """A serialized `tf.train.Example` (features in sorted key order, so the bytes are deterministic).

    Args:
        features: {name: `BytesList` | float array (FloatList) | integer array (Int64List)}.
    """
    entries = b"".join(
        _length_delimited(1, _length_delimited(1, key.encode()) + _length_delimited(2, _encode_feature(value)))
        for key, value in sorted(features.items())
    )
    return _length_delimited(1, entries)
