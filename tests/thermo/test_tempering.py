"""Replica exchange (parallel tempering) against detailed balance of the joint product
distribution prod_k exp(-E(x_k) / T_k) on a state space small enough to enumerate."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps

from neurofabric.thermo import tempering
from neurofabric.thermo.tempering import replica_exchange

ENERGY = np.array([0.0, 0.7, 1.5, 3.0])  # four states per replica
TEMPS = [0.5, 1.0, 2.5]  # three replicas


def _joint_pi():
    """The exact product distribution over the 4**3 joint states."""
    states = list(itertools.product(range(len(ENERGY)), repeat=len(TEMPS)))
    logp = np.array([-sum(ENERGY[x] / T for x, T in zip(s, TEMPS, strict=True)) for s in states])
    p = np.exp(logp - logp.max())
    return states, p / p.sum()


class _FixedUniform:
    """An rng whose every uniform draw is ``u``: sweeping u over a fine grid of [0, 1)
    measures the acceptance probability of the real code path."""

    def __init__(self, u):
        self.u = u

    def random(self):
        return self.u


_GRID = (np.arange(4000) + 0.5) / 4000


def _swap_probability(state, start, pair):
    """P(the sweep with this start exchanges `pair`) for the joint state, from the code."""
    energies = [ENERGY[x] for x in state]
    hits = 0
    for u in _GRID:
        _, accepted = replica_exchange(energies, TEMPS, start=start, rng=_FixedUniform(u))
        hits += bool(accepted[pair])
    return hits / len(_GRID)


@pytest.mark.parametrize("pair", [0, 1])
def test_exchange_satisfies_detailed_balance_on_every_pair_of_joint_states(pair):
    """pi(a) P(a -> b) == pi(b) P(b -> a) for every joint state a and the state b with the
    states of replicas (pair, pair + 1) exchanged, with P measured from replica_exchange."""
    states, pi = _joint_pi()
    index = {s: n for n, s in enumerate(states)}
    checked = 0
    for a in states:
        b = list(a)
        b[pair], b[pair + 1] = b[pair + 1], b[pair]
        b = tuple(b)
        if a == b:
            continue
        p_ab = _swap_probability(a, pair % 2, pair)
        p_ba = _swap_probability(b, pair % 2, pair)
        flow_ab, flow_ba = pi[index[a]] * p_ab, pi[index[b]] * p_ba
        # the grid resolves probabilities to 1/4000
        tol = 2.5e-4 * (pi[index[a]] + pi[index[b]])
        assert flow_ab == pytest.approx(flow_ba, abs=tol), (a, b, p_ab, p_ba)
        assert max(p_ab, p_ba) == pytest.approx(1.0)  # Metropolis: one direction always goes
        checked += 1
    assert checked == 48  # 64 joint states, 16 with equal states in the pair


def test_exchange_log_ratio_equals_the_ratio_of_joint_probabilities():
    """An independent closed form: log pi(b) - log pi(a) from the product distribution."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        Ei, Ej = rng.normal(0, 3, 2)
        Ti, Tj = np.exp(rng.normal(0, 1, 2))
        log_pi_a = -Ei / Ti - Ej / Tj
        log_pi_b = -Ej / Ti - Ei / Tj
        got = tempering.exchange_log_ratio(Ei, Ej, Ti, Tj)
        assert got == pytest.approx(log_pi_b - log_pi_a, rel=1e-12, abs=1e-12)


def test_tempering_chain_samples_the_joint_product_distribution():
    """Metropolis moves inside each replica plus replica_exchange (alternating start, as the
    trainer does): the empirical joint distribution matches prod_k exp(-E/T_k) / Z
    (chi-square). The local moves alone are exact; a wrong exchange rule skews the joint."""
    states, pi = _joint_pi()
    index = {s: n for n, s in enumerate(states)}
    rng = np.random.default_rng(5)
    S = len(ENERGY)
    x = [0, 0, 0]
    counts = np.zeros(len(states))
    n_steps = 60_000
    props = rng.integers(0, S, size=(n_steps, len(TEMPS)))
    us = rng.random((n_steps, len(TEMPS)))
    for t in range(n_steps):
        for k, T in enumerate(TEMPS):  # independence proposal over the states: symmetric
            dE = ENERGY[props[t, k]] - ENERGY[x[k]]
            if dE <= 0 or us[t, k] < math.exp(-dE / T):
                x[k] = props[t, k]
        order, _ = replica_exchange([ENERGY[v] for v in x], TEMPS, start=t % 2, rng=rng)
        x = [x[k] for k in order]
        counts[index[tuple(x)]] += 1
    freq = counts / counts.sum()
    tv = 0.5 * np.abs(freq - pi).sum()
    assert tv < 0.02, tv
    n_eff = n_steps / 2  # allow for correlation between consecutive steps
    keep = pi * n_eff > 20
    chi2 = (((freq - pi)[keep] * n_eff) ** 2 / (pi[keep] * n_eff)).sum()
    assert sps.chi2.sf(chi2, keep.sum() - 1) > 1e-4, chi2


def test_exchange_sweep_touches_only_the_pairs_of_its_parity():
    hot = [5.0, 0.0, 5.0, 0.0]  # every pair downhill for the colder replica: always accepted
    temps = [1.0, 2.0, 4.0, 8.0]
    order, acc = replica_exchange(hot, temps, start=0, rng=np.random.default_rng(0))
    assert order.tolist() == [1, 0, 3, 2] and acc.tolist() == [True, False, True]
    order, acc = replica_exchange([0.0, 5.0, 0.0, 0.0], temps, start=1, rng=_FixedUniform(0.5))
    assert order.tolist() == [0, 2, 1, 3] and acc.tolist() == [False, True, False]


def test_trainer_exchange_swaps_the_temperatures_of_walkers_by_their_slots():
    """ThermoClassifier's between-generation step: walker ``walker_at[k]`` runs at
    T * ladder[k]; the exchange compares the energies of the walkers in neighbouring slots
    (not the walkers numbered k and k + 1) and counts go to the attempted pairs."""
    from neurofabric.thermo.thermo import _exchange

    T, temps = 0.3, [1.0, 1.5, 2.25, 3.375]
    energies = np.array([2.0, 1.0, 1.4, 1.2])  # by walker
    walker_at = np.array([2, 0, 3, 1])
    for g in range(6):
        swaps = np.zeros((3, 2))
        order = _exchange(energies, walker_at, temps, T, np.random.default_rng(g), swaps, g)
        want, acc = replica_exchange(
            [1.4, 2.0, 1.2, 1.0], [T * t for t in temps], start=g % 2, rng=np.random.default_rng(g)
        )
        assert order.tolist() == want.tolist()
        assert swaps[:, 0].tolist() == ([1, 0, 1] if g % 2 == 0 else [0, 1, 0])
        assert swaps[:, 1].tolist() == acc.astype(float).tolist()
    # downhill for the colder slot: always taken (slot 0 holds walker 2 at E 1.4, slot 1
    # walker 0 at E 2.0; slot 2 walker 3 at 1.2 and slot 3 walker 1 at 1.0)
    order = _exchange(energies, walker_at, temps, T, np.random.default_rng(0), np.zeros((3, 2)), 0)
    assert walker_at[order].tolist()[2:] == [1, 3]


def test_a_stopped_tempering_run_keeps_the_walker_that_ran_cold():
    """Stopped by the callback (or at the end), the model is the network whose generation
    the last history row describes, not a hotter one swapped in after it."""
    from sklearn.datasets import load_digits

    from neurofabric.thermo import ThermoClassifier

    X, y = load_digits(return_X_y=True)
    X = X[:400] / 16.0
    for stop_at in (3, 4, 5, None):
        m = ThermoClassifier(
            hidden=(8,),
            lambda_l0=1.0,
            w_prune=0.05,
            n_proposals=12_000,
            generation=2_000,
            replicas=4,
            replica_ratio=1.3,
            seed=stop_at or 0,
        )
        m.fit(X, y[:400], callback=lambda p, s=stop_at: s is not None and p.done >= s)
        last = m.history_.rows[-1]
        assert len(m.history_) == (stop_at or 6)
        assert m.fabric_.n_edges == last["connections"]
        assert np.mean(m.fabric_.predict(X) == y[:400]) == last["train_accuracy"]
