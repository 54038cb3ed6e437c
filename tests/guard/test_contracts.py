"""The shared contracts of core, as guard uses them: one backend registry (a typo raises, "auto"
runs numba), one progress callback that can stop a fit, one checkpoint reader."""

import json
import shutil
from collections import Counter

import numpy as np
import pytest

from neurofabric.core.errors import CheckpointError, ConfigError
from neurofabric.guard import EventBatch, GuardClassifier, NeuronField, TextGuardClassifier
from neurofabric.guard.kernels import numba_cpu, reference
from neurofabric.guard.text import TextFeaturizer

DOCS = ["cheap pills online", "meeting at noon", "buy cheap pills", "lunch meeting today"]
LABELS = ["spam", "ham", "spam", "ham"]
KERNELS = ("text_features", "guard_train", "field_forward", "field_predict")


def _count_calls(monkeypatch, module) -> Counter:
    calls: Counter = Counter()
    for name in KERNELS:
        fn = getattr(module, name)

        def counted(*args, _fn=fn, _name=name):
            calls[_name] += 1
            return _fn(*args)

        monkeypatch.setattr(module, name, counted)
    return calls


@pytest.mark.parametrize(
    "make",
    [
        lambda: GuardClassifier(backend="numab"),
        lambda: TextGuardClassifier(backend="numab"),
        lambda: TextFeaturizer(backend="numab"),
        lambda: NeuronField.dense(3, 2).forward(EventBatch.from_dense(np.eye(3)), backend="numab"),
        lambda: GuardClassifier().set_params(backend="numab"),
    ],
)
def test_a_backend_typo_raises_naming_the_choices(make):
    with pytest.raises(
        ConfigError, match=r"`backend` must be one of \[.*\] for guard, got 'numab'"
    ) as e:
        make()
    assert all(f"'{name}'" in str(e.value) for name in ("auto", "numba", "reference"))


@pytest.mark.parametrize(
    "backend,used", [("auto", "numba"), ("numba", "numba"), ("reference", "reference")]
)
def test_the_resolved_backend_is_the_one_whose_kernels_run(monkeypatch, backend, used):
    fast = _count_calls(monkeypatch, numba_cpu)
    slow = _count_calls(monkeypatch, reference)
    clf = TextGuardClassifier(n_features=64, epochs=2, seed=0, backend=backend).fit(DOCS, LABELS)
    clf.predict(DOCS)
    assert clf.backend_ == used and clf.featurizer_.backend == used
    ran, idle = (fast, slow) if used == "numba" else (slow, fast)
    assert ran["guard_train"] == 2 and ran["text_features"] >= 2 and ran["field_predict"] == 1
    assert ran["field_forward"] >= 1  # the probability calibration
    assert sum(idle.values()) == 0


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: GuardClassifier(learning_rate=0), r"`learning_rate` must be > 0, got 0"),
        (
            lambda: GuardClassifier(aggressiveness=float("nan")),
            r"`aggressiveness` must be a finite",
        ),
        (lambda: GuardClassifier(epochs=1.5), r"`epochs` must be an integer, got 1.5"),
        (lambda: GuardClassifier(top_n=0), r"`top_n` must be >= 1, got 0"),
        (lambda: GuardClassifier(plus=-1), r"`plus` must be >= 0, got -1"),
        (
            lambda: GuardClassifier(n_jobs=0),
            r"`n_jobs` must be -1 \(all threads\) or an integer >= 1, got 0",
        ),
        (lambda: GuardClassifier(n_jobs="2"), r"`n_jobs` must be an integer, got '2'"),
        (lambda: GuardClassifier(rule="svm"), r"`rule` must be one of \(.*'pa1'.*\), got 'svm'"),
        (lambda: GuardClassifier(floor=float("inf")), r"`floor` must be a finite number, got inf"),
        (lambda: GuardClassifier(margin=-1.0), r"`margin` must be > 0 for the passive-aggressive"),
        (lambda: TextGuardClassifier(n_features=1), r"`n_features` must be >= 2, got 1"),
        (lambda: TextGuardClassifier(word_ngrams=6), r"`word_ngrams` must be <= 5, got 6"),
        (lambda: NeuronField.dense(3, 1), r"`n_outputs` must be >= 2, got 1"),
    ],
)
def test_parameters_are_checked_naming_the_parameter_and_value(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


def test_numpy_scalars_become_plain_numbers_and_plain_values_are_kept_as_given(tmp_path):
    clf = GuardClassifier(learning_rate=np.float32(0.5), epochs=np.int64(2), margin=np.float64(2))
    p = clf.params
    assert (type(p.learning_rate), type(p.epochs), p.learning_rate, p.epochs) == (
        float,
        int,
        0.5,
        2,
    )
    rate = 1  # an int stays the object given (scikit-learn's clone checks identity)
    assert GuardClassifier(learning_rate=rate).get_params()["learning_rate"] is rate
    x = np.eye(4, dtype=np.float32)
    clf.fit(x, [0, 1, 0, 1]).save(tmp_path / "m")  # numpy scalars would not be JSON
    assert GuardClassifier.load(tmp_path / "m").params == clf.params


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    GuardClassifier(epochs=1).fit(np.eye(4, dtype=np.float32), [0, 1, 0, 1]).save(root / "guard")
    TextGuardClassifier(n_features=64, epochs=1).fit(DOCS, LABELS).save(root / "text")
    return root


def _damaged(saved_models, tmp_path, name, damage):
    bad = tmp_path / name
    shutil.copytree(saved_models / name, bad)
    manifest = bad / "manifest.json"
    manifest.write_text(damage(json.loads(manifest.read_text())))
    return bad, manifest


@pytest.mark.parametrize("cls,name", [(GuardClassifier, "guard"), (TextGuardClassifier, "text")])
@pytest.mark.parametrize(
    "damage,match",
    [
        (lambda m: "{garbage", "manifest is not valid JSON"),
        (lambda m: json.dumps({**m, "format": "safetensors"}), "not a neurofabric-checkpoint"),
        (lambda m: json.dumps({**m, "format_version": 99}), "format_version 99 is not supported"),
        (
            lambda m: json.dumps({**m, "meta": {**m["meta"], "field": None}}),
            "metadata is incomplete",
        ),
    ],
)
def test_a_wrong_file_is_a_checkpoint_error_naming_it(
    saved_models, tmp_path, cls, name, damage, match
):
    bad, manifest = _damaged(saved_models, tmp_path, name, damage)
    with pytest.raises(CheckpointError, match=match) as e:
        cls.load(bad)
    assert str(bad) in str(e.value)


@pytest.mark.parametrize("cls,name", [(GuardClassifier, "guard"), (TextGuardClassifier, "text")])
def test_models_saved_before_auto_still_load(saved_models, tmp_path, cls, name):
    """Checkpoints written before backend="auto" hold backend "numba"."""
    bad, _ = _damaged(
        saved_models,
        tmp_path,
        name,
        lambda m: json.dumps({**m, "params": {**m["params"], "backend": "numba"}}),
    )
    clf = cls.load(bad)
    assert clf.params.backend == "numba"
    clf.predict(np.eye(4, dtype=np.float32) if name == "guard" else DOCS)
    assert clf.backend_ == "numba"


def _stop_at(k, seen):
    def callback(p):
        seen.append(p)
        return p.done == k

    return callback


@pytest.mark.parametrize("rule", ["pa1", "perceptron", "neuronguard"])
def test_a_stopped_fit_equals_a_fit_with_that_many_epochs(rule):
    rng = np.random.default_rng(0)
    x = (rng.random((120, 30)) < 0.2).astype(np.float32)
    y = (x[:, :10].sum(axis=1) > x[:, 10:20].sum(axis=1)).astype(int)
    seen = []
    stopped = GuardClassifier(rule=rule, epochs=6, seed=3).fit(x, y, callback=_stop_at(2, seen))
    short = GuardClassifier(rule=rule, epochs=2, seed=3).fit(x, y)
    assert [p.done for p in seen] == [1, 2]  # stopped after the unit where it returned True
    assert {(p.task, p.total, p.unit) for p in seen} == {("guard.fit", 6, "epoch")}
    assert seen[-1]["updates"] == stopped.history_[-1]["updates"] and seen[-1]["epoch"] == 2
    assert stopped.stopped_ and not short.stopped_
    a, b = stopped.field_, short.field_
    assert np.array_equal(a.records, b.records) and np.array_equal(a.weights, b.weights)
    assert np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)
    assert stopped.proba_scale_ == short.proba_scale_
    assert [r["updates"] for r in stopped.history_] == [r["updates"] for r in short.history_]


def test_a_callback_that_returns_nothing_runs_every_epoch():
    seen = []
    clf = TextGuardClassifier(n_features=64, epochs=3, seed=0)
    clf.fit(DOCS, LABELS, callback=seen.append)  # a plain logging function
    assert [p.done for p in seen] == [1, 2, 3] and not clf.stopped_
    assert all(0 <= p["update_rate"] <= 1 and p.elapsed_s >= 0 for p in seen)
    seen.clear()
    clf.fit(DOCS, LABELS, callback=_stop_at(1, seen))
    assert len(seen) == 1 and clf.stopped_ and len(clf.history_) == 1
    clf.predict(DOCS)  # what was learned is kept and usable


def test_a_callback_that_is_not_callable_is_refused_before_any_work():
    clf = TextGuardClassifier(n_features=64, epochs=1)
    with pytest.raises(ConfigError, match="`callback` must be a function taking a Progress"):
        clf.fit(DOCS, LABELS, callback="print")
    assert not hasattr(clf, "featurizer_")


def test_the_router_passes_its_callback_on():
    from neurofabric.guard.router import ExpertRouter, make_requests

    train = make_requests(100, seed=0)
    seen = []
    router = ExpertRouter(epochs=4, seed=0).fit(
        train.requests, train.experts, callback=_stop_at(3, seen)
    )
    assert [p.done for p in seen] == [1, 2, 3] and router.classifier.stopped_
