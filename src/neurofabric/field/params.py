"""The hash-grid specification (Instant-NGP / tiny-cuda-nn) and its derived level tables."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from neurofabric.core.validation import check_choice, check_int, check_interval

#: tiny-cuda-nn's coherent prime hash factors (grid.h, fast_hash); 1 keeps memory coherence
PRIMES = (1, 2654435761, 805459861, 3674653429, 2097192037, 1434869437, 2165219737)
_U32_MAX_HALF = (2**32 - 1) // 2


@dataclass(frozen=True)
class HashGridSpec:
    """L levels of F features, 2**log2_table rows per hashed level, resolutions from N_min by b.

    ``hash_bits=32`` reproduces tiny-cuda-nn exactly (uint32 arithmetic, float32 positions);
    ``hash_bits=64`` does the same in uint64 so that a level may hold more than 2**32 rows.
    """

    n_dims: int = 3
    n_levels: int = 16
    n_features: int = 2
    log2_table: int = 19
    base_resolution: int = 16
    per_level_scale: float = 2.0
    hash_bits: int = 32

    def __post_init__(self) -> None:
        check_int("n_dims", self.n_dims, min_value=1, max_value=4)
        check_int("n_levels", self.n_levels, min_value=1, max_value=32)
        check_int("n_features", self.n_features, min_value=1, max_value=8)
        check_choice("hash_bits", self.hash_bits, (32, 64))  # 32: tiny-cuda-nn exact
        top = 31 if self.hash_bits == 32 else 60
        check_int("log2_table", self.log2_table, min_value=4, max_value=top)
        check_int("base_resolution", self.base_resolution, min_value=2)
        check_interval("per_level_scale", self.per_level_scale, 1.0, math.inf)

    # --- derived tables (as GridEncodingTemplated's constructor computes them) ---------------
    def scales(self) -> np.ndarray:
        """scale_l = 2^(l log2 b) N_min - 1, in float32 as tiny-cuda-nn computes it."""
        log2b = np.float32(math.log2(self.per_level_scale))
        levels = np.arange(self.n_levels, dtype=np.float32)
        return (
            np.exp2(levels * log2b) * np.float32(self.base_resolution) - np.float32(1.0)
        ).astype(np.float32)

    def resolutions(self) -> np.ndarray:
        return (np.ceil(self.scales()).astype(np.int64) + 1).astype(np.uint64)

    def level_sizes(self) -> np.ndarray:
        """Rows of each level: min(resolution^D rounded up to 8, 2**log2_table)."""
        sizes = []
        cap = _U32_MAX_HALF if self.hash_bits == 32 else 2**62
        for r in self.resolutions().tolist():
            dense = min(float(r) ** self.n_dims, cap)
            rows = cap if dense >= cap else int(r) ** self.n_dims
            rows = -(-rows // 8) * 8
            sizes.append(min(rows, 2**self.log2_table))
        return np.array(sizes, dtype=np.uint64)

    def offsets(self) -> np.ndarray:
        """First row of each level and the total number of rows (n_levels + 1 entries)."""
        out = np.zeros(self.n_levels + 1, dtype=np.uint64)
        np.cumsum(self.level_sizes(), out=out[1:])
        return out

    @property
    def n_rows(self) -> int:
        return int(self.offsets()[-1])

    @property
    def n_params(self) -> int:
        return self.n_rows * self.n_features

    @property
    def n_outputs(self) -> int:
        return self.n_levels * self.n_features

    def is_hashed(self) -> np.ndarray:
        """Whether each level hashes (its dense grid does not fit the table)."""
        return self.resolutions().astype(float) ** self.n_dims > self.level_sizes().astype(float)

    def as_dict(self) -> dict:
        return asdict(self)
