"""GuardRuntime: streaming run mode equals the batch API, one trainer equals partial_fit,
two trainers learn as well, errors reach the futures, and bad use is refused clearly."""

import numpy as np
import pytest

from neurofabric.core.errors import ConfigError, NeurofabricError, NotFittedError, ShapeError
from neurofabric.guard import EventBatch, GuardClassifier, GuardRuntime, TextGuardClassifier
from neurofabric.guard.kernels import stream
from neurofabric.guard.runtime import RuntimeClosedError

CLASSES = np.array(["sports", "science", "politics"])


def _corpus(n, seed, mixed=0.3):
    """Documents of 8 words: from the class's own 20 words, or (share ``mixed``) from all 60."""
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(60)]
    docs = []
    for k in range(n):
        c = k % 3
        pool = words if rng.random() < mixed else words[20 * c : 20 * c + 20]
        docs.append(" ".join(rng.choice(pool) for _ in range(8)))
    return docs, CLASSES[np.arange(n) % 3]


@pytest.fixture(scope="module")
def text_model():
    docs, labels = _corpus(300, 0)
    clf = TextGuardClassifier(n_features=1 << 10, word_ngrams=2, epochs=3, seed=0)
    return clf.fit(docs, labels), _corpus(240, 1)[0]


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("batch_size", [1, 8])
def test_run_mode_equals_batch_predict(text_model, workers, batch_size):
    clf, docs = text_model
    with GuardRuntime(clf, workers=workers, batch_size=batch_size) as rt:
        labels = rt.predict_stream(docs)
        in_order = list(rt.map(docs[:50], window=3))
    expected = clf.predict(docs)
    assert np.array_equal(np.array(labels), expected)
    assert np.array_equal(np.array(in_order), expected[:50])
    stats = rt.stats()
    assert stats.documents == len(docs) + 50 and stats.errors == 0
    assert sum(stats.worker_documents) == stats.documents  # the fast path did the work


def test_run_mode_scores_equal_decision_function(text_model):
    clf, docs = text_model
    with GuardRuntime(clf, workers=2, batch_size=8, return_scores=True) as rt:
        out = rt.predict_stream(docs)
    assert [label for label, _ in out] == clf.predict(docs).tolist()
    np.testing.assert_array_equal(np.stack([s for _, s in out]), clf.decision_function(docs))


def test_run_mode_on_events_equals_predict():
    rng = np.random.default_rng(3)
    x = (rng.random((200, 40)) * (rng.random((200, 40)) < 0.3)).astype(np.float32)
    y = np.argmax(x[:, :4], axis=1)
    clf = GuardClassifier(epochs=3, seed=0).fit(x, y)
    events = EventBatch.from_dense(x)
    rows = [events.subset([i]) for i in range(100)]
    pairs = [(np.nonzero(r)[0], r[np.nonzero(r)[0]]) for r in x[100:]]
    with GuardRuntime(clf, workers=2, batch_size=4) as rt:
        got = rt.predict_stream(rows + pairs)
    assert np.array_equal(np.array(got), clf.predict(x))
    assert rt.stats().events == len(events.indices)


def _warm_start(kind, first_docs, first_labels):
    """A classifier after one epoch of fit on the first documents (which fixes the classes
    and, for text, the idf), trained in stream order (shuffle=False) on one thread; fit keeps
    its training rows in frequency order."""
    if kind == "text":
        clf = TextGuardClassifier(
            n_features=1 << 10, word_ngrams=2, shuffle=False, epochs=1, seed=0
        )
        return clf.fit(first_docs, first_labels, classes=CLASSES), clf.guard
    clf = GuardClassifier(shuffle=False, epochs=1, seed=0)
    return clf.fit(first_docs, first_labels, classes=CLASSES), clf


def _stream(kind, n, seed):
    """(what partial_fit takes, one item per document for the runtime, labels)."""
    docs, labels = _corpus(n, seed)
    if kind == "text":
        return docs, docs, labels
    events = TextGuardClassifier(n_features=1 << 10).fit(*_corpus(30, 9)).transform(docs)
    return events, [events.subset([i]) for i in range(n)], labels


def _rows(kind, whole, a, b):
    return whole[a:b] if kind == "text" else whole.subset(np.arange(a, b))


@pytest.mark.parametrize("kind", ["text", "events"])
def test_one_trainer_equals_partial_fit(kind):
    """The same documents in the same order: partial_fit (shuffle=False, n_jobs=1, one epoch)
    and one runtime worker make the same weights, step sums, thresholds and averaged field."""
    whole, items, labels = _stream(kind, 360, 2)
    ref, ref_guard = _warm_start(kind, _rows(kind, whole, 0, 60), labels[:60])
    ours, our_guard = _warm_start(kind, _rows(kind, whole, 0, 60), labels[:60])
    ref.partial_fit(_rows(kind, whole, 60, 360), labels[60:])
    with GuardRuntime(ours, mode="train", batch_size=8) as rt:
        fed_back = rt.train_stream(items[60:], labels[60:])
    assert our_guard._steps == ref_guard._steps == 360
    assert sum(fed_back) == rt.stats().updates > 0
    assert ref_guard._ordered and not our_guard._ordered  # the runtime's state is by input
    ref_guard._input_ordered_state()
    a, b = ref_guard._train_field, our_guard._train_field
    np.testing.assert_allclose(b.weights, a.weights, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(b.output_thresholds, a.output_thresholds, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(our_guard._U, ref_guard._U, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(our_guard._thr_u, ref_guard._thr_u, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(
        our_guard.field_.weight_matrix(), ref_guard.field_.weight_matrix(), rtol=1e-6, atol=1e-7
    )
    test, _, _ = _stream(kind, 90, 5)
    assert np.array_equal(ours.predict(test), ref.predict(test))


def test_trainer_resumes_a_loaded_model(text_model, tmp_path):
    """A loaded model has no training state: the runtime resumes it as partial_fit does."""
    clf, _ = text_model
    path = clf.save(tmp_path / "model")
    docs, labels = _corpus(120, 8)
    ref, ours = TextGuardClassifier.load(path), TextGuardClassifier.load(path)
    for model in (ref, ours):
        model.guard.set_params(shuffle=False)  # keeps the loaded field (the outer one resets)
        assert model.guard._train_field is None
    ref.partial_fit(docs, labels)
    with GuardRuntime(ours, mode="train") as rt:
        rt.train_stream(docs, labels)
    np.testing.assert_allclose(
        ours.guard.field_.weight_matrix(), ref.guard.field_.weight_matrix(), rtol=1e-6, atol=1e-7
    )
    assert ours.guard._steps == ref.guard._steps == 120


def test_two_trainers_learn_as_well_as_one():
    docs, labels = _corpus(900, 6, mixed=0.0)  # separable: each class has its own words
    test_docs, test_labels = _corpus(300, 7, mixed=0.0)
    acc = {}
    for workers in (1, 2):
        clf = TextGuardClassifier(n_features=1 << 10, shuffle=False, seed=0)
        clf.partial_fit(docs[:9], labels[:9], classes=CLASSES)
        with GuardRuntime(clf, workers=workers, mode="train", batch_size=4) as rt:
            futures = [rt.submit(d, y) for d, y in zip(docs, labels, strict=True)]
            rt.publish()  # mid-stream publishing is allowed; close() publishes the rest
            assert all(f.done() for f in futures)
        assert rt.stats().documents == len(docs)
        acc[workers] = clf.score(test_docs, test_labels)
    assert acc[1] > 0.95 and acc[2] >= acc[1] - 0.05


def test_worker_errors_reach_the_futures(text_model, monkeypatch, capfd):
    clf, docs = text_model

    def boom(*args):
        raise RuntimeError("kernel exploded")

    with GuardRuntime(clf, workers=2, batch_size=4) as rt:
        monkeypatch.setattr(stream, "text_predict", boom)
        failed = [rt.submit(d) for d in docs[:10]]
        for f in failed:
            with pytest.raises(RuntimeError, match="kernel exploded"):
                f.result(timeout=10)
        monkeypatch.undo()
        assert rt.submit(docs[0]).result(timeout=10) == clf.predict(docs[:1])[0]  # still serving
    assert rt.stats().errors == 10
    assert capfd.readouterr().err == ""  # delivered, not printed


def test_submit_after_close_raises(text_model):
    clf, docs = text_model
    rt = GuardRuntime(clf)
    rt.close()
    rt.close()  # closing twice is harmless
    with pytest.raises(RuntimeClosedError, match="closed") as info:
        rt.submit(docs[0])
    assert isinstance(info.value, NeurofabricError) and isinstance(info.value, RuntimeError)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"workers": 0}, r"`workers` must be >= 1, got 0"),
        ({"workers": 1.5}, r"`workers` must be an integer, got 1.5"),
        ({"batch_size": 0}, r"`batch_size` must be >= 1, got 0"),
        ({"mode": "serve"}, r"`mode` must be one of \('run', 'train'\), got 'serve'"),
        ({"return_scores": 1}, r"`return_scores` must be True or False, got 1"),
        ({"latency_window": -1}, r"`latency_window` must be >= 1"),
        ({"return_scores": True, "mode": "train"}, r"`return_scores` needs mode='run'"),
    ],
)
def test_bad_parameters_name_themselves(text_model, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        GuardRuntime(text_model[0], **kwargs)


def test_bad_use_is_refused(text_model):
    clf, docs = text_model
    with pytest.raises(ConfigError, match="`clf` must be a guard classifier"):
        GuardRuntime("model")
    with pytest.raises(NotFittedError, match="fit"):
        GuardRuntime(TextGuardClassifier())
    poc = TextGuardClassifier(rule="neuronguard").fit(docs[:6], CLASSES[[0, 1, 0, 1, 0, 1]])
    with pytest.raises(ConfigError, match="neuronguard"):
        GuardRuntime(poc, mode="train")
    with GuardRuntime(clf) as rt:
        with pytest.raises(ShapeError, match="`doc` must be a str"):
            rt.submit(42)
        with pytest.raises(ConfigError, match="`label` is only taken in mode='train'"):
            rt.submit(docs[0], "sports")
        with pytest.raises(ConfigError, match="`train_stream` needs mode='train'"):
            rt.train_stream(docs[:2], ["sports", "science"])
        with pytest.raises(ConfigError, match="`window` must be >= 1"):
            list(rt.map(docs, window=0))
    events_clf = GuardClassifier(epochs=1).fit(np.eye(4, dtype=np.float32), [0, 1, 0, 1])
    with GuardRuntime(events_clf) as rt:
        with pytest.raises(ShapeError, match=r"integers in \[0, 4\)"):
            rt.submit((np.array([5]), np.array([1.0])))
    with GuardRuntime(clf, mode="train") as rt:
        with pytest.raises(ConfigError, match=r"`label` must be one of the classes .*'chess'"):
            rt.submit(docs[0], "chess")
        with pytest.raises(ShapeError, match="same length"):
            rt.train_stream(docs[:3], ["sports"])


def test_stats_are_consistent(text_model):
    clf, docs = text_model
    with GuardRuntime(clf, workers=2, batch_size=8) as rt:
        rt.predict_stream(docs)
    s = rt.stats()
    assert s.documents == len(docs) and sum(s.worker_documents) == len(docs)
    assert s.events == len(clf.transform(docs).indices)
    assert len(docs) / 8 <= s.batches <= len(docs)
    assert 0 < s.p50_us <= s.p99_us
    assert s.busy_s > 0 and s.wall_s > 0 and s.docs_per_s > 0 and s.events_per_s > 0
    assert s.as_dict()["mode"] == "run"


def test_kernels_are_serial_and_release_the_gil():
    """Several threads call these at once: nogil, and never parallel=True (numba's default
    threading layer is not safe to enter from several threads)."""
    for name in ("text_predict", "text_train", "events_predict", "events_train", "text_events"):
        options = getattr(stream, name).targetoptions
        assert options.get("nogil") is True and not options.get("parallel"), name


def test_run_mode_serves_a_compressed_model(text_model):
    """A compressed model's front end drops the pruned tokens and renumbers the kept ones;
    the streaming kernels do the same (a remap table) and predict as the batch API."""
    from neurofabric.guard.compress import compress

    clf, docs = text_model
    small = compress(clf, max_features=40, bits=4)
    assert small.featurizer_.keep_ is not None and len(small.featurizer_.keep_) == 40
    with GuardRuntime(small, workers=2, batch_size=8, return_scores=True) as rt:
        out = rt.predict_stream(docs)
    assert [label for label, _ in out] == small.predict(docs).tolist()
    np.testing.assert_array_equal(np.stack([s for _, s in out]), small.decision_function(docs))
