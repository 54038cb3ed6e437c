"""The IDX format of MNIST-style datasets (LeCun et al.), plain or gzip-compressed.

Header: two zero bytes, a type code (0x08 unsigned byte, 0x09 signed byte, 0x0B int16,
0x0C int32, 0x0D float32, 0x0E float64), the number of dimensions, then each dimension as a
big-endian uint32; the data follow, big-endian, row-major.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np

from neurofabric.core.errors import DataError

_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (``.gz`` is decompressed); a malformed file raises ``DataError``."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as fh:
            blob = fh.read()
    except (OSError, EOFError) as exc:
        raise DataError(
            f"{path}: cannot be read as {'gzip ' if path.suffix == '.gz' else ''}IDX ({exc})"
        ) from exc
    if len(blob) < 4 or blob[0] != 0 or blob[1] != 0 or blob[2] not in _TYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number {blob[:4].hex()})")
    ndim = blob[3]
    header = 4 + 4 * ndim
    if len(blob) < header:
        raise DataError(f"{path}: truncated IDX header ({len(blob)} bytes)")
    shape = struct.unpack(f">{ndim}I", blob[4:header])
    dtype = np.dtype(_TYPES[blob[2]])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(blob) - header != expected:
        raise DataError(
            f"{path}: IDX header promises {shape} ({expected} bytes of data) "
            f"but the file holds {len(blob) - header}"
        )
    data = np.frombuffer(blob, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="), copy=False)


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write ``array`` as IDX (gzip when the name ends in ``.gz``)."""
    codes = {np.dtype(v).newbyteorder("="): k for k, v in _TYPES.items()}
    arr = np.ascontiguousarray(array)
    code = codes.get(arr.dtype.newbyteorder("="))
    if code is None:
        raise DataError(f"IDX cannot store dtype {arr.dtype}")
    blob = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    blob += arr.astype(_TYPES[code]).tobytes()
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as fh:
        fh.write(blob)
