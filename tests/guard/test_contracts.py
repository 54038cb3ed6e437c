"""The shared contracts of core, as guard uses them: one backend registry (a typo raises, "auto"
runs numba), one progress callback that can stop a fit, one checkpoint reader."""

from collections import Counter

import numpy as np
import pytest

from neurofabric.core.errors import ConfigError
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
