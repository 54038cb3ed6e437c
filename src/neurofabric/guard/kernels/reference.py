"""Reference kernels of the event-driven classifier: plain Python and numpy, the spec.

Text, as fastText's ``classification-example.sh`` normalizes it, byte by byte on UTF-8:
``<br />`` becomes a space (we do this first), ``"`` is deleted, ``' . , ( ) ! ?`` become
tokens of their own, ``;`` and ``:`` become spaces, ASCII letters are lower-cased, and tokens
are split on ASCII whitespace. A token's hash is FNV-1a 64 over its bytes; a word n-gram
combines the hashes of its tokens as fastText does (h = h * 116049371 + h_next); a character
n-gram (of "<token>", n characters, UTF-8 aware) is FNV-1a of its bytes xor a salt. Every hash
goes through murmur3's fmix64 and modulo ``n_features`` to pick its input neuron.

The field, event by event: a sample is a list of events (input neuron f, magnitude x_f). An
input neuron whose potential exceeds its threshold fires and sends its potential along each
synapse (target, weight) to the output neurons; an output neuron's score is its potential
minus its threshold. The pathway (the fired inputs) is recorded so that feedback changes only
the synapses that carried events.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from neurofabric.guard.kernels.common import (
    BREAK,
    CHAR_SALT,
    DELETES,
    FANOUT,
    FNV_OFFSET,
    FNV_PRIME,
    MASK64,
    MIX_CHANGED,
    MIX_SUM,
    NEURON_DTYPE,
    NGRAM_MULT,
    PA1,
    PERCEPTRON,
    SEPARATORS,
    SINGLES,
)


def tokenize(text: bytes) -> list[bytes]:
    """fastText's normalize_text followed by a whitespace split (see the module docstring)."""
    text = text.replace(BREAK, b" ")
    for b in DELETES:
        text = text.replace(bytes([b]), b"")
    for b in SINGLES:
        text = text.replace(bytes([b]), b" " + bytes([b]) + b" ")
    for b in SEPARATORS:
        text = text.replace(bytes([b]), b" ")
    return text.lower().split()


def fnv1a64(data: bytes) -> int:
    h = FNV_OFFSET
    for byte in data:
        h = ((h ^ byte) * FNV_PRIME) & MASK64
    return h


def fmix64(k: int) -> int:
    k ^= k >> 33
    k = (k * 0xFF51AFD7ED558CCD) & MASK64
    k ^= k >> 33
    k = (k * 0xC4CEB9FE1A85EC53) & MASK64
    return k ^ (k >> 33)


def char_ngrams(token: bytes, minn: int, maxn: int) -> list[bytes]:
    """fastText's computeSubwords: n-grams of "<token>" of minn..maxn UTF-8 characters."""
    word = b"<" + token + b">"
    starts = [i for i in range(len(word)) if word[i] & 0xC0 != 0x80] + [len(word)]
    grams = []
    for a in range(len(starts) - 1):
        for n in range(1, maxn + 1):
            if a + n >= len(starts):
                break
            i, j = starts[a], starts[a + n]
            if n >= minn and not (n == 1 and (i == 0 or j == len(word))):
                grams.append(word[i:j])
    return grams


def document_features(
    text: bytes, n_features: int, word_ngrams: int, minn: int, maxn: int
) -> list[int]:
    """The input neuron of every unigram, word n-gram and character n-gram of one document."""
    hashes = [fnv1a64(t) for t in tokenize(text)]
    tokens = tokenize(text)
    feats = []
    for t, h in enumerate(hashes):
        feats.append(fmix64(h) % n_features)
        for length in range(2, word_ngrams + 1):
            if length > t + 1:
                break
            g = hashes[t - length + 1]
            for j in range(t - length + 2, t + 1):
                g = (g * NGRAM_MULT + hashes[j]) & MASK64
            feats.append(fmix64(g) % n_features)
        if minn > 0:
            for gram in char_ngrams(tokens[t], minn, maxn):
                feats.append(fmix64(fnv1a64(gram) ^ CHAR_SALT) % n_features)
    return feats


def text_features(buf, offsets, n_features, word_ngrams, minn, maxn):
    """Hashed features of each document: CSR (indptr, unique indices in first-arrival order, counts)."""
    indptr = [0]
    indices: list[np.ndarray] = []
    counts: list[np.ndarray] = []
    for d in range(len(offsets) - 1):
        text = bytes(buf[offsets[d] : offsets[d + 1]])
        counter: dict[int, int] = {}  # dicts keep first-arrival order
        for f in document_features(text, n_features, word_ngrams, minn, maxn):
            counter[f] = counter.get(f, 0) + 1
        ids = np.fromiter(counter.keys(), dtype=np.int64, count=len(counter))
        cnt = np.fromiter(counter.values(), dtype=np.int64, count=len(counter))
        indices.append(ids)
        counts.append(cnt)
        indptr.append(indptr[-1] + len(ids))
    cat = np.concatenate if indices else (lambda _: np.zeros(0))
    return (
        np.asarray(indptr, dtype=np.int64),
        cat(indices).astype(np.int32),
        cat(counts).astype(np.float32),
    )


def document_frequency(indptr, indices, n_features):
    return np.bincount(indices, minlength=n_features).astype(np.int64)


def weigh_rows(indptr, indices, counts, idf, sublinear, binary, normalize):
    """x = (1 or 1 + log tf or tf) * idf, each row scaled to unit L2 norm when ``normalize``."""
    if binary:
        tf = np.ones_like(counts, dtype=np.float64)
    elif sublinear:
        tf = 1.0 + np.log(counts.astype(np.float64))
    else:
        tf = counts.astype(np.float64)
    values = tf * idf[indices]
    if normalize:
        for d in range(len(indptr) - 1):
            row = values[indptr[d] : indptr[d + 1]]
            norm = np.sqrt(np.sum(row * row))
            if norm > 0:
                row /= norm
    return values.astype(np.float32)


def synapses_of(neuron, records, indptr, outputs, weights, n_inputs):
    """The (target, weight) pairs of one neuron: its own record or its CSR fan-out
    (``outputs`` holds each CSR synapse's output index, target - n_inputs)."""
    t = records["target"][neuron]
    if t == FANOUT:
        row = slice(indptr[neuron], indptr[neuron + 1])
        return [(n_inputs + int(o), w) for o, w in zip(outputs[row], weights[row], strict=True)]
    if t < len(records):
        return [(t, records["weight"][neuron])]
    return []


def propagate(events, records, indptr, outputs, weights, n_inputs):
    """Deliver one sample's events; return (output potentials, the pathway of fired inputs)."""
    potential = np.zeros(len(records), dtype=np.float64)  # reset for every sample
    thresholds = records["threshold"]
    queue = deque(events)
    touched = []
    while queue:
        neuron, magnitude = queue.popleft()
        potential[neuron] += magnitude
        touched.append(neuron)
    pathway = []
    for neuron in dict.fromkeys(touched):  # first-arrival order, each neuron once
        if neuron < n_inputs and potential[neuron] > thresholds[neuron]:
            pathway.append((neuron, potential[neuron]))
            for target, w in synapses_of(neuron, records, indptr, outputs, weights, n_inputs):
                potential[target] += w * potential[neuron]
    return potential[n_inputs:], pathway


def _events(xp, xi, xv, i):
    return [(int(xi[k]), float(xv[k])) for k in range(xp[i], xp[i + 1])]


def field_forward(records, indptr, outputs, weights, n_inputs, xp, xi, xv):
    """Output scores (potential minus threshold) of every sample; the field is not written."""
    n = len(xp) - 1
    out = np.empty((n, len(records) - n_inputs), dtype=np.float32)
    for i in range(n):
        pot, _ = propagate(_events(xp, xi, xv, i), records, indptr, outputs, weights, n_inputs)
        out[i] = pot - records["threshold"][n_inputs:]
    return out


def field_predict(records, indptr, outputs, weights, n_inputs, xp, xi, xv):
    scores = field_forward(records, indptr, outputs, weights, n_inputs, xp, xi, xv)
    return np.argmax(scores, axis=1).astype(np.int64)


def _records(targets, syn_weights, thresholds):
    rec = np.zeros(len(targets), dtype=NEURON_DTYPE)
    rec["target"], rec["weight"], rec["threshold"] = targets, syn_weights, thresholds
    return rec


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
    moved=None,
):
    """One epoch of the guard rule, sample by sample (``n_chunks`` is ignored: sequential).

    W is the dense (inputs x outputs) view of a field whose inputs fan out to every output.
    ``moved`` (optional, bool, inputs + 1 x outputs) marks every weight an update writes, and
    in its last row the thresholds.
    """
    n_in, n_out = W.shape
    targets = np.full(n_in + n_out, FANOUT, dtype=np.uint32)
    ptr = np.arange(n_in + 1, dtype=np.int64) * n_out
    idx = np.tile(np.arange(n_out, dtype=np.uint32), n_in)  # output index of each synapse
    updates = 0
    for t, i in enumerate(order):
        records = _records(targets, np.zeros(n_in + n_out), np.concatenate([thr_in, thr]))
        pot, pathway = propagate(_events(xp, xi, xv, i), records, ptr, idx, W.reshape(-1), n_in)
        scores = pot - thr
        yi = int(y[i])
        wrong = scores.copy()
        wrong[yi] = -np.inf
        p = int(np.argmax(wrong))
        m = scores[yi] - scores[p]
        sq = 1.0 + sum(x * x for _, x in pathway)
        if rule == PERCEPTRON:
            if m > margin:
                continue
            tau = lr
        else:
            loss = margin - m
            if loss <= 0:
                continue
            tau = (
                min(aggressiveness, loss / (2 * sq))
                if rule == PA1
                else loss / (2 * sq + 0.5 / aggressiveness)
            )
        updates += 1
        cnt = float(step0 + t + 1)
        for f, x in pathway:  # feedback along the synapses that carried events
            if moved is not None:
                moved[f, [yi, p]] = True
            W[f, yi] += tau * x
            W[f, p] -= tau * x
            if average:
                U[f, yi] += cnt * tau * x
                U[f, p] -= cnt * tau * x
        thr[yi] -= tau
        thr[p] += tau
        if moved is not None:
            moved[-1, [yi, p]] = True
        if average:
            thr_u[yi] -= cnt * tau
            thr_u[p] += cnt * tau
    return updates


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
    """Iterative parameter mixing, literally: the threads of a round one after the other, each
    on a copy of W, then W moves by the mean of their changes (``mix`` ``MIX_MEAN``), by their
    sum (``MIX_SUM``), or, weight by weight, by the mean change of the threads that moved
    that weight (``MIX_CHANGED``: an update of theirs wrote to it, or to a weight of the same
    row whose output is the same mod 32; none did: it stays).

    The average is computed by brute force, not by Daumé's trick: the sum S of every weight
    state visited is recovered on entry from W and the numba kernel's U_total = U + Uk.sum(0)
    (S = (step0 + 1) W - U_total), each state a thread visits is added to it, and U is set on
    exit so that U + Uk.sum(0) is the new U_total. ``thrk`` and ``touched`` are not used.
    """
    n = len(order)
    K = Wk.shape[0]
    S = (step0 + 1.0) * W.astype(np.float64) - (U + Uk.sum(axis=0))
    S_thr = (step0 + 1.0) * thr.astype(np.float64) - (thr_u + thr_uk.sum(axis=0))
    G = step0
    updates = 0
    for r in range(rounds):
        changes, thr_changes = [], []
        movers = np.zeros((W.shape[0] + 1, W.shape[1]))  # per weight, threads that moved it
        for k in range(K):
            lo_k, hi_k = k * n // K, (k + 1) * n // K
            lo = lo_k + r * (hi_k - lo_k) // rounds
            hi = lo_k + (r + 1) * (hi_k - lo_k) // rounds
            w, t = W.copy(), thr.copy()
            mv = np.zeros((W.shape[0] + 1, W.shape[1]), dtype=bool)
            for i in order[lo:hi]:
                scratch = (np.zeros((1, W.shape[1])), np.zeros(len(thr)))
                updates += guard_train(
                    w,
                    t,
                    *scratch,
                    thr_in,
                    xp,
                    xi,
                    xv,
                    y,
                    np.array([i]),
                    0,
                    rule,
                    lr,
                    margin,
                    aggressiveness,
                    False,
                    1,
                    moved=mv,
                )
                S += w
                S_thr += t
                G += 1
            bit = np.zeros((len(mv), 32), dtype=bool)  # column c is bit c mod 32
            for c in range(W.shape[1]):
                bit[:, c % 32] |= mv[:, c]
            movers += bit[:, np.arange(W.shape[1]) % 32]
            changes.append(w.astype(np.float64) - W)
            thr_changes.append(t.astype(np.float64) - thr)
        if mix == MIX_CHANGED:  # each weight: the sum over the number of threads that moved it
            h = np.maximum(movers, 1)
            W[:] = (W + np.sum(changes, axis=0) / h[:-1]).astype(np.float32)
            thr[:] = (thr + np.sum(thr_changes, axis=0) / h[-1]).astype(np.float32)
        else:
            s = 1.0 if mix == MIX_SUM else 1.0 / K
            W[:] = (W + s * np.sum(changes, axis=0)).astype(np.float32)
            thr[:] = (thr + s * np.sum(thr_changes, axis=0)).astype(np.float32)
    if average:
        U[:] = (G + 1.0) * W - S - Uk.sum(axis=0)
        thr_u[:] = (G + 1.0) * thr - S_thr - thr_uk.sum(axis=0)
    return updates


def average_compact(W, U, Uk, c, average, tol, rows):
    """The published field, literally: the averaged dense weights with input f's in training
    row ``rows[f]``, then what ``NeuronField.compact`` keeps (see
    ``numba_cpu.average_compact`` for the outputs)."""
    A = (W - (U + Uk.sum(axis=0)) / c).astype(np.float32) if average else W
    A = A[rows]
    keep = np.abs(A) > tol
    per_row = keep.sum(axis=1).astype(np.int64)
    single_col = np.argmax(keep, axis=1).astype(np.int64)
    single_w = np.where(per_row == 1, A[np.arange(len(A)), single_col], 0).astype(np.float32)
    multi = per_row >= 2
    indptr = np.zeros(len(A) + 1, dtype=np.int64)
    np.cumsum(np.where(multi, per_row, 0), out=indptr[1:])
    rows, cols = np.nonzero(keep & multi[:, None])
    return per_row, single_col, single_w, indptr, cols.astype(np.uint32), A[rows, cols]


def neuronguard_train(
    targets, syn_weights, thresholds, n_inputs, xp, xi, xv, y, order, plus, minus, floor
):
    """The proof of concept's rule (see ``numba_cpu.neuronguard_train``)."""
    empty_ptr = np.zeros(len(targets) + 1, dtype=np.int64)
    mistakes = 0
    for i in order:
        records = _records(targets, syn_weights, thresholds)
        pot, pathway = propagate(
            _events(xp, xi, xv, i),
            records,
            empty_ptr,
            np.zeros(0, np.uint32),
            np.zeros(0),
            n_inputs,
        )
        best = int(np.argmax(pot - thresholds[n_inputs:]))
        yi = int(y[i])
        mistakes += best != yi
        for f, _ in pathway:
            if syn_weights[f] < floor:
                continue
            if best == yi and targets[f] == n_inputs + yi:
                syn_weights[f] += plus
            elif best != yi and targets[f] == n_inputs + best:
                syn_weights[f] -= minus
    return mistakes
