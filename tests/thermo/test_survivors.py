"""Tests added for mutants that survived mutation testing (docs/testing.md): each checks an
invariant the earlier suite left open."""

import math

import pytest
from sklearn.datasets import load_digits

from neurofabric.thermo import Geometric, NeuralFabric, ThermoClassifier


@pytest.fixture(scope="module")
def small():
    X, y = load_digits(return_X_y=True)
    model = ThermoClassifier(
        hidden=(8,),
        n_proposals=20_000,
        generation=5_000,
        schedule=Geometric(1.0, 0.1),
        w_max=math.inf,
        seed=0,
    )
    return model.fit(X[:300] / 16.0, y[:300])


def test_one_chain_has_no_swap_rates(small):
    # replicas - 1 neighbouring pairs exchange; one replica has none
    assert small.replicas == 1 and small.swap_rate_.shape == (0,)


def test_save_keeps_the_proposal_count_and_the_parameters(small, tmp_path):
    path = small.save(tmp_path / "m")
    back = ThermoClassifier.load(path)
    assert back.n_proposals_done_ == small.n_proposals_done_ > 0
    # the saved metadata holds every JSON-typed parameter as itself, not as its repr
    params = NeuralFabric.load(path).meta["params"]
    expected = {
        k: v
        for k, v in small.get_params().items()
        if isinstance(v, str | int | bool)
        or v is None
        or (isinstance(v, float) and math.isfinite(v))
    }
    assert len(expected) > 5 and all(params[k] == v for k, v in expected.items())
    assert params["w_max"] == str(small.w_max)  # a non-finite float is saved as its name
    assert params["hidden"] == [8] and params["seed"] == 0
    assert params["schedule"] == repr(small.schedule)
