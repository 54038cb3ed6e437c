"""Input groups: Poisson statistics, backend agreement, independence from chunking."""

import numpy as np
import pytest

from neurofabric.core.errors import ConfigError, ShapeError
from neurofabric.snn import (
    OneToOne,
    PoissonInput,
    SpikeArrayInput,
    SpikeMonitor,
    SpikingNetwork,
    StateMonitor,
)
from neurofabric.snn.kernels import numba_cpu, reference


@pytest.mark.parametrize("lam", [0.02, 1.0, 7.5, 60.0])
def test_poisson_counts_have_poisson_mean_and_variance(lam):
    n = 200_000
    u = reference.uniform_array(12345, np.arange(n, dtype=np.int64))
    lam_a = np.full(n, lam)
    counts = reference.poisson_counts(lam_a, np.exp(-lam_a), u)
    # mean within 4 standard errors; variance of a Poisson equals its mean
    assert counts.mean() == pytest.approx(lam, abs=4 * np.sqrt(lam / n))
    assert counts.var() == pytest.approx(lam, rel=0.05)


def test_uniform_stream_and_counts_agree_across_backends():
    i = np.arange(5000, dtype=np.int64)
    u = reference.uniform_array(987654321, i)
    assert all(numba_cpu.uniform(987654321, int(k)) == u[k] for k in range(0, 5000, 37))
    assert np.all((u > 0) & (u < 1))
    lam = np.linspace(0.001, 20, 5000)
    counts = reference.poisson_counts(lam, np.exp(-lam), u)
    for k in range(0, 5000, 41):
        assert numba_cpu.poisson_count(lam[k], np.exp(-lam[k]), u[k]) == counts[k]


def _probe(rate, backend="numba"):
    # every Poisson spike makes the neuron's g_e jump by exactly 1 nV: g_e counts the input
    net = SpikingNetwork(3, dt=1e-4, backend=backend, seed=11)
    net.add_input("p", PoissonInput(3, rate=rate))
    return net.connect(OneToOne(), source="p", weight=1e-9)


def test_poisson_rate_reaches_the_neurons():
    rate, duration = 400.0, 2.0
    net = _probe(rate)
    res = net.run(duration, monitors=[StateMonitor(neurons=[0, 1, 2], variables=("ge",))])
    ge = res.state["ge"]
    decay = np.exp(-1e-4 / 5e-3)
    jumps = ge[1:] - ge[:-1] * decay  # the input applied at each step
    total = np.round(jumps / np.float32(1e-9)).sum(axis=0)
    expected = rate * duration
    assert np.all(np.abs(total - expected) < 5 * np.sqrt(expected))


def test_poisson_is_independent_of_chunking_and_backend():
    whole = _probe(300.0).run(0.05, monitors=[StateMonitor(neurons=[0, 1, 2], variables=("ge",))])
    net = _probe(300.0)
    parts = [
        net.run(0.01, monitors=[StateMonitor(neurons=[0, 1, 2], variables=("ge",))])
        for _ in range(5)
    ]
    np.testing.assert_array_equal(np.concatenate([p.state["ge"] for p in parts]), whole.state["ge"])
    ref = _probe(300.0, "reference").run(
        0.05, monitors=[StateMonitor(neurons=[0, 1, 2], variables=("ge",))]
    )
    np.testing.assert_array_equal(ref.state["ge"], whole.state["ge"])


def test_spike_array_input_delivers_given_times():
    from neurofabric.snn import SynapseParams

    net = SpikingNetwork(2, dt=1e-4, seed=0, synapse=SynapseParams("delta"))
    net.add_input("x", SpikeArrayInput(2, indices=[0, 1, 0], times=[1e-3, 2e-3, 5e-3]))
    net.connect(OneToOne(), source="x", weight=20e-3, delay=1e-4)
    res = net.run(8e-3, monitors=[SpikeMonitor()])
    # a 20 mV jump crosses the 15 mV gap to threshold in the step the input arrives
    assert res.spike_indices.tolist() == [0, 1, 0]
    np.testing.assert_allclose(res.spike_times, [1.1e-3, 2.1e-3, 5.1e-3], atol=1e-12)


def test_input_errors():
    with pytest.raises(ShapeError, match="rate"):
        PoissonInput(3, rate=[1.0, 2.0])
    with pytest.raises(ConfigError, match=r"PoissonInput.rate. must be >= 0 \(Hz\)"):
        PoissonInput(3, rate=-1.0)
    with pytest.raises(ConfigError, match="spikes per step"):
        SpikingNetwork(1).add_input("p", PoissonInput(1, rate=1e7))
    with pytest.raises(ConfigError, match=r"\[0, 2\)"):
        SpikeArrayInput(2, indices=[2], times=[0.0])
    with pytest.raises(ShapeError, match="same length"):
        SpikeArrayInput(2, indices=[0, 1], times=[0.0])
