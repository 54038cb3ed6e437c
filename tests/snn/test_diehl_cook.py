"""The Diehl & Cook pipeline on scikit-learn's digits (8 x 8, shipped with scikit-learn)."""

import numpy as np
import pytest
from sklearn.datasets import load_digits

from neurofabric.core.errors import ConfigError, NotFittedError, ShapeError
from neurofabric.snn.diehl_cook import DiehlCookClassifier

PARAMS = {"n_neurons": 50, "seed": 0, "norm_per_input": 0.3, "theta_plus": 0.2e-3}


@pytest.fixture(scope="module")
def digits():
    return load_digits(return_X_y=True)


def test_learning_beats_chance_and_an_untrained_network(digits):
    x, y = digits
    progress = []
    trained = DiehlCookClassifier(**PARAMS).fit(x[:300], y[:300], callback=progress.append)
    assert len(progress) == 300 and progress[-1].images_per_s > 0
    acc = trained.score(x[1500:1700], y[1500:1700])
    untrained = DiehlCookClassifier(**PARAMS).fit(x[:1], y[:1], label_images=0)
    untrained.classes_ = np.arange(10)
    untrained.relabel(x[:300], y[:300])
    acc_untrained = untrained.score(x[1500:1700], y[1500:1700])
    # measured 0.47 against 0.30 untrained (chance 0.10)
    assert acc > 0.35
    assert acc > acc_untrained + 0.08
    w = trained.input_weights_
    # non-negative and normalized per neuron (normalization may lift a weight above w_max
    # until the next plastic update clips it, as in Diehl & Cook's procedure)
    assert w.shape == (50, 64) and np.all(w >= 0)
    np.testing.assert_allclose(w.sum(axis=1), 0.3 * 64, rtol=1e-4)


def test_bad_input(digits):
    x, y = digits
    with pytest.raises(ShapeError, match="labels"):
        DiehlCookClassifier(n_neurons=5).fit(x[:10], y[:9])
    with pytest.raises(ConfigError, match="non-negative"):
        DiehlCookClassifier(n_neurons=5).fit(-x[:10], y[:10])
    with pytest.raises(ConfigError, match="max_rate"):
        DiehlCookClassifier(max_rate=0.0)
    with pytest.raises(NotFittedError):
        DiehlCookClassifier(n_neurons=5).predict(x[:2])
    clf = DiehlCookClassifier(n_neurons=5).fit(x[:5], y[:5], label_images=None)
    with pytest.raises(ShapeError, match="64 pixels"):
        clf.predict(np.zeros((2, 10)))


def test_report_save_load_and_plots(digits, tmp_path):
    from neurofabric.snn.plots import plot_confusion, plot_receptive_fields

    x, y = digits
    clf = DiehlCookClassifier(**{**PARAMS, "n_neurons": 20}).fit(x[:60], y[:60])
    from sklearn.metrics import confusion_matrix, f1_score

    from neurofabric.core.metrics import classification_report

    # each presentation draws new Poisson spikes: score one fixed prediction
    pred = clf.predict(x[1500:1560])
    rep = classification_report(y[1500:1560], pred, 10)
    np.testing.assert_array_equal(
        rep["confusion"], confusion_matrix(y[1500:1560], pred, labels=range(10))
    )
    assert rep["macro_f1"] == pytest.approx(f1_score(y[1500:1560], pred, average="macro"))
    assert rep["accuracy"] == pytest.approx(np.mean(pred == y[1500:1560]))
    assert clf.report(x[1500:1510], y[1500:1510])["confusion"].sum() == 10
    clf.save(tmp_path / "model")
    back = DiehlCookClassifier.load(tmp_path / "model")
    np.testing.assert_array_equal(back.assignments_, clf.assignments_)
    np.testing.assert_array_equal(back.input_weights_, clf.input_weights_)
    np.testing.assert_array_equal(back.predict(x[1500:1510]), clf.predict(x[1500:1510]))
    assert plot_confusion(rep["confusion"], tmp_path / "c.png").stat().st_size > 1000
    assert (
        plot_receptive_fields(
            clf.input_weights_, tmp_path / "r.png", image_shape=(8, 8), labels=clf.assignments_
        )
        .stat()
        .st_size
        > 1000
    )
