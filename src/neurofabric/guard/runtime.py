"""``GuardRuntime``: worker threads that classify (or learn from) documents as they arrive.

>>> from neurofabric.guard import GuardRuntime, TextGuardClassifier
>>> docs = ["cheap pills online", "meeting at noon", "buy cheap pills", "lunch meeting today"]
>>> clf = TextGuardClassifier(n_features=1024, epochs=5, seed=0)
>>> clf = clf.fit(docs, ["spam", "ham", "spam", "ham"])
>>> with GuardRuntime(clf, workers=2, mode="run") as rt:
...     rt.predict_stream(["cheap pills", "noon meeting"])
['spam', 'ham']

Design, per document: ``submit`` checks and encodes it, stamps ``time.perf_counter_ns()`` and
puts ``(payload, label, future, stamp)`` on a :class:`queue.SimpleQueue`. That queue is
implemented in C without a Python-level lock (``queue.Queue`` takes a ``threading.Lock`` and
a ``Condition`` on every put and get), so producers and workers never contend on a Python
lock per event. Each worker blocks for one item, then drains up to ``batch_size - 1`` more
without blocking, and hands the whole batch to ONE numba call of
:mod:`neurofabric.guard.kernels.stream` (tokenize, hash, weigh, then score or learn). Those
kernels are serial and ``nogil=True``: the call runs without the GIL, so the workers'
batches overlap on the cores; ``parallel=True`` kernels must not be called from several
threads at once (numba's default workqueue layer is not thread-safe). A lone document goes
straight through (low latency); under load the batches fill up (high throughput).

Run mode (``mode="run"``) scores with a snapshot of the fitted field: the results equal
``clf.predict`` on the same documents, for any number of workers and batch size.

Trainer mode (``mode="train"``) applies the classifier's rule (``numba_cpu._train_chunk``)
to its dense training state (``_train_field`` weights, output thresholds, the averaging sums
``_U`` and ``_thr_u``) in place, from every worker at once and without locks (Hogwild, as
``n_jobs > 1`` does). The averaged weights use Daume's trick, which needs the global step
number of every update (``U += cnt * delta``, averaged = W - U / (steps + 1)). Each batch
takes its step numbers from one shared :func:`itertools.count` whose ``next()`` is a single
C call and therefore atomic under the GIL: every document gets a distinct number, the
numbers handed out are exactly ``steps0 .. steps0 + n - 1`` after ``n`` documents, and with
one worker they follow the submission order, so one worker reproduces ``partial_fit`` with
``shuffle=False`` on the same stream exactly. ``publish()`` (and ``close()``) waits for the
documents submitted so far, sets ``_steps`` and calls the classifier's ``_publish``, after
which ``clf.predict`` uses the averaged field. Do not train the classifier by other means
while a trainer runtime is open.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from neurofabric.core.errors import (
    BackendUnavailableError,
    ConfigError,
    NeurofabricError,
    NotFittedError,
    ShapeError,
)
from neurofabric.core.validation import check_choice, check_instance, check_int
from neurofabric.guard.field import EventBatch
from neurofabric.guard.guard import GuardClassifier
from neurofabric.guard.kernels.common import RULE_CODE
from neurofabric.guard.text import TextGuardClassifier

log = logging.getLogger(__name__)

__all__ = ["GuardRuntime", "RuntimeClosedError", "RuntimeStats"]

MODES = ("run", "train")
_STOP = object()  # one per worker, queued by close()


class RuntimeClosedError(NeurofabricError, RuntimeError):
    """A document was submitted to (or left in) a runtime that was closed."""


@dataclass(frozen=True)
class RuntimeStats:
    """What a runtime has done so far. ``busy_s``: summed over the workers, time spent on
    batches; ``wall_s``: from the first submit to the end of the last batch (the rates divide
    by it, so idle gaps count); ``updates``: trainer documents that gave feedback. Latency
    (``p50_us``, ``p99_us``): from ``submit`` to the result being set, over the last
    ``latency_window`` documents of each worker."""

    mode: str
    workers: int
    batch_size: int
    documents: int
    events: int
    batches: int
    updates: int
    errors: int
    busy_s: float
    wall_s: float
    docs_per_s: float
    events_per_s: float
    p50_us: float
    p99_us: float
    worker_documents: tuple[int, ...]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Worker:
    """One worker's counters; only its own thread writes them (no lock needed)."""

    __slots__ = (
        "batches",
        "busy_ns",
        "documents",
        "done",
        "errors",
        "events",
        "last_ns",
        "lat",
        "n_lat",
        "reserved",
        "thread",
        "updates",
    )

    def __init__(self, window: int, reserved: int) -> None:
        self.documents = self.events = self.batches = self.updates = self.errors = 0
        self.busy_ns = self.last_ns = self.n_lat = self.done = 0
        self.lat = np.zeros(window, dtype=np.int64)  # ring buffer of latencies (ns)
        self.reserved = reserved  # 1 + the highest step number this worker took
        self.thread: threading.Thread | None = None


class _TextTask:
    """Documents as UTF-8 bytes; a batch is one buffer plus offsets, as ``encode_texts``."""

    def __init__(self, featurizer: Any) -> None:
        from neurofabric.guard.kernels import stream

        p = featurizer.params
        minn, maxn = p.char_ngrams or (0, 0)
        self._k = stream
        remap = np.zeros(0, dtype=np.int64)
        if getattr(featurizer, "keep_", None) is not None:  # a compressed model's kept ids
            remap = np.full(p.n_features, -1, dtype=np.int64)
            remap[featurizer.keep_] = np.arange(len(featurizer.keep_))
        self._args = (
            p.n_features,
            p.word_ngrams,
            minn,
            maxn,
            remap,
            featurizer.idf_,
            p.sublinear_tf,
            p.binary,
            p.normalize,
        )

    @staticmethod
    def prepare(doc: Any) -> bytes:
        if isinstance(doc, str):
            return doc.encode("utf-8", "surrogatepass")
        if isinstance(doc, bytes):
            return doc
        raise ShapeError(f"`doc` must be a str (or UTF-8 bytes), got a {type(doc).__name__}")

    @staticmethod
    def _buffer(payloads: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
        offsets = np.zeros(len(payloads) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in payloads], out=offsets[1:])
        return np.frombuffer(b"".join(payloads), dtype=np.uint8), offsets

    def predict(self, payloads: list, model: tuple, scores: np.ndarray) -> tuple[np.ndarray, int]:
        buf, offsets = self._buffer(payloads)
        winners, n_events = self._k.text_predict(buf, offsets, *self._args, *model, scores)
        return winners, int(n_events)

    def train(self, payloads: list, y: np.ndarray, steps: np.ndarray, state: tuple) -> tuple:
        buf, offsets = self._buffer(payloads)
        updated, n_events = self._k.text_train(
            buf, offsets, *self._args, *state[:5], y, steps, *state[5:]
        )
        return updated, int(n_events)


class _EventTask:
    """A document is a one-row :class:`EventBatch` or an ``(indices, values)`` pair."""

    def __init__(self, n_inputs: int) -> None:
        from neurofabric.guard.kernels import stream

        self._k = stream
        self.n_inputs = n_inputs

    def prepare(self, doc: Any) -> tuple[np.ndarray, np.ndarray]:
        n = self.n_inputs
        if isinstance(doc, EventBatch):
            if len(doc) != 1 or doc.n_inputs != n:
                raise ShapeError(
                    f"`doc` must be an EventBatch of 1 sample over {n} inputs, got "
                    f"{len(doc)} samples over {doc.n_inputs}"
                )
            return doc.indices, doc.values
        if not (isinstance(doc, tuple | list) and len(doc) == 2):
            raise ShapeError(
                f"`doc` must be a one-row EventBatch or an (indices, values) pair, got {doc!r:.80}"
            )
        idx, val = np.asarray(doc[0]), np.asarray(doc[1], dtype=np.float32)
        if idx.ndim != 1 or val.shape != idx.shape:
            raise ShapeError(
                f"`doc` (indices, values) must be two 1-D arrays of one length, got shapes "
                f"{idx.shape} and {val.shape}"
            )
        if idx.size and (idx.dtype.kind not in "iu" or idx.min() < 0 or idx.max() >= n):
            raise ShapeError(f"`doc` indices must be integers in [0, {n}), got {idx!r:.80}")
        if not np.all(np.isfinite(val)):
            raise ShapeError("`doc` values must be finite (found NaN or inf)")
        return idx.astype(np.int32), val

    @staticmethod
    def _events(payloads: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        xp = np.zeros(len(payloads) + 1, dtype=np.int64)
        np.cumsum([len(p[0]) for p in payloads], out=xp[1:])
        xi = np.concatenate([p[0] for p in payloads]).astype(np.int32, copy=False)
        xv = np.concatenate([p[1] for p in payloads]).astype(np.float32, copy=False)
        return xp, xi, xv

    def predict(self, payloads: list, model: tuple, scores: np.ndarray) -> tuple[np.ndarray, int]:
        xp, xi, xv = self._events(payloads)
        return self._k.events_predict(*model, xp, xi, xv, scores), int(xp[-1])

    def train(self, payloads: list, y: np.ndarray, steps: np.ndarray, state: tuple) -> tuple:
        xp, xi, xv = self._events(payloads)
        updated = self._k.events_train(*state[:5], xp, xi, xv, y, steps, *state[5:])
        return updated, int(xp[-1])


class _TrainState:
    """The classifier's dense training state, shared by every worker (Hogwild)."""

    def __init__(self, guard: GuardClassifier) -> None:
        p = guard.params
        if getattr(guard, "_train_field", None) is None:
            guard._resume()  # a loaded model: continue from its weights (as partial_fit does)
        # the workers index the state by input, and would leave parameter mixing's copies of
        # W behind: one array per input, in input order
        guard._input_ordered_state()
        field = guard._train_field
        self.guard, self.field = guard, field
        # partial_fit copies the strided output thresholds into a float32 array the same way
        self.thr = np.array(field.output_thresholds, dtype=np.float32)
        thr_in = np.ascontiguousarray(field.records["threshold"][: field.n_inputs])
        W = field.weight_matrix()  # a writable view of the dense field's weights
        self.args = (W, self.thr, guard._U, guard._thr_u, thr_in)
        self.args += (RULE_CODE[p.rule], p.learning_rate, p.effective_margin)
        self.args += (p.aggressiveness, p.average)
        self.step0 = int(guard._steps)
        self.classes = guard.classes_.tolist()
        self._index = {c: i for i, c in enumerate(self.classes)}

    def label_index(self, label: Any) -> int:
        if isinstance(label, np.generic):
            label = label.item()
        try:
            return self._index[label]
        except (KeyError, TypeError):
            raise ConfigError(
                f"`label` must be one of the classes {self.classes} in mode='train', got {label!r}"
            ) from None

    def publish(self, steps: int) -> None:
        self.field.records["threshold"][self.field.n_inputs :] = self.thr
        self.guard._steps = steps
        self.guard._publish()


class GuardRuntime:
    """Worker threads serving a fitted guard classifier one document at a time.

    ``clf``: a :class:`TextGuardClassifier` (documents are ``str``/``bytes``) or a
    :class:`GuardClassifier` (a document is a one-row :class:`EventBatch` or an
    ``(indices, values)`` pair). ``mode``: "run" (a future per document resolves to its label,
    or ``(label, scores)`` with ``return_scores``) or "train" (``submit(doc, label)``; the
    future resolves to whether the document gave feedback). ``workers``: threads;
    ``batch_size``: the most documents one kernel call takes; ``latency_window``: latencies
    kept per worker for :meth:`stats`.
    """

    def __init__(
        self,
        clf: Any,
        *,
        workers: int = 1,
        mode: str = "run",
        batch_size: int = 32,
        return_scores: bool = False,
        latency_window: int = 100_000,
    ) -> None:
        check_instance("clf", clf, (TextGuardClassifier, GuardClassifier), "a guard classifier")
        self.workers = check_int("workers", workers, min_value=1, max_value=1024)
        self.mode = check_choice("mode", mode, MODES)
        self.batch_size = check_int("batch_size", batch_size, min_value=1)
        check_instance("return_scores", return_scores, bool, "True or False")
        if return_scores and mode == "train":
            raise ConfigError("`return_scores` needs mode='run' (trainer mode returns no scores)")
        self.return_scores = return_scores
        window = check_int("latency_window", latency_window, min_value=1)
        self.clf = clf
        self._guard = clf.guard if isinstance(clf, TextGuardClassifier) else clf
        self._task = self._make_task()
        self._train = _TrainState(self._guard) if mode == "train" else None
        self.refresh()
        step0 = self._train.step0 if self._train else 0
        self._steps = itertools.count(step0)  # next() is one C call: atomic under the GIL
        self._seq = itertools.count()  # submissions, for flush()
        self._flush_lock = threading.Lock()
        self._close_lock = threading.Lock()
        self._flushes = 0
        self._drained = 0
        self._closed = self._published = False
        self._t0: int | None = None
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._workers = [_Worker(window, step0) for _ in range(self.workers)]
        for i, w in enumerate(self._workers):
            w.thread = threading.Thread(
                target=self._work, args=(w,), name=f"guard-runtime-{i}", daemon=True
            )
            w.thread.start()
        log.debug("GuardRuntime started: mode=%s workers=%d", mode, self.workers)

    # ---------------------------------------------------------------- setup
    def _make_task(self) -> _TextTask | _EventTask:
        guard = self._guard
        if guard.params.backend == "reference":
            raise ConfigError(
                "GuardRuntime runs numba's serial GIL-free kernels, but the classifier asks "
                "for backend='reference'; use backend='auto' or 'numba'"
            )
        if guard.params.rule == "neuronguard" and self.mode == "train":
            raise ConfigError(
                "trainer mode needs a guard rule (pa1, pa2, perceptron), got 'neuronguard'"
            )
        if not hasattr(guard, "classes_"):
            raise NotFittedError(
                "GuardRuntime needs a fitted classifier: call fit() (or a first "
                "partial_fit(..., classes=...)) before starting it"
            )
        try:
            if isinstance(self.clf, TextGuardClassifier):
                if not hasattr(self.clf, "featurizer_"):
                    raise NotFittedError("this TextGuardClassifier is not fitted; call fit() first")
                return _TextTask(self.clf.featurizer_)
            return _EventTask(self._guard.n_features_in_)
        except ImportError as exc:
            raise BackendUnavailableError(
                f"GuardRuntime needs numba ({exc}); pip install numba"
            ) from exc

    def refresh(self) -> None:
        """Run mode: serve the classifier's current ``field_`` (e.g. after it was refitted or
        a trainer published); batches already taken finish with the previous one."""
        if self.mode == "run":
            field = self._guard._fitted()
            self._model = (field.kernel_args(), self._guard.classes_, field.n_outputs)

    # ---------------------------------------------------------------- submitting
    def submit(self, doc: Any, label: Any = None) -> Future:
        """Queue one document; the future resolves to its label (run mode; ``(label, scores)``
        with ``return_scores``) or, in trainer mode, to whether it gave feedback."""
        if self._closed:
            raise RuntimeClosedError(
                "this GuardRuntime is closed; submit before close() or start a new runtime"
            )
        payload = self._task.prepare(doc)
        if self.mode == "train":
            y = self._train.label_index(label)
        elif label is not None:
            raise ConfigError(f"`label` is only taken in mode='train', got {label!r} in run mode")
        else:
            y = -1
        fut: Future = Future()
        t = time.perf_counter_ns()
        if self._t0 is None:
            self._t0 = t
        next(self._seq)
        self._queue.put((payload, y, fut, t))
        return fut

    def map(
        self, docs: Iterable[Any], labels: Iterable[Any] | None = None, *, window: int | None = None
    ) -> Iterator[Any]:
        """Results in submission order (like ``Executor.map``), keeping at most ``window``
        documents in flight (default ``max(256, 4 * workers * batch_size)``)."""
        if window is None:
            window = max(256, 4 * self.workers * self.batch_size)
        window = check_int("window", window, min_value=1)
        if labels is None:
            pairs: Iterable = ((d, None) for d in docs)
        else:
            pairs = zip(docs, labels, strict=True)
        pending: deque[Future] = deque()
        try:
            for doc, label in pairs:
                pending.append(self.submit(doc, label))
                if len(pending) >= window:
                    yield pending.popleft().result()
        except ValueError as exc:
            if "zip()" in str(exc):
                raise ShapeError(f"`docs` and `labels` must have the same length ({exc})") from None
            raise
        while pending:
            yield pending.popleft().result()

    def predict_stream(self, docs: Iterable[Any]) -> list[Any]:
        """Run mode: the label of every document, in order (equal to ``clf.predict``)."""
        self._need("run", "predict_stream")
        return list(self.map(docs))

    def train_stream(self, docs: Iterable[Any], labels: Iterable[Any]) -> list[bool]:
        """Trainer mode: learn from every (document, label) in order; per document, whether
        it gave feedback. Call :meth:`publish` (or close) to use the result."""
        self._need("train", "train_stream")
        return list(self.map(docs, labels))

    def _need(self, mode: str, what: str) -> None:
        if self.mode != mode:
            raise ConfigError(f"`{what}` needs mode={mode!r}, this runtime has mode={self.mode!r}")

    # ---------------------------------------------------------------- workers
    def _work(self, w: _Worker) -> None:
        q, size = self._queue, self.batch_size
        while True:
            item = q.get()
            if item is _STOP:
                return
            batch, stop = [item], False
            while len(batch) < size:
                try:
                    item = q.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
            self._run_batch(w, batch)
            if stop:
                return

    def _run_batch(self, w: _Worker, batch: list) -> None:
        t0 = time.perf_counter_ns()
        live = [it for it in batch if it[2].set_running_or_notify_cancel()]
        try:
            if live:
                results, n_events, updates = self._compute(w, live)
                lat = np.empty(len(live), dtype=np.int64)
                for k, (it, res) in enumerate(zip(live, results, strict=True)):
                    it[2].set_result(res)
                    lat[k] = time.perf_counter_ns() - it[3]
                np.put(w.lat, np.arange(w.n_lat, w.n_lat + len(live)), lat, mode="wrap")
                w.n_lat += len(live)
                w.documents += len(live)
                w.events += n_events
                w.updates += updates
        except BaseException as exc:  # delivered to the futures, as concurrent.futures does
            log.debug("GuardRuntime batch of %d failed: %r", len(live), exc)
            for it in live:
                if not it[2].done():
                    it[2].set_exception(exc)
            w.errors += len(live)
        finally:
            w.batches += 1
            w.last_ns = time.perf_counter_ns()
            w.busy_ns += w.last_ns - t0
            w.done += len(batch)

    def _compute(self, w: _Worker, live: list) -> tuple[list, int, int]:
        payloads = [it[0] for it in live]
        if self._train is None:
            args, classes, n_out = self._model
            scores = np.empty((len(live) if self.return_scores else 0, n_out), np.float32)
            winners, n_events = self._task.predict(payloads, args, scores)
            labels = classes[winners].tolist()
            if self.return_scores:
                return list(zip(labels, scores, strict=True)), n_events, 0
            return labels, n_events, 0
        n = len(live)
        y = np.fromiter((it[1] for it in live), dtype=np.int64, count=n)
        steps = np.fromiter(itertools.islice(self._steps, n), dtype=np.int64, count=n)
        w.reserved = max(w.reserved, int(steps.max()) + 1)
        updated, n_events = self._task.train(payloads, y, steps, self._train.args)
        return updated.astype(bool).tolist(), n_events, int(updated.sum())

    # ---------------------------------------------------------------- flushing, closing
    def flush(self, timeout: float | None = None) -> None:
        """Wait until the documents submitted before this call have been processed (with
        several submitting threads: at least as many documents as were submitted)."""
        with self._flush_lock:
            target = next(self._seq) - self._flushes  # this call's number is no document
            self._flushes += 1
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 5e-5
        while sum(w.done for w in self._workers) + self._drained < target:
            if not any(w.thread.is_alive() for w in self._workers):
                break  # closed: what raced with close() is drained by close(wait=True)
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"flush: documents still pending after {timeout} s")
            time.sleep(pause)
            pause = min(2 * pause, 2e-3)

    def publish(self) -> Any:
        """Trainer mode: wait for the submitted documents, then make the (averaged) field
        the classifier's ``field_``; returns the classifier."""
        self._need("train", "publish")
        self.flush()
        steps = max(w.reserved for w in self._workers)
        self._train.publish(steps)
        return self.clf

    def close(self, wait: bool = True) -> None:
        """Stop taking documents; the workers finish what was queued. ``wait``: join them
        (and, in trainer mode, publish once)."""
        with self._close_lock:
            if not self._closed:
                self._closed = True
                for _ in self._workers:
                    self._queue.put(_STOP)
        if not wait:
            return
        for w in self._workers:
            w.thread.join()
        while True:  # documents that raced with close() landed after the STOPs
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                if item[2].set_running_or_notify_cancel():
                    item[2].set_exception(RuntimeClosedError("the runtime closed first"))
                self._drained += 1
        if self._train is not None and not self._published:
            self._published = True
            self.publish()

    def __enter__(self) -> GuardRuntime:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close(wait=True)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"GuardRuntime(mode={self.mode!r}, workers={self.workers}, batch_size={self.batch_size}, {state})"

    # ---------------------------------------------------------------- stats
    def stats(self) -> RuntimeStats:
        ws = self._workers
        docs = sum(w.documents for w in ws)
        events = sum(w.events for w in ws)
        last = max(w.last_ns for w in ws)
        wall = (last - self._t0) / 1e9 if self._t0 is not None and last > self._t0 else 0.0
        lat = np.concatenate([w.lat[: min(w.n_lat, len(w.lat))] for w in ws])
        p50, p99 = np.percentile(lat, [50, 99]) / 1e3 if len(lat) else (float("nan"),) * 2
        return RuntimeStats(
            mode=self.mode,
            workers=self.workers,
            batch_size=self.batch_size,
            documents=docs,
            events=events,
            batches=sum(w.batches for w in ws),
            updates=sum(w.updates for w in ws),
            errors=sum(w.errors for w in ws),
            busy_s=sum(w.busy_ns for w in ws) / 1e9,
            wall_s=wall,
            docs_per_s=docs / wall if wall > 0 else 0.0,
            events_per_s=events / wall if wall > 0 else 0.0,
            p50_us=float(p50),
            p99_us=float(p99),
            worker_documents=tuple(w.documents for w in ws),
        )
