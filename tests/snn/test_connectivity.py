"""Topologies: degree statistics, Dale's principle, small-world clustering, storage modes."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neurofabric.core.errors import ConfigError
from neurofabric.snn import (
    AllToAll,
    DistanceDependent,
    Random,
    SmallWorld,
    SpikeMonitor,
    SpikingNetwork,
)
from neurofabric.snn.connectivity import clustering_coefficient, degree_stats
from neurofabric.snn.kernels import numba_cpu, reference


def _net(topology, n=1000, storage="csr", backend="numba", **kw):
    net = SpikingNetwork(n, storage=storage, backend=backend, seed=7)
    return net.connect(topology, weight=1e-3, inh_weight=4e-3, **kw).build()


def test_random_probability_degree_statistics():
    n, p = 2000, 0.05
    stats = degree_stats(_net(Random(p=p), n).csr_, n)
    m = (n - 1) * p  # no self connections
    assert stats["out_mean"] == pytest.approx(m, rel=0.02)
    assert stats["in_mean"] == pytest.approx(m, rel=0.02)
    # binomial variance (n-1) p (1-p), within sampling error of a variance over 2000 rows
    assert stats["out_var"] == pytest.approx(m * (1 - p), rel=0.15)
    assert stats["in_var"] == pytest.approx(m * (1 - p), rel=0.15)


def test_fixed_out_and_in_degree():
    n = 500
    out = _net(Random(out_degree=25), n).csr_
    assert np.all(np.diff(out.indptr) == 25)
    inn = _net(Random(in_degree=30), n).csr_
    assert np.all(np.bincount(inn.indices, minlength=n) == 30)
    for csr in (out, inn):  # distinct targets, no self connections
        src = csr.sources()
        assert not np.any(src == csr.indices)
        pairs = src.astype(np.int64) * n + csr.indices
        assert len(np.unique(pairs)) == len(pairs)


@pytest.mark.parametrize("storage", ["csr", "procedural"])
def test_all_to_all_skip_partner(storage):
    net = SpikingNetwork(20, storage=storage, seed=3, excitatory_ratio=0.5)
    net.connect(
        AllToAll(skip_partner=True), source_range=(10, 20), target_range=(0, 10), weight=1.0
    )
    net.build()
    if storage == "csr":
        src, tgt = net.csr_.sources(), net.csr_.indices
    else:
        t = net.procedural_
        out_t, out_w, out_d = np.empty(21, np.int64), np.empty(21), np.empty(21, np.int64)
        rows = []
        for s in range(10, 20):
            c = numba_cpu.gen_row(t.ip[0], t.fp[0], int(t.keys[0]), s, out_t, out_w, out_d)
            rows += [(s, int(x)) for x in out_t[:c]]
        src, tgt = np.array(rows).T
    assert len(src) == 10 * 9
    assert not np.any(src - 10 == tgt)  # inhibitory i never reaches its own excitatory partner
    assert len(np.unique(src * 20 + tgt)) == 90
    with pytest.raises(ConfigError, match="as many sources as targets"):
        SpikingNetwork(20).connect(AllToAll(skip_partner=True), source_range=(0, 5), weight=1.0)
    with pytest.raises(ConfigError, match="overlapping"):
        SpikingNetwork(20).connect(
            AllToAll(skip_partner=True), source_range=(0, 10), target_range=(5, 15), weight=1.0
        )


def test_all_to_all_and_distance_dependent():
    csr = _net(AllToAll(), 50).csr_
    assert csr.n_synapses == 50 * 49
    # 1-D Gaussian: expected degree sum_d p_max exp(-d^2 / 2 sigma^2) over |d| <= 4 sigma, d != 0
    sigma, p_max = 3.0, 0.8
    d = np.arange(-12, 13)
    expected = float(np.sum(p_max * np.exp(-(d[d != 0] ** 2) / (2 * sigma**2))))
    csr = _net(DistanceDependent(sigma=sigma, p_max=p_max), 2000).csr_
    assert np.diff(csr.indptr).mean() == pytest.approx(expected, rel=0.03)
    # synapses are local: ring distance at most 4 sigma
    dist = np.abs(csr.sources() - csr.indices)
    assert np.all(np.minimum(dist, 2000 - dist) <= 12)
    grid = _net(DistanceDependent(sigma=1.5, p_max=1.0, dims=2), 900).csr_
    assert grid.n_synapses > 0
    with pytest.raises(ConfigError, match="square"):
        _net(DistanceDependent(sigma=1.0, dims=2), 1000)


def test_dale_signs_follow_the_source():
    net = SpikingNetwork(1000, seed=3).connect(Random(p=0.05), weight=1e-3, weight_std=2e-3)
    csr = net.build().csr_
    w, src = csr.synapse_weights(), csr.sources()
    assert np.all(w[src < 800] >= 0) and np.all(w[src >= 800] <= 0)
    assert np.std(w[src < 800]) > 0  # weights really vary


def test_small_world_is_more_clustered_than_random():
    n, k = 1000, 10
    sw = _net(SmallWorld(k=k, beta=0.1), n).csr_
    rnd = _net(Random(out_degree=k), n).csr_
    assert np.all(np.diff(sw.indptr) <= k) and np.diff(sw.indptr).mean() > k - 0.1
    c_sw, c_rnd = clustering_coefficient(sw, n), clustering_coefficient(rnd, n)
    # lattice clustering 3(k-2)/(4(k-1)) = 0.67 shrinks ~ (1-beta)^3; random ~ 2k/n = 0.02
    assert c_sw > 0.4 and c_rnd < 0.05 and c_sw > 10 * c_rnd


@pytest.mark.parametrize(
    "topology",
    [
        Random(p=0.03),
        Random(out_degree=20),
        SmallWorld(k=12, beta=0.2),
        DistanceDependent(sigma=4.0, p_max=0.7),
        AllToAll(),
    ],
)
def test_csr_and_procedural_hold_identical_synapses(topology):
    n = 400
    csr_net = _net(topology, n, weight_std=1e-3, delay=(1e-4, 5e-4))
    proc_net = _net(topology, n, storage="procedural", weight_std=1e-3, delay=(1e-4, 5e-4))
    csr = csr_net.csr_
    t = proc_net.procedural_
    st_, sw, sd = np.empty(n + 1, np.int64), np.empty(n + 1), np.empty(n + 1, np.int64)
    for src in range(0, n, 7):
        c = numba_cpu.gen_row(t.ip[0], t.fp[0], int(t.keys[0]), src, st_, sw, sd)
        a, b = csr.indptr[src], csr.indptr[src + 1]
        np.testing.assert_array_equal(st_[:c], csr.indices[a:b])
        np.testing.assert_array_equal(sw[:c].astype(np.float32), csr.synapse_weights()[a:b])
        np.testing.assert_array_equal(sd[:c], csr.synapse_delays()[a:b])
    assert proc_net.n_synapses == csr_net.n_synapses
    # procedural memory is O(neurons): a parameter row and one scratch row, whatever the synapses
    assert proc_net.synapse_memory_bytes() <= 24 * (n + 2) + 1024


def test_numba_and_reference_generate_identical_rows():
    for topo in (Random(p=0.05), SmallWorld(k=8, beta=0.3), Random(in_degree=10)):
        a = _net(topo, 300, backend="numba", weight_std=1e-3).csr_
        b = _net(topo, 300, backend="reference", weight_std=1e-3).csr_
        for name in ("indptr", "indices", "weights", "delays", "flags"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_csr_bytes_per_synapse():
    net = _net(Random(p=0.05), 2000, weight_std=1e-4)
    csr = net.csr_
    per_syn = csr.nbytes(include_csc=False) / csr.n_synapses
    assert per_syn <= 8.2  # int32 index + float32 weight (+ row pointers)
    const = _net(Random(p=0.05), 2000).csr_  # constant weights: one float per row
    assert const.flags[0] == 1 and const.nbytes(include_csc=False) / const.n_synapses < 4.3


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(2, 60), p=st.floats(0, 1), seed=st.integers(0, 2**31), allow_self=st.booleans()
)
def test_rows_are_sorted_distinct_and_in_range(n, p, seed, allow_self):
    net = SpikingNetwork(n, seed=seed, backend="numba")
    csr = net.connect(Random(p=p), weight=1e-3, allow_self=allow_self).build().csr_
    for src in range(n):
        row = csr.indices[csr.indptr[src] : csr.indptr[src + 1]]
        assert np.all(np.diff(row) > 0) and np.all((row >= 0) & (row < n))
        if not allow_self:
            assert src not in row
    if p == 1.0:
        assert csr.n_synapses == n * (n if allow_self else n - 1)


def test_topology_errors():
    with pytest.raises(ConfigError, match="exactly one"):
        Random(p=0.1, out_degree=3)
    with pytest.raises(ConfigError, match="probability"):
        Random(p=1.5)
    with pytest.raises(ConfigError, match="even"):
        SmallWorld(k=5)
    with pytest.raises(ConfigError, match="out_degree"):
        SpikingNetwork(10).connect(Random(out_degree=10), weight=1.0)
    with pytest.raises(ConfigError, match="procedural"):
        SpikingNetwork(10, storage="procedural").connect(Random(in_degree=2), weight=1.0).build()
    with pytest.raises(ConfigError, match="source"):
        SpikingNetwork(10).connect(Random(p=0.1), weight=1.0, source="retina")


def test_csr_and_procedural_spike_trains_identical():
    from neurofabric.snn.models import cuba

    runs = [
        cuba(1000, storage=s, seed=4).run(0.2, monitors=[SpikeMonitor()])
        for s in ("csr", "procedural")
    ]
    assert runs[0].n_spikes > 100
    np.testing.assert_array_equal(runs[0].spike_indices, runs[1].spike_indices)
    np.testing.assert_array_equal(runs[0].spike_times, runs[1].spike_times)
    _ = reference  # the reference rows are compared in test_numba_and_reference_generate_identical_rows


def test_transposed_index_matches_reference():
    net = _net(Random(p=0.05), 300, weight_std=1e-3, delay=(1e-4, 4e-4))
    csr = net.csr_
    for need_pos in (True, False):
        a = numba_cpu.transpose(csr.indptr, csr.indices, 300, need_pos)
        b = reference.transpose(csr.indptr, csr.indices, 300, need_pos)
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)
    assert len(a[1]) == csr.n_synapses


def test_multiple_projections_share_rows():
    # two projections over the same sources: rows hold projection 0's synapses, then 1's
    net = SpikingNetwork(200, seed=1, max_delay=2e-3)
    net.connect(Random(p=0.1), weight=1e-3, delay=1e-3)
    net.connect(Random(out_degree=5), weight=2e-3, delay=2e-3, source_range=(50, 150))
    csr = net.build().csr_
    proc = SpikingNetwork(200, seed=1, max_delay=2e-3, storage="procedural")
    proc.connect(Random(p=0.1), weight=1e-3, delay=1e-3)
    proc.connect(Random(out_degree=5), weight=2e-3, delay=2e-3, source_range=(50, 150))
    assert proc.build().n_synapses == csr.n_synapses
    assert csr.flags[1] == -1 and set(np.unique(csr.synapse_delays())) == {10, 20}
    row = slice(csr.indptr[60], csr.indptr[61])
    assert np.sum(csr.synapse_delays()[row] == 20) == 5
