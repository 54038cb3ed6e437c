"""The shared formulas (kernels/formulas.py): the numba backend compiles them with scalar
primitives, the reference calls them on arrays; both must compute the same numbers."""

import numpy as np
import pytest

from neurofabric.snn.kernels import formulas
from neurofabric.snn.kernels import layout as L
from neurofabric.snn.kernels.numba_jit import formula
from neurofabric.snn.plasticity import DiehlCookSTDP, TripletSTDP

RNG = np.random.default_rng(7)
N = 400


def _elementwise(name, *arrays, first=(), last=()):
    """The compiled formula called on each element (numba: scalars), with the arguments
    ``first`` before and ``last`` after the elements."""
    fn = formula[name]
    return np.array([fn(*first, *(a[k] for a in arrays), *last) for k in range(len(arrays[0]))])


@pytest.mark.parametrize("name", ["cuba_v", "coba_v"])
def test_neuron_updates_agree_on_scalars_and_arrays(name):
    v, x_e, x_i = RNG.normal(-0.06, 0.01, N), RNG.exponential(0.01, N), RNG.exponential(0.02, N)
    args = (v, x_e, x_i, np.full(N, -0.049), np.full(N, 0.995), np.full(N, 0.01), np.full(N, 0.02))
    if name == "coba_v":
        args = (v, x_e, x_i, np.full(N, -0.06), np.full(N, 0.005), np.zeros(N), np.full(N, -0.08))
    np.testing.assert_array_equal(getattr(formulas, name)(*args), _elementwise(name, *args))


def test_flushed_keeps_values_at_or_above_the_floor_and_zeroes_the_rest():
    g = np.concatenate([[formulas.G_FLUSH, -formulas.G_FLUSH, 1e-31, -1e-300, 0.0, 5e-324, 0.3]])
    want = np.where(np.abs(g) >= formulas.G_FLUSH, g, 0.0)
    np.testing.assert_array_equal(formulas.flushed(g), want)
    np.testing.assert_array_equal(_elementwise("flushed", g), want)


@pytest.mark.parametrize("mu", [0.0, 0.5, 1.0, 2.0])
def test_soft_bound_and_clip_agree(mu):
    x = np.concatenate([RNG.normal(0.0, 1.0, N), [0.0, -0.0, 1e-300]])
    soft = formulas.soft_bound(x, mu)
    np.testing.assert_array_equal(
        np.broadcast_to(soft, x.shape), _elementwise("soft_bound", x, last=(mu,))
    )
    assert np.all(np.broadcast_to(soft, x.shape)[x <= 0] == (1.0 if mu == 0 else 0.0))
    rule = TripletSTDP(w_min=-0.5, w_max=0.7).vector()
    got = _elementwise("clip_weight", x, last=(rule,))
    np.testing.assert_array_equal(formulas.clip_weight(x, rule), got)
    np.testing.assert_array_equal(got, np.clip(x, -0.5, 0.7))


@pytest.mark.parametrize(
    "rule",
    [
        TripletSTDP(weight_dependence="multiplicative").vector(),
        TripletSTDP(weight_dependence="additive").vector(),
        DiehlCookSTDP(mu=0.5).vector(),
    ],
)
def test_weight_changes_agree(rule):
    w, a, b = RNG.uniform(0.0, 1.0, N), RNG.exponential(1.0, N), RNG.exponential(1.0, N)
    down = _elementwise("depression", w, a, b, first=(rule,))
    up = _elementwise("potentiation", w, a, b, first=(rule,))
    np.testing.assert_array_equal(formulas.depression(rule, w, a, b), down)
    np.testing.assert_array_equal(formulas.potentiation(rule, w, a, b), up)
    if rule[L.RULE_KIND] == L.KIND_TRIPLET:  # pre spike: o1 (A2- + A3- r2) (w - w_min)^mu
        mu = rule[L.MU_MINUS]
        want = a * (rule[L.A2_MINUS] + rule[L.A3_MINUS] * b) * (w - rule[L.W_MIN]) ** mu
        np.testing.assert_allclose(down, want, rtol=1e-12)


def test_trace_decay_is_the_exponential_of_the_steps():
    steps = np.arange(1, 50)
    want = np.exp(-(steps * 1e-4) / 0.02)
    np.testing.assert_allclose(formulas.trace_decay(steps, 1e-4, 0.02), want, rtol=1e-15)
    got = np.array([formula["trace_decay"](int(k), 1e-4, 0.02) for k in steps])
    np.testing.assert_allclose(got, want, rtol=1e-15)
