"""Backends and propagation paths against the numpy reference: identical float64 rasters."""

import numpy as np
import pytest

from neurofabric.snn import (
    LIFParams,
    OneToOne,
    PoissonInput,
    Random,
    SpikeArrayInput,
    SpikeMonitor,
    SpikingNetwork,
    StateMonitor,
    SynapseParams,
)
from neurofabric.snn.models import brunel, coba, cuba


def _raster(net, duration=0.1):
    res = net.run(duration, monitors=[SpikeMonitor(), StateMonitor(neurons=[0, 5], every=7)])
    return res


def _heterogeneous(backend, propagation="auto"):
    rng = np.random.default_rng(0)
    n = 300
    neuron = LIFParams(
        tau_m=rng.uniform(10e-3, 30e-3, n),
        t_ref=rng.uniform(1e-3, 3e-3, n),
        i_ext=rng.uniform(1.2e-9, 2.2e-9, n),
    )
    net = SpikingNetwork(
        n,
        neuron=neuron,
        synapse=SynapseParams("cuba"),
        backend=backend,
        propagation=propagation,
        max_delay=5e-3,
        v_init=(-70e-3, -56e-3),
        seed=2,
    )
    net.add_input("drive", PoissonInput(50, rate=200.0))
    net.connect(
        Random(p=0.1), weight=0.5e-3, weight_std=0.2e-3, inh_weight=2e-3, delay=(0.1e-3, 5e-3)
    )
    return net.connect(Random(p=0.2), source="drive", weight=1e-3, delay=1e-3)


MODELS = {
    "cuba": lambda b, prop="auto": cuba(
        400, synapses_per_neuron=40, backend=b, propagation=prop, seed=1
    ),
    "coba": lambda b, prop="auto": coba(
        400, synapses_per_neuron=40, backend=b, propagation=prop, seed=1
    ),
    "brunel": lambda b, prop="auto": brunel(500, backend=b, propagation=prop, seed=1),
    "heterogeneous": _heterogeneous,
}


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_backend_equals_reference(model, backend):
    a = _raster(MODELS[model](backend))
    b = _raster(MODELS[model]("reference"))
    assert a.backend == backend and b.backend == "reference"  # the fast path really ran
    assert a.n_spikes > 20
    np.testing.assert_array_equal(a.spike_indices, b.spike_indices)
    np.testing.assert_array_equal(a.spike_times, b.spike_times)
    np.testing.assert_array_equal(a.state["v"], b.state["v"])


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("backend", ["numba", "reference", "torch"])
def test_event_and_dense_paths_identical(model, backend):
    ev = _raster(MODELS[model](backend, "event"))
    de = _raster(MODELS[model](backend, "dense"))
    assert ev.dense_steps == 0 and ev.event_steps > 0
    assert de.dense_steps > 0 and de.event_steps == 0
    np.testing.assert_array_equal(ev.spike_indices, de.spike_indices)
    np.testing.assert_array_equal(ev.spike_times, de.spike_times)
    np.testing.assert_array_equal(ev.state["v"], de.state["v"])


def test_auto_picks_dense_in_bursts_only():
    # a synchronous volley: all 200 neurons fire at step 0 (dense), then a few sparse steps
    n = 200
    net = SpikingNetwork(
        n,
        v_init=np.full(n, -54e-3),
        dense_threshold=0.1,
        seed=0,
        neuron=LIFParams(i_ext=np.linspace(0, 1.8e-9, n)),
    )
    net.connect(Random(p=0.05), weight=0.1e-3)
    res = net.run(0.05, monitors=[SpikeMonitor()])
    assert res.dense_steps >= 1 and res.event_steps >= 1


@pytest.mark.parametrize("delay_steps", [1, 7, 20])
def test_single_spike_arrives_exactly_d_steps_later(delay_steps):
    dt = 1e-4
    net = SpikingNetwork(1, dt=dt, max_delay=20 * dt, seed=0)
    net.add_input("x", SpikeArrayInput(1, indices=[0], times=[3 * dt]))
    net.connect(OneToOne(), source="x", weight=1e-3, delay=delay_steps * dt)
    res = net.run(40 * dt, monitors=[StateMonitor(neurons=[0], variables=("ge",))])
    ge = res.state["ge"][:, 0]
    first = int(np.flatnonzero(ge)[0])
    # the spike is emitted in step 3 and its input applied in step 3 + d
    assert first == 3 + delay_steps
    assert ge[first] == pytest.approx(1e-3 * np.exp(-dt / 5e-3))


def test_recurrent_spike_delay():
    dt = 1e-4
    net = SpikingNetwork(
        2, dt=dt, max_delay=5e-3, seed=0, excitatory_ratio=1.0, neuron=LIFParams(i_ext=[3e-9, 0.0])
    )
    net.connect(Random(p=1.0), weight=1e-3, delay=2.5e-3, source_range=(0, 1), target_range=(1, 2))
    res = net.run(0.03, monitors=[SpikeMonitor(), StateMonitor(neurons=[1], variables=("ge",))])
    first_spike = int(round(res.spike_times[res.spike_indices == 0][0] / dt))
    first_input = int(np.flatnonzero(res.state["ge"][:, 0])[0])
    assert first_input - first_spike == 25


def test_float32_runs_and_stays_close():
    a = cuba(1000, dtype="float32", seed=3).run(0.5)
    b = cuba(1000, dtype="float64", seed=3).run(0.5)
    assert a.mean_rate_hz == pytest.approx(b.mean_rate_hz, rel=0.25)


def test_parallel_update_equals_serial(monkeypatch):
    from neurofabric.snn.kernels import numba_cpu

    serial = _raster(cuba(2000, seed=5))
    monkeypatch.setattr(numba_cpu, "PARALLEL_MIN_NEURONS", 1)
    assert numba_cpu.threads(2000) >= 1
    parallel = _raster(cuba(2000, seed=5))
    np.testing.assert_array_equal(serial.spike_indices, parallel.spike_indices)
    np.testing.assert_array_equal(serial.state["v"], parallel.state["v"])


@pytest.mark.parametrize("backend", ["numba", "reference"])
@pytest.mark.parametrize("synapse", ["cuba", "coba"])
def test_decayed_synapses_reach_zero_not_a_subnormal(backend, synapse):
    """One input spike, then silence: g decays as e^{-t/tau_e} exactly, and once below
    G_FLUSH it is 0 (without the flush it would stall at the smallest subnormal double,
    4.9e-324, forever, and every step of the idle neuron would run on slow subnormal
    arithmetic)."""
    from neurofabric.snn.kernels.reference import G_FLUSH

    dt, tau = 1e-4, 1e-3
    kwargs = {"e_exc": 0.0, "e_inh": -80e-3} if synapse == "coba" else {}
    net = SpikingNetwork(
        1,
        dt=dt,
        max_delay=dt,
        seed=0,
        backend=backend,
        synapse=SynapseParams(synapse, tau_e=tau, tau_i=2 * tau, **kwargs),
    )
    net.add_input("x", SpikeArrayInput(1, indices=[0], times=[0.0]))
    net.connect(OneToOne(), source="x", weight=0.5, delay=dt)
    res = net.run(12000 * dt, monitors=[StateMonitor(neurons=[0], variables=("ge",))])
    ge = res.state["ge"][:, 0]
    k = np.arange(ge.size) - 1  # steps since the input arrived
    live = ge > 0
    np.testing.assert_allclose(ge[live], 0.5 * np.exp(-dt / tau) ** (k[live] + 1), rtol=1e-9)
    assert ge[live].min() >= G_FLUSH * np.exp(-dt / tau)  # the last value above the floor
    assert np.all(ge[np.argmax(~live[1:]) + 1 :] == 0.0)  # then exactly 0 to the end
    assert not np.any((ge > 0) & (ge < np.finfo(np.float64).tiny))  # never subnormal


def test_the_numba_cache_key_ignores_the_torch_module_only(tmp_path):
    """Editing a compiled kernel file re-keys numba's cache; editing the torch backend (never
    compiled by numba) does not."""
    import shutil
    from pathlib import Path

    from neurofabric.snn.kernels import numba_jit

    here = Path(numba_jit.__file__).parent
    for f in here.glob("*.py"):
        shutil.copy(f, tmp_path / f.name)
    before = numba_jit.kernel_digest(tmp_path)
    (tmp_path / "torch_step.py").write_text("# edited\n", encoding="utf-8")
    assert numba_jit.kernel_digest(tmp_path) == before
    (tmp_path / "formulas.py").write_text("# edited\n", encoding="utf-8")
    assert numba_jit.kernel_digest(tmp_path) != before


def test_step_loop_compiles_only_the_features_a_network_has(monkeypatch):
    """A network's step loop leaves out (binds no-op stand-ins for) what the network lacks,
    and keeps what it has: a feature wrongly left out would drop its events."""
    from neurofabric.snn.kernels import numba_cpu
    from neurofabric.snn.stp import ShortTermPlasticity

    seen = []
    real = numba_cpu.features
    monkeypatch.setattr(numba_cpu, "features", lambda net: seen.append(real(net)) or seen[-1])
    cuba(200, synapses_per_neuron=20, seed=0).run(1e-3)
    assert seen[-1] == frozenset()
    cuba(200, synapses_per_neuron=20, storage="procedural", seed=0).run(1e-3)
    assert seen[-1] == {"procedural", "external"}  # procedural rows may carry inputs
    net = SpikingNetwork(10, dt=1e-4, seed=0)
    net.add_input("p", PoissonInput(3, rate=50.0))
    net.connect(Random(p=1.0), source="p", weight=1e-3, stp=ShortTermPlasticity(U=0.5))
    net.run(1e-3)
    assert seen[-1] == {"external", "stp"}
