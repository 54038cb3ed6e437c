"""Population statistics against spike trains whose answers are known: counted rates, the ISI
CV of regular (0), Poisson (1) and gamma (1/sqrt(k)) trains, the Fano factor of independent
(1) and fully synchronous (N) populations."""

from types import SimpleNamespace

import numpy as np
import pytest

from neurofabric.core.errors import ConfigError
from neurofabric.snn import analysis
from neurofabric.snn.microcircuit import POPULATIONS, microcircuit_spec
from neurofabric.snn.plots import plot_raster_groups


def _run(trains, duration):
    """A result-like object of per-neuron spike time arrays."""
    idx = np.concatenate([np.full(len(s), i) for i, s in enumerate(trains)]).astype(np.int64)
    t = np.concatenate(trains)
    order = np.argsort(t, kind="stable")
    return SimpleNamespace(
        spike_indices=idx[order],
        spike_times=t[order],
        t_start=0.0,
        duration=duration,
        n_spikes=len(t),
    )


def _gamma(rng, n, rate, k, duration):
    out = []
    for _ in range(n):
        isi = rng.gamma(k, 1.0 / (k * rate), size=int(rate * duration * 2) + 50)
        s = np.cumsum(isi)
        out.append(s[s < duration])
    return out


def test_rates_count_spikes_silent_neurons_included():
    trains = [np.array([0.1, 0.2, 0.3]), np.array([]), np.array([0.5]), np.array([0.05, 0.9])]
    r = _run(trains, 1.0)
    got = analysis.population_rates(r, [("a", 0, 2), ("b", 2, 4)])
    assert got == {"a": pytest.approx(1.5), "b": pytest.approx(1.5)}
    # a window: only spikes in [0.15, 0.6)
    got = analysis.population_rates(r, [("a", 0, 2), ("b", 2, 4)], t_start=0.15, t_stop=0.6)
    assert got["a"] == pytest.approx(2 / 2 / 0.45) and got["b"] == pytest.approx(1 / 2 / 0.45)


def test_isi_cv_of_regular_poisson_and_gamma_trains():
    rng = np.random.default_rng(0)
    duration = 200.0
    regular = [np.arange(0.0, duration, 0.1) + rng.random() * 0.1 for _ in range(20)]
    poisson = _gamma(rng, 20, 10.0, 1.0, duration)
    gamma4 = _gamma(rng, 20, 10.0, 4.0, duration)
    trains = regular + poisson + gamma4
    groups = [("regular", 0, 20), ("poisson", 20, 40), ("gamma4", 40, 60)]
    cv = analysis.isi_cv(_run(trains, duration), groups)
    assert cv["regular"] == pytest.approx(0.0, abs=1e-6)
    assert cv["poisson"] == pytest.approx(1.0, rel=0.03)
    assert cv["gamma4"] == pytest.approx(0.5, rel=0.03)


def test_synchrony_of_independent_and_synchronous_populations():
    rng = np.random.default_rng(1)
    duration, n = 100.0, 50
    indep = _gamma(rng, n, 5.0, 1.0, duration)
    shared = _gamma(rng, 1, 5.0, 1.0, duration)[0]
    sync = [shared.copy() for _ in range(n)]
    r = _run(indep + sync, duration)
    got = analysis.synchrony(r, [("indep", 0, n), ("sync", n, 2 * n)])
    assert got["indep"] == pytest.approx(1.0, rel=0.05)
    # all n fire together: counts are n x a Poisson count (Fano 1 for 3 ms bins): Fano n
    assert got["sync"] == pytest.approx(n, rel=0.05)
    # max_neurons: only the first 10 of the synchronous group
    assert analysis.synchrony(r, [("sync", n, 2 * n)], max_neurons=10)["sync"] == pytest.approx(
        10, rel=0.05
    )
    stats = analysis.population_stats(r, [("indep", 0, n)])
    assert set(stats["indep"]) == {"rate_hz", "isi_cv", "synchrony"}
    assert stats["indep"]["rate_hz"] == pytest.approx(5.0, rel=0.05)


def test_bad_groups_and_windows_are_named():
    r = _run([np.array([0.1])], 1.0)
    with pytest.raises(ConfigError, match="groups\\[0\\]"):
        analysis.population_rates(r, [("a", 3, 3)])
    with pytest.raises(ConfigError, match="groups\\[0\\] must be"):
        analysis.population_rates(r, ["a"])
    with pytest.raises(ConfigError, match="empty"):
        analysis.population_rates(r, [("a", 0, 1)], t_start=0.5, t_stop=0.5)
    with pytest.raises(ConfigError, match="fewer than 2 bins"):
        analysis.synchrony(r, [("a", 0, 1)], bin_s=0.9)
    with pytest.raises(ConfigError, match="SpikeMonitor"):
        analysis.population_rates(
            SimpleNamespace(spike_indices=[], spike_times=[], n_spikes=5, duration=1.0),
            [("a", 0, 1)],
        )


def test_raster_by_population_is_saved(tmp_path):
    spec = microcircuit_spec(scale=0.01, k_scale=0.01)
    groups = spec.groups()
    assert [g[0] for g in groups] == list(POPULATIONS)
    assert groups[-1][2] == spec.n_neurons.sum() and groups[0][1] == 0
    rng = np.random.default_rng(2)
    n = int(spec.n_neurons.sum())
    trains = _gamma(rng, n, 3.0, 1.0, 0.5)
    path = plot_raster_groups(_run(trains, 0.5), groups, tmp_path / "raster.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
