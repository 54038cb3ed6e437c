"""Compression of text models: pruning by importance, retraining, row quantization, the rows
layout on disk, and the size budget."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neurofabric.core.errors import CheckpointError, ConfigError, NotFittedError
from neurofabric.guard import TextGuardClassifier, saved_bytes
from neurofabric.guard.compress import compress, importance
from neurofabric.guard.io import decode_ids, encode_ids, quantize_rows
from tests._corrupt import corrupted_copy

TOPICS = ["sports", "science", "politics", "music"]


def _corpus(n, seed):
    """Each document: 6 words of its class's 25, 6 of 200 shared ones (noise)."""
    rng = np.random.default_rng(seed)
    docs, labels = [], []
    for k in range(n):
        c = k % 4
        own = [f"{TOPICS[c]}{rng.integers(25)}" for _ in range(6)]
        noise = [f"common{rng.integers(200)}" for _ in range(6)]
        docs.append(" ".join(rng.permutation(own + noise)))
        labels.append(TOPICS[c])
    return docs, np.array(labels)


@pytest.fixture(scope="module")
def model():
    docs, labels = _corpus(800, 0)
    clf = TextGuardClassifier(n_features=1 << 12, epochs=5, seed=0).fit(docs, labels)
    return clf, docs, labels, _corpus(400, 1)


def test_quantize_rows_is_symmetric_per_row_and_idempotent():
    rng = np.random.default_rng(0)
    W = rng.normal(size=(50, 7)) * rng.lognormal(size=(50, 1))
    for bits in (2, 4):
        top = (1 << (bits - 1)) - 1
        q, scale = quantize_rows(W, bits)
        assert scale.dtype == np.float16 and q.min() >= -top and q.max() <= top
        assert np.all(np.abs(q).max(axis=1) == top)  # the row's peak maps to the top code
        deq = q * scale.astype(np.float64)[:, None]
        # round to nearest: each weight within half a step (plus float16's rounding of s)
        err = np.abs(deq - W) / scale.astype(np.float64)[:, None]
        assert err.max() <= 0.5 + 1e-2
        q2, scale2 = quantize_rows(deq.astype(np.float32), bits)
        assert np.array_equal(q, q2) and np.array_equal(scale, scale2)
    with pytest.raises(CheckpointError, match="finite"):
        quantize_rows(np.array([[np.nan, 1.0]]), 4)


def test_ids_round_trip_in_the_smallest_type():
    ids = np.array([3, 10, 300, 301, 70_000])
    enc = encode_ids(ids)
    assert enc.dtype == np.uint32 and np.array_equal(decode_ids(enc), ids)
    assert encode_ids(np.array([1, 2, 200])).dtype == np.uint8
    with pytest.raises(CheckpointError, match="ascending"):
        encode_ids(np.array([5, 5]))


def test_importance_ranks_class_words_above_shared_noise(model):
    clf = model[0]
    score = importance(clf)
    feat = clf.featurizer_
    topical = feat.transform(["sports1 science2 politics3 music4"]).indices
    noise = feat.transform(["common1 common2 common3 common4"]).indices
    assert score[topical].min() > np.median(score[noise])


@pytest.mark.parametrize("bits", [4, 2])
def test_compressed_model_keeps_accuracy_and_round_trips(model, tmp_path, bits):
    clf, docs, labels, (test_docs, test_labels) = model
    full = clf.score(test_docs, test_labels)
    small = compress(clf, max_features=100, bits=bits, texts=docs, labels=labels)
    assert small.featurizer_.n_inputs <= 100 and small.guard.field_.n_inputs <= 100
    assert small.score(test_docs, test_labels) > full - 0.03
    assert small.compression_["bits"] == bits and small.compression_["retrained"]
    path = small.save(tmp_path / "small")
    back = TextGuardClassifier.load(path)
    assert np.array_equal(back.predict(test_docs), small.predict(test_docs))
    np.testing.assert_allclose(
        back.decision_function(test_docs), small.decision_function(test_docs), rtol=1e-6
    )
    assert back.compression_ == small.compression_
    assert saved_bytes(path) < saved_bytes(clf.save(tmp_path / "full")) / 4
    assert not hasattr(clf, "compression_")  # the source model is not changed


def test_centring_keeps_predictions_without_pruning(model):
    """Subtracting a row's mean over the outputs moves every score of a document alike."""
    clf, _, _, (test_docs, _) = model
    n_rows = int(np.count_nonzero(importance(clf)))
    small = compress(clf, max_features=n_rows, bits=4)
    ref = clf.decision_function(test_docs)
    got = small.decision_function(test_docs)
    # the same ranking up to 4-bit noise: nearly every prediction unchanged
    assert np.mean(np.argmax(ref, 1) == np.argmax(got, 1)) > 0.97
    # and the differences between classes match (the shift is common to all of them)
    d_ref, d_got = ref - ref.mean(1, keepdims=True), got - got.mean(1, keepdims=True)
    assert np.corrcoef(d_ref.ravel(), d_got.ravel())[0, 1] > 0.99


def test_max_bytes_is_met_and_tight(model, tmp_path):
    clf, docs, labels, _ = model
    for budget, retrain in ((4_000, False), (4_000, True), (4_500, True)):
        kw = {"texts": docs, "labels": labels} if retrain else {}
        small = compress(clf, max_bytes=budget, bits=4, **kw)
        size = saved_bytes(small.save(tmp_path / f"m{budget}{retrain}"))
        assert size <= budget
        # tight: one more input's worth of bytes would have bought more rows
        assert size > budget - 200, (budget, size)


def test_pruning_drops_the_rest_of_the_vocabulary(model):
    clf, docs, labels, (test_docs, _) = model
    small = compress(clf, max_features=30, bits=4)
    events = small.transform(test_docs)
    assert events.n_inputs == 30 and events.indices.max() < 30
    # every kept input maps back to one of the 30 most important hashed ids
    order = np.argsort(-importance(clf), kind="stable")[:30]
    assert np.array_equal(small.featurizer_.keep_, np.sort(order))


def test_bad_requests_are_refused(model):
    clf, docs, labels, _ = model
    with pytest.raises(ConfigError, match="max_features"):
        compress(clf)
    with pytest.raises(ConfigError, match="`bits`"):
        compress(clf, max_features=10, bits=3)
    with pytest.raises(ConfigError, match="both `texts` and `labels`"):
        compress(clf, max_features=10, texts=docs)
    with pytest.raises(ConfigError, match="too small"):
        compress(clf, max_bytes=100)
    with pytest.raises(NotFittedError):
        compress(TextGuardClassifier(), max_features=10)
    with pytest.raises(ConfigError, match="TextGuardClassifier"):
        compress("model.bin", max_features=10)


def test_a_corrupt_rows_file_is_a_checkpoint_error(model, tmp_path):
    clf = model[0]
    path = compress(clf, max_features=50, bits=4).save(tmp_path / "m")
    import json

    manifest = json.loads((path / "manifest.json").read_text())
    manifest["meta"]["field"]["n_outputs"] = 7  # codes no longer fit the rows
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="corrupt"):
        TextGuardClassifier.load(path)


def test_a_compressed_model_compresses_again_and_keeps_learning(model, tmp_path):
    clf, docs, labels, (test_docs, test_labels) = model
    first = compress(clf, max_features=120, bits=4)
    second = compress(first, max_features=40, bits=2)
    # the second keeps hashed ids among the first's, the 40 most important of them
    assert set(second.featurizer_.keep_) <= set(first.featurizer_.keep_)
    assert len(second.featurizer_.keep_) == 40 and second.compression_["bits"] == 2
    assert second.score(test_docs, test_labels) > 0.5
    # partial_fit goes on in the kept inputs; the save re-quantizes to the model's bits
    before = second.guard.field_.weight_matrix().copy()
    second.partial_fit(docs[:200], labels[:200])
    assert second.guard.field_.n_inputs == 40
    assert not np.array_equal(second.guard.field_.weight_matrix(), before)
    back = TextGuardClassifier.load(second.save(tmp_path / "s"))
    assert back.compression_["bits"] == 2 and back.featurizer_.n_inputs == 40
    # fit() starts a new, uncompressed model
    second.fit(docs, labels)
    assert not hasattr(second, "compression_") and second.featurizer_.keep_ is None


@pytest.fixture(scope="module")
def saved_small(model, tmp_path_factory):
    from neurofabric.core.checkpoint import load_checkpoint

    clf, docs, _, (test_docs, _) = model
    folder = tmp_path_factory.mktemp("small") / "m"
    compress(clf, max_features=60, bits=4).save(folder)
    return folder, load_checkpoint(folder).arrays, test_docs[:40]


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    which=st.integers(0, 10**6),
    choice=st.integers(0, 4),
    pos=st.integers(0, 10**6),
    value=st.sampled_from([-(2**31), -7, -1, 0, 1, 3, 15, 16, 255, 2**32 - 1, 10**12]),
)
def test_corrupted_compressed_models_never_crash(
    saved_small, tmp_path_factory, which, choice, pos, value
):
    """Every array of the bundle (kept ids, packed codes, scales, idf, thresholds) corrupted
    with the checksums made to match: a CheckpointError, or a model that predicts."""
    folder, arrays, docs = saved_small
    bad = corrupted_copy(
        folder, arrays, tmp_path_factory.mktemp("bad") / "m", which, choice, pos, value
    )
    try:
        clf = TextGuardClassifier.load(bad)
    except CheckpointError:
        return
    assert clf.predict(docs).shape == (len(docs),)
