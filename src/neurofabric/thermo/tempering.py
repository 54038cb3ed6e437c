"""Parallel tempering: the replica-exchange step the trainer runs between generations.

Replica k samples pi_k(x) ∝ exp(-E(x) / T_k). Exchanging the states of replicas i and j
leaves the joint product prod_k pi_k(x_k) invariant (detailed balance) when it is accepted with

    A = min(1, exp((1/T_i - 1/T_j) (E_i - E_j)))

because pi(b) / pi(a) = exp(-E_j/T_i - E_i/T_j + E_i/T_i + E_j/T_j) for a joint state a and the
state b with the two replicas' states exchanged. ``tests/thermo/test_tempering.py`` checks
this against the enumerated joint distribution of a tiny system.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def exchange_log_ratio(E_i: float, E_j: float, T_i: float, T_j: float) -> float:
    """log pi(b) / pi(a) for exchanging the states (energies E_i, E_j) of replicas at
    temperatures T_i and T_j: (1/T_i - 1/T_j) (E_i - E_j)."""
    return (1.0 / T_i - 1.0 / T_j) * (E_i - E_j)


def replica_exchange(
    energies: Sequence[float], temperatures: Sequence[float], *, start: int, rng: Any
) -> tuple[np.ndarray, np.ndarray]:
    """One sweep of exchanges between neighbouring replicas (start, start+1), (start+2,
    start+3), ...; the trainer alternates ``start`` between 0 and 1 from one generation to
    the next. ``rng`` is a ``numpy.random.Generator`` (one uniform drawn per uphill pair).

    Returns ``order`` (after the sweep, slot k holds the state that was in slot
    ``order[k]``) and ``accepted`` (one flag per pair (i, i+1), False where not attempted).
    """
    n = len(energies)
    order = np.arange(n)
    accepted = np.zeros(max(n - 1, 0), dtype=bool)
    for i in range(start, n - 1, 2):
        j = i + 1
        log_r = exchange_log_ratio(energies[i], energies[j], temperatures[i], temperatures[j])
        if log_r >= 0 or rng.random() < math.exp(log_r):
            order[i], order[j] = order[j], order[i]
            accepted[i] = True
    return order, accepted
