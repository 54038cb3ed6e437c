"""The classifiers end to end on small data: learning, determinism, persistence, bad input."""

import json

import numpy as np
import pytest

from neurofabric.core.errors import CheckpointError, ConfigError, NotFittedError, ShapeError
from neurofabric.data import load_digits_split
from neurofabric.guard import (
    NEURON_DTYPE,
    EventBatch,
    GuardClassifier,
    NeuronField,
    TextGuardClassifier,
    saved_bytes,
)
from neurofabric.guard.io import field_from_arrays, field_to_arrays
from neurofabric.guard.rhythm import RhythmTracker
from neurofabric.guard.router import VOCABULARY, ExpertRouter, make_requests


@pytest.fixture(scope="module")
def digits():
    return load_digits_split(seed=0)


def test_record_is_16_bytes():
    assert NEURON_DTYPE.itemsize == 16
    assert NeuronField.dense(3, 2).records.strides == (16,)


@pytest.mark.parametrize("rule", ["pa1", "pa2", "perceptron"])
def test_learns_digits_far_above_untrained(digits, rule):
    Xtr, Xte, ytr, yte = digits
    clf = GuardClassifier(rule=rule, epochs=10, seed=0).fit(Xtr / 16.0, ytr)
    acc = clf.score(Xte / 16.0, yte)
    untrained = NeuronField.dense(64, 10).predict(EventBatch.from_dense(Xte / 16.0))
    assert acc > 0.9
    assert np.mean(untrained == yte) < 0.2
    proba = clf.predict_proba(Xte[:20] / 16.0)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-9)
    np.testing.assert_array_equal(np.argmax(proba, axis=1), clf.predict(Xte[:20] / 16.0))


def test_single_thread_is_bit_identical_for_a_seed(digits):
    Xtr, _, ytr, _ = digits
    a = GuardClassifier(seed=5, epochs=3).fit(Xtr, ytr).field_
    b = GuardClassifier(seed=5, epochs=3).fit(Xtr, ytr).field_
    c = GuardClassifier(seed=6, epochs=3).fit(Xtr, ytr).field_
    assert np.array_equal(a.weights, b.weights) and np.array_equal(a.records, b.records)
    assert not np.array_equal(a.weights, c.weights)


def test_hogwild_learns_as_well(digits):
    """Lock-free chunks learn (without averaging: lost updates bias the running average)."""
    Xtr, Xte, ytr, yte = digits
    clf = GuardClassifier(seed=0, epochs=10, n_jobs=-1, average=False, parallel="hogwild")
    # racing updates make this run-to-run variable (0.88-0.92 seen; sequential: 0.92)
    assert clf.fit(Xtr / 16, ytr).score(Xte / 16, yte) > 0.8
    docs, labels = _corpus(600, 0)
    test_docs, test_labels = _corpus(200, 1)
    acc = {}
    for n_jobs in (1, -1):
        text = TextGuardClassifier(
            n_features=1 << 12, epochs=5, n_jobs=n_jobs, average=False, parallel="hogwild"
        )
        acc[n_jobs] = text.fit(docs, labels).score(test_docs, test_labels)
    assert acc[-1] > 0.6 and acc[-1] > acc[1] - 0.05


@pytest.mark.parametrize("mix", ["sum", "changed", "mean"])
def test_parameter_mixing_is_deterministic_and_keeps_dense_accuracy(digits, mix):
    """Threads on their own copies, mixed: the same model for a seed whatever the timing, and
    on dense inputs (every pixel an event, where Hogwild's average degrades) the averaged
    model scores as the sequential one does."""
    import numba

    if numba.get_num_threads() < 2:
        pytest.skip("needs 2 numba threads")
    Xtr, Xte, ytr, yte = digits
    seq = GuardClassifier(seed=0, epochs=10).fit(Xtr / 16, ytr).score(Xte / 16, yte)
    a = GuardClassifier(seed=0, epochs=10, n_jobs=2, mix=mix).fit(Xtr / 16, ytr)
    b = GuardClassifier(seed=0, epochs=10, n_jobs=2, mix=mix).fit(Xtr / 16, ytr)
    assert np.array_equal(a.field_.weights, b.field_.weights)
    assert np.array_equal(a.field_.records, b.field_.records)
    assert a.score(Xte / 16, yte) > seq - 0.02, (a.score(Xte / 16, yte), seq)
    one = GuardClassifier(seed=0, epochs=10, n_jobs=1).fit(Xtr / 16, ytr)
    assert not np.array_equal(a.field_.weights, one.field_.weights)  # the threads did run


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"rule": "perceptron", "average": False},
        {"n_jobs": 2, "mix": "changed"},
        {"n_jobs": 2, "mix": "sum", "mix_rounds": 1},
        {"backend": "reference", "epochs": 2},
    ],
)
def test_rows_in_frequency_order_change_nothing(monkeypatch, params):
    """fit keeps the training rows most frequent input first: the published field, and
    after a partial_fit on other data, are bit-identical to training in input order; a
    partial_fit from scratch keeps input order."""
    from neurofabric.guard import guard as guard_module

    docs, labels = _corpus(300, 3)
    featurizer = TextGuardClassifier(n_features=1 << 10, word_ngrams=2).fit(docs[:30], labels[:30])
    events = featurizer.transform(docs)
    more = featurizer.transform(_corpus(100, 4)[0])
    fields = {}
    for ordered in (True, False):
        monkeypatch.setattr(guard_module, "ORDER_ROWS", ordered)
        clf = GuardClassifier(seed=1, **{"epochs": 4, **params}).fit(
            events.subset(np.arange(200)), labels[:200]
        )
        assert clf._ordered == ordered and np.any(clf._rows != np.arange(1 << 10)) == ordered
        if ordered:  # training row r holds the r-th most frequent input
            by_row = np.argsort(clf._rows)
            counts = np.bincount(events.subset(np.arange(200)).indices, minlength=1 << 10)
            assert np.all(np.diff(counts[by_row]) <= 0)
        first = clf.field_
        clf.partial_fit(more, _corpus(100, 4)[1])
        assert clf._ordered == ordered  # (partial_fit goes on in fit's order)
        fields[ordered] = (first, clf.field_)
    assert not GuardClassifier(**params).partial_fit(events, labels)._ordered
    for a, b in zip(fields[True], fields[False], strict=True):
        for name in ("records", "indptr", "indices", "weights"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_averaging_equals_mean_of_iterates():
    """Daume's trick: the averaged weights are the mean of the weights after every step."""
    rng = np.random.default_rng(0)
    x = rng.random((15, 6)).astype(np.float32)
    y = rng.integers(0, 3, 15)
    clf = GuardClassifier(rule="perceptron", average=True, shuffle=False, epochs=1, seed=0)
    clf.fit(x, y, classes=[0, 1, 2])
    W, thr, iterates, thrs = np.zeros((6, 3)), np.zeros(3), [], []
    for i in range(15):
        s = x[i] @ W - thr
        wrong = s.copy()
        wrong[y[i]] = -np.inf
        p = int(np.argmax(wrong))
        if s[y[i]] - s[p] <= 0:
            W[:, y[i]] += x[i]
            W[:, p] -= x[i]
            thr[y[i]] -= 1
            thr[p] += 1
        iterates.append(W.copy())
        thrs.append(thr.copy())
    # the running sum starts from the initial zero weights (c = 1 before the first step)
    mean_w = np.sum(iterates, axis=0) / 16
    np.testing.assert_allclose(clf.field_.weight_matrix(), mean_w, atol=1e-5)
    np.testing.assert_allclose(clf.field_.output_thresholds, np.sum(thrs, axis=0) / 16, atol=1e-5)


def test_partial_fit_continues_and_needs_classes(digits):
    Xtr, Xte, ytr, yte = digits
    clf = GuardClassifier(seed=0)
    for _ in range(5):
        clf.partial_fit(Xtr / 16, ytr, classes=np.arange(10))
    assert clf.score(Xte / 16, yte) > 0.9
    with pytest.raises(ConfigError, match="not one of the classes"):
        GuardClassifier().partial_fit(Xtr[:5], [0, 1, 0, 1, 0], classes=[0, 1]).partial_fit(
            Xtr[:1], [7]
        )


def test_bad_input_is_refused(digits):
    Xtr, _, ytr, _ = digits
    with pytest.raises(NotFittedError):
        GuardClassifier().predict(Xtr)
    with pytest.raises(ConfigError, match="rule"):
        GuardClassifier(rule="hebb")
    with pytest.raises(ConfigError, match="margin"):
        GuardClassifier(rule="pa1", margin=0.0)
    with pytest.raises(ConfigError, match="n_jobs"):
        GuardClassifier(n_jobs=0)
    with pytest.raises(ShapeError, match="one label per sample"):
        GuardClassifier().fit(Xtr, ytr[:-1])
    clf = GuardClassifier(epochs=1).fit(Xtr, ytr)
    with pytest.raises(ShapeError, match="64"):
        clf.predict(Xtr[:, :10])
    with pytest.raises(ShapeError, match="finite"):
        EventBatch(np.array([0, 1]), np.array([0]), np.array([np.nan]), 3)
    with pytest.raises(ShapeError, match=r"\[0, 3\)"):
        EventBatch(np.array([0, 1]), np.array([3]), np.array([1.0]), 3)


def test_field_arrays_round_trip_exactly_and_int8_closely():
    rng = np.random.default_rng(4)
    field = NeuronField.dense(50, 6)
    W = field.weight_matrix()
    W[:] = rng.normal(size=W.shape) * (rng.random(W.shape) < 0.3)
    field.records["threshold"][50:] = rng.normal(size=6)
    compact = field.compact()
    events = EventBatch.from_dense(rng.random((20, 50)).astype(np.float32))
    arrays, meta = field_to_arrays(compact)
    back = field_from_arrays(arrays, json.loads(json.dumps(meta)))
    np.testing.assert_array_equal(back.forward(events), compact.forward(events))
    arrays8, meta8 = field_to_arrays(compact, weights="int8")
    assert arrays8["fan_w"].dtype == np.int8
    err = np.abs(field_from_arrays(arrays8, meta8).weight_matrix() - W)
    assert err.max() <= np.abs(W).max(axis=0).max() / 127 / 2 + 1e-6
    arrays["fan_out"] = arrays["fan_out"][:-1]
    with pytest.raises(CheckpointError, match="inconsistent"):
        field_from_arrays(arrays, meta)


def _corpus(n, seed):
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(60)]
    docs, labels = [], []
    for k in range(n):
        c = k % 3
        pool = words[20 * c : 20 * c + 20] if rng.random() < 0.7 else words
        docs.append(" ".join(rng.choice(pool) for _ in range(8)))
        labels.append(["sports", "science", "politics"][c])
    return docs, np.array(labels)


@pytest.mark.parametrize("weights", ["float32", "int8"])
def test_text_classifier_learns_saves_and_loads(tmp_path, weights):
    docs, labels = _corpus(600, 0)
    test_docs, test_labels = _corpus(200, 1)
    clf = TextGuardClassifier(n_features=1 << 12, epochs=5, seed=0).fit(docs, labels)
    acc = clf.score(test_docs, test_labels)
    assert acc > 0.7  # chance is 1/3; about 30 % of the documents are drawn from all words
    path = clf.save(tmp_path / "model", weights=weights)
    assert saved_bytes(path) > 0
    back = TextGuardClassifier.load(path)
    agree = np.mean(back.predict(test_docs) == clf.predict(test_docs))
    assert agree == 1.0 if weights == "float32" else agree > 0.97
    assert back.get_params()["n_features"] == 1 << 12
    (path / "fan_w.arrow").write_bytes(b"corrupt")
    with pytest.raises(CheckpointError, match="sha256"):
        TextGuardClassifier.load(path)
    with pytest.raises(CheckpointError, match="guard-text"):
        GuardClassifier.load(path)


def test_neuronguard_wires_top_words_to_their_majority_class():
    docs = ["apple apple pie", "apple tart", "car road", "car engine", "road trip"]
    labels = [0, 0, 1, 1, 1]
    clf = TextGuardClassifier(
        rule="neuronguard", n_features=1 << 16, top_n=3, epochs=1, shuffle=False
    )
    clf.fit(docs, labels)
    assert clf.text_params.binary and not clf.text_params.idf
    field = clf.guard.field_
    wired = np.nonzero(field.records["target"][: field.n_inputs] < field.n_inputs + 2)[0]
    assert len(wired) == 3  # apple (2 docs), car (2), road (2)
    ev = clf.transform(["apple", "car", "road"])
    for doc, cls in zip(range(3), [0, 1, 1], strict=True):
        f = ev.indices[ev.indptr[doc]]
        assert field.records["target"][f] == field.n_inputs + cls


def test_rhythm_tracker_reaches_100_percent_and_recovers():
    tracker = RhythmTracker(3, context=4, seed=0)
    first, second = [0, 1] * 30, [0, 1, 2, 2] * 30
    result = tracker.run(first + second)
    c = result.correct
    assert c[40:60].all()  # learned the alternation
    assert c[60:64].mean() < 1.0  # the change costs predictions
    assert c[-40:].all()  # and it recovers fully
    assert tracker.n_neurons == 15


def test_router_beats_chance_and_the_untrained_field():
    assert len(VOCABULARY) == 100
    train, test = make_requests(600, seed=0), make_requests(400, seed=1)
    router = ExpertRouter(seed=0)
    untrained = router.untrained_score(test.requests, test.experts)
    router.fit(train.requests, train.experts)
    assert router.n_neurons == 105
    acc = router.score(test.requests, test.experts)
    assert acc > 0.75 and acc > untrained + 0.5


def test_probabilities_are_calibrated_on_the_eval_set(digits):
    Xtr, Xte, ytr, yte = digits
    a = GuardClassifier(epochs=5, seed=0).fit(Xtr / 16, ytr)
    b = GuardClassifier(epochs=5, seed=0).fit(Xtr / 16, ytr, eval_set=(Xte / 16, yte))
    np.testing.assert_array_equal(a.field_.weights, b.field_.weights)  # same model

    def nll(clf):
        p = clf.predict_proba(Xte / 16)
        return -np.mean(np.log(p[np.arange(len(yte)), yte]))

    assert b.proba_scale_ != a.proba_scale_
    assert nll(b) <= nll(a) + 1e-9
    assert "eval_accuracy" in b.history_[-1]


def test_run_mode_never_writes_the_field(digits):
    Xtr, Xte, ytr, _ = digits
    clf = GuardClassifier(epochs=2, seed=0).fit(Xtr / 16, ytr)
    records, weights = clf.field_.records.copy(), clf.field_.weights.copy()
    for backend in ("numba", "reference"):
        clf.set_params(backend=backend)
        clf.predict(Xte[:30] / 16)
        clf.decision_function(Xte[:30] / 16)
    assert np.array_equal(records, clf.field_.records)
    assert np.array_equal(weights, clf.field_.weights)
