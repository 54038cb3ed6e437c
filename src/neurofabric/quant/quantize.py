r"""Affine and symmetric quantization per tensor, per channel or per group.

Symmetric, ``b`` bits: ``q = clip(round(w / s), -Q, Q)`` with ``Q = 2^(b-1) - 1`` and
``s = max|w| / Q`` per block; ``w ~ s q``. With 2 bits this is ternary ({-1, 0, +1} s).
Affine, ``b`` bits: the block's range is widened to include 0, ``s = (max - min) / (2^b - 1)``,
zero point ``z = round(-min / s)``, ``q = clip(round(w / s) + z, 0, 2^b - 1)``;
``w ~ s (q - z)``. With round-to-nearest the error is at most ``s / 2`` for every element.
Stochastic rounding (``floor(w / s + u)``, ``u ~ U[0, 1)``) is unbiased, error below ``s``.

Codes are stored as unsigned integers (symmetric ones offset by ``2^(b-1)``) and packed
``8 // b`` per byte; scales are float32 and zero points uint8, one per block. Blocks:
``tensor`` (one), ``channel`` (one per index of ``axis``), ``group`` (``group_size``
consecutive elements along the last axis).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from neurofabric.core.errors import ConfigError, ShapeError
from neurofabric.core.rng import SeedLike, make_rng
from neurofabric.core.validation import check_array, check_choice, check_int
from neurofabric.quant.packing import pack_bits, packed_nbytes, unpack_bits


@dataclass(frozen=True)
class QuantSpec:
    """How to quantize: bit width, scheme, block granularity and rounding."""

    bits: int = 8
    scheme: str = "symmetric"
    granularity: str = "tensor"
    axis: int = 0
    group_size: int = 128
    rounding: str = "nearest"

    def __post_init__(self) -> None:
        check_choice("bits", self.bits, (2, 4, 8))
        check_choice("scheme", self.scheme, ("symmetric", "affine"))
        check_choice("granularity", self.granularity, ("tensor", "channel", "group"))
        check_choice("rounding", self.rounding, ("nearest", "stochastic"))
        check_int("group_size", self.group_size, min_value=1)
        check_int("axis", self.axis)

    @property
    def levels(self) -> tuple[int, int]:
        """(lowest, highest) integer level before the unsigned offset."""
        if self.scheme == "symmetric":
            top = (1 << (self.bits - 1)) - 1
            return -top, top
        return 0, (1 << self.bits) - 1


@dataclass
class QuantizedTensor:
    """Packed codes with their per-block scales (and zero points for the affine scheme)."""

    packed: np.ndarray
    scales: np.ndarray
    zero_points: np.ndarray
    shape: tuple[int, ...]
    spec: QuantSpec
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        """Bytes of the compressed form: packed codes + scales + zero points."""
        return int(self.packed.nbytes + self.scales.nbytes + self.zero_points.nbytes)

    @property
    def compression_ratio(self) -> float:
        """float32 bytes of the original over :attr:`nbytes`."""
        return 4.0 * self.size / self.nbytes

    def codes(self) -> np.ndarray:
        """Integer levels (signed for the symmetric scheme) in the tensor's shape."""
        raw = unpack_bits(self.packed, self.spec.bits, self.size).astype(np.int16)
        if self.spec.scheme == "symmetric":
            raw -= 1 << (self.spec.bits - 1)
        return raw.reshape(self.shape)

    def dequantize(self, dtype: Any = np.float32) -> np.ndarray:
        """The float tensor the codes stand for."""
        q = _blocks(self.codes().astype(np.float64), self.spec)
        z = self.zero_points.astype(np.float64).reshape(-1, 1) if self.zero_points.size else 0.0
        s = self.scales.astype(np.float64).reshape(-1, 1)
        return _unblocks((q - z) * s, self.shape, self.spec).astype(dtype)

    def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        """Arrays for a checkpoint (see :mod:`neurofabric.core.checkpoint`)."""
        return {
            f"{prefix}packed": self.packed,
            f"{prefix}scales": self.scales,
            f"{prefix}zero_points": self.zero_points,
        }

    def spec_json(self) -> dict[str, Any]:
        return {
            "bits": self.spec.bits,
            "scheme": self.spec.scheme,
            "granularity": self.spec.granularity,
            "axis": self.spec.axis,
            "group_size": self.spec.group_size,
            "rounding": self.spec.rounding,
            "shape": list(self.shape),
        }

    @classmethod
    def from_arrays(
        cls, arrays: dict[str, np.ndarray], spec_json: dict[str, Any], prefix: str = ""
    ) -> QuantizedTensor:
        spec_json = dict(spec_json)
        shape = tuple(spec_json.pop("shape"))
        spec = QuantSpec(**spec_json)
        q = cls(
            np.asarray(arrays[f"{prefix}packed"], np.uint8),
            np.asarray(arrays[f"{prefix}scales"], np.float32),
            np.asarray(arrays[f"{prefix}zero_points"]),
            shape,
            spec,
        )
        if q.packed.size != packed_nbytes(q.size, spec.bits):
            raise ShapeError(
                f"packed codes hold {q.packed.size} bytes, a {shape} tensor of "
                f"{spec.bits}-bit codes needs {packed_nbytes(q.size, spec.bits)}"
            )
        return q


def _blocks(w: np.ndarray, spec: QuantSpec) -> np.ndarray:
    """View ``w`` as (blocks, elements per block)."""
    if spec.granularity == "tensor":
        return w.reshape(1, -1)
    if spec.granularity == "channel":
        if w.ndim == 0:
            raise ShapeError("per-channel quantization needs at least one dimension")
        axis = spec.axis % w.ndim
        return np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
    last = w.shape[-1] if w.ndim else 1
    if last % spec.group_size:
        raise ShapeError(
            f"per-group quantization needs the last dimension ({last}) to be a "
            f"multiple of `group_size` ({spec.group_size}); pick a divisor"
        )
    return w.reshape(-1, spec.group_size)


def _unblocks(b: np.ndarray, shape: tuple[int, ...], spec: QuantSpec) -> np.ndarray:
    if spec.granularity == "channel" and len(shape):
        axis = spec.axis % len(shape)
        moved = (shape[axis],) + tuple(s for i, s in enumerate(shape) if i != axis)
        return np.moveaxis(b.reshape(moved), 0, axis)
    return b.reshape(shape)


def quantize(w: Any, spec: QuantSpec | None = None, *, seed: SeedLike = None) -> QuantizedTensor:
    """Quantize a float array; ``seed`` drives stochastic rounding."""
    spec = spec or QuantSpec()
    arr = np.asarray(w)
    if arr.dtype.kind != "f":
        raise ConfigError(
            f"`w` must be a float array, got dtype {arr.dtype}; convert it with .astype(np.float32)"
        )
    check_array("w", arr)  # finite
    x = _blocks(arr.astype(np.float64), spec)
    lo, hi = spec.levels
    if spec.scheme == "symmetric":
        amax = np.abs(x).max(axis=1, initial=0.0)
        scales = np.where(amax > 0, amax / hi, 1.0)
        zps = np.zeros(x.shape[0])
    else:
        vmin = np.minimum(x.min(axis=1, initial=0.0), 0.0)
        vmax = np.maximum(x.max(axis=1, initial=0.0), 0.0)
        span = vmax - vmin
        scales = np.where(span > 0, span / hi, 1.0)
        zps = np.clip(np.rint(-vmin / scales), lo, hi)
    scales = scales.astype(np.float32).astype(np.float64)  # the stored precision
    scaled = x / scales[:, None]
    if spec.rounding == "stochastic":
        q = np.floor(scaled + make_rng(seed).random(scaled.shape))
    else:
        q = np.rint(scaled)
    q = np.clip(q + zps[:, None], lo, hi)
    offset = (1 << (spec.bits - 1)) if spec.scheme == "symmetric" else 0
    codes = _unblocks(q, arr.shape, spec).astype(np.int16) + offset
    # the symmetric scheme has no zero points: none are stored
    zp_store = zps.astype(np.uint8) if spec.scheme == "affine" else np.zeros(0, np.uint8)
    return QuantizedTensor(
        pack_bits(codes, spec.bits), scales.astype(np.float32), zp_store, tuple(arr.shape), spec
    )


def dequantize(q: QuantizedTensor, dtype: Any = np.float32) -> np.ndarray:
    """Same as ``q.dequantize(dtype)``."""
    return q.dequantize(dtype)


def fake_quantize(w: Any, spec: QuantSpec | None = None, *, seed: SeedLike = None) -> np.ndarray:
    """Round ``w`` to the grid it would be stored on, keeping float values (for
    quantization-aware learning: keep the float weights, use these in the forward path)."""
    arr = np.asarray(w)
    return quantize(arr, spec, seed=seed).dequantize(arr.dtype)
