"""Read TensorFlow checkpoints (tensor bundles) without TensorFlow.

A TensorFlow checkpoint ``PREFIX`` is two files:

``PREFIX.index``
    A LevelDB-format *table* (SSTable) that maps each tensor name to a
    ``BundleEntryProto``: dtype, shape, shard, byte offset, byte size and CRC32C.
    The entry with the empty key ``""`` is the ``BundleHeaderProto``.
``PREFIX.data-00000-of-00001`` (one file per shard)
    The raw little-endian tensor bytes, back to back.

The table layout, from the end of the file backwards:

* **Footer** (last 48 bytes): two *block handles* (varint offset, varint size) for the
  metaindex and the index block, zero padding to 40 bytes, then the 8-byte magic
  number ``0xdb4775248b80fb57``.
* **Index block**: one entry per data block; its value is the data block's handle.
* **Data blocks**: sorted key/value entries. Each entry is ``varint shared``,
  ``varint non_shared``, ``varint value_length``, the ``non_shared`` key bytes and the
  value; the key is the first ``shared`` bytes of the previous key plus the new bytes
  (prefix compression). The block ends with ``uint32`` restart offsets (entries where
  ``shared == 0``) and their ``uint32`` count.
* Every block is followed by a 5-byte trailer: a compression byte (0 = none,
  1 = snappy) and the masked CRC32C of block + compression byte.

TensorFlow writes bundle indexes uncompressed, and this reader refuses snappy blocks
with a clear error rather than guessing.

Examples
--------
>>> tensors = load_checkpoint("musicnn/MTT_musicnn/")  # doctest: +SKIP
>>> tensors["dense/kernel"].shape  # doctest: +SKIP
(1506, 200)
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["BundleEntry", "CheckpointFormatError", "read_index", "load_checkpoint", "crc32c", "masked_crc32c"]

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
BLOCK_TRAILER_SIZE = 5

# TensorFlow's DataType enum (types.proto) -> numpy little-endian dtype.
TF_DTYPES = {
    1: np.dtype("<f4"),   # DT_FLOAT
    2: np.dtype("<f8"),   # DT_DOUBLE
    3: np.dtype("<i4"),   # DT_INT32
    4: np.dtype("u1"),    # DT_UINT8
    5: np.dtype("<i2"),   # DT_INT16
    6: np.dtype("i1"),    # DT_INT8
    9: np.dtype("<i8"),   # DT_INT64
    10: np.dtype("?"),    # DT_BOOL
    17: np.dtype("<u2"),  # DT_UINT16
    19: np.dtype("<f2"),  # DT_HALF
    22: np.dtype("<u4"),  # DT_UINT32
    23: np.dtype("<u8"),  # DT_UINT64
}
DT_STRING = 7


class CheckpointFormatError(ValueError):
    """The files are not a TensorFlow checkpoint this reader understands."""


# --- CRC32C (Castagnoli), as LevelDB and TensorFlow use it -------------------------

def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes, crc: int = 0) -> int:
    """CRC32C of ``data`` (pure Python; about 2 s for 10 MB).

    Examples
    --------
    >>> hex(crc32c(b"123456789"))
    '0xe3069283'
    """
    crc ^= 0xFFFFFFFF
    table = _CRC_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """LevelDB's masked CRC: rotate right by 15 bits and add a constant."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


# --- varints and protobuf fields -----------------------------------------------

def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode a base-128 varint at ``pos``; return ``(value, next_pos)``."""
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise CheckpointFormatError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise CheckpointFormatError("varint longer than 64 bits")


def iter_proto_fields(buf: bytes):
    """Yield ``(field_number, wire_type, value)`` of a serialized protobuf message.

    Varints (wire type 0) come as ``int``, fixed32/fixed64 (5/1) as ``int`` and
    length-delimited fields (2) as ``bytes``.
    """
    pos = 0
    while pos < len(buf):
        tag, pos = read_varint(buf, pos)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = read_varint(buf, pos)
        elif wire == 1:
            value, pos = struct.unpack_from("<Q", buf, pos)[0], pos + 8
        elif wire == 2:
            length, pos = read_varint(buf, pos)
            value, pos = bytes(buf[pos: pos + length]), pos + length
        elif wire == 5:
            value, pos = struct.unpack_from("<I", buf, pos)[0], pos + 4
        else:
            raise CheckpointFormatError(f"unsupported protobuf wire type {wire}")
        if pos > len(buf):
            raise CheckpointFormatError("truncated protobuf message")
        yield field, wire, value


@dataclass(frozen=True)
class BundleEntry:
    """One ``BundleEntryProto``: where a tensor lies in the data file and what it is."""

    dtype: int
    shape: tuple
    shard_id: int = 0
    offset: int = 0
    size: int = 0
    crc32c: int = 0
    sliced: bool = False


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def parse_shape(buf: bytes) -> tuple:
    """``TensorShapeProto``: repeated ``dim`` (field 2) with ``size`` (field 1)."""
    dims = []
    for field, _, value in iter_proto_fields(buf):
        if field == 2:
            size = 0
            for f, _, v in iter_proto_fields(value):
                if f == 1:
                    size = _signed64(v)
            dims.append(size)
        elif field == 3 and value:
            raise CheckpointFormatError("tensor of unknown rank")
    return tuple(dims)


def parse_bundle_entry(buf: bytes) -> BundleEntry:
    """Decode ``BundleEntryProto`` fields 1-7 (dtype, shape, shard, offset, size, crc, slices)."""
    fields = {"dtype": 0, "shape": (), "shard_id": 0, "offset": 0, "size": 0, "crc32c": 0, "sliced": False}
    names = {1: "dtype", 3: "shard_id", 4: "offset", 5: "size", 6: "crc32c"}
    for field, _, value in iter_proto_fields(buf):
        if field == 2:
            fields["shape"] = parse_shape(value)
        elif field == 7:
            fields["sliced"] = True
        elif field in names:
            fields[names[field]] = value
    return BundleEntry(**fields)


# --- the table -----------------------------------------------------------------

def _block_handle(buf: bytes, pos: int) -> tuple[tuple[int, int], int]:
    offset, pos = read_varint(buf, pos)
    size, pos = read_varint(buf, pos)
    return (offset, size), pos


def read_block(table: bytes, handle: tuple[int, int], verify: bool = True) -> bytes:
    """The contents of one block, its trailer checked (compression byte and CRC)."""
    offset, size = handle
    end = offset + size
    if end + BLOCK_TRAILER_SIZE > len(table):
        raise CheckpointFormatError(f"block at {offset} (+{size}) runs past the end of the index")
    block = table[offset:end]
    compression = table[end]
    if compression == 1:
        raise CheckpointFormatError("snappy-compressed block: not supported (TensorFlow bundles are uncompressed)")
    if compression != 0:
        raise CheckpointFormatError(f"unknown block compression type {compression}")
    if verify:
        (stored,) = struct.unpack_from("<I", table, end + 1)
        if masked_crc32c(table[offset: end + 1]) != stored:
            raise CheckpointFormatError(f"CRC mismatch in index block at offset {offset}")
    return block


def iter_block(block: bytes):
    """Yield ``(key, value)`` of a block, undoing prefix compression."""
    if len(block) < 4:
        raise CheckpointFormatError("block too short")
    (n_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    data_end = len(block) - 4 - 4 * n_restarts
    if data_end < 0:
        raise CheckpointFormatError("bad restart count")
    pos, key = 0, b""
    while pos < data_end:
        shared, pos = read_varint(block, pos)
        non_shared, pos = read_varint(block, pos)
        value_length, pos = read_varint(block, pos)
        if shared > len(key) or pos + non_shared + value_length > data_end:
            raise CheckpointFormatError("corrupt block entry")
        key = key[:shared] + block[pos: pos + non_shared]
        pos += non_shared
        yield key, block[pos: pos + value_length]
        pos += value_length


def iter_table(table: bytes, verify: bool = True):
    """Yield every ``(key, value)`` of an SSTable held in memory, in key order."""
    if len(table) < FOOTER_SIZE:
        raise CheckpointFormatError("file too short for a table footer")
    footer = table[-FOOTER_SIZE:]
    (magic,) = struct.unpack_from("<Q", footer, 40)
    if magic != TABLE_MAGIC:
        raise CheckpointFormatError(f"bad table magic {magic:#x} (not a TensorFlow checkpoint index)")
    _metaindex, pos = _block_handle(footer, 0)
    index_handle, _ = _block_handle(footer, pos)
    for _, handle_bytes in iter_block(read_block(table, index_handle, verify)):
        handle, _ = _block_handle(handle_bytes, 0)
        yield from iter_block(read_block(table, handle, verify))


def _base(prefix) -> str:
    """The checkpoint prefix as a string; a folder means files named ``.index`` etc. inside it."""
    base = os.fspath(prefix)
    if base.endswith(".index"):
        return base[: -len(".index")]
    return os.path.join(base, "") if os.path.isdir(base) else base


def _index_path(prefix) -> Path:
    return Path(_base(prefix) + ".index")


def read_index(prefix) -> dict[str, BundleEntry]:
    """Parse ``PREFIX.index`` into ``{tensor name: BundleEntry}`` (the header excluded).

    ``prefix`` may be ``".../model.ckpt"``, the ``.index`` path itself, or a folder
    for checkpoints saved with an empty file name (as musicnn's ``MTT_musicnn/.index``).
    """
    path = _index_path(prefix)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint index not found: {path}")
    entries = {}
    for key, value in iter_table(path.read_bytes()):
        if key == b"":
            _check_header(value)
            continue
        entries[key.decode("utf-8")] = parse_bundle_entry(value)
    return entries


def _check_header(value: bytes) -> None:
    """``BundleHeaderProto``: field 2 endianness must be 0 (little-endian)."""
    for field, _, v in iter_proto_fields(value):
        if field == 2 and v != 0:
            raise CheckpointFormatError("big-endian checkpoint: not supported")


def _shard_path(prefix, shard: int, n_shards: int) -> Path:
    return Path(f"{_base(prefix)}.data-{shard:05d}-of-{n_shards:05d}")


def _n_shards(prefix) -> int:
    for key, value in iter_table(_index_path(prefix).read_bytes(), verify=False):
        if key == b"":
            for field, _, v in iter_proto_fields(value):
                if field == 1:
                    return v
        break
    return 1


def load_checkpoint(prefix, verify_crc: bool = True, skip_strings: bool = True) -> dict[str, np.ndarray]:
    """Read every tensor of a TensorFlow checkpoint: ``{name: numpy array}``.

    Parameters
    ----------
    prefix : str or Path
        Checkpoint prefix (``PREFIX.index`` and ``PREFIX.data-*`` beside it).
    verify_crc : bool
        Check each tensor's CRC32C (pure Python: about 2 s per 10 MB).
    skip_strings : bool
        Leave out string tensors (they use a different encoding); if False they raise.

    Returns
    -------
    dict of str to numpy.ndarray
        Arrays in TensorFlow's own layout (e.g. conv kernels ``(kh, kw, in, out)``).
    """
    entries = read_index(prefix)
    n_shards = _n_shards(prefix)
    shards: dict[int, bytes] = {}
    tensors = {}
    for name, entry in entries.items():
        if entry.sliced:
            raise CheckpointFormatError(f"{name}: partitioned (sliced) variables are not supported")
        if entry.dtype == DT_STRING and skip_strings:
            continue
        if entry.dtype not in TF_DTYPES:
            raise CheckpointFormatError(f"{name}: unsupported TensorFlow dtype {entry.dtype}")
        if entry.shard_id not in shards:
            path = _shard_path(prefix, entry.shard_id, n_shards)
            if not path.is_file():
                raise FileNotFoundError(f"checkpoint data file not found: {path}")
            shards[entry.shard_id] = path.read_bytes()
        tensors[name] = _decode_tensor(name, entry, shards[entry.shard_id], verify_crc)
    return tensors


def _decode_tensor(name: str, entry: BundleEntry, data: bytes, verify_crc: bool) -> np.ndarray:
    dtype = TF_DTYPES[entry.dtype]
    count = int(np.prod(entry.shape, dtype=np.int64))
    if count * dtype.itemsize != entry.size:
        raise CheckpointFormatError(f"{name}: size {entry.size} does not match shape {entry.shape} of {dtype}")
    raw = data[entry.offset: entry.offset + entry.size]
    if len(raw) != entry.size:
        raise CheckpointFormatError(f"{name}: data file too short")
    if verify_crc and masked_crc32c(raw) != entry.crc32c:
        raise CheckpointFormatError(f"{name}: CRC32C mismatch (corrupt data file)")
    return np.frombuffer(raw, dtype=dtype).reshape(entry.shape).copy()
