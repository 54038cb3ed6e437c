"""Tsodyks-Markram short-term plasticity against its analytic release."""

import math

import numpy as np
import pytest

from neurofabric.core.errors import ConfigError
from neurofabric.snn import (
    LIFParams,
    OneToOne,
    PoissonInput,
    Random,
    SpikeArrayInput,
    SpikeMonitor,
    SpikingNetwork,
    StateMonitor,
)
from neurofabric.snn.stp import ShortTermPlasticity

DT = 1e-4
W = 1e-3


def _releases(stp, rate_hz, n_spikes, backend="numba"):
    """The efficacy of each spike of a regular train, read from the jumps of g_e."""
    period = int(round(1 / rate_hz / DT))
    steps = np.arange(n_spikes) * period + 10
    net = SpikingNetwork(1, dt=DT, seed=0, backend=backend)
    net.add_input("x", SpikeArrayInput(1, indices=np.zeros(n_spikes, int), times=steps * DT))
    net.connect(OneToOne(), source="x", weight=W, stp=stp)
    res = net.run((steps[-1] + 5) * DT, monitors=[StateMonitor(neurons=[0], variables=("ge",))])
    ge = res.state["ge"][:, 0]
    decay = math.exp(-DT / 5e-3)
    # the input of the spike at step s is added in step s + 1 (one-step delay), and the
    # recorded g_e has decayed over that step once: g[s+1] = (g[s] + input) e^{-dt/tau_e}
    jumps = ge[steps + 1] - ge[steps] * decay
    return jumps / (np.float32(W) * decay)


def _recursion(stp, rate_hz, n):
    """Tsodyks, Pawelzik & Markram (1998): u_{n+1} = u_n (1-U) e^{-T/tf} + U,
    x_{n+1} = x_n (1 - u_n) e^{-T/tr} + 1 - e^{-T/tr}, release u_n x_n."""
    period = 1 / rate_hz
    ef = math.exp(-period / stp.tau_facil) if stp.tau_facil > 0 else 0.0
    er = math.exp(-period / stp.tau_rec)
    u, x, out = stp.U, 1.0, []
    for _ in range(n):
        out.append(u * x)
        x = x * (1 - u) * er + 1 - er
        u = u * (1 - stp.U) * ef + stp.U
    return np.array(out)


@pytest.mark.parametrize(
    "stp",
    [
        ShortTermPlasticity(U=0.5, tau_rec=0.8, tau_facil=0.0),  # depressing
        ShortTermPlasticity(U=0.1, tau_rec=0.1, tau_facil=1.0),  # facilitating
        ShortTermPlasticity(U=0.25, tau_rec=0.3, tau_facil=0.2),
    ],
)
@pytest.mark.parametrize("rate", [10.0, 40.0])
def test_regular_train_reaches_the_analytic_steady_state(stp, rate):
    r = _releases(stp, rate, 60)
    assert r[0] == pytest.approx(stp.U, rel=1e-6)  # the first spike releases U
    np.testing.assert_allclose(r, _recursion(stp, rate, 60), rtol=1e-6)
    assert r[-1] == pytest.approx(stp.steady_state_release(rate), rel=1e-4)


def test_modulation_mode_keeps_the_weight():
    stp = ShortTermPlasticity(U=0.4, tau_rec=0.5, mode="modulate", k=2.0)
    r = _releases(stp, 20.0, 30)
    expected = 1 + 2.0 * _recursion(ShortTermPlasticity(U=0.4, tau_rec=0.5), 20.0, 30)
    np.testing.assert_allclose(r, expected, rtol=1e-6)


def _stp_net(backend="numba"):
    # a bias current holds the neurons just below threshold (R I = 14 mV of the 15 needed)
    net = SpikingNetwork(
        60, dt=DT, seed=4, backend=backend, v_init=(-70e-3, -56e-3), neuron=LIFParams(i_ext=1.4e-9)
    )
    net.add_input("x", PoissonInput(30, rate=40.0))
    net.connect(
        Random(p=0.3),
        source="x",
        weight=5e-3,
        stp=ShortTermPlasticity(U=0.3, tau_rec=0.1, tau_facil=0.05),
    )
    net.connect(
        Random(p=0.2), weight=1e-3, inh_weight=3e-3, stp=ShortTermPlasticity(U=0.5, tau_rec=0.2)
    )
    return net


def test_numba_equals_reference_and_resume(tmp_path):
    a = _stp_net("numba").run(0.2, monitors=[SpikeMonitor()])
    b = _stp_net("reference").run(0.2, monitors=[SpikeMonitor()])
    c = _stp_net("torch").run(0.2, monitors=[SpikeMonitor()])
    assert a.n_spikes > 50
    np.testing.assert_array_equal(a.spike_indices, b.spike_indices)
    np.testing.assert_array_equal(c.spike_indices, b.spike_indices)
    np.testing.assert_array_equal(c.spike_times, b.spike_times)
    part = _stp_net()
    r1 = part.run(0.07, monitors=[SpikeMonitor()])
    part.save(tmp_path / "n")
    r2 = SpikingNetwork.load(tmp_path / "n").run(0.13, monitors=[SpikeMonitor()])
    np.testing.assert_array_equal(
        np.concatenate([r1.spike_indices, r2.spike_indices]), a.spike_indices
    )


def test_stp_errors():
    with pytest.raises(ConfigError, match="U"):
        ShortTermPlasticity(U=0.0)
    with pytest.raises(ConfigError, match="mode"):
        ShortTermPlasticity(mode="boost")
    with pytest.raises(ConfigError, match="storage='csr'"):
        SpikingNetwork(5, storage="procedural").connect(
            Random(p=0.5), weight=1e-3, stp=ShortTermPlasticity()
        )
    net = SpikingNetwork(5)
    net.connect(Random(p=0.5), weight=1e-3, stp=ShortTermPlasticity())
    net.connect(Random(p=0.5), weight=1e-3)
    with pytest.raises(ConfigError, match="whole source group"):
        net.build()


def test_set_stp_after_build_equals_stp_at_connect():
    def make(stp):
        net = SpikingNetwork(
            60, dt=DT, seed=4, v_init=(-70e-3, -56e-3), neuron=LIFParams(i_ext=1.4e-9)
        )
        net.add_input("x", PoissonInput(30, rate=40.0))
        net.connect(Random(p=0.3), source="x", weight=5e-3, stp=stp)
        return net.build()

    stp = ShortTermPlasticity(U=0.3, tau_rec=0.1, tau_facil=0.05)
    ref = make(stp).run(0.2, monitors=[SpikeMonitor()])
    late = make(None)
    late.set_stp(stp)
    got = late.run(0.2, monitors=[SpikeMonitor()])
    np.testing.assert_array_equal(got.spike_indices, ref.spike_indices)
    # modulation with k = 0 is the plain network; removing STP restores it too
    plain = make(None).run(0.2, monitors=[SpikeMonitor()])
    zero = make(stp)
    zero.set_stp(ShortTermPlasticity(mode="modulate", k=0.0))
    np.testing.assert_array_equal(
        zero.run(0.2, monitors=[SpikeMonitor()]).spike_indices, plain.spike_indices
    )
    gone = make(stp)
    gone.set_stp(None)
    np.testing.assert_array_equal(
        gone.run(0.2, monitors=[SpikeMonitor()]).spike_indices, plain.spike_indices
    )
    assert not np.array_equal(ref.spike_indices, plain.spike_indices)
    with pytest.raises(ConfigError, match="source"):
        late.set_stp(stp, source="pixels")
