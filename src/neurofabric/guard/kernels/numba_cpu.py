"""Numba kernels of the event-driven classifier; the same names and results as ``reference``.

``text_features`` tokenizes and hashes documents in parallel (one document per task).
``field_forward`` propagates each sample's events through the field (parallel over samples,
run mode: nothing is written). ``guard_train`` is one epoch of the guard rule: chunks of the
sample order run in parallel without locks (Hogwild); with one chunk it is sequential and
bit-identical for a seed. ``neuronguard_train`` is the proof of concept's rule.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numba import njit, prange

from neurofabric.core import numba_intrinsics
from neurofabric.core.numba_cache import drop_stale_cache
from neurofabric.core.numba_intrinsics import prefetch
from neurofabric.guard.kernels.common import (
    BREAK_BYTES,
    CHAR_CLASS,
    CHAR_SALT,
    DELETED,
    FANOUT,
    FNV_OFFSET,
    FNV_PRIME,
    LOWER,
    MIX_CHANGED,
    MIX_MEAN,
    NGRAM_MULT,
    PA1,
    PERCEPTRON,
    SEPARATOR,
    SINGLE,
    WORD,
)

# a change to a compiled file of the package (or to the intrinsics) drops its cached kernels
drop_stale_cache(
    Path(__file__).parent,
    frozenset({"__init__.py", "reference.py"}),
    also=(Path(numba_intrinsics.__file__),),
)

_U33 = np.uint64(33)
_M1 = np.uint64(0xFF51AFD7ED558CCD)
_M2 = np.uint64(0xC4CEB9FE1A85EC53)
_FNV_OFFSET = np.uint64(FNV_OFFSET)
_FNV_PRIME = np.uint64(FNV_PRIME)
_NGRAM_MULT = np.uint64(NGRAM_MULT)
_CHAR_SALT = np.uint64(CHAR_SALT)
_FANOUT = np.uint32(FANOUT)


@njit(cache=True, inline="always")
def _fmix64(k):
    k ^= k >> _U33
    k *= _M1
    k ^= k >> _U33
    k *= _M2
    k ^= k >> _U33
    return k


@njit(cache=True, inline="always")
def _fnv(scratch, start, stop):
    h = _FNV_OFFSET
    for i in range(start, stop):
        h ^= np.uint64(scratch[i])
        h *= _FNV_PRIME
    return h


@njit(cache=True, inline="always")
def _is_break(buf, pos, stop):
    n = BREAK_BYTES.shape[0]
    if pos + n > stop:
        return False
    for k in range(n):
        if buf[pos + k] != BREAK_BYTES[k]:
            return False
    return True


@njit(cache=True)
def _next_token(buf, pos, stop, scratch):
    """Advance past separators, copy the next token (lower-cased) into ``scratch``.

    Returns (position after the token, its length); length 0 at the end of the document.
    """
    while pos < stop:
        b = buf[pos]
        kind = CHAR_CLASS[b]
        if kind == WORD and b == 60 and _is_break(buf, pos, stop):  # "<br />"
            pos += BREAK_BYTES.shape[0]
        elif kind == SEPARATOR or kind == DELETED:
            pos += 1
        else:
            break
    if pos >= stop:
        return stop, 0
    b = buf[pos]
    if CHAR_CLASS[b] == SINGLE:
        scratch[0] = b
        return pos + 1, 1
    n = 0
    while pos < stop:
        b = buf[pos]
        kind = CHAR_CLASS[b]
        if kind == DELETED:
            pos += 1
            continue
        if kind != WORD or (b == 60 and _is_break(buf, pos, stop)):
            break
        scratch[n] = LOWER[b]
        n += 1
        pos += 1
    return pos, n


@njit(cache=True)
def _doc_bound(buf, start, stop, word_ngrams, minn, maxn):
    """An upper bound on the features a document emits (token and byte counts)."""
    scratch = np.empty(stop - start + 2, dtype=np.uint8)
    pos = start
    tokens = 0
    nbytes = 0
    while True:
        pos, n = _next_token(buf, pos, stop, scratch)
        if n == 0:
            break
        tokens += 1
        nbytes += n
    bound = tokens * word_ngrams
    if minn > 0:
        bound += (nbytes + 2 * tokens) * (maxn - minn + 1)
    return bound


@njit(cache=True)
def _emit_chars(scratch, n, minn, maxn, n_features, out, k):
    """Character n-grams of "<token>" (UTF-8 aware, as fastText's computeSubwords)."""
    # scratch[1 : n + 1] holds the token; brackets go around it
    scratch[0] = 60  # "<"
    scratch[n + 1] = 62  # ">"
    size = n + 2
    for i in range(size):
        if (scratch[i] & 0xC0) == 0x80:
            continue
        j = i
        for length in range(1, maxn + 1):
            if j >= size:
                break
            j += 1
            while j < size and (scratch[j] & 0xC0) == 0x80:
                j += 1
            if length >= minn and not (length == 1 and (i == 0 or j == size)):
                h = _fnv(scratch, i, j) ^ _CHAR_SALT
                out[k] = np.int64(_fmix64(h) % np.uint64(n_features))
                k += 1
    return k


@njit(cache=True)
def _doc_features(buf, start, stop, word_ngrams, minn, maxn, n_features, out, k0):
    scratch = np.empty(stop - start + 3, dtype=np.uint8)
    ring = np.zeros(max(word_ngrams, 1), dtype=np.uint64)
    pos = start
    k = k0
    t = 0
    nf = np.uint64(n_features)
    while True:
        pos, n = _next_token(buf, pos, stop, scratch[1:])
        if n == 0:
            break
        h = _fnv(scratch, 1, n + 1)
        out[k] = np.int64(_fmix64(h) % nf)
        k += 1
        ring[t % word_ngrams] = h
        for length in range(2, word_ngrams + 1):
            if length > t + 1:
                break
            g = ring[(t - length + 1) % word_ngrams]
            for j in range(t - length + 2, t + 1):
                g = g * _NGRAM_MULT + ring[j % word_ngrams]
            out[k] = np.int64(_fmix64(g) % nf)
            k += 1
        if minn > 0:
            k = _emit_chars(scratch, n, minn, maxn, n_features, out, k)
        t += 1
    return k


@njit(cache=True)
def _dedupe_doc(raw, counts_raw, a, b, remap):
    """The distinct features of ``raw[a:b]``, in first-arrival order, written back from ``a``
    with their counts in ``counts_raw``; returns how many. ``remap`` (empty: none) renumbers
    them first, dropping those it maps to -1 (a compressed model's kept inputs)."""
    if b == a:
        return 0
    has_map = remap.shape[0] > 0
    size = 16
    while size < 2 * (b - a):
        size *= 2
    slot_of = np.full(size, -1, dtype=np.int64)  # open addressing
    u = a
    for i in range(a, b):
        f = raw[i]
        if has_map:
            f = remap[f]
            if f < 0:
                continue
        h = f & (size - 1)
        while slot_of[h] >= 0 and raw[slot_of[h]] != f:
            h = (h + 1) & (size - 1)
        if slot_of[h] >= 0:
            counts_raw[slot_of[h]] += 1.0
        else:
            raw[u] = f
            counts_raw[u] = 1.0
            slot_of[h] = u
            u += 1
    return u - a


@njit(cache=True)
def _gather_doc(raw, counts_raw, a, o, n, indices, counts):
    """Copy a document's ``n`` distinct features from ``raw[a:]`` to the CSR at ``o``."""
    for i in range(n):
        indices[o + i] = raw[a + i]
        counts[o + i] = counts_raw[a + i]


@njit(cache=True, parallel=True)
def text_features(buf, offsets, n_features, word_ngrams, minn, maxn):
    """Hashed features of each document: CSR (indptr, unique indices in first-arrival order, counts)."""
    n_docs = offsets.shape[0] - 1
    bound = np.zeros(n_docs + 1, dtype=np.int64)
    for d in prange(n_docs):
        bound[d + 1] = _doc_bound(buf, offsets[d], offsets[d + 1], word_ngrams, minn, maxn)
    bound = np.cumsum(bound)
    raw = np.empty(bound[-1], dtype=np.int64)
    counts_raw = np.empty(bound[-1], dtype=np.float32)
    n_unique = np.zeros(n_docs + 1, dtype=np.int64)
    no_map = np.zeros(0, dtype=np.int64)
    for d in prange(n_docs):
        a = bound[d]
        b = _doc_features(
            buf, offsets[d], offsets[d + 1], word_ngrams, minn, maxn, n_features, raw, a
        )
        n_unique[d + 1] = _dedupe_doc(raw, counts_raw, a, b, no_map)
    indptr = np.cumsum(n_unique)
    indices = np.empty(indptr[-1], dtype=np.int32)
    counts = np.empty(indptr[-1], dtype=np.float32)
    for d in prange(n_docs):
        _gather_doc(
            raw, counts_raw, bound[d], indptr[d], indptr[d + 1] - indptr[d], indices, counts
        )
    return indptr, indices, counts


@njit(cache=True, parallel=True)
def document_frequency(indptr, indices, n_features):
    """How many documents hold each feature (indices are unique within a document)."""
    df = np.zeros(n_features, dtype=np.int64)
    for k in range(indices.shape[0]):
        df[indices[k]] += 1
    return df


@njit(cache=True)
def _weigh_doc(indptr, indices, counts, idf, sublinear, binary, normalize, values, d):
    """Event magnitudes of document ``d``: tf (or 1 + log tf, or 1) times idf, scaled to unit
    L2 norm."""
    ss = 0.0
    for k in range(indptr[d], indptr[d + 1]):
        c = counts[k]
        if binary:
            v = 1.0
        elif sublinear:
            v = 1.0 + np.log(c)
        else:
            v = c
        v *= idf[indices[k]]
        values[k] = v
        ss += v * v
    if normalize and ss > 0.0:
        inv = 1.0 / np.sqrt(ss)
        for k in range(indptr[d], indptr[d + 1]):
            values[k] = values[k] * inv


@njit(cache=True, parallel=True)
def weigh_rows(indptr, indices, counts, idf, sublinear, binary, normalize):
    """Event magnitudes: tf (or 1 + log tf, or 1) times idf, each row scaled to unit L2 norm."""
    values = np.empty(counts.shape[0], dtype=np.float32)
    for d in prange(indptr.shape[0] - 1):
        _weigh_doc(indptr, indices, counts, idf, sublinear, binary, normalize, values, d)
    return values


@njit(cache=True, inline="always")
def _propagate(records, indptr, outputs, weights, n_inputs, xi, xv, a, b, pot):
    """Events of one sample into the output potentials ``pot`` (a neuron fires above threshold).

    One 16-byte record holds what an event needs (threshold, target, weight): a single cache
    line per event, plus the CSR row of a fan-out neuron. ``outputs`` are the CSR targets as
    output indices (target - n_inputs) in the smallest unsigned type, ``indptr`` int32 when it
    fits: a smaller working set, about 40 % more documents per second on 20 Newsgroups.
    """
    n_out = pot.shape[0]
    for k in range(a, b):
        f = xi[k]
        v = xv[k]
        rec = records[f]
        if v <= rec.threshold:
            continue
        t = rec.target
        if t == _FANOUT:
            for s in range(indptr[f], indptr[f + 1]):
                pot[outputs[s]] += weights[s] * v
        elif t < n_inputs + n_out and t >= n_inputs:
            pot[t - n_inputs] += rec.weight * v


@njit(cache=True, parallel=True)
def field_forward(records, indptr, outputs, weights, n_inputs, xp, xi, xv):
    """Output scores (potential minus threshold) of every sample; the field is not written."""
    n = xp.shape[0] - 1
    n_out = records.shape[0] - n_inputs
    scores = np.empty((n, n_out), dtype=np.float32)
    for i in prange(n):
        pot = np.zeros(n_out, dtype=np.float32)
        _propagate(records, indptr, outputs, weights, n_inputs, xi, xv, xp[i], xp[i + 1], pot)
        for c in range(n_out):
            scores[i, c] = pot[c] - records[n_inputs + c].threshold
    return scores


@njit(cache=True, parallel=True)
def field_predict(records, indptr, outputs, weights, n_inputs, xp, xi, xv):
    """The winning output neuron of every sample (first on ties); the field is not written."""
    n = xp.shape[0] - 1
    n_out = records.shape[0] - n_inputs
    winners = np.empty(n, dtype=np.int64)
    thr_out = np.empty(n_out, dtype=np.float32)
    for c in range(n_out):
        thr_out[c] = records[n_inputs + c].threshold
    n_chunks = min(n, 64)
    for ch in prange(n_chunks):
        pot = np.empty(n_out, dtype=np.float32)
        for i in range(ch * n // n_chunks, (ch + 1) * n // n_chunks):
            pot[:] = 0.0
            _propagate(records, indptr, outputs, weights, n_inputs, xi, xv, xp[i], xp[i + 1], pot)
            best = 0
            bs = pot[0] - thr_out[0]
            for c in range(1, n_out):
                sc = pot[c] - thr_out[c]
                if sc > bs:
                    bs = sc
                    best = c
            winners[i] = best
    return winners


@njit(cache=True)
def _train_chunk(
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
    lo,
    hi,
    step0,
    rule,
    lr,
    margin,
    aggressiveness,
    average,
    stride,
    phase,
    touched,
):
    n_out = W.shape[1]
    track = touched.shape[0] > 0
    scores = np.empty(n_out, dtype=np.float64)
    updates = 0
    for t in range(lo, hi):
        i = order[t]
        a = xp[i]
        b = xp[i + 1]
        if t + 1 < hi:  # the next sample's weight rows: random rows, beyond the caches
            nxt = order[t + 1]
            for k in range(xp[nxt], xp[nxt + 1]):
                prefetch(W, xi[k], 0)
                prefetch(W, xi[k], n_out - 1)
        for c in range(n_out):
            scores[c] = -thr[c]
        sq = 1.0  # the threshold acts as a bias on a constant input of 1
        for k in range(a, b):
            v = xv[k]
            if v <= thr_in[xi[k]]:
                continue
            f = xi[k]
            sq += v * v
            for c in range(n_out):
                scores[c] += W[f, c] * v
        yi = y[i]
        p = -1
        best = -np.inf
        for c in range(n_out):
            if c != yi and scores[c] > best:
                best = scores[c]
                p = c
        m = scores[yi] - best
        if rule == PERCEPTRON:
            if m > margin:
                continue
            tau = lr
        else:
            loss = margin - m
            if loss <= 0.0:
                continue
            if rule == PA1:
                tau = min(aggressiveness, loss / (2.0 * sq))
            else:
                tau = loss / (2.0 * sq + 0.5 / aggressiveness)
        updates += 1
        # chunks run side by side: step k of chunk ch happens at time k * n_chunks + ch
        cnt = float(step0 + (t - lo) * stride + phase + 1)
        # the columns this update moves, as bits (column c is bit c mod 32)
        bits = (np.uint32(1) << np.uint32(yi % 32)) | (np.uint32(1) << np.uint32(p % 32))
        for k in range(a, b):
            v = xv[k]
            f = xi[k]
            if v <= thr_in[f]:
                continue
            d = tau * v
            if track:
                touched[f] |= bits
            W[f, yi] += d
            W[f, p] -= d
            if average:
                U[f, yi] += cnt * d
                U[f, p] -= cnt * d
        thr[yi] -= tau
        thr[p] += tau
        if track:  # the thresholds' bits after the rows'
            touched[touched.shape[0] - 1] |= bits
        if average:
            thr_u[yi] -= cnt * tau
            thr_u[p] += cnt * tau
    return updates


@njit(cache=True, parallel=True)
def guard_train(
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
    step0,
    rule,
    lr,
    margin,
    aggressiveness,
    average,
    n_chunks,
):
    """One epoch of the guard rule over ``order``; returns how many samples gave feedback.

    For each sample the fired inputs (magnitude above their threshold) raise the output
    potentials; with the correct output y and the strongest wrong one p, margin m = s_y - s_p.
    Feedback travels back only along the synapses that carried events: W[f, y] += tau x_f,
    W[f, p] -= tau x_f, and the output thresholds move by -/+ tau. tau is ``lr`` for the
    perceptron (when m <= margin), min(C, loss / (2 |x|^2)) for PA-I and
    loss / (2 |x|^2 + 1 / (2 C)) for PA-II (loss = margin - m > 0). With ``average`` the
    step-weighted sums of Daume's averaged-perceptron trick are kept in U and thr_u.
    """
    n = order.shape[0]
    total = np.zeros(n_chunks, dtype=np.int64)
    no_tracking = np.zeros(0, dtype=np.uint32)
    for ch in prange(n_chunks):
        lo = ch * n // n_chunks
        hi = (ch + 1) * n // n_chunks
        total[ch] = _train_chunk(
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
            lo,
            hi,
            step0,
            rule,
            lr,
            margin,
            aggressiveness,
            average,
            n_chunks,
            ch,
            no_tracking,
        )
    return total.sum()


@njit(cache=True, parallel=True)
def guard_train_mixed(
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
    step0,
    rule,
    lr,
    margin,
    aggressiveness,
    average,
    rounds,
    mix,
    Wk,
    thrk,
    Uk,
    thr_uk,
    touched,
):
    """One epoch of the guard rule on K threads by iterative parameter mixing.

    ``order`` is cut into K contiguous shards, one per thread, and each shard into ``rounds``
    slices. In a round every thread trains its own copy ``Wk[k]`` (which starts equal to the
    shared W) on its slice, with no shared writes; then the copies are mixed and every copy is
    reset to W (McDonald et al. 2010, iterative parameter mixing). ``mix`` says how W moves
    (``MIX_MEAN``, ``MIX_SUM``, ``MIX_CHANGED``): by the mean of the threads' changes D_k (the
    perceptron's convergence bound holds for it), by their sum, or weight by weight by the
    mean change of the threads that moved that weight (h of them: the sum where one thread
    alone moved it, the mean where all did; a thread moves weight (f, c) when an update of
    its writes there, as ``touched[k, f]`` records in bit c mod 32, a superset beyond 32
    outputs; a change that rounds back to zero still counts, a count no float noise sways). Only rows some thread touched are mixed; a row
    one thread alone touched is, under sum and changed mixing, that thread's row (the others
    changed it by zero), copied as it is.

    The average is over every weight state any thread visited (plus the initial one), as in
    the averaged perceptron, kept in Daumé's form avg = W - U_total / (G + 1) after G samples.
    Thread k's states in a round sum to n_k W0 + (n_k + 1) D_k - sum_t t delta_t (local steps
    t = 1..n_k), and the mix moves W by M = s sum_k D_k (s = 1/K for the mean, 1 for the sum);
    carrying that through, U_total grows by sum_k sum_t (t + (1 + G_after) s - n_k - 1)
    delta_t, where G_after counts the samples seen once the round is over. Each term belongs
    to one thread, and n_k and G_after are known before the round starts, so thread k adds its
    own terms to its own ``Uk[k]`` (``thr_uk[k]``) while it trains and nothing of U is mixed:
    U_total is ``U + Uk.sum(0)`` (``thr_u + thr_uk.sum(0)``). Changed mixing trains with s = 1
    and, where a weight's scale 1/h is not 1, adds (1 + G_after) (1/h - 1) sum_k D_k to
    ``Uk[0]`` at the mix: the term is linear in s, weight by weight. With one thread the step
    weight is the sequential kernel's global step number. Results do not depend on thread timing.

    ``touched`` is ``(K, D + 1)``, its last column the thresholds' bits. On entry ``Wk[k]``
    equals W and ``thrk[k]`` equals thr, and ``touched`` is zero; they are left that way. ``Uk`` and ``thr_uk`` accumulate across calls (start them at zero).
    """
    n = order.shape[0]
    K = Wk.shape[0]
    D, C = W.shape
    total = np.zeros(K, dtype=np.int64)
    scale = 1.0 / K if mix == MIX_MEAN else 1.0  # the scale the threads' step weights assume
    copy_single = mix != MIX_MEAN  # a row one thread alone touched is that thread's
    G = step0
    sizes = np.zeros(K, dtype=np.int64)
    lows = np.zeros(K, dtype=np.int64)
    n_blocks = min(D, 256)
    accs = np.empty((n_blocks, C), dtype=np.float64)  # each block's float64 row sum
    masks = np.empty((n_blocks, K), dtype=np.uint32)  # each block's row of touched bits
    for r in range(rounds):
        for k in range(K):
            lo_k = k * n // K
            hi_k = (k + 1) * n // K
            lows[k] = lo_k + r * (hi_k - lo_k) // rounds
            sizes[k] = lo_k + (r + 1) * (hi_k - lo_k) // rounds - lows[k]
        G_after = G + sizes.sum()
        for k in prange(K):
            total[k] += _train_chunk(
                Wk[k],
                thrk[k],
                Uk[k],
                thr_uk[k],
                thr_in,
                xp,
                xi,
                xv,
                y,
                order,
                lows[k],
                lows[k] + sizes[k],
                (1.0 + G_after) * scale - sizes[k] - 1.0,
                rule,
                lr,
                margin,
                aggressiveness,
                average,
                1,
                0,
                touched[k],
            )
        for b in prange(n_blocks):  # rows in memory order (the hardware prefetcher streams)
            acc = accs[b]
            mask = masks[b]
            for f in range(b * D // n_blocks, (b + 1) * D // n_blocks):
                hits = 0
                who = 0
                for k in range(K):
                    mask[k] = touched[k, f]
                    if mask[k]:
                        hits += 1
                        who = k
                        touched[k, f] = 0
                if hits == 0:
                    continue
                w = W[f]
                if hits == 1 and copy_single:  # the others' change is zero: the row is who's
                    src = Wk[who, f]
                    for c in range(C):
                        w[c] = src[c]
                else:  # sum_k (Wk - w0) = sum_k Wk - K w0, in float64; c innermost
                    for c in range(C):
                        acc[c] = -K * float(w[c])
                    for k in range(K):
                        src = Wk[k, f]
                        for c in range(C):
                            acc[c] += src[c]
                    if mix == MIX_CHANGED:  # each weight: over the threads that moved it
                        u = Uk[0, f if average else 0]  # (without averaging Uk has one row)
                        for c in range(C):
                            moved = 0
                            for k in range(K):
                                moved += int((mask[k] >> np.uint32(c % 32)) & np.uint32(1))
                            s_c = 1.0 / max(moved, 1)
                            if average:
                                u[c] += (1.0 + G_after) * (s_c - scale) * acc[c]
                            w[c] = np.float32(w[c] + acc[c] * s_c)
                    else:
                        for c in range(C):
                            w[c] = np.float32(w[c] + acc[c] * scale)
                for k in range(K):
                    dst = Wk[k, f]
                    for c in range(C):
                        dst[c] = w[c]
        for c in range(C):
            t0 = float(thr[c])
            m = 0.0
            thr_moved = 0  # (not ``moved``: a name the prange above assigns to)
            for k in range(K):
                m += float(thrk[k, c]) - t0
                thr_moved += int((touched[k, D] >> np.uint32(c % 32)) & np.uint32(1))
            s_t = 1.0 / max(thr_moved, 1) if mix == MIX_CHANGED else scale
            thr[c] = np.float32(t0 + m * s_t)
            if average:
                thr_uk[0, c] += (1.0 + G_after) * (s_t - scale) * m
            for k in range(K):
                thrk[k, c] = thr[c]
        for k in range(K):
            touched[k, D] = 0
        G = G_after
    return total.sum()


@njit(cache=True, inline="always")
def _averaged(W, U, Uk, c, average, f, j):
    """Weight (f, j) of the published field: W - (U + sum_k Uk[k]) / c with averaging."""
    if not average:
        return W[f, j]
    s = 0.0
    for k in range(Uk.shape[0]):
        s += Uk[k, f, j]
    return np.float32(float(W[f, j]) - (U[f, j] + s) / c)


@njit(cache=True, parallel=True)
def average_compact(W, U, Uk, c, average, tol, rows):
    """The published field of a dense training state in one pass per row, what averaging
    (``W - U_total / c``, U_total = U + sum_k Uk[k]) then ``NeuronField.compact(tol)`` give.
    Input f's weights are training row ``rows[f]`` of W, U and Uk (the training state keeps
    its rows in its own order).

    Returns per input the number of kept synapses (|w| > tol), the output and weight of the
    single ones, and the CSR (row pointer over the inputs, outputs, weights) of the inputs
    that keep two or more."""
    D = rows.shape[0]
    C = W.shape[1]
    per_row = np.zeros(D, dtype=np.int64)
    single_col = np.zeros(D, dtype=np.int64)
    single_w = np.zeros(D, dtype=np.float32)
    for f in prange(D):
        n = 0
        for j in range(C):
            w = _averaged(W, U, Uk, c, average, rows[f], j)
            if abs(w) > tol:
                if n == 0:
                    single_col[f] = j
                    single_w[f] = w
                n += 1
        per_row[f] = n
    counts = np.where(per_row >= 2, per_row, 0)
    indptr = np.zeros(D + 1, dtype=np.int64)
    indptr[1:] = np.cumsum(counts)
    cols = np.empty(indptr[D], dtype=np.uint32)
    weights = np.empty(indptr[D], dtype=np.float32)
    for f in prange(D):
        if per_row[f] < 2:
            if per_row[f] == 0:
                single_w[f] = 0.0
            continue
        o = indptr[f]
        single_w[f] = 0.0
        for j in range(C):
            w = _averaged(W, U, Uk, c, average, rows[f], j)
            if abs(w) > tol:
                cols[o] = j
                weights[o] = w
                o += 1
    return per_row, single_col, single_w, indptr, cols, weights


@njit(cache=True)
def neuronguard_train(
    targets, syn_weights, thresholds, n_inputs, xp, xi, xv, y, order, plus, minus, floor
):
    """The proof of concept's rule on single-target neurons (sequential, as it was).

    Each fired word neuron sends its weight to the one class it is wired to; the winner is the
    largest potential. Correct: every fired synapse into the correct class gains ``plus``;
    wrong: every fired synapse into the wrong winner loses ``minus``. A synapse takes feedback
    only while its weight is >= ``floor``.
    """
    n_out = thresholds.shape[0] - n_inputs
    pot = np.empty(n_out, dtype=np.float64)
    mistakes = 0
    for t in range(order.shape[0]):
        i = order[t]
        pot[:] = 0.0
        for k in range(xp[i], xp[i + 1]):
            f = xi[k]
            if xv[k] <= thresholds[f] or targets[f] >= n_inputs + n_out or targets[f] < n_inputs:
                continue
            pot[targets[f] - n_inputs] += syn_weights[f] * xv[k]
        best = 0
        for c in range(1, n_out):
            if pot[c] - thresholds[n_inputs + c] > pot[best] - thresholds[n_inputs + best]:
                best = c
        yi = y[i]
        if best != yi:
            mistakes += 1
        for k in range(xp[i], xp[i + 1]):
            f = xi[k]
            if xv[k] <= thresholds[f] or syn_weights[f] < floor:
                continue
            if best == yi and targets[f] == n_inputs + yi:
                syn_weights[f] += plus
            elif best != yi and targets[f] == n_inputs + best:
                syn_weights[f] -= minus
    return mistakes
