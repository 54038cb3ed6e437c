"""Serial, GIL-free kernels for :class:`neurofabric.guard.runtime.GuardRuntime`.

The batch kernels of ``numba_cpu`` are ``parallel=True``: one call spreads one large batch
over numba's thread pool. A streaming runtime does the opposite: several Python threads each
run small batches (1 to a few dozen documents) side by side. Calling ``parallel=True``
functions from several Python threads at once is unsafe with numba's default (workqueue)
threading layer, and a thread pool per call would cost more than the work. So these kernels
are serial (no ``prange``) and ``nogil=True``: a worker drops the GIL for the whole batch,
featurizing, weighing and scoring (or training) in ONE call, and the workers' calls overlap.

Why new functions rather than ``njit(nogil=True, cache=True)(numba_cpu.f.py_func)``: numba
keys a function's cache by its source file, name and bytecode, not by its options, so a
re-wrapped ``py_func`` shares the parallel version's cache entry and loads the *parallel*
machine code from it (checked with numba 0.68: the "serial" copy started the OpenMP pool).
The per-document helpers of ``numba_cpu`` (``_doc_bound``, ``_doc_features``,
``_propagate``, ``_train_chunk``) are not parallel and are called directly, so the rules
and the arithmetic are those of the batch API; what is copied here is only the serial form
of ``text_features``' de-duplication and of ``weigh_rows``, with the same expressions (the
same numba types, hence bit-identical events; the runtime tests check it).

Caching across files: numba checks only the defining file when it decides whether a cached
kernel is fresh, but these kernels inline code from ``numba_cpu.py`` and ``common.py``. A
cache locator registered below for this file alone adds the contents of those two files to
the freshness stamp, so editing them recompiles these kernels instead of loading stale code.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
from numba import njit

from neurofabric.guard.kernels import numba_cpu as _nc

log = logging.getLogger(__name__)

_HERE = Path(__file__).resolve()
_DEPENDENCIES = (_HERE.with_name("numba_cpu.py"), _HERE.with_name("common.py"))


def _dependency_stamp() -> str:
    """A hash of the sources these kernels inline (part of their cache freshness stamp)."""
    h = hashlib.sha256()
    for path in _DEPENDENCIES:
        h.update(path.read_bytes() if path.exists() else b"")
    return h.hexdigest()


def _register_cache_locators() -> None:
    """Numba cache locators for this file whose stamp also covers ``_DEPENDENCIES``.

    Uses numba's (private) locator list; if it moves, caching falls back to numba's own
    per-file stamp and a debug message says so."""
    try:
        from numba.core import caching

        bases = (caching.UserProvidedCacheLocator, caching.InTreeCacheLocator)
        registry = caching.CacheImpl._locator_classes
    except (ImportError, AttributeError) as exc:  # pragma: no cover - numba internals moved
        log.debug("stream kernels: dependency-aware cache stamps unavailable (%s)", exc)
        return

    class _Dependent:
        @classmethod
        def from_function(cls, py_func, py_file):
            if Path(py_file).resolve() != _HERE:
                return None
            return super().from_function(py_func, py_file)

        def get_source_stamp(self):
            return (super().get_source_stamp(), _dependency_stamp())

    names = {c.__name__ for c in registry}
    new = [type(f"GuardStream{b.__name__}", (_Dependent, b), {}) for b in bases]
    registry[:0] = [c for c in new if c.__name__ not in names]


_register_cache_locators()


@njit(cache=True)
def _text_counts(buf, offsets, n_features, word_ngrams, minn, maxn, remap):
    """``numba_cpu.text_features`` run serially, on the same per-document helpers: CSR
    (indptr, unique indices, counts).

    ``remap`` (empty: none) renumbers hashed ids as ``TextFeaturizer.select`` does for a
    compressed model: ``remap[f]`` is the kept input of hashed id f, or -1 (dropped)."""
    n_docs = offsets.shape[0] - 1
    bound = np.zeros(n_docs + 1, dtype=np.int64)
    for d in range(n_docs):
        bound[d + 1] = _nc._doc_bound(buf, offsets[d], offsets[d + 1], word_ngrams, minn, maxn)
    bound = np.cumsum(bound)
    raw = np.empty(bound[-1], dtype=np.int64)
    counts_raw = np.empty(bound[-1], dtype=np.float32)
    n_unique = np.zeros(n_docs + 1, dtype=np.int64)
    for d in range(n_docs):
        a = bound[d]
        b = _nc._doc_features(
            buf, offsets[d], offsets[d + 1], word_ngrams, minn, maxn, n_features, raw, a
        )
        n_unique[d + 1] = _nc._dedupe_doc(raw, counts_raw, a, b, remap)
    indptr = np.cumsum(n_unique)
    indices = np.empty(indptr[-1], dtype=np.int32)
    counts = np.empty(indptr[-1], dtype=np.float32)
    for d in range(n_docs):
        n = indptr[d + 1] - indptr[d]
        _nc._gather_doc(raw, counts_raw, bound[d], indptr[d], n, indices, counts)
    return indptr, indices, counts


@njit(cache=True)
def _weigh(indptr, indices, counts, idf, sublinear, binary, normalize):
    """``numba_cpu.weigh_rows`` run serially (the same helper, so the same float32s)."""
    values = np.empty(counts.shape[0], dtype=np.float32)
    for d in range(indptr.shape[0] - 1):
        _nc._weigh_doc(indptr, indices, counts, idf, sublinear, binary, normalize, values, d)
    return values


@njit(nogil=True, cache=True)
def text_events(
    buf, offsets, n_features, word_ngrams, minn, maxn, remap, idf, sublinear, binary, norm
):
    """Events (indptr, indices, values) of a few documents: ``TextFeaturizer.transform``."""
    xp, xi, counts = _text_counts(buf, offsets, n_features, word_ngrams, minn, maxn, remap)
    return xp, xi, _weigh(xp, xi, counts, idf, sublinear, binary, norm)


@njit(cache=True)
def _predict_rows(records, indptr, outputs, weights, n_inputs, xp, xi, xv, scores):
    """Winners of each sample (``field_predict``); also the scores (``field_forward``) into
    ``scores`` when it has a row per sample (pass zero rows to skip them)."""
    n = xp.shape[0] - 1
    n_out = records.shape[0] - n_inputs
    keep = scores.shape[0] == n
    winners = np.empty(n, dtype=np.int64)
    thr_out = np.empty(n_out, dtype=np.float32)
    for c in range(n_out):
        thr_out[c] = records[n_inputs + c].threshold
    pot = np.empty(n_out, dtype=np.float32)
    for i in range(n):
        pot[:] = 0.0
        _nc._propagate(records, indptr, outputs, weights, n_inputs, xi, xv, xp[i], xp[i + 1], pot)
        best = 0
        bs = pot[0] - thr_out[0]
        for c in range(1, n_out):
            sc = pot[c] - thr_out[c]
            if sc > bs:
                bs = sc
                best = c
        winners[i] = best
        if keep:
            for c in range(n_out):
                scores[i, c] = pot[c] - thr_out[c]
    return winners


@njit(nogil=True, cache=True)
def events_predict(records, indptr, outputs, weights, n_inputs, xp, xi, xv, scores):
    """Run mode on events: the winner of each sample (and its scores, see ``_predict_rows``)."""
    return _predict_rows(records, indptr, outputs, weights, n_inputs, xp, xi, xv, scores)


@njit(nogil=True, cache=True)
def text_predict(
    buf,
    offsets,
    n_features,
    word_ngrams,
    minn,
    maxn,
    remap,
    idf,
    sublinear,
    binary,
    norm,
    records,
    indptr,
    outputs,
    weights,
    n_inputs,
    scores,
):
    """Run mode on raw documents, in one GIL-free call: tokenize, hash, weigh, propagate.

    Returns (winner of each document, number of events)."""
    xp, xi, xv = text_events(
        buf, offsets, n_features, word_ngrams, minn, maxn, remap, idf, sublinear, binary, norm
    )
    winners = _predict_rows(records, indptr, outputs, weights, n_inputs, xp, xi, xv, scores)
    return winners, xp[-1]


@njit(cache=True)
def _train_rows(W, thr, U, thr_u, thr_in, xp, xi, xv, y, steps, rule, lr, margin, aggr, average):
    """``numba_cpu._train_chunk`` once per sample, sample i at global step ``steps[i]``
    (``U += (steps[i] + 1) * delta``, as the batch rule's ``cnt``). Returns 1 per sample
    that gave feedback (its margin was violated), else 0."""
    n = xp.shape[0] - 1
    order = np.arange(n)
    updated = np.zeros(n, dtype=np.uint8)
    no_tracking = np.zeros(0, dtype=np.uint32)  # rows touched: only parameter mixing needs them
    for i in range(n):
        updated[i] = _nc._train_chunk(
            W,
            thr,
            U,
            thr_u,
            thr_in,
            xp,
            xi,
            xv,
            y,
            order,
            i,
            i + 1,
            steps[i],
            rule,
            lr,
            margin,
            aggr,
            average,
            1,
            0,
            no_tracking,
        )
    return updated


@njit(nogil=True, cache=True)
def events_train(W, thr, U, thr_u, thr_in, xp, xi, xv, y, steps, rule, lr, margin, aggr, average):
    """Trainer mode on events: the guard rule on each sample in order, lock-free (Hogwild)
    on the shared ``W``, ``thr``, ``U``, ``thr_u``; see ``_train_rows``."""
    return _train_rows(
        W, thr, U, thr_u, thr_in, xp, xi, xv, y, steps, rule, lr, margin, aggr, average
    )


@njit(nogil=True, cache=True)
def text_train(
    buf,
    offsets,
    n_features,
    word_ngrams,
    minn,
    maxn,
    remap,
    idf,
    sublinear,
    binary,
    norm,
    W,
    thr,
    U,
    thr_u,
    thr_in,
    y,
    steps,
    rule,
    lr,
    margin,
    aggr,
    average,
):
    """Trainer mode on raw documents in one GIL-free call: featurize, then ``_train_rows``.

    Returns (1/0 per document: it gave feedback, number of events)."""
    xp, xi, xv = text_events(
        buf, offsets, n_features, word_ngrams, minn, maxn, remap, idf, sublinear, binary, norm
    )
    updated = _train_rows(
        W, thr, U, thr_u, thr_in, xp, xi, xv, y, steps, rule, lr, margin, aggr, average
    )
    return updated, xp[-1]
