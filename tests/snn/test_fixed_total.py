"""FixedTotalNumber (NEST's fixed_total_number): exactly n synapses, independent uniform pairs,
so binomial in- and out-degrees and multapses at the rate chance gives them."""

import numpy as np
import pytest

from neurofabric.core.errors import ConfigError
from neurofabric.snn import FixedTotalNumber, LIFParams, SpikeMonitor, SpikingNetwork
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
