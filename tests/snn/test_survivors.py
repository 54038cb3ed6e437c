"""Tests added for mutants that survived mutation testing (docs/testing.md): each checks an
analytic result or an invariant on both backends, where the earlier suite used one or none."""

import math

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
from neurofabric.snn.plasticity import DiehlCookSTDP, PairSTDP, TripletSTDP
from neurofabric.snn.stp import ShortTermPlasticity

DT = 1e-4
W = 1e-3
BACKENDS = ["numba", "reference", "torch"]


def _releases(stp, rate_hz, n_spikes, backend, plasticity=None):
    """The efficacy of each spike of a regular train, read from the jumps of g_e (as in
    test_stp.py: the input of the spike at step s arrives in step s + 1)."""
    period = int(round(1 / rate_hz / DT))
    steps = np.arange(n_spikes) * period + 10
    net = SpikingNetwork(1, dt=DT, seed=0, backend=backend)
    net.add_input("x", SpikeArrayInput(1, indices=np.zeros(n_spikes, int), times=steps * DT))
    net.connect(OneToOne(), source="x", weight=W, stp=stp, plasticity=plasticity)
    res = net.run((steps[-1] + 5) * DT, monitors=[StateMonitor(neurons=[0], variables=("ge",))])
    ge = res.state["ge"][:, 0]
    decay = math.exp(-DT / 5e-3)
    return (ge[steps + 1] - ge[steps] * decay) / (np.float32(W) * decay)


def _tsodyks_markram(U, tau_rec, tau_facil, rate_hz, n):
    """u_{n+1} = u_n (1-U) e^{-T/tf} + U, x_{n+1} = x_n (1 - u_n) e^{-T/tr} + 1 - e^{-T/tr};
    a zero time constant recovers at once (e^{-T/0} = 0)."""
    T = 1 / rate_hz
    ef = math.exp(-T / tau_facil) if tau_facil > 0 else 0.0
    er = math.exp(-T / tau_rec) if tau_rec > 0 else 0.0
    u, x, out = U, 1.0, []
    for _ in range(n):
        out.append(u * x)
        x = x * (1 - u) * er + 1 - er
        u = u * (1 - U) * ef + U
    return np.array(out)


@pytest.mark.filterwarnings("error::RuntimeWarning")  # no division by a zero time constant
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "U, tau_rec, tau_facil", [(0.5, 0.8, 0.0), (0.1, 0.0, 1.0), (0.5, 0.0, 0.0)]
)
def test_stp_with_a_zero_time_constant_follows_the_recursion(backend, U, tau_rec, tau_facil):
    stp = ShortTermPlasticity(U=U, tau_rec=tau_rec, tau_facil=tau_facil)
    got = _releases(stp, 40.0, 8, backend)
    want = _tsodyks_markram(U, tau_rec, tau_facil, 40.0, 8)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def _driven(backend, i_ext=None):
    n = 8
    current = np.linspace(1.6e-9, 4e-9, n)  # R I from 16 to 40 mV, threshold 15 mV above rest
    neuron = LIFParams(i_ext=current if i_ext is None else i_ext)
    return SpikingNetwork(n, neuron=neuron, dt=DT, seed=0, backend=backend), current


@pytest.mark.parametrize("backend", BACKENDS)
def test_run_reports_progress_and_counts_every_spike(backend):
    net, _ = _driven(backend)
    seen = []
    n_steps = 5000  # three chunks of at most 2,000 steps
    res = net.run(n_steps * DT, monitors=[SpikeMonitor()], callback=seen.append)
    assert res.n_spikes == len(res.spike_times) > 50
    assert [p.done for p in seen] == sorted({p.done for p in seen}) and len(seen) >= 3
    assert seen[-1].done == seen[-1].total == n_steps
    assert seen[-1]["spikes"] == res.n_spikes
    assert all(isinstance(p.elapsed_s, float) and p.elapsed_s >= 0 for p in seen)
    assert {(p.task, p.unit) for p in seen} == {("snn.run", "step")} and not res.stopped


@pytest.mark.parametrize("backend", BACKENDS)
def test_set_current_equals_building_with_that_current(backend):
    # a neuron at rest with no input stays at rest, so 10 silent steps and then the current
    # give the spikes of a network driven from the start, 10 steps later
    ref_net, current = _driven(backend)
    ref = ref_net.run(3000 * DT, monitors=[SpikeMonitor()])
    late, _ = _driven(backend, i_ext=0.0)
    assert late.run(10 * DT, monitors=[SpikeMonitor()]).n_spikes == 0
    late.set_current(current)
    got = late.run(3000 * DT, monitors=[SpikeMonitor()])
    np.testing.assert_array_equal(got.spike_indices, ref.spike_indices)
    np.testing.assert_array_equal(
        np.rint(got.spike_times / DT).astype(int) - 10, np.rint(ref.spike_times / DT).astype(int)
    )
    early, _ = _driven(backend, i_ext=0.0)
    early.set_current(current)  # before build
    np.testing.assert_array_equal(
        early.run(3000 * DT, monitors=[SpikeMonitor()]).spike_times, ref.spike_times
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_spike_buffer_that_fills_inside_a_chunk_loses_no_step(backend):
    # unconnected neurons with the same current spike at the same steps whatever their
    # number; 200 of them fill the 65,536-spike buffer twice in a 2,000-step chunk
    neuron = LIFParams(i_ext=1e-7, t_ref=0.0)  # R I = 1 V: a spike every 3 or 4 steps
    small = SpikingNetwork(2, neuron=neuron, dt=DT, seed=0, backend=backend)
    one = small.run(2000 * DT, monitors=[SpikeMonitor()])
    big = SpikingNetwork(200, neuron=neuron, dt=DT, seed=0, backend=backend)
    res = big.run(2000 * DT, monitors=[SpikeMonitor()])
    per_neuron = one.spike_times[one.spike_indices == 0]
    assert res.n_spikes == len(res.spike_times) == 200 * len(per_neuron) > 65536
    np.testing.assert_array_equal(res.spike_times[res.spike_indices == 199], per_neuron)
    assert big.state_.t == small.state_.t == 2000


def _one_pair(rule, pre_step, post_step, backend):
    """One plastic synapse whose target is forced to spike at ``post_step`` (as in
    test_plasticity.py). Returns (weight change, initial weight as stored)."""
    w0 = 0.5e-3
    net = SpikingNetwork(
        1, dt=DT, synapse=SynapseParams("delta"), seed=0, max_delay=1e-3, backend=backend
    )
    net.add_input("pre", SpikeArrayInput(1, indices=[0], times=np.array([pre_step]) * DT))
    net.add_input("drive", SpikeArrayInput(1, indices=[0], times=np.array([post_step - 1]) * DT))
    net.connect(OneToOne(), source="pre", weight=w0, plasticity=rule)
    net.connect(OneToOne(), source="drive", weight=20e-3)
    res = net.run((max(pre_step, post_step) + 5) * DT, monitors=[SpikeMonitor()])
    assert np.rint(res.spike_times / DT).astype(int).tolist() == [post_step]
    csr = net.input_csr_
    stored = float(np.float32(w0))
    return float(csr.weights[csr.mask == 1][0]) - stored, stored


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mu", [0.0, 0.5])
def test_diehl_cook_soft_bound_exponent(backend, mu):
    # post after pre: dw = nu_post (x_pre - x_tar) (w_max - w)^mu, x_pre = e^{-80 dt / tau_pre}
    rule = DiehlCookSTDP(nu_pre=1e-5, nu_post=1e-4, x_tar=0.2, mu=mu, w_max=1e-3)
    dw, w0 = _one_pair(rule, 100, 180, backend)
    x_pre = math.exp(-80 * DT / rule.tau_pre)
    assert dw == pytest.approx(rule.nu_post * (x_pre - rule.x_tar) * (1e-3 - w0) ** mu, rel=1e-4)


def _procedural_net(storage, backend, recurrent=True):
    net = SpikingNetwork(
        200, seed=5, storage=storage, backend=backend, v_init=(-70e-3, -56e-3), max_delay=3e-3
    )
    net.add_input("drive", PoissonInput(80, rate=300.0))
    if recurrent:
        net.connect(Random(p=0.1), weight=0.5e-3, inh_weight=2e-3, delay=(1e-4, 3e-3))
        # a second projection over part of the sources: rows hold both, in projection order
        net.connect(Random(out_degree=20), weight=1e-3, delay=2e-3, source_range=(50, 150))
    return net.connect(Random(p=0.2), source="drive", weight=1.5e-3, delay=(1e-4, 2e-3))


def test_procedural_rows_on_the_reference_backend_equal_the_stored_ones():
    # the reference kernel's procedural path (recurrent and input rows regenerated per spike)
    # was run by no test; the spec must deliver exactly the synapses the CSR path stores,
    # and the numba procedural path must agree with it
    runs = {
        (s, b): _procedural_net(s, b).run(0.05, monitors=[SpikeMonitor()])
        for s in ("csr", "procedural")
        for b in BACKENDS
    }
    ref = runs[("csr", "reference")]
    assert ref.n_spikes > 100
    for res in runs.values():
        np.testing.assert_array_equal(res.spike_indices, ref.spike_indices)
        np.testing.assert_array_equal(res.spike_times, ref.spike_times)
    # the recurrent rows change the raster, so they were delivered, not skipped
    feedforward = _procedural_net("procedural", "reference", recurrent=False)
    ff = feedforward.run(0.05, monitors=[SpikeMonitor()])
    assert ff.n_spikes != ref.n_spikes or not np.array_equal(ff.spike_times, ref.spike_times)


@pytest.mark.parametrize("backend", BACKENDS)
def test_stp_on_plastic_input_synapses_follows_the_recursion(backend):
    # plastic input synapses take another path (each event transmitted, then learning); the
    # target never spikes, so pair STDP leaves the weight alone and each release must still
    # be the Tsodyks-Markram efficacy, not the spike count
    stp = ShortTermPlasticity(U=0.4, tau_rec=0.3, tau_facil=0.05)
    rule = PairSTDP(a_plus=1e-4, a_minus=1e-4, w_max=1e-2)
    got = _releases(stp, 40.0, 8, backend, plasticity=rule)
    np.testing.assert_allclose(got, _tsodyks_markram(0.4, 0.3, 0.05, 40.0, 8), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_plastic_recurrent_synapses_learn_alike_under_every_propagation(backend):
    # event-driven push, dense pull and auto deliver the same sums, so a learning network
    # must end with the same spikes and weights; learning on recurrent synapses reads their
    # columns (the CSC copy), which an event-driven network must build too
    rule = TripletSTDP(a2_plus=1e-4, a3_plus=1e-4, a2_minus=2e-4, a3_minus=1e-5, w_max=1e-3)

    def network(propagation):
        net = SpikingNetwork(
            50,
            dt=DT,
            seed=3,
            backend=backend,
            v_init=(-70e-3, -56e-3),
            max_delay=2e-3,
            propagation=propagation,
        )
        net.add_input("drive", PoissonInput(50, rate=400.0))
        net.connect(OneToOne(), source="drive", weight=9e-3)
        recurrent = Random(p=0.1)
        return net.connect(
            recurrent, weight=0.2e-3, plasticity=rule, delay=1e-3, source_range=(0, 40)
        )

    initial = network("event").build().csr_.weights.copy()
    runs = {}
    for propagation in ("event", "dense", "auto"):
        net = network(propagation)
        runs[propagation] = (net, net.run(0.1, monitors=[SpikeMonitor()]))
    event, r_event = runs["event"]
    assert r_event.n_spikes > 100
    assert not np.array_equal(event.csr_.weights, initial)  # it learned
    for net, res in runs.values():
        np.testing.assert_array_equal(res.spike_indices, r_event.spike_indices)
        np.testing.assert_array_equal(net.csr_.weights, event.csr_.weights)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_recorded_state_is_the_state_in_the_network_dtype(backend, dtype):
    # a float32 network records float32 traces (half the memory), and the last recorded
    # row is the final state itself, bit for bit
    net = SpikingNetwork(
        8,
        neuron=LIFParams(i_ext=np.linspace(1.6e-9, 4e-9, 8)),
        dt=DT,
        seed=0,
        backend=backend,
        dtype=dtype,
    )
    res = net.run(300 * DT, monitors=[StateMonitor(neurons=[1, 6], variables=("v", "ge"))])
    for var in ("v", "ge"):
        assert res.state[var].dtype == np.dtype(dtype) and res.state[var].shape == (300, 2)
    np.testing.assert_array_equal(res.state["v"][-1], net.state_.v[[1, 6]])
    assert net.state_.v.dtype == np.dtype(dtype)
