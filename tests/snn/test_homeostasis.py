"""Threshold homeostasis, weight normalization and input rate changes."""

import math

import numpy as np
import pytest

from neurofabric.core.errors import ConfigError
from neurofabric.snn import (
    LIFParams,
    OneToOne,
    PoissonInput,
    Random,
    SpikeMonitor,
    SpikingNetwork,
)
from neurofabric.snn.homeostasis import AdaptiveThreshold, RateTargetThreshold
from neurofabric.snn.plasticity import PairSTDP

DT = 1e-4


def _driven(homeostasis, n=4, current=3e-9, backend="numba"):
    return SpikingNetwork(
        n,
        dt=DT,
        seed=0,
        backend=backend,
        homeostasis=homeostasis,
        neuron=LIFParams(i_ext=np.full(n, current)),
    )


def test_adaptive_threshold_grows_by_theta_plus_per_spike_and_slows_firing():
    h = AdaptiveThreshold(theta_plus=0.5e-3, tau_theta=1e6)
    net = _driven(h)
    res = net.run(0.5, monitors=[SpikeMonitor()])
    counts = np.bincount(res.spike_indices, minlength=4)
    decay = math.exp(-DT / 1e6)
    # theta = theta_plus * sum of decay^(steps since each spike): within 1e-6 of n theta_plus
    np.testing.assert_allclose(net.theta_, counts * 0.5e-3, rtol=1e-4)
    plain = _driven(None).run(0.5, monitors=[SpikeMonitor()])
    assert res.n_spikes < 0.8 * plain.n_spikes  # adaptation lowers the rate
    assert decay < 1.0


def test_theta_decays_exactly_between_spikes():
    h = AdaptiveThreshold(theta_plus=1e-3, tau_theta=20e-3)
    net = _driven(h, n=1, current=1.6e-9)  # R I = 16 mV: a first spike after ~60 ms
    res = net.run(0.2, monitors=[SpikeMonitor()])
    steps = np.rint(res.spike_times / DT).astype(int)
    assert len(steps) >= 1
    expected = sum(1e-3 * math.exp(-DT / 20e-3) ** (1999 - s) for s in steps)
    assert net.theta_[0] == pytest.approx(expected, rel=1e-9)


def test_rate_target_rule_settles_at_the_target():
    eta, target = 0.2e-3, 20.0
    net = _driven(RateTargetThreshold(target_hz=target, eta=eta), n=3, current=3e-9)
    net.run(10.0)  # about 150 Hz before adaptation
    theta0 = net.theta_.copy()
    res = net.run(10.0, monitors=[SpikeMonitor()])
    rates = np.bincount(res.spike_indices, minlength=3) / 10.0
    # exact bookkeeping of the rule: n eta - K eta r dt = change of theta over the window
    np.testing.assert_allclose(rates, target + (net.theta_ - theta0) / (eta * 10.0), rtol=1e-6)
    np.testing.assert_allclose(rates, target, rtol=0.1)


def test_frozen_thresholds_do_not_move():
    net = _driven(AdaptiveThreshold(theta_plus=1e-3))
    net.run(0.2)
    before = net.theta_.copy()
    net.freeze_homeostasis()
    res = net.run(0.2)
    assert res.n_spikes > 0
    np.testing.assert_array_equal(net.theta_, before)
    with pytest.raises(ConfigError, match="no homeostasis"):
        SpikingNetwork(3).freeze_homeostasis()


@pytest.mark.parametrize("backend", ["numba", "reference"])
def test_neuron_range_limits_the_rule(backend):
    h = AdaptiveThreshold(theta_plus=0.5e-3, tau_theta=1e6, neurons=(1, 3))
    net = _driven(h, backend=backend)
    res = net.run(0.3, monitors=[SpikeMonitor()])
    counts = np.bincount(res.spike_indices, minlength=4)
    assert counts.min() > 5  # all four fire; only neurons 1 and 2 adapt
    np.testing.assert_array_equal(net.theta_[[0, 3]], 0.0)
    np.testing.assert_allclose(net.theta_[1:3], counts[1:3] * 0.5e-3, rtol=1e-4)
    assert counts[0] > counts[1]


def test_neuron_range_is_checked():
    with pytest.raises(ConfigError, match="neurons"):
        AdaptiveThreshold(neurons=(3, 1))
    with pytest.raises(ConfigError, match="reaches past"):
        _driven(AdaptiveThreshold(neurons=(0, 9))).run(0.01)


@pytest.mark.parametrize(
    "h",
    [
        AdaptiveThreshold(theta_plus=0.2e-3, tau_theta=0.5),
        AdaptiveThreshold(theta_plus=0.2e-3, tau_theta=0.5, neurons=(5, 30)),
        RateTargetThreshold(target_hz=10.0, eta=0.1e-3),
    ],
)
def test_numba_equals_reference_and_resume(h, tmp_path):
    def make(backend="numba"):
        net = SpikingNetwork(
            40, dt=DT, seed=2, backend=backend, homeostasis=h, v_init=(-70e-3, -56e-3)
        )
        net.add_input("x", PoissonInput(20, rate=80.0))
        net.connect(Random(p=0.3), source="x", weight=4e-3)
        return net

    a = make().run(0.2, monitors=[SpikeMonitor()])
    b = make("reference").run(0.2, monitors=[SpikeMonitor()])
    c = make("torch").run(0.2, monitors=[SpikeMonitor()])
    assert a.n_spikes > 30
    np.testing.assert_array_equal(a.spike_indices, b.spike_indices)
    np.testing.assert_array_equal(c.spike_indices, b.spike_indices)
    part = make()
    r1 = part.run(0.08, monitors=[SpikeMonitor()])
    part.save(tmp_path / "h")
    loaded = SpikingNetwork.load(tmp_path / "h")
    r2 = loaded.run(0.12, monitors=[SpikeMonitor()])
    np.testing.assert_array_equal(
        np.concatenate([r1.spike_indices, r2.spike_indices]), a.spike_indices
    )


def test_normalize_weights_sets_each_targets_sum():
    net = SpikingNetwork(30, seed=1)
    net.add_input("x", PoissonInput(50, rate=10.0))
    net.add_input("y", PoissonInput(5, rate=10.0))
    net.connect(
        Random(p=0.5), source="x", weight=1e-3, weight_std=0.3e-3, plasticity=PairSTDP(w_max=1e-2)
    )
    net.connect(OneToOne(), source="y", weight=2e-3, target_range=(0, 5))
    net.build()
    static_before = net.input_csr_.weights[net.input_csr_.mask == 0].copy()
    net.normalize_weights("x", total=0.02)
    csr = net.input_csr_
    plastic = csr.mask == 1
    sums = np.bincount(csr.indices[plastic], weights=csr.weights[plastic], minlength=30)
    np.testing.assert_allclose(sums[sums > 0], 0.02, rtol=1e-5)
    np.testing.assert_array_equal(csr.weights[~plastic], static_before)
    with pytest.raises(ConfigError, match="not plastic"):
        net.normalize_weights("y", total=1.0)
    # the compiled kernel equals the numpy version bit for bit (same summation order)
    from neurofabric.snn.kernels import reference
    from neurofabric.snn.plasticity import normalize_incoming

    rng = np.random.default_rng(0)
    csr.weights[plastic] = rng.random(int(plastic.sum())).astype(np.float32) * 1e-3
    copy = csr.weights.copy()
    net.normalize_weights("x", total=0.03)
    fast = csr.weights.copy()
    csr.weights[:] = copy
    normalize_incoming(csr, 0, 50, 0.03, 30, "x", reference)
    np.testing.assert_array_equal(fast, csr.weights)
    assert not np.array_equal(fast, copy)


def test_set_input_rates_changes_the_drive():
    from neurofabric.snn import SynapseParams

    net = SpikingNetwork(10, seed=1, synapse=SynapseParams("delta"))
    net.add_input("x", PoissonInput(10, rate=0.0))
    net.connect(OneToOne(), source="x", weight=20e-3, dale=False)
    assert net.run(0.1).n_spikes == 0
    net.set_input_rates("x", np.full(10, 50.0))
    res = net.run(1.0)
    # 10 sources x 50 Hz x 1 s; a 20 mV jump fires the neuron unless it is refractory
    assert 420 < res.n_spikes < 520
    with pytest.raises(ConfigError, match="PoissonInput"):
        net.set_input_rates("nope", 1.0)
