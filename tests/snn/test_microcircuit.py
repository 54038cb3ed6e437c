"""The Potjans & Diesmann (2014) microcircuit's parameters, each checked on its own terms: the
weight against the PSP it must cause, the synapse counts against the connection probability
they must give, the DC against the Poisson input it replaces, the k_scale compensation
against the mean input it must keep."""

import numpy as np
import pytest

from neurofabric.core.errors import ConfigError
from neurofabric.snn import microcircuit as mc


def test_the_weight_gives_a_psp_peak_of_0_15_mv():
    """Integrate C dV/dt = -(V - E_L) C / tau_m + I, I = J exp(-t / tau_syn), with fine
    explicit steps (independent of the closed form): the peak is 0.15 mV."""
    s = mc.microcircuit_spec()
    j = s.weight_pa[1, 0]  # an E -> L2/3I synapse: the plain excitatory weight
    c, tau_m, tau_s = mc.NEURON["C_m"], mc.NEURON["tau_m"], mc.NEURON["tau_syn"]
    h, v, i, peak = 1e-4, 0.0, j, 0.0
    for _ in range(int(5.0 / h)):  # 5 ms covers the peak (~1.6 ms)
        v += h * (-v / tau_m + i / c)
        i -= h * i / tau_s
        peak = max(peak, v)
    assert peak == pytest.approx(mc.PSP_MEAN, rel=1e-3)
    assert j == pytest.approx(87.81, abs=0.01)  # the 87.8 pA
    assert s.weight_mv[1, 0] == pytest.approx(j * 40e-3)  # R = 40 MOhm: 3.51 mV
    assert s.weight_pa[0, 2] == pytest.approx(2 * j)  # L4E -> L2/3E doubled
    assert np.allclose(s.weight_pa[:, 1::2], -4 * j)  # every inhibitory source: g = -4
    assert np.allclose(s.weight_sd_pa, 0.1 * np.abs(s.weight_pa))


def test_synapse_counts_give_the_published_connection_probabilities():
    """K independent uniform draws connect a given pair with probability
    1 - (1 - 1/(N_post N_pre))^K: that must be the table's p."""
    k = mc.full_synapse_counts()
    pairs = np.outer(mc.N_FULL, mc.N_FULL).astype(float)
    p = -np.expm1(k * np.log1p(-1.0 / pairs))
    np.testing.assert_allclose(p, mc.CONN_PROBS, rtol=1e-6, atol=1e-12)
    s = mc.microcircuit_spec()
    assert s.n_neurons.sum() == 77_169
    assert (s.n_synapses > 0).sum() == 55  # 9 of the 64 projections are empty
    assert 2.98e8 < s.n_synapses.sum() < 3.0e8  # "about 0.3 billion"
    small = mc.microcircuit_spec(scale=0.1, k_scale=0.1)
    assert small.n_neurons.tolist() == np.round(mc.N_FULL * 0.1).astype(int).tolist()
    # counts come from the full-scale sizes, scaled and rounded once (NEST's way)
    np.testing.assert_array_equal(small.n_synapses, np.round(k * 0.01).astype(int))
    # so the in-degree is k_scale times the full one, whatever the scale
    half = mc.microcircuit_spec(scale=0.5, k_scale=1.0)
    full_in = k / mc.N_FULL[:, None]
    np.testing.assert_allclose(half.in_degree, full_in, rtol=1e-3, atol=1e-3)


def test_the_dc_background_is_the_mean_of_the_poisson_input():
    """Campbell's theorem, checked by simulation: Poisson arrivals at 8 Hz x K_ext of
    exponential currents J exp(-t/tau_syn) have mean current rate x J x tau_syn."""
    dc = mc.microcircuit_spec(background="dc")
    poisson = mc.microcircuit_spec(background="poisson")
    assert not poisson.dc_pa.any() and poisson.bg_rate_hz.tolist() == (8.0 * mc.K_EXT).tolist()
    assert not dc.bg_rate_hz.any()
    rng = np.random.default_rng(0)
    rate = 8.0 * mc.K_EXT[0] * 1e-3  # per ms
    dt, t_end, tau = 0.01, 2_000.0, mc.NEURON["tau_syn"]
    counts = rng.poisson(rate * dt, int(t_end / dt))
    current, total, decay = 0.0, 0.0, np.exp(-dt / tau)
    for c in counts:
        current = current * decay + c * poisson.weight_ext_pa
        total += current
    mean = total / len(counts)
    # exact discrete mean of the sampled process: J x rate x dt / (1 - e^{-dt/tau})
    assert mean == pytest.approx(dc.dc_pa[0], rel=0.02)


@pytest.mark.parametrize("background", ["poisson", "dc"])
@pytest.mark.parametrize("k_scale", [0.1, 0.5])
def test_k_scale_keeps_the_mean_input_at_the_full_scale_rates(background, k_scale):
    """Fewer synapses, weights / sqrt(k), plus a DC: the mean input current of every population
    at the full-scale rates equals the full model's."""
    tau = mc.NEURON["tau_syn"] * 1e-3

    def mean_input(s):
        rec = (s.weight_pa * s.in_degree) @ mc.FULL_MEAN_RATES * tau
        ext = s.weight_ext_pa * s.k_ext * mc.BG_RATE * tau if background == "poisson" else 0
        return rec + ext + s.dc_pa

    full = mc.microcircuit_spec(1.0, 1.0, background=background)
    scaled = mc.microcircuit_spec(1.0, k_scale, background=background)
    np.testing.assert_allclose(mean_input(scaled), mean_input(full), rtol=2e-3)
    assert scaled.weight_pa[0, 0] == pytest.approx(full.weight_pa[0, 0] / np.sqrt(k_scale))


def test_delays_and_initial_potentials():
    s = mc.microcircuit_spec()
    assert s.delay_ms.tolist() == [1.5, 0.75] * 4  # by the source's type
    np.testing.assert_allclose(s.delay_sd_ms, s.delay_ms / 2)
    assert s.v0_mean_mv[0] == -68.28 and s.v0_sd_mv[0] == 5.36
    orig = mc.microcircuit_spec(v0="original")
    assert (orig.v0_mean_mv == -58.0).all() and (orig.v0_sd_mv == 10.0).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scale": 0.0}, "scale"),
        ({"scale": 1.5}, "scale"),
        ({"k_scale": -0.1}, "k_scale"),
        ({"background": "noise"}, "background"),
        ({"v0": "random"}, "v0"),
        ({"scale": 1e-4}, "without neurons"),
    ],
)
def test_bad_parameters_are_named(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        mc.microcircuit_spec(**kwargs)


def test_the_built_network_holds_the_spec():
    """Per projection: the exact synapse count, the weight's mean and sign, the delays' mean
    (one step later than NEST's draw, `nest_timing`); per neuron: the DC and the drive."""
    from neurofabric.snn import SpikeMonitor
    from neurofabric.snn.models import microcircuit

    spec = mc.microcircuit_spec(0.02, 0.02)
    net = microcircuit(0.02, 0.02, seed=3).build()
    n = int(spec.n_neurons.sum())
    csr = net.csr_
    src, tgt = csr.sources().astype(np.int64), csr.indices.astype(np.int64)
    w, d = csr.synapse_weights(), csr.synapse_delays()
    groups = spec.groups()
    pop = np.searchsorted([g[2] for g in groups], np.arange(n), side="right")
    ps, pt = pop[src], pop[tgt]
    counts = np.zeros((8, 8), int)
    np.add.at(counts, (pt, ps), 1)
    np.testing.assert_array_equal(counts, spec.n_synapses)
    r_ohm = 40e6
    for i, j in [(0, 0), (0, 2), (2, 3), (4, 5), (6, 7)]:
        sel = (pt == i) & (ps == j)
        want = spec.weight_pa[i, j] * 1e-12 * r_ohm
        assert w[sel].mean() == pytest.approx(want, rel=0.03)
        assert np.all(np.sign(w[sel]) == np.sign(want))
    exc = np.isin(ps, [0, 2, 4, 6])
    # NEST's delays in steps (15.5 E, 7.8 I on average after redraw and rounding) plus one
    assert d[exc].mean() == pytest.approx(15.5 + 1, rel=0.03)
    assert d[~exc].mean() == pytest.approx(7.8 + 1, rel=0.05)
    assert d.min() >= 2
    np.testing.assert_allclose(
        net.neuron.i_ext, np.repeat(spec.dc_pa, spec.n_neurons) * 1e-12, rtol=1e-12
    )
    assert net.inputs["background"].n == n
    result = net.run(0.3, monitors=[SpikeMonitor()])
    assert result.n_spikes > 0
