"""The neuron field: 16-byte records plus CSR fan-out synapses, driven by events.

Neurons ``0 .. n_inputs-1`` are inputs (features, words, context slots); neurons
``n_inputs .. n_inputs+n_outputs-1`` are outputs (classes, next events, experts). Each record
is ``(potential f32, threshold f32, target u32, weight f32)``: a neuron with one synapse keeps
it in its own record; a neuron with several has ``target == FANOUT`` and its synapses in
``indptr / indices / weights``; a neuron with none has ``target == SILENT``.

Two layouts of the same structure: *dense* (every input fans out to every output, rows in
output order, so the weights are an ``(n_inputs, n_outputs)`` matrix that training updates in
place) and *compact* (zero synapses dropped, one-synapse neurons folded into their record),
which is what is saved. ``compact()`` and ``expand()`` convert; both give the same scores.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from neurofabric.core import backend as backends
from neurofabric.core.errors import ConfigError, ShapeError
from neurofabric.core.validation import check_int
from neurofabric.guard.kernels.common import FANOUT, NEURON_DTYPE, SILENT

__all__ = ["NEURON_DTYPE", "EventBatch", "NeuronField", "kernels"]


def kernels(backend: str = "auto") -> tuple[str, ModuleType]:
    """The backend actually used and its kernel module: ``"auto"`` (the fastest installed),
    ``"numba"`` or ``"reference"``, resolved by :func:`neurofabric.core.backend.resolve` (a
    name that is not registered is a :class:`ConfigError` naming the choices)."""
    return backends.resolve("guard", backend)


class EventBatch:
    """Samples as events: for sample i, input neurons ``indices[indptr[i]:indptr[i+1]]`` receive
    the magnitudes ``values[...]`` (CSR; a scipy.sparse matrix converts with ``from_sparse``)."""

    def __init__(self, indptr: Any, indices: Any, values: Any, n_inputs: int) -> None:
        self.indptr = np.ascontiguousarray(indptr, dtype=np.int64)
        self.indices = np.ascontiguousarray(indices, dtype=np.int32)
        self.values = np.ascontiguousarray(values, dtype=np.float32)
        self.n_inputs = int(n_inputs)
        if self.indptr.ndim != 1 or len(self.indptr) < 1 or self.indptr[0] != 0:
            raise ShapeError("events: `indptr` must be 1-D, start at 0 and be non-decreasing")
        if np.any(np.diff(self.indptr) < 0) or self.indptr[-1] != len(self.indices):
            raise ShapeError(
                f"events: `indptr` must be non-decreasing and end at len(indices)="
                f"{len(self.indices)}, got last {self.indptr[-1]}"
            )
        if len(self.values) != len(self.indices):
            raise ShapeError(f"events: {len(self.indices)} indices but {len(self.values)} values")
        if len(self.indices) and (self.indices.min() < 0 or self.indices.max() >= n_inputs):
            raise ShapeError(
                f"events: input neuron ids must lie in [0, {n_inputs}), got "
                f"[{self.indices.min()}, {self.indices.max()}]"
            )
        if not np.all(np.isfinite(self.values)):
            raise ShapeError("events: magnitudes must be finite (no NaN or inf)")

    def __len__(self) -> int:
        return len(self.indptr) - 1

    @classmethod
    def from_sparse(cls, matrix: Any) -> EventBatch:
        m = matrix.tocsr()
        return cls(m.indptr, m.indices, m.data, m.shape[1])

    @classmethod
    def from_dense(cls, x: Any) -> EventBatch:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2:
            raise ShapeError(f"dense events must be 2-D (samples, inputs), got shape {x.shape}")
        rows, cols = np.nonzero(x)
        indptr = np.zeros(x.shape[0] + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=x.shape[0]), out=indptr[1:])
        return cls(indptr, cols, x[rows, cols], x.shape[1])

    def subset(self, rows: Any) -> EventBatch:
        rows = np.asarray(rows, dtype=np.int64)
        lengths = self.indptr[rows + 1] - self.indptr[rows]
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        take = np.concatenate(
            [np.arange(self.indptr[r], self.indptr[r + 1]) for r in rows] or [np.zeros(0, int)]
        ).astype(np.int64)
        return EventBatch(indptr, self.indices[take], self.values[take], self.n_inputs)

    def args(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.indptr, self.indices, self.values


class NeuronField:
    """A field of ``n_inputs + n_outputs`` neuron records and their fan-out synapses."""

    def __init__(
        self,
        records: np.ndarray,
        indptr: np.ndarray,
        indices: np.ndarray,
        weights: np.ndarray,
        n_inputs: int,
    ) -> None:
        if records.dtype != NEURON_DTYPE:
            raise ShapeError(f"records must have dtype {NEURON_DTYPE}, got {records.dtype}")
        if not 0 < n_inputs < len(records):
            raise ConfigError(
                f"`n_inputs` must be in (0, {len(records)}) for {len(records)} neurons, got {n_inputs}"
            )
        if len(indptr) != len(records) + 1 or len(indices) != len(weights):
            raise ShapeError(
                "fan-out CSR: indptr needs one entry per neuron + 1, indices = weights"
            )
        self.records = records
        self.indptr = np.ascontiguousarray(indptr, dtype=np.int64)
        self.indices = np.ascontiguousarray(indices, dtype=np.uint32)
        self.weights = np.ascontiguousarray(weights, dtype=np.float32)
        self.n_inputs = int(n_inputs)

    # ---------------------------------------------------------------- construction
    @classmethod
    def dense(cls, n_inputs: int, n_outputs: int, *, input_threshold: float = 0.0) -> NeuronField:
        """Every input fans out to every output, all weights 0 (the training layout)."""
        n_inputs = check_int("n_inputs", n_inputs, min_value=1)
        n_outputs = check_int("n_outputs", n_outputs, min_value=2)
        n = n_inputs + n_outputs
        records = np.zeros(n, dtype=NEURON_DTYPE)
        records["threshold"][:n_inputs] = input_threshold
        records["target"][:n_inputs] = FANOUT
        records["target"][n_inputs:] = SILENT
        indptr = np.zeros(n + 1, dtype=np.int64)
        indptr[1 : n_inputs + 1] = np.arange(1, n_inputs + 1, dtype=np.int64) * n_outputs
        indptr[n_inputs + 1 :] = indptr[n_inputs]
        indices = np.tile(np.arange(n_inputs, n, dtype=np.uint32), n_inputs)
        weights = np.zeros(n_inputs * n_outputs, dtype=np.float32)
        return cls(records, indptr, indices, weights, n_inputs)

    @classmethod
    def single_target(
        cls,
        targets: Any,
        n_outputs: int,
        *,
        weight: float = 1.0,
        input_threshold: float = 0.0,
    ) -> NeuronField:
        """Each input wired to one output (``targets[i]`` in 0..n_outputs-1) or to none (-1)."""
        targets = np.asarray(targets, dtype=np.int64)
        if len(targets) and (targets.max() >= n_outputs or targets.min() < -1):
            raise ConfigError(f"single-target wiring must be -1 or in [0, {n_outputs})")
        n_inputs = len(targets)
        n = n_inputs + n_outputs
        records = np.zeros(n, dtype=NEURON_DTYPE)
        records["threshold"][:n_inputs] = input_threshold
        wired = targets >= 0
        tgt = np.full(n, SILENT, dtype=np.uint32)
        tgt[:n_inputs][wired] = (targets[wired] + n_inputs).astype(np.uint32)
        records["target"] = tgt
        records["weight"][:n_inputs][wired] = weight
        return cls(
            records,
            np.zeros(n + 1, np.int64),
            np.zeros(0, np.uint32),
            np.zeros(0, np.float32),
            n_inputs,
        )

    # ---------------------------------------------------------------- shape
    @property
    def n_outputs(self) -> int:
        return len(self.records) - self.n_inputs

    @property
    def output_thresholds(self) -> np.ndarray:
        return self.records["threshold"][self.n_inputs :]

    @property
    def is_dense(self) -> bool:
        C = self.n_outputs
        return bool(
            np.all(self.records["target"][: self.n_inputs] == FANOUT)
            and len(self.weights) == self.n_inputs * C
            and self.indptr[self.n_inputs] == len(self.weights)
        )

    def weight_matrix(self) -> np.ndarray:
        """The ``(n_inputs, n_outputs)`` weights: a writable view in the dense layout."""
        if self.is_dense:
            return self.weights.reshape(self.n_inputs, self.n_outputs)
        return self.expand().weights.reshape(self.n_inputs, self.n_outputs)

    def n_synapses(self) -> int:
        single = np.count_nonzero(self.records["target"] < FANOUT - 1)
        return int(single + len(self.weights))

    # ---------------------------------------------------------------- layouts
    def compact(self, *, tol: float = 0.0) -> NeuronField:
        """Drop synapses with |w| <= tol; one left: into the record; none: SILENT."""
        W = self.weight_matrix()
        keep = np.abs(W) > tol
        per_row = keep.sum(axis=1)
        n, D = len(self.records), self.n_inputs
        records = self.records.copy()
        records["potential"] = 0.0
        one = per_row == 1
        tgt = records["target"]
        tgt[:D] = np.where(per_row == 0, SILENT, np.where(one, 0, FANOUT)).astype(np.uint32)
        if np.any(one):
            col = np.argmax(keep[one], axis=1)
            tgt[:D][one] = (col + D).astype(np.uint32)
            records["weight"][:D][one] = W[one, col]
        records["weight"][:D][~one] = 0.0
        multi = per_row >= 2
        counts = np.zeros(n, dtype=np.int64)
        counts[:D][multi] = per_row[multi]
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        mask = keep & multi[:, None]
        rows, cols = np.nonzero(mask)
        return NeuronField(
            records, indptr, (cols + D).astype(np.uint32), W[rows, cols].astype(np.float32), D
        )

    def expand(self) -> NeuronField:
        """The dense layout with the same scores (absent synapses become zero weights)."""
        D, C = self.n_inputs, self.n_outputs
        out = NeuronField.dense(D, C)
        out.records["threshold"] = self.records["threshold"]
        W = out.weights.reshape(D, C)
        tgt = self.records["target"][:D]
        single = tgt < FANOUT - 1
        W[np.nonzero(single)[0], tgt[single].astype(np.int64) - D] = self.records["weight"][:D][
            single
        ]
        rows = np.repeat(np.arange(len(self.records)), np.diff(self.indptr))
        W[rows, self.indices.astype(np.int64) - D] = self.weights
        return out

    # ---------------------------------------------------------------- run mode
    def kernel_args(self) -> tuple:
        """What the run-mode kernels take: the records and the fan-out CSR in its compact run
        form (int32 row offsets when they fit, output indices in the smallest unsigned type),
        built once per CSR structure and cached; the weights are shared, not copied."""
        key = (id(self.indptr), id(self.indices), len(self.indices))
        cache = getattr(self, "_run_cache", None)
        if cache is None or cache[0] != key:
            n_syn = len(self.indices)
            ptr = self.indptr.astype(np.int32) if n_syn < 2**31 else self.indptr
            out = self.indices.astype(np.int64) - self.n_inputs
            if n_syn and (out.min() < 0 or out.max() >= self.n_outputs):
                raise ShapeError("fan-out synapses must target output neurons")
            C = self.n_outputs
            small = np.uint8 if C <= 256 else np.uint16 if C <= 65536 else np.uint32
            cache = (key, ptr, out.astype(small))
            self._run_cache = cache
        return (self.records, cache[1], cache[2], self.weights, self.n_inputs)

    def neuron_columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Contiguous copies of (target, weight, threshold) of every neuron."""
        r = self.records
        return (
            np.ascontiguousarray(r["target"]),
            np.ascontiguousarray(r["weight"]),
            np.ascontiguousarray(r["threshold"]),
        )

    def _check(self, events: EventBatch) -> None:
        if events.n_inputs != self.n_inputs:
            raise ShapeError(
                f"events address {events.n_inputs} input neurons, the field has {self.n_inputs}"
            )

    def forward(self, events: EventBatch, *, backend: str = "auto") -> np.ndarray:
        """Scores (output potential minus threshold), shape (samples, n_outputs)."""
        self._check(events)
        _, k = kernels(backend)
        return k.field_forward(*self.kernel_args(), *events.args())

    def predict(self, events: EventBatch, *, backend: str = "auto") -> np.ndarray:
        """The winning output of each sample (the first on ties)."""
        self._check(events)
        _, k = kernels(backend)
        return k.field_predict(*self.kernel_args(), *events.args())

    def nbytes(self) -> int:
        return int(
            self.records.nbytes + self.indptr.nbytes + self.indices.nbytes + self.weights.nbytes
        )
