"""The compiled MH kernels against the full-recompute numpy reference, and invariants."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neurofabric.thermo.chain import Chain, EnergySpec
from neurofabric.thermo.fabric import NeuralFabric
from neurofabric.thermo.kernels import numba_cpu, reference
from neurofabric.thermo.params import Moves


def _dag_fabric():
    """A DAG with a skip connection (input -> output) and two hidden layers."""
    # units: 0-3 inputs, 4-6 hidden A, 7-8 hidden B, 9-11 outputs
    pairs_s, pairs_t = [], []
    for s in range(4):
        for t in (4, 5, 6, 9):
            pairs_s.append(s)
            pairs_t.append(t)
    for s in (4, 5, 6):
        for t in (7, 8, 10):
            pairs_s.append(s)
            pairs_t.append(t)
    for s in (7, 8):
        for t in (9, 10, 11):
            pairs_s.append(s)
            pairs_t.append(t)
    ps, pt = np.array(pairs_s, np.uint32), np.array(pairs_t, np.uint32)
    rng = np.random.default_rng(3)
    keep = rng.random(len(ps)) < 0.7
    return NeuralFabric(
        n_in=4,
        n_out=3,
        source=ps[keep],
        target=pt[keep],
        weight=rng.normal(0, 0.6, keep.sum()),
        bias=rng.normal(0, 0.1, 12),
        activation="tanh",
        pairs=(ps, pt),
    )


def _data(n_in, n_out, n=30, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((n, n_in))
    X[X < 0.3] = 0.0  # zeros exercise the skipped samples
    return X, rng.integers(0, n_out, n)


CASES = [
    (
        "layered-relu-ce",
        lambda: NeuralFabric.layered([6, 5, 3], density=0.6, seed=1),
        "cross_entropy",
        0.0,
    ),
    (
        "layered2-sigmoid-sq",
        lambda: NeuralFabric.layered([5, 4, 3, 3], activation="sigmoid", density=0.8, seed=2),
        "squared_error",
        0.0,
    ),
    ("dag-tanh-ce", _dag_fabric, "cross_entropy", 0.0),
    (
        "layered-lattice",
        lambda: NeuralFabric.layered([6, 4, 3], density=0.7, seed=4),
        "cross_entropy",
        0.05,
    ),
]


def _run(fabric, loss, grid, kernels, n=500, seed=7, temperature=1.0):
    spec = EnergySpec(loss=loss, lambda_l0=0.4, lambda_l1=0.2, w_prune=0.5, w_max=3.0, grid=grid)
    ch = Chain(fabric, spec, kernels)
    X, y = _data(fabric.n_in, fabric.n_out)
    ch.set_batch(X, y, 2.0)
    ch.refresh(patience=0, floor=0.1)
    moves = Moves(weight=0.5, bias=0.12, birth=0.16, death=0.16, all=0.06)
    sigma = np.array([0.4, 0.3, 0.0, 0.0, 0.05])
    stats = ch.run(
        n,
        temperature=temperature,
        move_cum=moves.cumulative(),
        sigma=sigma,
        rng=np.random.default_rng(seed),
    )
    return ch, stats


@pytest.mark.parametrize("name,make,loss,grid", CASES, ids=[c[0] for c in CASES])
def test_numba_chain_equals_reference_chain(name, make, loss, grid):
    fab = make()
    a, sa = _run(fab, loss, grid, numba_cpu)
    b, sb = _run(fab, loss, grid, reference)
    # every move kind was proposed and accepted at least once: the comparison covers them all
    assert np.all(sa[:, 0] > 0) and np.all(sa[:, 1] > 0), sa
    np.testing.assert_array_equal(sa[:, [0, 1, 3, 4, 5]], sb[:, [0, 1, 3, 4, 5]])
    E = a.n_edges
    assert E == b.n_edges and a.counters[1] == b.counters[1]
    np.testing.assert_array_equal(a.esrc[:E], b.esrc[:E])
    np.testing.assert_array_equal(a.edst[:E], b.edst[:E])
    np.testing.assert_allclose(a.ew[:E], b.ew[:E], rtol=0, atol=1e-12)
    np.testing.assert_allclose(a.bias, b.bias, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(a.cand[: a.counters[1]], b.cand[: b.counters[1]])
    np.testing.assert_array_equal(a.pair_edge, b.pair_edge)
    np.testing.assert_allclose(a.energy, b.energy, rtol=1e-10)


@pytest.mark.parametrize("name,make,loss,grid", CASES, ids=[c[0] for c in CASES])
def test_incremental_energy_equals_full_recomputation(name, make, loss, grid):
    ch, stats = _run(make(), loss, grid, numba_cpu, n=3000)
    assert stats[:, 1].sum() > 100
    incremental = ch.energy.copy()
    caches = ch.A.copy(), ch.Z.copy(), ch.L.copy()
    ch.recompute()
    assert abs(incremental[0] - ch.energy[0]) <= 1e-9 * max(1.0, abs(ch.energy[0]))
    assert abs(incremental[1] - ch.energy[1]) <= 1e-9 * max(1.0, abs(ch.energy[1]))
    for cached, fresh in zip(caches, (ch.A, ch.Z, ch.L), strict=True):
        np.testing.assert_allclose(cached, fresh, rtol=0, atol=1e-9)


def test_each_accepted_dE_matches_a_full_recomputation():
    """Run one proposal at a time and check every energy change against the reference's
    from-scratch energy of the states before and after."""
    fab = NeuralFabric.layered([6, 5, 3], density=0.6, seed=1)
    spec = EnergySpec(lambda_l0=0.4, lambda_l1=0.2, w_prune=0.5)
    ch = Chain(fab, spec, numba_cpu)
    X, y = _data(6, 3)
    ch.set_batch(X, y, 1.5)
    ch.refresh(patience=0, floor=0.1)
    cum = Moves(weight=0.6, bias=0.1, birth=0.15, death=0.15).cumulative()
    sigma = np.array([0.5, 0.5, 0.0, 0.0, 0.0])
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(300):
        before = _full_energy(ch, X, y)
        st = ch.run(1, temperature=2.0, move_cum=cum, sigma=sigma, rng=rng)
        after = _full_energy(ch, X, y)
        if st[:, 1].sum():
            assert abs((after - before) - st[:, 2].sum()) <= 1e-9 * max(1.0, abs(after))
            checked += 1
        else:
            assert after == pytest.approx(before, abs=1e-12)
    assert checked > 50


def _full_energy(ch, X, y):
    E = ch.n_edges
    A = np.empty((len(X), ch.n_units))
    Z = np.empty((len(X), ch.n_units - ch.n_in))
    reference.forward(ch.n_in, ch.n_out, ch.act, ch.esrc, ch.edst, ch.ew, E, ch.bias, X, A, Z)
    err = reference.sample_losses(ch.n_out, ch.loss, A, y, np.empty(len(X)))
    s = ch.spec
    return ch.scale * err + s.lambda_l0 * E + s.lambda_l1 * np.abs(ch.ew[:E]).sum()


def test_forward_backends_agree_and_match_dense_matmul():
    fab = NeuralFabric.layered([7, 6, 4], density=0.5, seed=5)
    X, _ = _data(7, 4, n=20)
    outs = []
    for k in (numba_cpu, reference):
        A = np.empty((20, fab.n_units))
        Z = np.empty((20, fab.n_units - 7))
        src, dst = fab.source.astype(np.int64), fab.target.astype(np.int64)
        k.forward(7, 4, 0, src, dst, fab.weight, fab.n_edges, fab.bias, X, A, Z)
        outs.append(A[:, -4:])
    W1 = np.zeros((7, 6))
    W2 = np.zeros((6, 4))
    for s, t, w in zip(fab.source, fab.target, fab.weight, strict=True):
        if t < 13:
            W1[s, t - 7] = w
        else:
            W2[s - 7, t - 13] = w
    dense = np.maximum(X @ W1 + fab.bias[7:13], 0) @ W2 + fab.bias[13:]
    np.testing.assert_allclose(outs[0], dense, atol=1e-12)
    np.testing.assert_allclose(outs[1], dense, atol=1e-12)


def test_pair_scores_and_fenwick_backends_agree():
    fab = NeuralFabric.layered([6, 5, 3], density=0.6, seed=1)
    ch = Chain(fab, EnergySpec(), numba_cpu)
    X, y = _data(6, 3)
    ch.set_batch(X, y)
    a, b = np.empty(len(ch.psrc)), np.empty(len(ch.psrc))
    numba_cpu.pair_scores(ch.psrc, ch.pdst, ch.n_units, 3, ch.A, ch.y, 0.1, a)
    reference.pair_scores(ch.psrc, ch.pdst, ch.n_units, 3, ch.A, ch.y, 0.1, b)
    np.testing.assert_allclose(a, b, rtol=1e-12)
    assert np.all(a > 0)
    t1, t2 = np.empty(len(a) + 1), np.empty(len(a) + 1)
    numba_cpu.fenwick_build(a, t1)
    reference.fenwick_build(a, t2)
    np.testing.assert_allclose(t1, t2, rtol=1e-12)
    assert numba_cpu._fen_total(t1) == pytest.approx(a.sum(), rel=1e-12)
    cum = np.cumsum(a)
    for u in np.linspace(0.001, 0.999, 57):
        want = int(np.searchsorted(cum, u * a.sum(), side="right"))
        assert numba_cpu._fen_find(t1, u * a.sum()) == want


def test_stats_are_rates_in_unit_interval():
    ch, stats = _run(
        NeuralFabric.layered([6, 5, 3], seed=1), "cross_entropy", 0.0, numba_cpu, n=2000
    )
    assert np.all(stats[:, 1] <= stats[:, 0])
    assert np.all(stats[:, 4] <= stats[:, 3])
    rates = stats[:, 1] / np.maximum(stats[:, 0], 1)
    assert np.all((rates >= 0) & (rates <= 1))


@settings(max_examples=200, deadline=None)
@given(
    dE=st.floats(-1e6, 1e6),
    T=st.floats(1e-8, 1e6),
    log_q=st.floats(-50, 50),
    u=st.floats(0, 1, exclude_max=True),
)
def test_acceptance_probability_is_in_unit_interval(dE, T, log_q, u):
    p = reference.acceptance(dE, T, log_q)
    assert 0.0 <= p <= 1.0
    row = np.zeros(6)
    accepted = numba_cpu._accept(-dE / T + log_q, u, dE, row)
    assert accepted == (u < p)
    assert row[3] + row[5] <= 1


def test_detailed_balance_on_a_discrete_state_space():
    """Weights on a lattice, two possible connections that can be born and die: the chain's
    empirical distribution over the 36 topology x weight states matches exp(-E/T) / Z."""
    from scipy import stats as sps

    fab = NeuralFabric(
        n_in=1,
        n_out=2,
        source=np.array([0], np.uint32),
        target=np.array([1], np.uint32),
        weight=np.array([0.5]),
        bias=np.array([0.0, 0.2, -0.1]),
        layer_sizes=[1, 2],
    )
    spec = EnergySpec(lambda_l0=0.3, lambda_l1=0.4, w_prune=0.5, w_max=1.0, grid=0.5)
    X = np.array([[1.0], [0.5], [2.0], [0.0]])
    y = np.array([0, 1, 0, 1])
    T = 1.3
    ch = Chain(fab, spec, numba_cpu)
    ch.set_batch(X, y)
    ch.refresh(patience=0, floor=0.5)
    weights = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])

    def state(ch):
        out = 0
        for p in range(2):
            e = ch.pair_edge[p]
            k = 0 if e < 0 else 1 + int(np.argmin(np.abs(weights - ch.ew[e])))
            out = out * 6 + k
        return out

    energies = np.empty(36)
    for s in range(36):
        ks = (s // 6, s % 6)
        src, dst, w = [], [], []
        for p, k in enumerate(ks):
            if k:
                src.append(0)
                dst.append(1 + p)
                w.append(weights[k - 1])
        A, Z = np.empty((4, 3)), np.empty((4, 2))
        reference.forward(
            1,
            2,
            0,
            np.array(src, np.int64),
            np.array(dst, np.int64),
            np.array(w),
            len(w),
            fab.bias,
            X,
            A,
            Z,
        )
        err = reference.sample_losses(2, 0, A, y, np.empty(4))
        energies[s] = err + 0.3 * len(w) + 0.4 * np.abs(w).sum()
    p_true = np.exp(-(energies - energies.min()) / T)
    p_true /= p_true.sum()
    cum = Moves(weight=0.5, bias=0.0, birth=0.25, death=0.25).cumulative()
    sigma = np.array([0.6, 0.0, 0.0, 0.0, 0.0])
    rng = np.random.default_rng(11)
    counts = np.zeros(36)
    for _ in range(40_000):
        ch.run(3, temperature=T, move_cum=cum, sigma=sigma, rng=rng)
        counts[state(ch)] += 1
    freq = counts / counts.sum()
    tv = 0.5 * np.abs(freq - p_true).sum()
    assert tv < 0.02, (tv, np.round(freq, 3), np.round(p_true, 3))
    # chi-square on thinned samples (every state with enough expected mass)
    n_eff = counts.sum() / 4  # the chain moves 3 proposals between samples: allow correlation
    keep = p_true * n_eff > 20
    chi2 = (((freq - p_true)[keep] * n_eff) ** 2 / (p_true[keep] * n_eff)).sum()
    assert sps.chi2.sf(chi2, keep.sum() - 1) > 1e-4, chi2


def test_rejects_energy_changes_it_cannot_reverse():
    """With birth and death probabilities > 0 but a pair not eligible to die, its birth is
    never accepted (the reverse move could not happen)."""
    fab = NeuralFabric.layered([3, 2], density=0.5, seed=0)
    ch = Chain(fab, EnergySpec(w_prune=0.5), numba_cpu)
    X, y = _data(3, 2)
    ch.set_batch(X, y)
    ch.refresh(patience=0, floor=0.1)
    ch.elig[:] = 0  # nothing may die
    ch._rebuild_candidates()
    cum = Moves(weight=0.0, bias=0.0, birth=0.5, death=0.5).cumulative()
    stats = ch.run(
        500, temperature=100.0, move_cum=cum, sigma=np.zeros(5), rng=np.random.default_rng(0)
    )
    assert stats[2, 0] > 100 and stats[2, 1] == 0 and stats[3, 1] == 0


def test_reference_acceptance_handles_extremes():
    assert reference.acceptance(-1e300, 1e-300, 0.0) == 1.0
    assert reference.acceptance(1e300, 1e-300, 0.0) == 0.0
    assert reference.acceptance(1.0, 1.0, 0.0) == pytest.approx(math.exp(-1.0))
