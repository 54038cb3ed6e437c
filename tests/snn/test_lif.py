"""LIF dynamics against analytic results."""

import math

import numpy as np
import pytest

from neurofabric.core.errors import ConfigError, ShapeError
from neurofabric.snn import LIFParams, SpikeMonitor, SpikingNetwork, StateMonitor, SynapseParams


def analytic_rate(r_i, v_rest=-70e-3, v_th=-55e-3, v_reset=-70e-3, tau=20e-3, t_ref=2e-3):
    num = r_i - (v_reset - v_rest)
    den = r_i - (v_th - v_rest)
    return 1.0 / (t_ref + tau * math.log(num / den))


@pytest.mark.parametrize("backend,dt,duration", [("numba", 1e-5, 2.0), ("reference", 1e-4, 1.0)])
def test_rate_under_constant_current_matches_analytic(backend, dt, duration):
    currents = np.array([1.6e-9, 2.0e-9, 3.0e-9, 5.0e-9])  # R I = 16, 20, 30, 50 mV
    net = SpikingNetwork(
        len(currents), neuron=LIFParams(i_ext=currents), dt=dt, backend=backend, seed=0
    )
    res = net.run(duration, monitors=[SpikeMonitor()])
    for i, current in enumerate(currents):
        times = res.spike_times[res.spike_indices == i]
        measured = 1.0 / np.mean(np.diff(times))  # from inter-spike intervals
        expected = analytic_rate(10e6 * current)
        assert measured == pytest.approx(expected, rel=0.01), (i, measured, expected)


def test_subthreshold_current_never_fires_and_relaxes_exactly():
    # R I = 10 mV < 15 mV to threshold: V(t) = V_rest + R I (1 - exp(-t / tau)), no spikes
    net = SpikingNetwork(1, neuron=LIFParams(i_ext=1e-9), dt=1e-4, seed=0)
    res = net.run(0.1, monitors=[SpikeMonitor(), StateMonitor(neurons=[0], every=10)])
    assert res.n_spikes == 0
    t = res.state_times + 1e-4  # a record at step k holds V after integrating to (k+1) dt
    expected = -70e-3 + 10e-3 * (1 - np.exp(-t / 20e-3))
    np.testing.assert_allclose(res.state["v"][:, 0], expected, rtol=0, atol=1e-12)


def test_synaptic_current_decays_exponentially():
    from neurofabric.snn import OneToOne, SpikeArrayInput

    net = SpikingNetwork(1, synapse=SynapseParams("cuba", tau_e=5e-3), dt=1e-4, seed=0)
    net.add_input("x", SpikeArrayInput(1, indices=[0], times=[0.0]))
    net.connect(OneToOne(), source="x", weight=1e-3)
    res = net.run(0.02, monitors=[StateMonitor(neurons=[0], variables=("ge",))])
    ge = res.state["ge"][:, 0]
    k = np.arange(len(ge))
    w = float(np.float32(1e-3))  # weights are stored as float32
    expected = np.where(k >= 1, w * np.exp(-1e-4 * k / 5e-3), 0.0)
    np.testing.assert_allclose(ge, expected, rtol=1e-12, atol=1e-18)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"neuron": LIFParams(tau_m=-0.01)}, r"`tau_m` must be > 0"),
        ({"dt": 5e-3}, r"`dt` must be smaller than the shortest time constant"),
        ({"dt": 0.0}, r"`dt` must be > 0"),
        ({"neuron": LIFParams(v_reset=-50e-3)}, r"`v_reset` must be below `v_th`"),
        ({"storage": "dense"}, r"`storage` must be one of"),
        ({"excitatory_ratio": 1.2}, r"probability"),
    ],
)
def test_bad_parameters_raise_config_error(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        SpikingNetwork(10, **kwargs)


def test_mismatched_per_neuron_array():
    with pytest.raises(ShapeError, match="one per neuron"):
        SpikingNetwork(10, neuron=LIFParams(tau_m=np.full(9, 0.02)))


@pytest.mark.parametrize("backend", ["numba", "reference"])
def test_lockout_spaces_spikes_while_v_integrates(backend):
    """With t_lock > t_ref, v runs again after t_ref, so a strongly driven neuron sits above
    threshold and fires the first step after the lockout: ISI = t_lock + dt (as t_ref + dt
    without a lockout: the counter counts the steps after the spike step); a weakly
    driven one (integration takes longer than the lockout) keeps the analytic rate."""
    dt = 1e-4
    currents = np.array([50e-9, 1.6e-9])  # R I = 500 mV and 16 mV
    net = SpikingNetwork(
        2,
        neuron=LIFParams(i_ext=currents, t_ref=2e-3, t_lock=10e-3),
        dt=dt,
        backend=backend,
        seed=0,
    )
    res = net.run(0.5, monitors=[SpikeMonitor()])
    fast = np.rint(res.spike_times[res.spike_indices == 0] / dt).astype(int)
    assert len(fast) > 40 and np.all(np.diff(fast) == 101)
    slow = res.spike_times[res.spike_indices == 1]
    assert 1 / np.mean(np.diff(slow)) == pytest.approx(analytic_rate(16e-3), rel=0.02)
    with pytest.raises(ConfigError, match="t_lock"):
        SpikingNetwork(1, neuron=LIFParams(t_ref=2e-3, t_lock=1e-3)).run(0.01)
