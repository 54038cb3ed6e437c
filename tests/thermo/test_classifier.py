"""ThermoClassifier end to end on scikit-learn's digits (shipped with scikit-learn)."""

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from neurofabric.core.errors import ConfigError, NotFittedError, ShapeError
from neurofabric.thermo import (
    Adaptive,
    Constant,
    Geometric,
    Linear,
    Moves,
    NeuralFabric,
    ThermoClassifier,
    plot_history,
)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X / 16.0, y, test_size=0.25, random_state=0, stratify=y)


def _model(**kw):
    base = dict(
        hidden=(16,),
        n_proposals=160_000,
        generation=20_000,
        lambda_l0=2.0,
        lambda_l1=0.5,
        w_prune=0.05,
        schedule=Geometric(1.0, 0.01),
        seed=0,
    )
    base.update(kw)
    return ThermoClassifier(**base)


@pytest.fixture(scope="module")
def fitted(digits):
    Xtr, Xte, ytr, yte = digits
    return _model().fit(Xtr, ytr, eval_set=(Xte, yte))


def test_learns_digits_and_prunes(fitted, digits):
    Xtr, Xte, ytr, yte = digits
    untrained = NeuralFabric.layered([64, 16, 10], seed=0)
    base = np.mean(untrained.predict(Xte) == yte)
    acc = fitted.score(Xte, yte)
    assert acc > 0.85 and acc > base + 0.5, (acc, base)
    assert fitted.fabric_.sparsity > 0.2
    h = fitted.history_
    assert len(h) == 8 and h.rows[-1]["proposals"] == 160_000
    energy = h.column("energy")
    assert energy[-1] < energy[0]
    assert np.all((h.column("acceptance") >= 0) & (h.column("acceptance") <= 1))
    assert fitted.backend_ == "numba"
    assert h.column("val_accuracy")[-1] == pytest.approx(acc)


def test_connection_cost_buys_sparsity(digits):
    Xtr, _, ytr, _ = digits
    dense = _model(lambda_l0=0.0, lambda_l1=0.0, n_proposals=100_000).fit(Xtr, ytr)
    sparse = _model(lambda_l0=8.0, w_prune=0.1, patience=0, n_proposals=100_000).fit(Xtr, ytr)
    assert sparse.fabric_.sparsity > dense.fabric_.sparsity + 0.2


def test_same_seed_same_model(digits):
    Xtr, Xte, ytr, _ = digits
    a = _model(n_proposals=40_000).fit(Xtr, ytr)
    b = _model(n_proposals=40_000).fit(Xtr, ytr)
    np.testing.assert_array_equal(a.fabric_.weight, b.fabric_.weight)
    np.testing.assert_array_equal(a.predict_proba(Xte), b.predict_proba(Xte))


def test_pruned_model_saves_and_loads_with_same_predictions(fitted, digits, tmp_path):
    _, Xte, _, _ = digits
    fitted.save(tmp_path / "m")
    back = ThermoClassifier.load(tmp_path / "m")
    np.testing.assert_array_equal(back.predict(Xte), fitted.predict(Xte))
    np.testing.assert_array_equal(back.predict_proba(Xte), fitted.predict_proba(Xte))
    assert back.fabric_.n_edges == fitted.fabric_.n_edges


def test_hybrid_start_from_dense_weights_keeps_learning(digits):
    from sklearn.neural_network import MLPClassifier

    Xtr, Xte, ytr, yte = digits
    mlp = MLPClassifier(hidden_layer_sizes=(16,), max_iter=15, random_state=0).fit(Xtr, ytr)
    init = NeuralFabric.from_dense(mlp.coefs_, mlp.intercepts_)
    start = np.mean(init.predict(Xte) == yte)
    m = _model(n_proposals=60_000, schedule=Geometric(0.05, 0.01)).fit(Xtr, ytr, init=init)
    assert m.score(Xte, yte) > start - 0.02  # no collapse from the warm start
    assert m.fabric_.sparsity > 0.1  # and it prunes what the connection cost does not pay for


def test_parallel_tempering(digits):
    Xtr, Xte, ytr, yte = digits
    m = _model(replicas=3, replica_ratio=1.05, n_proposals=40_000).fit(Xtr, ytr)
    assert m.swap_rate_.shape == (2,)
    assert np.all((m.swap_rate_ >= 0) & (m.swap_rate_ <= 1)) and m.swap_rate_.sum() > 0
    assert m.score(Xte, yte) > 0.6


def test_minibatch_and_schedules(digits):
    Xtr, Xte, ytr, yte = digits
    for schedule in (Linear(1.0, 0.01), Adaptive(t_start=1.0, t_end=0.001)):
        m = _model(batch_size=256, n_proposals=60_000, schedule=schedule).fit(Xtr, ytr)
        t = m.history_.column("temperature")
        assert t[0] == pytest.approx(1.0) and t[-1] < t[0]
        assert m.score(Xte, yte) > 0.5


def test_adaptive_schedule_follows_uphill_acceptance():
    s = Adaptive(t_start=1.0, t_end=1e-4, chi_start=0.5, chi_end=0.5, rate=1.0)
    assert s(0.5, 0.1, 0.25) == pytest.approx(0.2)  # too cold: heat up
    assert s(0.5, 0.1, 1.0) == pytest.approx(0.05)  # too hot: cool down
    assert s(0.0, None, None) == 1.0
    g = Geometric(1.0, 0.01)
    assert g(0.0, None, None) == 1.0 and g(1.0, None, None) == pytest.approx(0.01)
    assert g(0.5, None, None) == pytest.approx(0.1)


def test_without_adaptation_the_step_sizes_stay_fixed(digits):
    Xtr, _, ytr, _ = digits
    m = _model(adapt=False, schedule=Constant(0.5), n_proposals=40_000).fit(Xtr, ytr)
    assert np.all(m.history_.column("sigma") == 0.05)
    assert np.all(m.history_.column("temperature") == 0.5)


def test_callback_can_stop_and_plot(digits, tmp_path, fitted):
    Xtr, _, ytr, _ = digits
    seen = []

    def cb(p):
        assert p.task == "thermo.fit" and p.unit == "generation" and p.total >= 3
        seen.append((p.done, p["generation"], p["proposals"]))
        return p["generation"] >= 1  # True stops

    m = _model().fit(Xtr, ytr, callback=cb)
    assert [s[:2] for s in seen] == [(1, 0), (2, 1)] and len(m.history_) == 2
    assert m.stopped_ and m.n_proposals_done_ == seen[-1][2]
    assert not _model(n_proposals=2 * _model().generation).fit(Xtr, ytr).stopped_
    out = plot_history(fitted.history_, tmp_path / "h.png")
    assert out.stat().st_size > 10_000


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(schedule=Constant(1.0), moves=dict(weight=0.5, bias=0.2)), "sum to 1"),
        (dict(moves=dict(weight=0.9, bias=0.05, birth=0.05)), "both be > 0"),
        (dict(moves=dict(jump=1.0)), "unknown move"),
        (dict(sigma=0.0), "sigma"),
        (dict(density=1.5), "density"),
        (dict(loss="hinge"), "loss"),
        (dict(grid=0.1, w_prune=0.05), "w_prune"),
    ],
)
def test_bad_parameters_are_refused(digits, kwargs, match):
    Xtr, _, ytr, _ = digits
    with pytest.raises(ConfigError, match=match):
        _model(**kwargs).fit(Xtr[:50], ytr[:50])


def test_bad_temperatures_and_data_are_refused(digits):
    Xtr, _, ytr, _ = digits
    with pytest.raises(ConfigError, match="temperature"):
        Constant(0.0)
    with pytest.raises(ConfigError, match="t_end"):
        Geometric(1.0, -1.0)
    with pytest.raises(ConfigError, match="temperature"):
        _model(schedule=lambda f, t, u: 0.0).fit(Xtr[:50], ytr[:50])
    with pytest.raises(ShapeError, match="y"):
        _model().fit(Xtr[:50], ytr[:40])
    with pytest.raises(ConfigError, match="2 classes"):
        _model().fit(Xtr[:5], np.zeros(5))
    with pytest.raises(ShapeError, match="init"):
        _model().fit(Xtr[:50], ytr[:50], init=NeuralFabric.layered([3, 2, 10]))
    with pytest.raises(NotFittedError):
        ThermoClassifier().predict(Xtr)


def test_get_set_params():
    m = ThermoClassifier(hidden=(8,), seed=3)
    p = m.get_params()
    assert p["hidden"] == (8,) and p["seed"] == 3 and "schedule" in p
    m.set_params(lambda_l0=1.5)
    assert m.lambda_l0 == 1.5
    with pytest.raises(ConfigError, match="unknown parameter"):
        m.set_params(nope=1)
    assert Moves(weight=1.0, bias=0.0, birth=0.0, death=0.0).cumulative()[-1] == 1.0


def test_time_budget_drives_the_schedule_to_its_end(digits):
    Xtr, _, ytr, _ = digits
    m = _model(n_proposals=10**9, generation=5_000, max_time=3.0, schedule=Geometric(1.0, 0.001))
    m.fit(Xtr, ytr)
    t = m.history_.column("temperature")
    secs = m.history_.column("seconds")
    assert secs[-1] >= 3.0 and m.n_proposals_done_ < 10**9
    assert t[-1] < 0.01  # the run ended cold although it was cut by time


def test_a_backend_typo_raises_instead_of_falling_back(digits):
    Xtr, _, ytr, _ = digits
    with pytest.raises(ConfigError, match=r"`backend` must be one of .*'numba'.*got 'numab'"):
        _model(backend="numab").fit(Xtr[:50], ytr[:50])


def test_classes_lets_new_classes_be_learned_from_their_data_only(digits):
    """The life-long protocol's second phase: a network of 10 outputs trained on 0-4 learns
    5-9 from their images only (``classes`` names all ten)."""
    Xtr, Xte, ytr, yte = digits
    old, new = ytr < 5, ytr >= 5
    first = _model(n_proposals=60_000).fit(Xtr[old], ytr[old], classes=np.arange(10))
    assert first.classes_.tolist() == list(range(10)) and first.fabric_.n_out == 10
    assert set(np.unique(first.predict(Xte))) <= set(range(5))
    second = _model(n_proposals=60_000, schedule=Geometric(0.1, 0.01))
    second.fit(Xtr[new], ytr[new], init=first.fabric_, classes=np.arange(10))
    assert second.score(Xte[yte >= 5], yte[yte >= 5]) > 0.8
    with pytest.raises(ShapeError, match="10 outputs"):  # the classes set the outputs
        _model().fit(Xtr[new], ytr[new], init=first.fabric_)
    with pytest.raises(ConfigError, match=r"missing from `classes` \[0, 1\]"):
        _model().fit(Xtr, ytr, classes=[0, 1])
