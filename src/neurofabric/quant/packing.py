"""Bit packing of unsigned codes as a little-endian bit stream: code ``i`` of ``b`` bits
occupies bits ``[i b, (i + 1) b)``, counting from the lowest bit of the first byte.

For 4 bits, codes ``[a, b]`` become the byte ``a | b << 4``; for 2 bits, ``[a, b, c, d]``
become ``a | b << 2 | c << 4 | d << 6``; for 3 bits, eight codes fill three bytes (a code may
straddle two). A trailing partial byte is zero-padded.
"""

from __future__ import annotations

import numpy as np

from neurofabric.core.errors import ConfigError, ShapeError
from neurofabric.core.validation import check_choice, check_int

BIT_WIDTHS = (1, 2, 3, 4, 5, 6, 7, 8)


def _check_bits(bits: int) -> int:
    return check_choice("bits", bits, BIT_WIDTHS)


def packed_nbytes(n: int, bits: int) -> int:
    """Bytes that ``n`` codes of ``bits`` bits occupy once packed."""
    return -(-check_int("n", n, min_value=0) * _check_bits(bits) // 8)


def pack_bits(codes: np.ndarray, bits: int) -> np.ndarray:
    """Pack unsigned ``codes`` (any shape, values in [0, 2**bits)) into a flat uint8 array."""
    _check_bits(bits)
    flat = np.asarray(codes).reshape(-1)
    if flat.size and (flat.min() < 0 or flat.max() >= 1 << bits):
        raise ConfigError(
            f"codes must lie in [0, {1 << bits}) for {bits}-bit packing, got "
            f"values in [{flat.min()}, {flat.max()}]"
        )
    flat = flat.astype(np.uint8)
    if bits == 8:
        return flat.copy()
    if 8 % bits:  # the general bit stream
        stream = np.unpackbits(flat[:, None], axis=1, count=bits, bitorder="little")
        return np.packbits(stream.reshape(-1), bitorder="little")
    per = 8 // bits
    pad = (-flat.size) % per
    if pad:
        flat = np.concatenate([flat, np.zeros(pad, np.uint8)])
    lanes = flat.reshape(-1, per)
    out = np.zeros(lanes.shape[0], np.uint8)
    for k in range(per):
        out |= lanes[:, k] << np.uint8(k * bits)
    return out


def unpack_bits(packed: np.ndarray, bits: int, n: int) -> np.ndarray:
    """The first ``n`` codes of a packed array, as uint8."""
    _check_bits(bits)
    packed = np.asarray(packed, dtype=np.uint8).reshape(-1)
    if packed.size != packed_nbytes(n, bits):
        raise ShapeError(
            f"{n} codes of {bits} bits need {packed_nbytes(n, bits)} bytes, got {packed.size}"
        )
    if bits == 8:
        return packed[:n].copy()
    if 8 % bits:
        stream = np.unpackbits(packed, count=n * bits, bitorder="little").reshape(n, bits)
        return np.packbits(stream, axis=1, bitorder="little").reshape(-1)
    per = 8 // bits
    mask = np.uint8((1 << bits) - 1)
    lanes = np.empty((packed.size, per), np.uint8)
    for k in range(per):
        lanes[:, k] = (packed >> np.uint8(k * bits)) & mask
    return lanes.reshape(-1)[:n]
