"""Single-neuron responses against closed forms written here from the equations, not from the
simulator's precomputed constants: a planted error in the coupling or decay constants, the
refractory count or the lockout shows up as a wrong membrane trace or a spike one step off.

Timing convention (docs/snn.md): a record at step ``k`` holds the state at ``(k + 1) dt``; an
input spike at time 0 with the default one-step delay arrives at ``t_a = dt`` and acts from
then on (the synaptic variable jumps by the weight at ``t_a``).
"""

import math

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from neurofabric.snn import (
    LIFParams,
    OneToOne,
    SpikeArrayInput,
    SpikeMonitor,
    SpikingNetwork,
    StateMonitor,
    SynapseParams,
)

BACKENDS = ["reference", "numba"]
V_REST, TAU_M, DT = -70e-3, 20e-3, 1e-4


def one_input_response(backend, synapse, weight, duration=0.06, dt=DT, delay=None):
    """v(t) (and its record times) of one neuron after one input spike at t = 0."""
    net = SpikingNetwork(
        1,
        neuron=LIFParams(v_th=1.0, v_reset=-1.0, tau_m=TAU_M, v_rest=V_REST),  # never fires
        synapse=synapse,
        dt=dt,
        backend=backend,
        seed=0,
    )
    net.add_input("x", SpikeArrayInput(1, indices=[0], times=[0.0]))
    net.connect(OneToOne(), source="x", weight=weight, delay=delay)
    res = net.run(duration, monitors=[StateMonitor(neurons=[0], variables=("v", "ge", "gi"))])
    t = (np.arange(len(res.state["v"])) + 1) * dt
    return t, res.state["v"][:, 0]


def cuba_psp(s, w, tau_s, tau_m=TAU_M):
    """tau_m dv/ds = -v + w e^{-s/tau_s}, v(0) = 0: the difference of exponentials."""
    s = np.maximum(s, 0.0)
    return w * tau_s / (tau_s - tau_m) * (np.exp(-s / tau_s) - np.exp(-s / tau_m))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_cuba_psp_is_the_difference_of_exponentials(backend, sign):
    tau_e, tau_i = 5e-3, 8e-3
    w = float(np.float32(sign * 2e-3))  # volts; weights are stored as float32
    syn = SynapseParams("cuba", tau_e=tau_e, tau_i=tau_i)
    t, v = one_input_response(backend, syn, w)
    tau_s = tau_e if sign > 0 else tau_i  # negative weights go to the inhibitory current
    expected = V_REST + cuba_psp(t - DT, w, tau_s)
    np.testing.assert_allclose(v, expected, rtol=0, atol=1e-13)
    # the peak where the closed form puts it: s* = tau_s tau_m ln(tau_m / tau_s) / (tau_m - tau_s)
    s_peak = tau_s * TAU_M * math.log(TAU_M / tau_s) / (TAU_M - tau_s)
    k = int(np.argmax(np.abs(v - V_REST)))
    assert abs((t[k] - DT) - s_peak) <= DT


@pytest.mark.parametrize("backend", BACKENDS)
def test_cuba_psp_with_equal_time_constants_is_the_alpha_function(backend):
    w = float(np.float32(1e-3))
    t, v = one_input_response(backend, SynapseParams("cuba", tau_e=TAU_M), w)
    s = t - DT
    np.testing.assert_allclose(v, V_REST + w * s / TAU_M * np.exp(-s / TAU_M), rtol=0, atol=1e-13)


@pytest.mark.parametrize("backend", BACKENDS)
def test_delayed_input_arrives_after_its_delay(backend):
    w = float(np.float32(1e-3))
    t, v = one_input_response(backend, SynapseParams("cuba"), w, delay=3e-3)
    np.testing.assert_allclose(v, V_REST + cuba_psp(t - 3e-3, w, 5e-3), rtol=0, atol=1e-13)
    assert np.all(v[t <= 3e-3 + 1e-12] == V_REST)


@pytest.mark.parametrize("backend", BACKENDS)
def test_delta_synapse_jumps_by_the_weight_then_decays(backend):
    w = float(np.float32(1.5e-3))
    t, v = one_input_response(backend, SynapseParams("delta"), w)
    expected = np.where(t > DT, V_REST + w * np.exp(-(t - DT) / TAU_M), V_REST)
    np.testing.assert_allclose(v, expected, rtol=0, atol=1e-13)


def coba_ode(w, tau_s, e_rev, duration):
    """tau_m dv/ds = (V_rest - v) + g(s) (E - v), g(s) = w e^{-s/tau_s}, solved to 1e-12."""

    def rhs(s, v):
        g = w * math.exp(-s / tau_s)
        return [((V_REST - v[0]) + g * (e_rev - v[0])) / TAU_M]

    return solve_ivp(rhs, (0.0, duration), [V_REST], rtol=1e-11, atol=1e-14, dense_output=True)


def coba_exponential_euler(w, tau_s, e_rev, n, dt):
    """The documented scheme, written out: g frozen over each step, v relaxes exactly."""
    v, g, out = V_REST, w, []
    for _ in range(n):
        gt = 1.0 + g
        vs = (V_REST + g * e_rev) / gt
        v = vs + (v - vs) * math.exp(-gt * dt / TAU_M)
        g *= math.exp(-dt / tau_s)
        out.append(v)
    return np.array(out)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["exc", "inh"])
def test_coba_psp_matches_the_ode_and_the_scheme(backend, kind):
    syn = SynapseParams("coba", tau_e=5e-3, tau_i=10e-3, e_exc=0.0, e_inh=-80e-3)
    w = float(np.float32(0.3 if kind == "exc" else -0.3))
    tau_s, e_rev = (syn.tau_e, syn.e_exc) if kind == "exc" else (syn.tau_i, syn.e_inh)
    dt = 1e-5
    t, v = one_input_response(backend, syn, w, duration=0.05, dt=dt)
    after = t > dt
    # the scheme itself, exactly (float64)
    scheme = coba_exponential_euler(abs(w), tau_s, e_rev, int(after.sum()), dt)
    np.testing.assert_allclose(v[after], scheme, rtol=0, atol=1e-12)
    assert np.all(v[~after] == V_REST)
    # and the continuous ODE within the scheme's first-order error budget
    ode = coba_ode(abs(w), tau_s, e_rev, 0.05).sol(t[after] - dt)[0]
    peak = np.max(np.abs(ode - V_REST))
    assert peak > 0.5e-3  # a real deflection (0.7 mV inhibitory, 5 mV excitatory)
    np.testing.assert_allclose(v[after] - V_REST, ode - V_REST, rtol=0, atol=0.01 * peak)


# ------------------------------------------------------------- refractory and lockout timing


def expected_spike_steps(v_inf, v0, t_ref, t_lock, dt, n_steps, v_th=-55e-3, v_reset=-70e-3):
    """Spike steps of a LIF neuron under constant drive, from its exact discrete solution.

    After m integration steps from v_a, v = v_inf + (v_a - v_inf) e^{-m dt / tau_m}. The first
    spike is at the first step whose integrated v exceeds v_th. After a spike at step s the
    neuron is held at v_reset for H = t_ref / dt steps (s+1 .. s+H), integrates again from step
    s+H+1 and may fire from step s+L+1 on (L = t_lock / dt, no lockout: L = H).
    """
    hold, lock = round(t_ref / dt), round(max(t_lock, t_ref) / dt)

    def crossing(v_a):
        m = 1
        while True:
            v = v_inf + (v_a - v_inf) * math.exp(-m * dt / TAU_M)
            # no spike time may depend on rounding: stay clear of the threshold
            assert abs(v - v_th) > 1e-9, "test setup: v lands on the threshold"
            if v > v_th:
                return m
            m += 1

    first = crossing(v0) - 1
    isi = hold + max(crossing(v_reset), lock - hold + 1)
    return np.arange(first, n_steps, isi)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "t_ref,t_lock",
    [(2e-3, None), (0.0, None), (3.7e-3, None), (2e-3, 5e-3), (1e-3, 30e-3)],
)
def test_spike_times_under_constant_current_are_exact(backend, t_ref, t_lock):
    currents = np.array([1.6e-9, 2.5e-9, 6e-9, 50e-9])  # R I = 16, 25, 60, 500 mV
    n_steps = 3000
    net = SpikingNetwork(
        len(currents),
        neuron=LIFParams(i_ext=currents, t_ref=t_ref, t_lock=t_lock),
        dt=DT,
        backend=backend,
        seed=0,
    )
    res = net.run(n_steps * DT, monitors=[SpikeMonitor()])
    for i, current in enumerate(currents):
        got = np.rint(res.spike_times[res.spike_indices == i] / DT).astype(np.int64)
        want = expected_spike_steps(
            V_REST + 10e6 * current, V_REST, t_ref, t_lock or t_ref, DT, n_steps
        )
        assert len(want) >= 3
        np.testing.assert_array_equal(got, want, err_msg=f"neuron {i}, I={current}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_v_is_held_at_reset_for_exactly_t_ref(backend):
    net = SpikingNetwork(
        1, neuron=LIFParams(i_ext=3e-9, t_ref=2e-3), dt=DT, backend=backend, seed=0
    )
    res = net.run(0.05, monitors=[SpikeMonitor(), StateMonitor(neurons=[0])])
    v = res.state["v"][:, 0]
    spikes = np.rint(res.spike_times / DT).astype(np.int64)
    assert len(spikes) >= 2
    for s in spikes[:-1]:
        # records s .. s+20 hold v_reset (the spike step's reset, then 20 held steps)
        np.testing.assert_array_equal(v[s : s + 21], -70e-3)
        assert v[s + 21] > -70e-3  # integrating again
