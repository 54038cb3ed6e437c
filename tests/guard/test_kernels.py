"""The numba kernels against the readable reference, and analytic checks of the text front end."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neurofabric.guard import EventBatch, NeuronField, encode_texts
from neurofabric.guard.kernels import numba_cpu as nb
from neurofabric.guard.kernels import reference as ref
from neurofabric.guard.kernels.common import (
    MIX_CHANGED,
    MIX_MEAN,
    MIX_SUM,
    PA1,
    PA2,
    PERCEPTRON,
    SILENT,
)

ALPHABET = list("abcAB xyz\t\n;:'.,()!?\"<br/>é中") + ["<br />"]


def test_tokenize_follows_fasttext_normalization():
    text = b'He said: "Hi, World!" (twice)<br />It\'s done.'
    assert ref.tokenize(text) == [
        b"he",
        b"said",
        b"hi",
        b",",
        b"world",
        b"!",
        b"(",
        b"twice",
        b")",
        b"it",
        b"'",
        b"s",
        b"done",
        b".",
    ]


def test_fnv1a64_known_vectors():
    assert ref.fnv1a64(b"") == 0xCBF29CE484222325
    assert ref.fnv1a64(b"a") == 0xAF63DC4C8601EC8C
    assert ref.fnv1a64(b"foobar") == 0x85944171F73967E8


def test_char_ngrams_match_fasttext_subwords():
    assert ref.char_ngrams(b"ab", 1, 2) == [b"<a", b"a", b"ab", b"b", b"b>"]
    # UTF-8 aware: "é" is one character of two bytes
    assert ref.char_ngrams("é".encode(), 3, 3) == ["<é>".encode()]


@settings(max_examples=60, deadline=None)
@given(
    docs=st.lists(st.lists(st.sampled_from(ALPHABET), max_size=40).map("".join), max_size=6),
    n_features=st.sampled_from([7, 1000, 1 << 20]),
    word_ngrams=st.integers(1, 3),
    chars=st.sampled_from([(0, 0), (1, 3), (2, 5)]),
)
def test_text_features_numba_equals_reference(docs, n_features, word_ngrams, chars):
    buf, off = encode_texts(docs)
    a = nb.text_features(buf, off, n_features, word_ngrams, *chars)
    b = ref.text_features(buf, off, n_features, word_ngrams, *chars)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert np.all(a[1] < n_features) and np.all(a[1] >= 0)


def test_text_features_counts_repeats_and_bigrams():
    buf, off = encode_texts(["b a b", ""])
    ptr, idx, cnt = nb.text_features(buf, off, 1 << 30, 2, 0, 0)
    assert ptr.tolist() == [0, 4, 4]  # b (x2), a, "b a", "a b"
    assert sorted(cnt.tolist()) == [1, 1, 1, 2]
    hb = ref.fmix64(ref.fnv1a64(b"b")) % (1 << 30)
    assert cnt[list(idx).index(hb)] == 2


def test_weigh_rows_is_unit_length_tfidf():
    ptr = np.array([0, 2, 2, 3], np.int64)
    idx = np.array([0, 1, 1], np.int32)
    cnt = np.array([1.0, 3.0, 2.0], np.float32)
    idf = np.array([2.0, 0.5], np.float32)
    v = nb.weigh_rows(ptr, idx, cnt, idf, True, False, True)
    raw = np.array([1.0 * 2.0, (1 + np.log(3)) * 0.5])
    np.testing.assert_allclose(v[:2], raw / np.linalg.norm(raw), rtol=1e-6)
    assert v[2] == pytest.approx(1.0)
    np.testing.assert_allclose(v, ref.weigh_rows(ptr, idx, cnt, idf, True, False, True), rtol=1e-6)


def _random_events(rng, n, D, density=0.3):
    x = (rng.random((n, D)) < density) * rng.random((n, D))
    return EventBatch.from_dense(x.astype(np.float32)), x


def _mixed_field(rng, D, C):
    field = NeuronField.dense(D, C)
    W = field.weight_matrix()
    W[:] = rng.normal(size=(D, C)) * (rng.random((D, C)) < 0.4)
    W[: D // 4] = 0
    W[D // 4 : D // 2] = 0
    W[np.arange(D // 4, D // 2), rng.integers(0, C, D // 2 - D // 4)] = 1.5
    field.records["threshold"][D:] = rng.normal(size=C)
    return field


def test_forward_equals_matmul_and_reference():
    rng = np.random.default_rng(0)
    D, C = 40, 5
    field = _mixed_field(rng, D, C)
    events, x = _random_events(rng, 30, D)
    expect = x @ field.weight_matrix() - field.output_thresholds
    compact = field.compact()
    assert compact.n_synapses() < D * C
    for f in (field, compact, compact.expand()):
        np.testing.assert_allclose(f.forward(events), expect, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(
            f.forward(events, backend="reference"), expect, rtol=1e-5, atol=1e-5
        )
        np.testing.assert_array_equal(f.predict(events), np.argmax(expect, axis=1))


def test_input_threshold_gates_events():
    rng = np.random.default_rng(1)
    D, C = 20, 3
    field = NeuronField.dense(D, C, input_threshold=0.5)
    field.weight_matrix()[:] = rng.normal(size=(D, C))
    events, x = _random_events(rng, 10, D, 0.8)
    expect = np.where(x > 0.5, x, 0) @ field.weight_matrix()
    np.testing.assert_allclose(field.forward(events), expect, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rule", [PERCEPTRON, PA1, PA2])
@pytest.mark.parametrize("average", [False, True])
def test_guard_train_numba_equals_reference(rule, average):
    rng = np.random.default_rng(2)
    D, C, n = 30, 4, 60
    events, _ = _random_events(rng, n, D)
    y = rng.integers(0, C, n)
    order = rng.permutation(n).astype(np.int64)
    out = []
    for k in (nb, ref):
        W = np.zeros((D, C), np.float32)
        thr = np.zeros(C, np.float32)
        U = np.zeros((D, C))
        thr_u = np.zeros(C)
        thr_in = np.zeros(D, np.float32)
        total = 0
        for epoch in range(3):
            total += k.guard_train(
                W,
                thr,
                U,
                thr_u,
                thr_in,
                *events.args(),
                y,
                order,
                epoch * n,
                rule,
                0.7,
                1.0 if rule else 0.0,
                0.5,
                average,
                1,
            )
        out.append((W, thr, U, thr_u, total))
    for a, b in zip(out[0], out[1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert out[0][4] > 0


def _mixed_state(K, D, C):
    return (
        np.zeros((K, D, C), np.float32),
        np.zeros((K, C), np.float32),
        np.zeros((K, D, C)),
        np.zeros((K, C)),
        np.zeros((K, D + 1), np.uint32),
    )


def _train_mixed(k, events, y, order, K, rounds, mix, rule, average, epochs=3, C=4):
    D, n = events.n_inputs, len(order)
    W, thr = np.zeros((D, C), np.float32), np.zeros(C, np.float32)
    U, thr_u = np.zeros((D, C)), np.zeros(C)
    ws = _mixed_state(K, D, C)
    total = 0
    for epoch in range(epochs):
        total += k.guard_train_mixed(
            W,
            thr,
            U,
            thr_u,
            np.zeros(D, np.float32),
            *events.args(),
            y,
            order,
            epoch * n,
            rule,
            0.7,
            1.0 if rule else 0.0,
            0.5,
            average,
            rounds,
            mix,
            *ws,
        )
    # what the classifier averages with: U_total = U + each thread's share
    return W, thr, U + ws[2].sum(axis=0), thr_u + ws[3].sum(axis=0), total


@pytest.mark.parametrize("rule", [PERCEPTRON, PA1, PA2])
@pytest.mark.parametrize(
    ("K", "rounds", "mix"),
    [(2, 1, MIX_SUM), (2, 3, MIX_MEAN), (3, 2, MIX_SUM), (2, 2, MIX_CHANGED), (3, 1, MIX_CHANGED)],
)
def test_mixed_numba_equals_reference(rule, K, rounds, mix):
    """The kernel's per-thread Daumé sums against the reference's brute-force sum of every
    weight state the threads visited, and its mixing against copies trained one by one."""
    rng = np.random.default_rng(4)
    n = 61
    events, _ = _random_events(rng, n, 30)
    y = rng.integers(0, 4, n)
    order = rng.permutation(n).astype(np.int64)
    a = _train_mixed(nb, events, y, order, K, rounds, mix, rule, True)
    b = _train_mixed(ref, events, y, order, K, rounds, mix, rule, True)
    assert a[4] == b[4] > 0
    for x, z in zip(a[:4], b[:4], strict=True):
        np.testing.assert_allclose(x, z, rtol=2e-5, atol=2e-5 * np.abs(z).max())
    # mixing did something: not what one thread on the same order gives
    one = _train_mixed(nb, events, y, order, 1, 1, mix, rule, True)
    assert not np.allclose(a[0], one[0])


@pytest.mark.parametrize("K", [2, 3])
def test_mixed_changed_beyond_32_outputs(K):
    """Changed mixing with 40 outputs: output c shares bit c mod 32 with c + 32, so a weight
    counts the threads that moved either, in the kernel's bits and the reference's rows."""
    rng = np.random.default_rng(6)
    n = 80
    events, _ = _random_events(rng, n, 24, density=0.5)
    y = rng.integers(0, 40, n)
    order = rng.permutation(n).astype(np.int64)
    a = _train_mixed(nb, events, y, order, K, 2, MIX_CHANGED, PA1, True, C=40)
    b = _train_mixed(ref, events, y, order, K, 2, MIX_CHANGED, PA1, True, C=40)
    assert a[4] == b[4] > 0
    for x, z in zip(a[:4], b[:4], strict=True):
        np.testing.assert_allclose(x, z, rtol=2e-5, atol=2e-5 * np.abs(z).max())
    # the scale is not the plain sum's: some weight moved by two threads was averaged
    s = _train_mixed(nb, events, y, order, K, 2, MIX_SUM, PA1, True, C=40)
    assert not np.allclose(a[0], s[0])


@pytest.mark.parametrize("rounds", [1, 4])
def test_mixed_one_thread_is_the_sequential_kernel(rounds):
    rng = np.random.default_rng(5)
    n = 50
    events, _ = _random_events(rng, n, 30)
    y = rng.integers(0, 4, n)
    order = rng.permutation(n).astype(np.int64)
    mixed = _train_mixed(nb, events, y, order, 1, rounds, MIX_MEAN, PA1, True)
    W, thr = np.zeros((30, 4), np.float32), np.zeros(4, np.float32)
    U, thr_u = np.zeros((30, 4)), np.zeros(4)
    for epoch in range(3):
        nb.guard_train(
            W,
            thr,
            U,
            thr_u,
            np.zeros(30, np.float32),
            *events.args(),
            y,
            order,
            epoch * n,
            PA1,
            0.7,
            1.0,
            0.5,
            True,
            1,
        )
    for x, z in zip(mixed[:4], (W, thr, U, thr_u), strict=True):
        np.testing.assert_allclose(x, z, rtol=1e-5, atol=1e-6 * np.abs(z).max())


def test_pa1_single_step_is_analytic():
    """One sample, zero weights: margin 0, loss 1, tau = min(C, 1 / (2 (|x|^2 + 1)))."""
    x = np.array([[0.6, 0.8, 0.0]], np.float32)
    events = EventBatch.from_dense(x)
    W = np.zeros((3, 2), np.float32)
    thr = np.zeros(2, np.float32)
    nb.guard_train(
        W,
        thr,
        np.zeros((1, 2)),
        np.zeros(2),
        np.zeros(3, np.float32),
        *events.args(),
        np.array([1]),
        np.array([0]),
        0,
        PA1,
        1.0,
        1.0,
        10.0,
        False,
        1,
    )
    tau = 1.0 / (2 * (1.0 + 1.0))
    np.testing.assert_allclose(W[:, 1], tau * x[0], rtol=1e-6)
    np.testing.assert_allclose(W[:, 0], -tau * x[0], rtol=1e-6)
    np.testing.assert_allclose(thr, [tau, -tau], rtol=1e-6)
    # the new margin is exactly 1: PA-I moves just enough
    s = x[0] @ W - thr
    assert s[1] - s[0] == pytest.approx(1.0, rel=1e-5)


def test_neuronguard_numba_equals_reference():
    rng = np.random.default_rng(3)
    D, C, n = 25, 3, 80
    events, _ = _random_events(rng, n, D, 0.3)
    events = EventBatch(events.indptr, events.indices, np.ones_like(events.values), D)
    y = rng.integers(0, C, n)
    targets = rng.integers(-1, C, D)
    order = rng.permutation(n).astype(np.int64)
    res = []
    for k in (nb, ref):
        f = NeuronField.single_target(targets, C)
        tg, w, thr = f.neuron_columns()
        m = k.neuronguard_train(tg, w, thr, D, *events.args(), y, order, 0.05, 0.15, 1.0)
        res.append((w, m))
    np.testing.assert_allclose(res[0][0], res[1][0], rtol=1e-6)
    assert res[0][1] == res[1][1]
    w = res[0][0][:D]
    assert np.all((w == 0) | (w >= 1.0 - 0.15 - 1e-6))  # feedback stops once below the floor


@pytest.mark.parametrize("average", [False, True])
@pytest.mark.parametrize("K", [0, 2])
@pytest.mark.parametrize("tol", [0.0, 0.3])
@pytest.mark.parametrize("ordered", [False, True])
def test_average_compact_numba_equals_reference_and_compact(average, K, tol, ordered):
    """The one-pass publish kernel against the reference and against averaging the dense
    field, then NeuronField.compact (the layout every other path builds); with ``ordered``
    the training state keeps its rows in another order than the inputs'."""
    rng = np.random.default_rng(6)
    D, C = 40, 5
    W = rng.normal(size=(D, C)).astype(np.float32)
    W[:10] = 0.0  # silent rows
    W[10:20, 1:] = 0.0  # single-synapse rows
    U = rng.normal(size=(D, C)) * 50
    Uk = rng.normal(size=(K, D, C)) * 50
    U[W == 0] = 0.0  # rows that never moved have no step sums either
    Uk[:, W == 0] = 0.0
    c = 137.0
    rows = rng.permutation(D).astype(np.int32) if ordered else np.arange(D, dtype=np.int32)
    by_row = np.empty_like(rows)
    by_row[rows] = np.arange(D, dtype=np.int32)  # input by_row[r] is in training row r
    state = (W[by_row], U[by_row], Uk[:, by_row])
    out = [k.average_compact(*state, c, average, tol, rows) for k in (nb, ref)]
    for a, b in zip(*out, strict=True):
        np.testing.assert_array_equal(a, b)
    A = (W - (U + Uk.sum(axis=0)) / c).astype(np.float32) if average else W
    dense = NeuronField.dense(D, C)
    dense.weight_matrix()[:] = A
    want = dense.compact(tol=tol)
    per_row, single_col, single_w, ptr, cols, weights = out[0]
    tgt = want.records["target"][:D]
    np.testing.assert_array_equal(per_row == 0, tgt == SILENT)
    one = per_row == 1
    np.testing.assert_array_equal(tgt[one], single_col[one] + D)
    np.testing.assert_array_equal(want.records["weight"][:D], single_w)
    np.testing.assert_array_equal(want.indptr[: D + 1], ptr)
    np.testing.assert_array_equal(want.indices, cols + D)
    np.testing.assert_array_equal(want.weights, weights)
    assert np.any(one) and np.any(per_row >= 2) and np.any(per_row == 0)
