"""The reduced Wong-Wang region: its fixed point against a root of the model's equation
(scipy), its transfer function's limit, coupling through the brain, and save/load."""

import math

import numpy as np
import pytest
from scipy.optimize import brentq

from neurofabric.core.errors import ConfigError
from neurofabric.snn.brain import Brain, MeanFieldRegion, WongWangRegion, load_brain, save_brain
from neurofabric.snn.meanfield import brunel_population

# Deco et al. (2013), seconds and Hz
A, B, D, GAMMA, TAU, W, JN, IO = 270.0, 108.0, 0.154, 0.641, 0.1, 0.9, 0.2609, 0.3


def _h(x):
    u = A * x - B
    return u / (1.0 - math.exp(-D * u))


def _fixed_point(extra_current):
    """S with dS/dt = 0, written out independently of the region's code."""

    def f(s):
        return -s / TAU + (1.0 - s) * GAMMA * _h(W * JN * s + IO + extra_current)

    return brentq(f, 1e-9, 1.0 - 1e-9, xtol=1e-14)


@pytest.mark.parametrize("extra", [0.0, 2.0, 6.0])
def test_the_region_settles_on_the_fixed_point_of_its_equation(extra):
    r = WongWangRegion("ww", n_neurons=1000, dt=2e-4)
    for _ in range(8000):  # 8 s: convergence is slow near the upper state (extra = 2)
        rate = r.advance(1e-3, extra)
    s_star = _fixed_point(r.gain * extra)
    assert r.S == pytest.approx(s_star, rel=1e-3)
    assert rate == pytest.approx(_h(W * JN * s_star + IO + r.gain * extra), rel=1e-3)
    assert r.gain == pytest.approx(JN * GAMMA * TAU)


def test_the_transfer_function_is_continuous_where_its_formula_divides_by_zero():
    r = WongWangRegion("ww", n_neurons=1)
    at = B / A  # a x = b: 0 / 0 in the formula, 1 / d in the limit
    assert r.H(at) == pytest.approx(1.0 / D)
    for eps in (1e-6, -1e-6):
        assert r.H(at + eps) == pytest.approx(1.0 / D, rel=1e-3)
    assert r.H(np.array([0.3, 0.5])) == pytest.approx([_h(0.3), _h(0.5)])


def test_more_input_raises_the_rate_and_noise_is_seeded():
    rates = []
    for extra in (0.0, 5.0, 10.0):
        r = WongWangRegion("ww", n_neurons=10)
        rates.append([r.advance(1e-3, extra) for _ in range(500)][-1])
    assert rates[0] < rates[1] < rates[2]
    runs = []
    for seed in (1, 1, 2):
        r = WongWangRegion("ww", n_neurons=10, sigma=0.01, seed=seed)
        runs.append([r.advance(1e-3, 0.0) for _ in range(200)])
    assert runs[0] == runs[1] and runs[0] != runs[2]


def test_a_brain_with_a_wong_wang_region_saves_and_continues_exactly(tmp_path):
    def build():
        regions = [
            WongWangRegion("ww", n_neurons=1000, sigma=0.005, seed=3),
            MeanFieldRegion("mf", brunel_population(g=5.0, eta=2.0), n_neurons=1000),
        ]
        w = np.array([[0.0, 0.2], [0.05, 0.0]])
        return Brain(regions, w, delays=np.array([[1, 3], [2, 1]]), interval=1e-3)

    whole = build().run(0.12).rates
    brain = build()
    first = brain.run(0.05).rates
    save_brain(brain, tmp_path / "b")
    rest = load_brain(tmp_path / "b").run(0.07).rates
    np.testing.assert_array_equal(np.vstack([first, rest]), whole)
    assert whole[:, 0].min() > 0  # the Wong-Wang region reports a rate every interval


def test_bad_parameters_are_refused():
    with pytest.raises(ConfigError, match="`S`"):
        WongWangRegion("ww", n_neurons=1, S=1.5)
    with pytest.raises(ConfigError, match="`tau_s`"):
        WongWangRegion("ww", n_neurons=1, tau_s=0.0)
    with pytest.raises(ConfigError, match="`sigma`"):
        WongWangRegion("ww", n_neurons=1, sigma=-1.0)
