"""Parameter checks used at every public boundary.

Each helper raises :class:`ConfigError` (or :class:`ShapeError`) whose message names the
parameter, the constraint, the value received and, where useful, the fix.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from neurofabric.core.errors import ConfigError, ShapeError


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def check_number(name: str, value: Any, unit: str = "") -> float:
    """A finite real number."""
    if not _is_number(value) or not math.isfinite(float(value)):
        raise ConfigError(f"`{name}` must be a finite number{_u(unit)}, got {value!r}")
    return float(value)


def _u(unit: str) -> str:
    return f" ({unit})" if unit else ""


def check_positive(name: str, value: Any, unit: str = "") -> float:
    """A finite number > 0."""
    v = check_number(name, value, unit)
    if v <= 0:
        raise ConfigError(f"`{name}` must be > 0{_u(unit)}, got {value!r}")
    return v


def check_nonnegative(name: str, value: Any, unit: str = "") -> float:
    """A finite number >= 0."""
    v = check_number(name, value, unit)
    if v < 0:
        raise ConfigError(f"`{name}` must be >= 0{_u(unit)}, got {value!r}")
    return v


def check_probability(name: str, value: Any) -> float:
    """A number in [0, 1]."""
    v = check_number(name, value)
    if not 0.0 <= v <= 1.0:
        raise ConfigError(f"`{name}` must be a probability in [0, 1], got {value!r}")
    return v


def check_interval(
    name: str,
    value: Any,
    low: float,
    high: float,
    *,
    low_open: bool = False,
    high_open: bool = False,
    unit: str = "",
) -> float:
    """A finite number in an interval, each end closed unless ``low_open`` / ``high_open``:
    ``check_interval("top_p", p, 0, 1, low_open=True)`` accepts (0, 1]."""
    v = check_number(name, value, unit)
    above = v > low if low_open else v >= low
    below = v < high if high_open else v <= high
    if not (above and below):
        if math.isinf(high) and not math.isinf(low):
            rule = f"be {'>' if low_open else '>='} {low:g}"
        elif math.isinf(low) and not math.isinf(high):
            rule = f"be {'<' if high_open else '<='} {high:g}"
        else:
            rule = f"lie in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ConfigError(f"`{name}` must {rule}{_u(unit)}, got {value!r}")
    return v


def check_int(
    name: str, value: Any, *, min_value: int | None = None, max_value: int | None = None
) -> int:
    """An integer within optional bounds (inclusive)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"`{name}` must be an integer, got {value!r}")
    v = int(value)
    if min_value is not None and v < min_value:
        raise ConfigError(f"`{name}` must be >= {min_value}, got {v}")
    if max_value is not None and v > max_value:
        raise ConfigError(f"`{name}` must be <= {max_value}, got {v}")
    return v


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """One of a fixed set of values."""
    options = tuple(choices)
    if value not in options:
        raise ConfigError(f"`{name}` must be one of {options}, got {value!r}")
    return value


def check_array(
    name: str,
    value: Any,
    *,
    shape: tuple[int | None, ...] | None = None,
    dtype: Any = None,
    finite: bool = True,
) -> np.ndarray:
    """Convert to an array and check its shape (None matches any length) and finiteness."""
    arr = np.asarray(value, dtype=dtype)
    if shape is not None:
        ok = arr.ndim == len(shape) and all(
            want is None or want == got for want, got in zip(shape, arr.shape, strict=False)
        )
        if not ok:
            want = "(" + ", ".join("any" if s is None else str(s) for s in shape) + ")"
            raise ShapeError(f"`{name}` must have shape {want}, got {arr.shape}")
    if finite and arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise ConfigError(f"`{name}` must contain only finite values (found NaN or inf)")
    return arr


def broadcast_param(
    name: str, value: Any, n: int, *, positive: bool = False, unit: str = ""
) -> np.ndarray:
    """A scalar or a length-``n`` per-element array, returned as float64 of length ``n``."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    elif arr.shape != (n,):
        raise ShapeError(
            f"`{name}` must be a scalar or an array of length {n} (one per neuron), "
            f"got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise ConfigError(f"`{name}` must be finite{_u(unit)}")
    if positive and np.any(arr <= 0):
        bad = float(arr[arr <= 0][0])
        raise ConfigError(f"`{name}` must be > 0{_u(unit)}, got {bad}")
    return arr


def check_span(name: str, value: Any, upper: int | None = None) -> tuple[int, int]:
    """A ``(start, stop)`` pair of integers with ``0 <= start < stop`` (``<= upper`` when
    given), e.g. a range of neurons."""
    bound = "" if upper is None else f" <= {upper}"
    ok = (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value)
    )
    if not ok or not (0 <= value[0] < value[1] and (upper is None or value[1] <= upper)):
        raise ConfigError(
            f"`{name}` must be a (start, stop) pair of integers with 0 <= start < stop{bound}, "
            f"got {value!r}"
        )
    return int(value[0]), int(value[1])


def check_indices(name: str, value: Any, n: int, *, nonempty: bool = False) -> np.ndarray:
    """Integer indices into ``n`` items, each in ``[0, n)``; returned flat as int64."""
    arr = np.asarray(value)
    if arr.size and arr.dtype.kind not in "iu":
        raise ConfigError(f"`{name}` must be integer indices in [0, {n}), got dtype {arr.dtype}")
    idx = arr.astype(np.int64).ravel()
    if nonempty and idx.size == 0:
        raise ConfigError(f"`{name}` must be a non-empty list of indices in [0, {n}), got none")
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise ConfigError(
            f"`{name}` must be indices in [0, {n}), got values in [{idx.min()}, {idx.max()}]"
        )
    return idx


def check_nonnegative_array(name: str, value: Any, unit: str = "") -> np.ndarray:
    """An array (or scalar) of finite values ``>= 0``, returned as float64."""
    arr = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ConfigError(f"`{name}` must be finite{_u(unit)}, got {value!r}")
    if np.any(arr < 0):
        raise ConfigError(f"`{name}` must be >= 0{_u(unit)}, got a minimum of {arr.min()}")
    return arr


def check_instance(name: str, value: Any, types: type | tuple[type, ...], expected: str) -> Any:
    """An instance of ``types``; ``expected`` says what that is, for the message."""
    if not isinstance(value, types):
        raise ConfigError(f"`{name}` must be {expected}, got {value!r}")
    return value
