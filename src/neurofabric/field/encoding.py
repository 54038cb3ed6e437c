"""``HashGrid``: the multi-resolution hash encoding of Instant-NGP, as tiny-cuda-nn computes it.

>>> import numpy as np
>>> from neurofabric.field import HashGrid, HashGridSpec
>>> grid = HashGrid(HashGridSpec(n_dims=2, n_levels=4, n_features=2, log2_table=10))
>>> table = grid.init_table(seed=0)
>>> grid.encode(np.array([[0.25, 0.5]]), table).shape
(1, 8)

The table has ``spec.n_rows`` rows of ``n_features`` float32 each: levels one after the other,
coarse levels dense, fine levels hashed. ``corners`` gives the rows a batch of points touches
(what a paged table must fetch) and their weights; ``encode`` combines them; ``backward``
gives the gradient of a loss with respect to the table as a sparse (rows, grads) list.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import neurofabric.field.kernels  # noqa: F401  (registers the "field" backends)
from neurofabric.core import backend as backends
from neurofabric.core.errors import ShapeError
from neurofabric.core.rng import make_rng
from neurofabric.field.params import HashGridSpec

__all__ = ["HashGrid"]

#: batches smaller than this run on one thread (waking the pool costs more than it saves)
PARALLEL_FROM = 256


class HashGrid:
    """The level tables of a :class:`HashGridSpec` and the kernels that use them.

    ``backend``: "auto" (the fastest installed: numba), "numba" or "reference" (the numpy
    spec), resolved once by :mod:`neurofabric.core.backend`; ``.backend`` is the one used.
    """

    def __init__(self, spec: HashGridSpec | None = None, *, backend: str = "auto") -> None:
        self.spec = spec or HashGridSpec()
        self.backend, self._k = backends.resolve("field", backend)
        s = self.spec
        self._args = (
            s.scales(),
            s.resolutions(),
            s.level_sizes(),
            s.offsets()[:-1].copy(),
            s.is_hashed(),
            int(s.hash_bits),
        )

    @property
    def kernels(self):
        """The resolved kernel module (``.backend`` names it)."""
        return self._k

    @property
    def args(self) -> tuple:
        """The level tables the kernels take after the points: scales, resolutions, sizes,
        offsets, hashed flags, hash bits."""
        return self._args

    @property
    def n_rows(self) -> int:
        return self.spec.n_rows

    def check_points(self, x: Any) -> np.ndarray:
        x = np.asarray(x)
        D = self.spec.n_dims
        if x.ndim == 1 and x.shape[0] == D:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != D:
            raise ShapeError(f"coordinates must have shape (n, {D}), got {x.shape}")
        if x.dtype.kind not in "fiu":
            raise ShapeError(f"coordinates must be numbers, got dtype {x.dtype}")
        x = np.ascontiguousarray(x, dtype=np.float32)
        if len(x) and (not np.all(np.isfinite(x)) or x.min() < 0.0 or x.max() > 1.0):
            raise ShapeError(
                "coordinates must be finite and lie in [0, 1] (scale your domain into the unit "
                f"cube), got range [{np.nanmin(x):.4g}, {np.nanmax(x):.4g}]"
            )
        return x

    def corners(self, x: Any) -> tuple[np.ndarray, np.ndarray]:
        """Rows (n, L, 2^D) and weights (n, L, 2^D) of the corners the points touch."""
        x = self.check_points(x)
        k = self._k
        fn = k.hash_corners if len(x) >= PARALLEL_FROM else k.hash_corners_serial
        return fn(x, *self._args)

    def combine(self, values: np.ndarray, weights: np.ndarray) -> np.ndarray:
        k = self._k
        fn = k.hash_combine if len(values) >= PARALLEL_FROM else k.hash_combine_serial
        return fn(np.ascontiguousarray(values, dtype=np.float32), weights)

    def encode(self, x: Any, table: np.ndarray) -> np.ndarray:
        """Encodings (n, n_levels * n_features) of points in [0, 1]^D."""
        table = self._check_table(table)
        return self._k.hash_encode(self.check_points(x), table, *self._args)

    def backward(self, x: Any, grad_out: Any) -> tuple[np.ndarray, np.ndarray]:
        """Sparse d(loss)/d(table) for d(loss)/d(encoding) ``grad_out`` (n, L*F)."""
        x = self.check_points(x)
        g = np.ascontiguousarray(grad_out, dtype=np.float32)
        if g.shape != (len(x), self.spec.n_outputs):
            raise ShapeError(
                f"grad_out must have shape {(len(x), self.spec.n_outputs)}, got {g.shape}"
            )
        return self._k.hash_backward(x, g, *self._args)

    def accumulate(
        self, rows: np.ndarray, weights: np.ndarray, grad_out: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The table gradient as unique rows (first-seen order), their summed gradients, and
        the index in ``rows.reshape(-1)`` where each is first seen, from the ``corners`` of a
        batch and d(loss)/d(encoding) ``grad_out`` (n, L*F)."""
        g = np.ascontiguousarray(grad_out, dtype=np.float32)
        if g.shape != (rows.shape[0], self.spec.n_outputs):
            raise ShapeError(
                f"grad_out must have shape {(rows.shape[0], self.spec.n_outputs)}, got {g.shape}"
            )
        return self._k.accumulate_rows(rows, weights, g)

    def dense_gradient(self, x: Any, grad_out: Any) -> np.ndarray:
        """The same gradient as a dense (rows, F) array (small tables only)."""
        rows, grads = self.backward(x, grad_out)
        out = np.zeros((self.n_rows, self.spec.n_features), dtype=np.float64)
        np.add.at(out, rows.astype(np.int64), grads)
        return out

    def _check_table(self, table: np.ndarray) -> np.ndarray:
        shape = (self.n_rows, self.spec.n_features)
        if getattr(table, "shape", None) != shape:
            raise ShapeError(f"table must have shape {shape}, got {getattr(table, 'shape', None)}")
        return table if table.dtype == np.float32 else table.astype(np.float32)

    def init_table(self, *, seed: Any = 0, scale: float = 1e-4) -> np.ndarray:
        """Uniform in [-scale, scale], as Instant-NGP initializes its tables (small tables)."""
        rng = make_rng(seed)
        return rng.uniform(-scale, scale, size=(self.n_rows, self.spec.n_features)).astype(
            np.float32
        )
