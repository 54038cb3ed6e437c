"""FixedTotalNumber (NEST's fixed_total_number): exactly n synapses, independent uniform pairs,
so binomial in- and out-degrees and multapses at the rate chance gives them; and normally
distributed delays, redrawn and rounded as NEST does (the cortical microcircuit needs both)."""

import numpy as np
import pytest

from neurofabric.core.errors import ConfigError
from neurofabric.snn import (
    FixedTotalNumber,
    LIFParams,
    OneToOne,
    PoissonInput,
    Random,
    SpikeMonitor,
    SpikingNetwork,
)
from neurofabric.snn.connectivity import Normal
from neurofabric.snn.topology import topology_from_json, topology_to_json


def _net(n_syn, *, n=600, src=(0, 200), tgt=(200, 600), backend="numba", **kw):
    net = SpikingNetwork(n, backend=backend, seed=11)
    kw = {"allow_self": True, "dale": False, "weight_std": 2e-4, **kw}
    net.connect(FixedTotalNumber(n_syn), weight=1e-3, source_range=src, target_range=tgt, **kw)
    return net.build()


def test_exact_total_binomial_degrees_and_multapses():
    n_syn, n_s, n_t = 40_000, 200, 400
    csr = _net(n_syn).csr_
    assert csr.n_synapses == n_syn
    src, tgt = csr.sources().astype(np.int64), csr.indices.astype(np.int64)
    assert src.min() >= 0 and src.max() < 200 and tgt.min() >= 200 and tgt.max() < 600
    indeg = np.bincount(tgt - 200, minlength=n_t)
    outdeg = np.bincount(src, minlength=n_s)
    p_t, p_s = 1 / n_t, 1 / n_s
    assert indeg.mean() == n_syn / n_t
    assert indeg.var() == pytest.approx(n_syn * p_t * (1 - p_t), rel=0.15)
    assert outdeg.var() == pytest.approx(n_syn * p_s * (1 - p_s), rel=0.2)
    # repeated pairs: n uniform draws over M = n_s n_t pairs hit M (1 - (1 - 1/M)^n) of them
    pairs = n_s * n_t
    repeats = n_syn - len(np.unique(src * 1000 + tgt))
    expected = n_syn - pairs * (1 - (1 - 1 / pairs) ** n_syn)
    assert repeats == pytest.approx(expected, rel=0.05)
    w = csr.synapse_weights()
    assert w.mean() == pytest.approx(1e-3, rel=0.01) and w.std() == pytest.approx(2e-4, rel=0.05)
    # rows are in target order, as every CSR row
    for r in range(0, 200, 37):
        row = csr.indices[csr.indptr[r] : csr.indptr[r + 1]]
        assert np.all(np.diff(row) >= 0)


def test_numba_and_reference_build_the_same_synapses():
    a = _net(5_000, backend="numba", delay=(1e-4, 2e-3)).csr_
    b = _net(5_000, backend="reference", delay=(1e-4, 2e-3)).csr_
    for name in ("indptr", "indices", "weights", "delays", "flags"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert len(np.unique(a.synapse_delays())) > 5  # the delays were drawn per synapse


def test_without_self_connections_no_neuron_reaches_itself():
    csr = _net(30_000, n=100, src=(0, 100), tgt=(0, 100), allow_self=False).csr_
    assert csr.n_synapses == 30_000
    assert not np.any(csr.sources() == csr.indices)
    # overlapping ranges: neurons 50-99 are sources and targets, at other offsets
    shifted = _net(30_000, n=150, src=(0, 100), tgt=(50, 150), allow_self=False).csr_
    assert not np.any(shifted.sources() == shifted.indices)
    with_self = _net(30_000, n=100, src=(0, 100), tgt=(0, 100), allow_self=True).csr_
    assert np.any(with_self.sources() == with_self.indices)  # ~300 expected


def test_it_runs_saves_and_loads(tmp_path):
    rng = np.random.default_rng(0)  # a constant drive around threshold (v_inf -70 .. -50 mV)
    drive = LIFParams(i_ext=rng.uniform(0.0, 2e-9, 300))
    net = SpikingNetwork(300, seed=3, neuron=drive)
    net.connect(FixedTotalNumber(6000), weight=2e-3, allow_self=True, dale=False)
    net.build()
    assert topology_from_json(topology_to_json(FixedTotalNumber(6000))) == FixedTotalNumber(6000)
    path = net.save(tmp_path / "net")
    again = SpikingNetwork.load(path)
    np.testing.assert_array_equal(again.csr_.indices, net.csr_.indices)
    a = net.run(0.05, monitors=[SpikeMonitor()])
    b = again.run(0.05, monitors=[SpikeMonitor()])
    np.testing.assert_array_equal(a.spike_indices, b.spike_indices)
    assert a.n_spikes > 0


def test_bad_uses_are_refused():
    with pytest.raises(ConfigError, match="`n`"):
        FixedTotalNumber(-1)
    with pytest.raises(ConfigError, match="procedural"):
        net = SpikingNetwork(10, storage="procedural")
        net.connect(FixedTotalNumber(5), weight=1e-3).build()


def _delay_net(backend="numba", storage="csr", topology=None, **normal):
    net = SpikingNetwork(400, seed=5, dt=1e-4, max_delay=10e-3, backend=backend, storage=storage)
    net.connect(
        topology or FixedTotalNumber(100_000),
        weight=1e-3,
        allow_self=True,
        dale=False,
        delay=Normal(**{"mean": 1.5e-3, "sd": 0.75e-3, **normal}),
    )
    return net.build()


def test_normal_delays_follow_the_rounded_truncated_normal():
    """NEST's rule: normal draws redrawn outside [low - dt/2, high + dt/2), rounded to the
    nearest step; the histogram against the exact discrete probabilities."""
    from scipy.stats import norm

    d = _delay_net().csr_.synapse_delays().astype(np.int64)
    mu, sd = 15.0, 7.5  # steps
    k = np.arange(1, 101)
    p = norm.cdf((k + 0.5 - mu) / sd) - norm.cdf((k - 0.5 - mu) / sd)
    p /= p.sum()
    got = np.bincount(d, minlength=101)[1:]
    assert d.min() >= 1 and d.max() <= 100
    assert d.mean() == pytest.approx((k * p).sum(), rel=0.005)
    # every bin with an expected count above 100 within 5 sd of it
    big = p * len(d) > 100
    z = (got[big] - p[big] * len(d)) / np.sqrt(p[big] * len(d))
    assert np.abs(z).max() < 5
    # a bound: low = 1 ms keeps every delay at >= 10 steps
    lo = _delay_net(low=1e-3).csr_.synapse_delays()
    assert lo.min() == 10 and (lo == 10).mean() > 0.02


def test_normal_delays_agree_across_backends_storage_and_saving(tmp_path):
    a = _delay_net("numba").csr_
    b = _delay_net("reference", topology=FixedTotalNumber(3000)).csr_
    c = _delay_net("numba", topology=FixedTotalNumber(3000)).csr_
    np.testing.assert_array_equal(b.delays, c.delays)
    assert a.delays.dtype == np.uint8
    # procedural regenerates the same rows (out-degree: a per-source rule)
    csr = _delay_net("numba", topology=Random(out_degree=20))
    proc = _delay_net("numba", storage="procedural", topology=Random(out_degree=20))
    drive = {"rate": 800.0}
    runs = []
    for net in (csr, proc):
        net.add_input("drive", PoissonInput(400, **drive))
        net.connect(OneToOne(), source="drive", weight=8e-3)
        runs.append(net.build().run(0.05, monitors=[SpikeMonitor()]))
    np.testing.assert_array_equal(runs[0].spike_indices, runs[1].spike_indices)
    assert runs[0].n_spikes > 0
    path = _delay_net(topology=FixedTotalNumber(3000)).save(tmp_path / "n")
    again = SpikingNetwork.load(path)
    assert again.projections[0].delay_normal == (15.0, 7.5)
    np.testing.assert_array_equal(again.csr_.delays, c.delays)


def test_bad_normal_delays_are_refused():
    with pytest.raises(ConfigError, match="delay mean"):
        Normal(0.0, 1e-3)
    with pytest.raises(ConfigError, match="delay sd"):
        Normal(1e-3, -1e-3)
    with pytest.raises(ConfigError, match="outside"):
        _delay_net(mean=20e-3)  # beyond max_delay 10 ms
