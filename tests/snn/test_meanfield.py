"""The mean-field level against the spiking level: Siegert's rate against its analytic limits
and against Brunel's model A simulated neuron by neuron."""

import math

import numpy as np
import pytest

from neurofabric.core.errors import ConfigError
from neurofabric.snn.meanfield import (
    LIFPopulation,
    RateModel,
    brunel_population,
    siegert,
    stationary_rate,
)
from neurofabric.snn.models import brunel

LIF = {"tau_m": 0.02, "theta": 0.02, "v_reset": 0.01, "t_ref": 0.002}


def test_siegert_meets_the_deterministic_period_as_the_noise_vanishes():
    for mu in (0.025, 0.04, 0.1):
        period = 0.002 + 0.02 * math.log((mu - 0.01) / (mu - 0.02))
        assert siegert(mu, 1e-6, **LIF) == pytest.approx(1 / period, rel=1e-3)
        assert siegert(mu, 0.0, **LIF) == pytest.approx(1 / period, rel=1e-12)
    assert siegert(0.015, 0.0, **LIF) == 0.0  # below threshold without noise: silent
    assert 0 < siegert(0.015, 0.002, **LIF) < 5.0  # noise alone makes it fire, rarely


def test_siegert_is_monotone_bounded_and_checks_its_parameters():
    mus = np.linspace(-0.01, 0.06, 30)
    rates = [siegert(m, 0.004, **LIF) for m in mus]
    assert np.all(np.diff(rates) > 0) and rates[-1] < 1 / LIF["t_ref"]
    assert siegert(0.01, 0.004, **LIF) < siegert(0.01, 0.008, **LIF)  # more noise, more spikes
    with pytest.raises(ConfigError, match="v_reset"):
        siegert(0.01, 0.004, **(LIF | {"v_reset": 0.03}))
    with pytest.raises(ConfigError, match="tau_m"):
        siegert(0.01, 0.004, **(LIF | {"tau_m": 0.0}))


def test_input_moments_follow_brunels_formulas():
    pop = brunel_population(12500, g=5.0, eta=2.0)
    assert (pop.c_exc, pop.c_inh) == (1000, 250)
    mu, sigma = pop.moments(10.0)
    # mu = C_E J tau (nu_ext + nu (1 - g/4)), sigma^2 = C_E J^2 tau (nu_ext + nu (1 + g^2/4))
    nu_ext = 2.0 * 0.02 / (0.1e-3 * 1000 * 0.02)
    assert mu == pytest.approx(1000 * 0.1e-3 * 0.02 * (nu_ext + 10 * (1 - 5 / 4)))
    assert sigma**2 == pytest.approx(1000 * 1e-8 * 0.02 * (nu_ext + 10 * (1 + 25 / 4)))


@pytest.mark.parametrize(("g", "eta"), [(5.0, 2.0), (6.0, 4.0), (8.0, 2.0)])
def test_stationary_rate_matches_the_spiking_brunel_network(g, eta):
    n = 2500  # C_E = 200: a small network, still asynchronous and irregular here
    net = brunel(n, g=g, eta=eta, seed=3)
    net.run(0.1)
    sim = net.run(0.5).n_spikes / (n * 0.5)
    mf = stationary_rate(brunel_population(n, g=g, eta=eta))
    assert mf == pytest.approx(sim, rel=0.10), (sim, mf)


def test_stationary_rate_is_a_fixed_point_and_the_rate_model_relaxes_to_it():
    pop = brunel_population(5000, g=5.0, eta=2.0)
    nu = stationary_rate(pop)
    assert pop.transfer(nu) == pytest.approx(nu, rel=1e-6)
    model = RateModel(pop, tau_r=0.01, rate=0.0)
    for _ in range(400):
        model.step(1e-3)
    assert model.rate == pytest.approx(nu, rel=1e-3)
    # more external drive: a higher fixed point, reached from the old one
    up = stationary_rate(pop, extra_rate=2.0)
    assert up > nu
    for _ in range(400):
        model.step(1e-3, extra_rate=2.0)
    assert model.rate == pytest.approx(up, rel=1e-3)


def test_a_saturating_population_is_a_clear_error():
    # without a refractory period nothing bounds the rate: the scan (to 1 kHz) finds no
    # fixed point
    pop = LIFPopulation(c_exc=1000, c_inh=0, g=0.0, j=1e-3, rate_ext=1000.0, t_ref=0.0)
    with pytest.raises(ConfigError, match="saturates"):
        stationary_rate(pop)


def test_without_recurrence_the_rate_model_relaxes_with_its_time_constant():
    pop = LIFPopulation(c_exc=0, c_inh=0, c_ext=1000, rate_ext=12.0)  # feed-forward only
    target = pop.transfer(0.0)
    model = RateModel(pop, tau_r=0.01, rate=0.0)
    for _ in range(10):  # 10 steps of 1 ms = one time constant
        model.step(1e-3)
    assert model.rate == pytest.approx(target * (1 - math.exp(-1)), rel=1e-9)


@pytest.mark.parametrize(("g", "eta"), [(5.0, 2.0), (8.0, 2.0)])
def test_exponential_synapses_need_and_get_the_colored_noise_correction(g, eta):
    n, tau_s = 2500, 2e-3  # a CUBA-like Brunel network: currents decaying with 2 ms
    net = brunel(n, g=g, eta=eta, seed=3, tau_s=tau_s)
    net.run(0.1)
    sim = net.run(0.5).n_spikes / (n * 0.5)
    corrected = stationary_rate(brunel_population(n, g=g, eta=eta, tau_s=tau_s))
    white = stationary_rate(brunel_population(n, g=g, eta=eta))
    assert corrected == pytest.approx(sim, rel=0.05), (sim, corrected)
    assert abs(corrected - sim) < abs(white - sim)  # the shifted threshold is what fits
    assert corrected < white
