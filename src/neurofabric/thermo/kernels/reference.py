"""The readable specification of the thermodynamic trainer's kernels (numpy).

**The network.** Units ``0 .. n_in-1`` are inputs, the last ``n_out`` units are outputs
(linear logits), the others hidden (``relu``, ``tanh`` or ``sigmoid``). Every connection goes
from a lower to a higher unit index, so index order is a topological order. Connections are
the columns ``esrc, edst, ew`` (the first ``n_edges`` entries are live); each is one of the
*allowed pairs* ``psrc[p] -> pdst[p]`` and ``pair_edge[p]`` is its edge index (-1: absent).

**The energy** of a state x (topology and weights) on the cached samples::

    E(x) = scale * sum_n loss_n(x) + lam0 * n_edges + lam1 * sum_e |w_e|

with ``loss`` the softmax cross-entropy of the logits or half the squared error against the
one-hot target; ``scale`` = N / B makes a minibatch of B samples an estimate of the sum over
all N training samples. The sampler targets pi(x) ~ exp(-E(x) / T). Temperature enters only
there, through the acceptance rule min(1, exp(-dE / T) * proposal ratio); it is not also added
to the energy as a T*S term (that would count it twice).

**The moves** (proposal i uses ``u_move[i]`` to choose the move by the cumulative
probabilities ``move_cum`` and ``u_pick, gauss, u_aux, u_acc`` for the rest):

- *weight*: edge ``floor(u_pick * n_edges)``, ``w += sigma[0] * gauss`` (symmetric);
- *bias*: non-input unit ``n_in + floor(u_pick * (n_units - n_in))``, ``b += sigma[1] * gauss``;
- *birth*: an absent allowed pair p with probability ``q_b(p) = score[p] / sum of score over
  absent pairs`` (chosen as the first p whose running sum exceeds ``u_pick * total``), a weight
  ``w`` uniform on ``[-w_prune, w_prune]`` (density ``g = 1 / (2 w_prune)``); accepted with::

      min(1, exp(-dE/T) * (p_death / n_cand') / (p_birth * q_b(p) * g(w)))

  where ``n_cand'`` counts the death candidates after the birth (the new edge is one);
- *death*: a death candidate chosen uniformly (``floor(u_pick * n_cand)``): an edge whose
  ``|w| <= w_prune`` and whose pair is *eligible*; accepted with::

      min(1, exp(-dE/T) * p_birth * q_b'(p) * g(w) / (p_death / n_cand))

  with ``q_b'`` the birth probability of the pair once it is absent again. The edge is
  swap-removed (the last edge moves into its slot).
  Birth and death are each other's reverse, so these ratios keep detailed balance (a
  reversible-jump step with unit Jacobian: the new weight is the drawn ``w`` itself);
- *all*: every weight and bias moves by ``sigma[4] * all_gauss[...]`` (symmetric).

With ``grid > 0`` weights live on the lattice ``k * grid``: a step is
``round(gauss * sigma / grid) * grid`` (0 becomes one step in the sign of ``gauss``) and a
newborn weight is uniform over the ``m`` lattice points in ``[-w_prune, w_prune]`` (g = 1/m),
which makes the state space discrete (the detailed-balance test uses it). A move that would
take a weight beyond ``|w_max|`` is rejected.

The scores ``score`` (Hebbian co-activity) and the eligibility ``elig`` are frozen within a
generation, so every proposal kernel is fixed while it runs and each step leaves pi invariant;
the shell refreshes them (and adapts the step sizes) between generations.
"""

from __future__ import annotations

import math

import numpy as np

from neurofabric.thermo.kernels.common import (
    ACT_RELU,
    ACT_SIGMOID,
    ACT_TANH,
    E_ERR,
    E_TOTAL,
    LOSS_CE,
    MOVE_ALL,
    MOVE_BIAS,
    MOVE_BIRTH,
    MOVE_DEATH,
    MOVE_WEIGHT,
    N_CAND,
    N_EDGES,
    ST_ACCEPTED,
    ST_DE,
    ST_NEUTRAL,
    ST_PROPOSED,
    ST_UP_ACCEPTED,
    ST_UP_PROPOSED,
)

__all__ = [
    "acceptance",
    "fenwick_build",
    "forward",
    "mh_generation",
    "pair_scores",
    "sample_losses",
]


def acceptance(dE: float, temperature: float, log_q: float = 0.0) -> float:
    """The Metropolis-Hastings acceptance probability min(1, exp(-dE / T) * q_ratio), with
    ``log_q`` the log of the proposal ratio (0 for a symmetric move). Always in [0, 1]."""
    log_r = -dE / temperature + log_q
    return 1.0 if log_r >= 0.0 else math.exp(log_r)


def activate(kind: int, z: np.ndarray) -> np.ndarray:
    if kind == ACT_RELU:
        return np.maximum(z, 0.0)
    if kind == ACT_TANH:
        return np.tanh(z)
    if kind == ACT_SIGMOID:
        return 1.0 / (1.0 + np.exp(-z))
    return z


def forward(n_in, n_out, act_kind, esrc, edst, ew, n_edges, bias, X, A, Z):
    """Sample-major caches (one row per sample): A[:, u] = f(Z[:, u - n_in]) with
    Z[:, u - n_in] = bias[u] + sum over connections e into u of ew[e] * A[:, src[e]]."""
    n_units = A.shape[1]
    A[:, :n_in] = X
    src, dst, w = esrc[:n_edges], edst[:n_edges], ew[:n_edges]
    for u in range(n_in, n_units):
        sel = dst == u
        z = bias[u] + A[:, src[sel].astype(np.int64)] @ w[sel]
        Z[:, u - n_in] = z
        A[:, u] = z if u >= n_units - n_out else activate(act_kind, z)


def sample_losses(n_out, loss_kind, A, y, L):
    """L[n] = loss of sample n from its logits (the last n_out columns of A); returns sum(L)."""
    logits = A[:, A.shape[1] - n_out :]
    rows = np.arange(A.shape[0])
    if loss_kind == LOSS_CE:
        m = logits.max(axis=1)
        lse = m + np.log(np.exp(logits - m[:, None]).sum(axis=1))
        L[:] = lse - logits[rows, y]
    else:
        target = np.zeros_like(logits)
        target[rows, y] = 1.0
        L[:] = 0.5 * ((logits - target) ** 2).sum(axis=1)
    return float(L.sum())


def pair_scores(psrc, pdst, n_units, n_out, A, y, floor, out):
    """Hebbian co-activity mean_n |a_s a_t| per allowed pair (an output's activity is the
    one-hot teacher signal), plus ``floor`` times the mean score so no pair has score 0."""
    first_out = n_units - n_out
    teacher = np.zeros((A.shape[0], n_out))
    teacher[np.arange(A.shape[0]), y] = 1.0
    act = np.hstack([A[:, :first_out], teacher])
    out[:] = np.abs(act[:, psrc] * act[:, pdst]).mean(axis=0)
    mean = out.mean() if len(out) else 0.0
    out += floor * mean if mean > 0 else 1.0


def fenwick_build(values, tree):
    """The Fenwick tree of ``values`` (the reference samples with a cumulative sum instead)."""
    tree[0] = 0.0
    tree[1:] = values
    for i in range(1, len(values) + 1):
        j = i + (i & -i)
        if j <= len(values):
            tree[j] += tree[i]


def _energy(net, X, y, scale, lam0, lam1, ew, bias, n_edges):
    n_in, n_out, act_kind, loss_kind, esrc, edst = net
    A = np.empty((X.shape[0], len(bias)))
    Z = np.empty((X.shape[0], len(bias) - n_in))
    forward(n_in, n_out, act_kind, esrc, edst, ew, n_edges, bias, X, A, Z)
    L = np.empty(X.shape[0])
    err = sample_losses(n_out, loss_kind, A, y, L)
    e = scale * err + lam0 * n_edges + lam1 * np.abs(ew[:n_edges]).sum()
    return e, err, A, Z, L


def _step(g, sigma, grid):
    if grid <= 0:
        return g * sigma
    k = round(g * sigma / grid)
    return (k if k != 0 else (1.0 if g >= 0 else -1.0)) * grid


def _cand_set(e, want, cand, cand_pos, counters):
    here = cand_pos[e] >= 0
    if want and not here:
        cand[counters[N_CAND]] = e
        cand_pos[e] = counters[N_CAND]
        counters[N_CAND] += 1
    elif here and not want:
        k, last = cand_pos[e], counters[N_CAND] - 1
        cand[k] = cand[last]
        cand_pos[cand[k]] = k
        cand_pos[e] = -1
        counters[N_CAND] = last


def mh_generation(net, pairs, edges, batch, prop, draws, scratch, energy, stats):
    """Run ``len(draws.u_move)`` proposals in place; every dE is a full recomputation.

    The arguments are the named tuples of ``kernels.common`` (``Net``, ``Pairs``, ``Edges``,
    ``Batch``, ``Proposal``, ``Draws``, ``Scratch``); ``energy`` = [E, sum of the losses],
    ``stats[m]`` = [proposed, accepted, sum of accepted dE, uphill (dE > 0) proposed,
    uphill accepted, neutral (dE == 0) proposed] for move m. The scratch buffers, the
    non-zero input lists (``batch.nz_ptr, nz_idx``) and the Fenwick tree are unused here.
    """
    n_in, n_out, act_kind, loss_kind = net
    psrc, pdst, pair_edge, score, elig = pairs.src, pairs.dst, pairs.edge, pairs.score, pairs.elig
    esrc, edst, ew, epair, bias = edges.src, edges.dst, edges.w, edges.pair, edges.bias
    cand, cand_pos, counters = edges.cand, edges.cand_pos, edges.counters
    X, y, A, Z, L = batch.X, batch.y, batch.A, batch.Z, batch.L
    move_cum, sigma, temperature, scale, lam0, lam1, w_prune, w_max, grid = prop
    u_move, u_pick, gauss, u_aux, u_acc, all_gauss = draws
    arch = (n_in, n_out, act_kind, loss_kind, esrc, edst)
    n_units = len(bias)
    probs = np.diff(np.concatenate([[0.0], move_cum]))
    p_birth, p_death = probs[MOVE_BIRTH], probs[MOVE_DEATH]
    if grid > 0:
        m = 2 * math.floor(w_prune / grid + 1e-9) + 1
        log_g = -math.log(m)
    else:
        log_g = -math.log(2.0 * w_prune)
    gptr = 0

    def is_cand(e):
        return elig[epair[e]] != 0 and abs(ew[e]) <= w_prune

    for i in range(len(u_move)):
        move = min(int(np.searchsorted(move_cum, u_move[i], side="right")), len(move_cum) - 1)
        stats[move, ST_PROPOSED] += 1
        n_edges = int(counters[N_EDGES])
        e_old = _energy(arch, X, y, scale, lam0, lam1, ew, bias, n_edges)[0]
        new_w, new_b, log_q, n_new = ew.copy(), bias.copy(), 0.0, n_edges
        action = None
        if move == MOVE_WEIGHT:
            if n_edges == 0:
                continue
            e = min(int(u_pick[i] * n_edges), n_edges - 1)
            new_w[e] += _step(gauss[i], sigma[MOVE_WEIGHT], grid)
            if abs(new_w[e]) > w_max:
                continue
            action = ("weight", e)
        elif move == MOVE_BIAS:
            t = n_in + min(int(u_pick[i] * (n_units - n_in)), n_units - n_in - 1)
            new_b[t] += _step(gauss[i], sigma[MOVE_BIAS], grid)
            if abs(new_b[t]) > w_max:
                continue
            action = ("bias", t)
        elif move == MOVE_BIRTH:
            weights = np.where(pair_edge < 0, score, 0.0)
            total = weights.sum()
            if total <= 0 or n_edges >= len(esrc):
                continue
            p = min(
                int(np.searchsorted(np.cumsum(weights), u_pick[i] * total, "right")), len(psrc) - 1
            )
            if pair_edge[p] >= 0 or elig[p] == 0 or p_death <= 0:
                continue
            if grid > 0:
                m = 2 * math.floor(w_prune / grid + 1e-9) + 1
                w = (min(int(u_aux[i] * m), m - 1) - (m - 1) // 2) * grid
            else:
                w = w_prune * (2.0 * u_aux[i] - 1.0)
            esrc[n_edges], edst[n_edges], new_w[n_edges] = psrc[p], pdst[p], w
            n_new = n_edges + 1
            log_q = (
                math.log(p_death / (counters[N_CAND] + 1))
                - math.log(p_birth * score[p] / total)
                - log_g
            )
            action = ("birth", p)
        elif move == MOVE_DEATH:
            if counters[N_CAND] == 0 or p_birth <= 0:
                continue
            e = cand[min(int(u_pick[i] * counters[N_CAND]), counters[N_CAND] - 1)]
            p = epair[e]
            absent = np.where(pair_edge < 0, score, 0.0).sum()
            log_q = (
                math.log(p_birth * score[p] / (absent + score[p]))
                + log_g
                - math.log(p_death / counters[N_CAND])
            )
            new_w[e] = 0.0  # the same energy as removing it, without reordering yet
            action = ("death", e)
        else:
            need = n_edges + n_units - n_in
            if gptr + need > len(all_gauss):
                continue
            steps = [_step(g, sigma[MOVE_ALL], grid) for g in all_gauss[gptr : gptr + need]]
            gptr += need
            new_w[:n_edges] += steps[:n_edges]
            new_b[n_in:] += steps[n_edges:]
            if np.any(np.abs(new_w[:n_edges]) > w_max):
                continue
            action = ("all", None)
        e_new = _energy(arch, X, y, scale, lam0, lam1, new_w, new_b, n_new)[0]
        if action[0] == "death":
            e_new -= lam0  # one edge fewer (its weight is already 0)
        dE = e_new - e_old
        accepted = u_acc[i] < acceptance(dE, temperature, log_q)
        if dE == 0:
            stats[move, ST_NEUTRAL] += 1
        elif dE > 0:
            stats[move, ST_UP_PROPOSED] += 1
            stats[move, ST_UP_ACCEPTED] += accepted
        if not accepted:
            continue
        kind, where = action
        if kind == "birth":
            ew[n_edges] = new_w[n_edges]
            epair[n_edges], pair_edge[where] = where, n_edges
            cand_pos[n_edges] = -1
            counters[N_EDGES] = n_edges + 1
            _cand_set(n_edges, True, cand, cand_pos, counters)
        elif kind == "death":
            _cand_set(where, False, cand, cand_pos, counters)
            last = n_edges - 1
            pair_edge[epair[where]] = -1
            if where != last:
                esrc[where], edst[where], ew[where], epair[where] = (
                    esrc[last],
                    edst[last],
                    ew[last],
                    epair[last],
                )
                pair_edge[epair[where]] = where
                cand_pos[where] = cand_pos[last]
                if cand_pos[where] >= 0:
                    cand[cand_pos[where]] = where
            cand_pos[last] = -1
            counters[N_EDGES] = last
        else:
            ew[:] = new_w
            bias[:] = new_b
            touched = [where] if kind == "weight" else (range(n_edges) if kind == "all" else [])
            for e in touched:
                _cand_set(e, is_cand(e), cand, cand_pos, counters)
        _, err, A_new, Z_new, L_new = _energy(
            arch, X, y, scale, lam0, lam1, ew, bias, int(counters[N_EDGES])
        )
        A[:], Z[:], L[:] = A_new, Z_new, L_new
        energy[E_TOTAL] += dE
        energy[E_ERR] = err
        stats[move, ST_ACCEPTED] += 1
        stats[move, ST_DE] += dE
    return 0
