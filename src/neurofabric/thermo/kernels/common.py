"""Codes and named argument tuples shared by the kernel backends (plain ints, so numba sees
them as constants)."""

from typing import NamedTuple

import numpy as np

ACT_RELU = 0
ACT_TANH = 1
ACT_SIGMOID = 2
ACT_IDENTITY = 3
ACTIVATIONS = {"relu": ACT_RELU, "tanh": ACT_TANH, "sigmoid": ACT_SIGMOID}

LOSS_CE = 0
LOSS_SQ = 1
LOSSES = {"cross_entropy": LOSS_CE, "squared_error": LOSS_SQ}

MOVE_WEIGHT = 0
MOVE_BIAS = 1
MOVE_BIRTH = 2
MOVE_DEATH = 3
MOVE_ALL = 4
N_MOVES = 5
MOVE_NAMES = ("weight", "bias", "birth", "death", "all")


# ---------------------------------------------------------------- named kernel arguments
# ``mh_generation(net, pairs, edges, batch, prop, draws, scratch, energy, stats)`` in every
# backend. The shell (``thermo.chain.Chain``) builds these once (``Batch`` and ``Scratch`` per
# batch size, ``Proposal`` and ``Draws`` per generation); numba passes named tuples of arrays
# as plain structs, so a field read costs nothing at run time.

# counters[...]
N_EDGES = 0  # live connections (the first N_EDGES entries of Edges.src/dst/w/pair)
N_CAND = 1  # death candidates (the first N_CAND entries of Edges.cand)
# energy[...]
E_TOTAL = 0  # the energy E(x)
E_ERR = 1  # the sum of the per-sample losses
# stats[move, ...]
ST_PROPOSED = 0
ST_ACCEPTED = 1
ST_DE = 2  # sum of the accepted dE
ST_UP_PROPOSED = 3  # uphill (dE > 0) proposals
ST_UP_ACCEPTED = 4
ST_NEUTRAL = 5  # dE == 0 proposals
N_STATS = 6


class Net(NamedTuple):
    """The network's shape: unit ranges, hidden activation and loss codes."""

    n_in: int
    n_out: int
    act: int
    loss: int


class Pairs(NamedTuple):
    """The allowed pairs, sorted by (source, target), and what the sampler knows of each.

    ``src_order`` lists pair indices by source and ``src_ptr`` delimits each unit's run
    (outgoing pairs of u: ``src_order[src_ptr[u]:src_ptr[u + 1]]``); ``edge[p]`` is the live
    connection of pair p or -1; ``score`` the birth weights, ``elig`` the death eligibility,
    ``tree`` the Fenwick tree of the scores of absent pairs."""

    src: np.ndarray
    dst: np.ndarray
    src_ptr: np.ndarray
    src_order: np.ndarray
    edge: np.ndarray
    score: np.ndarray
    elig: np.ndarray
    tree: np.ndarray


class Edges(NamedTuple):
    """The live connections (with spare capacity), the biases and the death candidates.

    ``counters`` = [N_EDGES, N_CAND]; ``cand[:n_cand]`` are the candidates, ``cand_pos[e]`` the
    place of edge e in that list or -1."""

    src: np.ndarray
    dst: np.ndarray
    w: np.ndarray
    pair: np.ndarray
    bias: np.ndarray
    cand: np.ndarray
    cand_pos: np.ndarray
    counters: np.ndarray


class Batch(NamedTuple):
    """The cached samples: inputs ``X`` (samples x n_in), labels ``y``, per input unit the
    samples where it is non-zero (``nz_idx[nz_ptr[i]:nz_ptr[i + 1]]``), activations ``A``,
    pre-activations ``Z`` and losses ``L``, and second copies (``A2, Z2, L2``) for the
    all-weights move."""

    X: np.ndarray
    nz_ptr: np.ndarray
    nz_idx: np.ndarray
    y: np.ndarray
    A: np.ndarray
    Z: np.ndarray
    L: np.ndarray
    A2: np.ndarray
    Z2: np.ndarray
    L2: np.ndarray


class Proposal(NamedTuple):
    """One generation's proposal mix and energy: cumulative move probabilities, step sizes per
    move, temperature, minibatch scale, L0 and L1 costs, the pruning band, the weight bound
    and the lattice spacing (0: continuous weights)."""

    move_cum: np.ndarray
    sigma: np.ndarray
    temperature: float
    scale: float
    lam0: float
    lam1: float
    w_prune: float
    w_max: float
    grid: float


class Draws(NamedTuple):
    """The random numbers of one generation (one of each per proposal; ``all_gauss`` for the
    all-weights moves, consumed in order)."""

    u_move: np.ndarray
    u_pick: np.ndarray
    gauss: np.ndarray
    u_aux: np.ndarray
    u_acc: np.ndarray
    all_gauss: np.ndarray


class Scratch(NamedTuple):
    """Work buffers of the incremental path: the cone of a unit (``mark, cone, pos, dzl``),
    the affected samples' new values (``zb, idx, lnew``), one sample's logits, and the
    candidate weights and biases of the all-weights move."""

    mark: np.ndarray
    cone: np.ndarray
    pos: np.ndarray
    dzl: np.ndarray
    zb: np.ndarray
    idx: np.ndarray
    lnew: np.ndarray
    logits: np.ndarray
    w_buf: np.ndarray
    b_buf: np.ndarray
