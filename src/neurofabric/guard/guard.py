"""``GuardClassifier``: a neuron field trained online by local error feedback.

>>> import numpy as np
>>> from neurofabric.guard import GuardClassifier
>>> x = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1]], dtype=np.float32)
>>> clf = GuardClassifier(epochs=5, seed=0).fit(x, [0, 1, 2, 0])
>>> clf.predict(x).tolist()
[0, 1, 2, 0]

Inputs are events (scipy.sparse rows, dense rows or an :class:`EventBatch`); each sample's
fired inputs raise the output potentials, the winner is the output with the highest score,
and the feedback of the rule travels back along the synapses that carried the events (see
``kernels.numba_cpu.guard_train`` for the equations).
"""

from __future__ import annotations

import logging
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from neurofabric.core.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from neurofabric.core.errors import CheckpointError, ConfigError, NotFittedError, ShapeError
from neurofabric.core.progress import ProgressCallback, ProgressReporter, check_callback
from neurofabric.core.rng import make_rng
from neurofabric.guard.field import EventBatch, NeuronField, kernels
from neurofabric.guard.io import field_from_arrays, field_to_arrays
from neurofabric.guard.kernels.common import FANOUT, MIX_CODE, RULE_CODE, SILENT
from neurofabric.guard.params import GuardParams

log = logging.getLogger(__name__)

__all__ = ["GuardClassifier", "as_events", "saved_bytes"]


def as_events(x: Any, n_inputs: int | None = None) -> EventBatch:
    """An :class:`EventBatch` from events, a scipy.sparse matrix or a dense 2-D array."""
    if isinstance(x, EventBatch):
        events = x
    elif hasattr(x, "tocsr"):
        events = EventBatch.from_sparse(x)
    else:
        events = EventBatch.from_dense(x)
    if n_inputs is not None and events.n_inputs != n_inputs:
        raise ShapeError(
            f"X has {events.n_inputs} input features, the classifier was fitted with {n_inputs}"
        )
    return events


#: ``fit`` keeps the training state's weight rows in order of falling input frequency: the
#: frequent inputs' rows then share pages and cache, and an epoch on text runs about 1.7x
#: faster (``partial_fit`` from scratch, one pass over a batch that may not be typical, keeps
#: input order). The results are bit-identical either way (tests turn it off to check that).
ORDER_ROWS = True


def _rows_by_frequency(indices: np.ndarray, n_inputs: int) -> np.ndarray:
    """The training row of each input: inputs with more events first (ties by index)."""
    by = np.argsort(-np.bincount(indices, minlength=n_inputs), kind="stable")
    rows = np.empty(n_inputs, dtype=np.int32)
    rows[by] = np.arange(n_inputs, dtype=np.int32)
    return rows


def _threads(n_jobs: int) -> int:
    import numba

    return numba.get_num_threads() if n_jobs == -1 else min(n_jobs, numba.get_num_threads())


class GuardClassifier:
    """Online linear classifier as an event-driven neuron field (scikit-learn compatible)."""

    def __init__(self, *, seed: Any = 0, **params: Any) -> None:
        self.seed = seed
        self.params = GuardParams(**params)
        self.history_: list[dict[str, float]] = []

    # ---------------------------------------------------------------- sklearn protocol
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {**self.params.as_dict(), "seed": self.seed}

    def set_params(self, **params: Any) -> GuardClassifier:
        seed = params.pop("seed", self.seed)
        names = {f.name for f in fields(GuardParams)}
        unknown = set(params) - names
        if unknown:
            raise ConfigError(f"unknown parameter(s) {sorted(unknown)}; valid: {sorted(names)}")
        self.params = GuardParams(**{**self.params.as_dict(), **params})
        self.seed = seed
        return self

    # ---------------------------------------------------------------- training
    def _labels(self, y: Any, classes: Any, n: int) -> np.ndarray:
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != n:
            raise ShapeError(f"y must be 1-D with one label per sample ({n}), got shape {y.shape}")
        if classes is not None:
            self.classes_ = np.asarray(classes)
        elif not hasattr(self, "classes_"):
            self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ConfigError(f"need at least 2 classes, got {list(self.classes_)}")
        index = {c: i for i, c in enumerate(self.classes_.tolist())}
        try:
            return np.fromiter((index[v] for v in y.tolist()), dtype=np.int64, count=n)
        except KeyError as exc:
            raise ConfigError(
                f"label {exc.args[0]!r} is not one of the classes {self.classes_.tolist()}; "
                "pass every class to the first partial_fit with classes="
            ) from None

    def _start(self, n_inputs: int, events: EventBatch | None = None) -> None:
        """A fresh training state; with ``events`` (``fit``: several epochs over them to
        amortize it) its rows in their inputs' order of falling frequency."""
        p = self.params
        C = len(self.classes_)
        self.n_features_in_ = n_inputs
        self._rng = make_rng(self.seed)
        self._steps = 0
        self._mix_ws = None
        self._rows = np.arange(n_inputs, dtype=np.int32)  # the training row of each input
        self._ordered = False
        if ORDER_ROWS and events is not None and p.rule != "neuronguard":  # (the fresh
            # dense field is uniform: its rows can be put in any order)
            self._rows = _rows_by_frequency(events.indices, n_inputs)
            self._ordered = True
        if p.rule == "neuronguard":
            self._train_field = None  # wired from the data in _wire
            return
        self._train_field = NeuronField.dense(n_inputs, C, input_threshold=p.input_threshold)
        self._U = np.zeros((n_inputs, C), dtype=np.float64) if p.average else np.zeros((1, C))
        self._thr_u = np.zeros(C, dtype=np.float64)

    def _wire(self, events: EventBatch, y: np.ndarray) -> None:
        """neuronguard: the ``top_n`` most frequent inputs, each wired to its majority class."""
        p = self.params
        C = len(self.classes_)
        rows = np.repeat(np.arange(len(events)), np.diff(events.indptr))
        fired = events.values > p.input_threshold
        counts = np.zeros((events.n_inputs, C), dtype=np.int64)
        np.add.at(counts, (events.indices[fired], y[rows[fired]]), 1)
        total = counts.sum(axis=1)
        top = np.argsort(-total, kind="stable")[: p.top_n]
        top = top[total[top] > 0]
        targets = np.full(events.n_inputs, -1, dtype=np.int64)
        targets[top] = np.argmax(counts[top], axis=1)
        self._train_field = NeuronField.single_target(
            targets, C, weight=1.0, input_threshold=p.input_threshold
        )

    def _kernels(self):
        """The kernel module of ``params.backend``; records the name used in ``backend_``."""
        self.backend_, k = kernels(self.params.backend)
        return k

    def _train_args(self, events: EventBatch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``events.args()`` with the inputs as training rows (kept for the last batch)."""
        xp, xi, xv = events.args()
        if not self._ordered:
            return xp, xi, xv
        kept = getattr(self, "_kept_rows", None)
        if kept is None or kept[0] is not xi:
            self._kept_rows = kept = (xi, self._rows[xi])
        return xp, kept[1], xv

    def _epoch(self, events: EventBatch, y: np.ndarray) -> int:
        p = self.params
        k = self._kernels()
        n = len(events)
        order = self._rng.permutation(n) if p.shuffle else np.arange(n)
        order = order.astype(np.int64)
        field = self._train_field
        if p.rule == "neuronguard":
            targets, syn_w, thresholds = field.neuron_columns()
            updates = k.neuronguard_train(
                targets,
                syn_w,
                thresholds,
                field.n_inputs,
                *events.args(),
                y,
                order,
                p.plus,
                p.minus,
                p.floor,
            )
            field.records["weight"] = syn_w
        else:
            W = field.weight_matrix()
            thr = np.ascontiguousarray(field.output_thresholds, dtype=np.float32)
            thr_in = np.ascontiguousarray(field.records["threshold"][: field.n_inputs])
            threads = _threads(p.n_jobs)
            common = (
                W,
                thr,
                self._U,
                self._thr_u,
                thr_in,
                *self._train_args(events),
                y,
                order,
                self._steps,
                RULE_CODE[p.rule],
                p.learning_rate,
                p.effective_margin,
                p.aggressiveness,
                p.average,
            )
            if threads > 1 and p.parallel == "mixing":
                ws = self._mixing_workspace(W, thr, threads)
                updates = k.guard_train_mixed(*common, p.mix_rounds, MIX_CODE[p.mix], *ws)
            else:
                updates = k.guard_train(*common, threads)
            field.records["threshold"][field.n_inputs :] = thr
        self._steps += n
        return int(updates)

    def _mixing_workspace(self, W: np.ndarray, thr: np.ndarray, threads: int) -> tuple:
        """Per-thread copies of the weights for parameter mixing, made once per fit (the kernel
        leaves them equal to W after every epoch), and each thread's share of the step sums."""
        ws = getattr(self, "_mix_ws", None)
        if ws is None or ws[0].shape[0] != threads or ws[0].shape[1:] != W.shape:
            D, C = W.shape
            u_shape = (threads, D, C) if self.params.average else (threads, 1, C)
            ws = (
                np.repeat(W[None], threads, axis=0),
                np.repeat(thr[None], threads, axis=0),
                np.zeros(u_shape, dtype=np.float64),
                np.zeros((threads, C), dtype=np.float64),
                np.zeros((threads, D + 1), dtype=np.uint32),
            )
            self._mix_ws = ws
        return ws

    def _publish(self) -> None:
        """``field_``: the averaged (when ``average``) and compacted field used to predict,
        made by the backend's ``average_compact`` in one pass over the training state."""
        p = self.params
        field = self._train_field
        if p.rule == "neuronguard":
            self.field_ = field
            return
        average = p.average and self._steps > 0
        c = self._steps + 1.0
        D, C = field.n_inputs, field.n_outputs
        U, thr_u = self._U, self._thr_u
        ws = getattr(self, "_mix_ws", None)
        Uk = ws[2] if ws is not None else np.zeros((0, 1, C))
        if average and ws is not None:  # parameter mixing keeps each thread's share of U apart
            thr_u = thr_u + ws[3].sum(axis=0)
        if not average:
            U = np.zeros((1, C))
        per_row, single_col, single_w, ptr, cols, weights = self._kernels().average_compact(
            field.weight_matrix(), U, Uk, c, average, float(p.prune), self._rows
        )
        records = field.records.copy()
        records["potential"] = 0.0
        if average:
            records["threshold"][D:] = (field.output_thresholds - thr_u / c).astype(np.float32)
        tgt = np.where(per_row == 0, SILENT, np.where(per_row == 1, single_col + D, FANOUT))
        records["target"][:D] = tgt.astype(np.uint32)
        records["weight"][:D] = single_w
        indptr = np.zeros(D + C + 1, dtype=np.int64)
        indptr[: D + 1] = ptr
        indptr[D + 1 :] = ptr[D]
        self.field_ = NeuronField(records, indptr, cols + np.uint32(D), weights, D)

    def fit(
        self,
        X: Any,
        y: Any,
        *,
        classes: Any = None,
        eval_set: tuple[Any, Any] | None = None,
        callback: ProgressCallback | None = None,
    ) -> GuardClassifier:
        """Train from scratch for ``epochs`` passes.

        ``callback`` gets a :class:`neurofabric.core.progress.Progress` (task "guard.fit", unit
        "epoch", the epoch's ``history_`` record as ``metrics``) after each epoch; returning True
        stops there: the model is then that of a fit with that many epochs, and ``stopped_`` is
        True."""
        check_callback(callback)
        events = as_events(X)
        if hasattr(self, "classes_") and classes is None:
            del self.classes_
        yi = self._labels(y, classes, len(events))
        self._start(events.n_inputs, events)
        if self.params.rule == "neuronguard":
            self._wire(events, yi)
        self.history_ = []
        density = len(events.indices) / max(len(events) * events.n_inputs, 1)
        hogwild = self.params.n_jobs != 1 and self.params.parallel == "hogwild"
        if hogwild and self.params.average and density > 0.05:
            log.warning(
                "Hogwild (n_jobs=%d) with average=True on dense events (%.0f%% of inputs per "
                "sample): concurrent updates collide and the average degrades; use "
                'parallel="mixing" (the default), n_jobs=1 or average=False',
                self.params.n_jobs,
                100 * density,
            )
        ev = None
        if eval_set is not None:
            ev = (as_events(eval_set[0], events.n_inputs), np.asarray(eval_set[1]))
        report = ProgressReporter("guard.fit", self.params.epochs, "epoch", callback)
        for epoch in range(self.params.epochs):
            t0 = time.perf_counter()
            updates = self._epoch(events, yi)
            record = {
                "epoch": epoch + 1,
                "updates": updates,
                "update_rate": updates / max(len(events), 1),
                "seconds": time.perf_counter() - t0,
            }
            if ev is not None or callback is not None or epoch == self.params.epochs - 1:
                self._publish()
            if ev is not None:
                record["eval_accuracy"] = self.score(*ev)
            self.history_.append(record)
            log.info("epoch %d: %s", epoch + 1, record)
            if report.update(epoch + 1, **record):
                log.info("stopped by the callback after epoch %d", epoch + 1)
                break
        self.stopped_ = report.stopped
        self._kept_rows = None  # (the training events' rows)
        if ev is not None:  # held-out data calibrates honestly; training data is overconfident
            self._calibrate(ev[0], self._labels(ev[1], self.classes_, len(ev[0])))
        else:
            self._calibrate(events, yi)
        return self

    def partial_fit(self, X: Any, y: Any, *, classes: Any = None) -> GuardClassifier:
        """One pass over (X, y), continuing the training state (the first call needs every
        class in ``classes`` unless this batch holds them all)."""
        events = as_events(X, getattr(self, "n_features_in_", None))
        first = getattr(self, "_train_field", None) is None and not hasattr(self, "field_")
        yi = self._labels(y, classes, len(events))
        if first:
            self._start(events.n_inputs)
            if self.params.rule == "neuronguard":
                self._wire(events, yi)
        elif getattr(self, "_train_field", None) is None:
            self._resume()
        self._epoch(events, yi)
        self._kept_rows = None
        self._publish()
        return self

    def _resume(self) -> None:
        """Continue training a loaded model (the running average restarts from its weights)."""
        p = self.params
        self._rng = make_rng(self.seed)
        self._steps = 0
        self._mix_ws = None
        self._rows = np.arange(self.field_.n_inputs, dtype=np.int32)
        self._ordered = False
        if p.rule == "neuronguard":
            self._train_field = self.field_
            return
        self._train_field = self.field_.expand()
        self._U = np.zeros((self.field_.n_inputs, len(self.classes_)))
        if not p.average:
            self._U = np.zeros((1, len(self.classes_)))
        self._thr_u = np.zeros(len(self.classes_))

    def _input_ordered_state(self) -> None:
        """The training state one array per input, in input order, for code that indexes it
        by input (the streaming runtime's trainer): parameter mixing's per-thread step sums
        folded into U (its copies of W dropped), the rows put back in input order."""
        ws = getattr(self, "_mix_ws", None)
        if ws is not None:
            self._U = self._U + ws[2].sum(axis=0)
            self._thr_u = self._thr_u + ws[3].sum(axis=0)
            self._mix_ws = None
        if self._ordered:
            field, rows = self._train_field, self._rows
            W = field.weight_matrix()
            W[:] = W[rows]
            thr_in = field.records["threshold"][: field.n_inputs]
            thr_in[:] = thr_in[rows]
            if self.params.average:
                self._U = self._U[rows]
            self._rows = np.arange(field.n_inputs, dtype=np.int32)
            self._ordered = False

    def _calibrate(self, events: EventBatch, y: np.ndarray) -> None:
        """The softmax temperature of ``predict_proba``: minimizes the log-loss on ``eval_set``
        when fit() had one, else on the training data (then the probabilities run high)."""
        from scipy.optimize import minimize_scalar
        from scipy.special import log_softmax

        self._kernels()
        scores = self.field_.forward(events, backend=self.backend_).astype(np.float64)
        spread = float(np.std(scores)) or 1.0

        def nll(log_beta: float) -> float:
            lp = log_softmax(scores * np.exp(log_beta) / spread, axis=1)
            return -float(np.mean(lp[np.arange(len(y)), y]))

        best = minimize_scalar(nll, bounds=(-6.0, 6.0), method="bounded")
        self.proba_scale_ = float(np.exp(best.x) / spread)

    # ---------------------------------------------------------------- run mode
    def _fitted(self) -> NeuronField:
        if not hasattr(self, "field_"):
            raise NotFittedError("this GuardClassifier is not fitted yet; call fit() first")
        return self.field_

    def decision_function(self, X: Any) -> np.ndarray:
        field = self._fitted()
        self._kernels()
        return field.forward(as_events(X, field.n_inputs), backend=self.backend_)

    def predict(self, X: Any) -> np.ndarray:
        field = self._fitted()
        self._kernels()
        winners = field.predict(as_events(X, field.n_inputs), backend=self.backend_)
        return self.classes_[winners]

    def predict_proba(self, X: Any) -> np.ndarray:
        """Softmax of the scores at the temperature fitted on the training data."""
        from scipy.special import softmax

        scale = getattr(self, "proba_scale_", 1.0)
        return softmax(self.decision_function(X).astype(np.float64) * scale, axis=1)

    def score(self, X: Any, y: Any) -> float:
        return float(np.mean(self.predict(X) == np.asarray(y)))

    # ---------------------------------------------------------------- persistence
    def _checkpoint_parts(self, weights: str) -> tuple[dict, dict, dict]:
        field = self._fitted()
        arrays, field_meta = field_to_arrays(field, weights=weights)
        classes = self.classes_.tolist()
        if not all(isinstance(c, int | str) for c in classes):
            raise ConfigError("only int or str class labels can be saved")
        meta = {
            "field": field_meta,
            "classes": classes,
            "proba_scale": getattr(self, "proba_scale_", 1.0),
            "history": self.history_,
        }
        seed = self.seed if isinstance(self.seed, int | None) else None
        return arrays, {**self.params.as_dict(), "seed": seed}, meta

    def save(self, path: Any, *, weights: str = "float32") -> Path:
        """A versioned checkpoint directory (atomic); ``weights="int8"`` quantizes the fan-out
        weights per output neuron, "int4" / "int2" store full rows with one scale per row
        (see ``guard.io``). ``saved_bytes(path)`` gives its size on disk."""
        arrays, params, meta = self._checkpoint_parts(weights)
        return save_checkpoint(path, engine="guard", params=params, arrays=arrays, meta=meta)

    def _restore(self, ckpt: Checkpoint) -> None:
        meta = ckpt.meta
        where = f"{ckpt.path}: " if ckpt.path is not None else ""
        try:
            self.field_ = field_from_arrays(ckpt.arrays, meta["field"])
            self.classes_ = np.asarray(meta["classes"])
            self.proba_scale_ = float(meta.get("proba_scale", 1.0))
        except CheckpointError as exc:
            raise CheckpointError(f"{where}{exc}") from exc
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"{where}guard checkpoint metadata is incomplete ({exc})"
            ) from exc
        self.history_ = list(meta.get("history", []))
        self.n_features_in_ = self.field_.n_inputs
        self._train_field = None

    @classmethod
    def load(cls, path: Any, *, verify: bool = True) -> GuardClassifier:
        ckpt = load_checkpoint(path, engine="guard", verify=verify)
        params = dict(ckpt.params)
        try:
            clf = cls(**params)
        except (TypeError, ConfigError) as exc:
            raise CheckpointError(f"{path}: parameters cannot be restored ({exc})") from exc
        clf._restore(ckpt)
        return clf


def saved_bytes(path: Any) -> int:
    """Total size in bytes of the files of a saved model directory."""
    return sum(f.stat().st_size for f in Path(path).iterdir() if f.is_file())
