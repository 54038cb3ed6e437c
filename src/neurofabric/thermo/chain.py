"""One Markov chain over a fabric's weights and topology, with its caches.

`Chain` owns the mutable structure of arrays the kernels work on (connections with spare
capacity for growth, the allowed pairs with their birth scores in a Fenwick tree, the death
candidates, and the per-sample activation caches of the current batch). It draws the random
numbers of a generation and hands everything to the backend's ``mh_generation``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from neurofabric.thermo.fabric import NeuralFabric
from neurofabric.thermo.kernels.common import (
    ACTIVATIONS,
    LOSSES,
    MOVE_ALL,
    N_MOVES,
    N_STATS,
    Batch,
    Draws,
    Edges,
    Net,
    Pairs,
    Proposal,
    Scratch,
)


@dataclass(frozen=True)
class EnergySpec:
    """The energy and the proposal geometry a chain samples with (see ``kernels.reference``)."""

    loss: str = "cross_entropy"
    lambda_l0: float = 0.0
    lambda_l1: float = 0.0
    w_prune: float = 0.02
    w_max: float = math.inf
    grid: float = 0.0


def draw_generation(rng: np.random.Generator, n: int, move_cum: np.ndarray, all_size: int) -> Draws:
    """The random numbers of ``n`` proposals of one chain (``all_size`` normal numbers per
    all-weights move), in the order every backend's chains draw them."""
    u_move = rng.random(n)
    u_pick = rng.random(n)
    gauss = rng.standard_normal(n)
    u_aux = rng.random(n)
    u_acc = rng.random(n)
    n_all = (
        int(np.count_nonzero(u_move >= move_cum[MOVE_ALL - 1]))
        if move_cum[MOVE_ALL - 1] < 1.0
        else 0
    )
    all_gauss = rng.standard_normal(n_all * all_size)
    return Draws(u_move, u_pick, gauss, u_aux, u_acc, all_gauss)


class Chain:
    """The state of one sampler: a fabric's connections plus caches for one batch."""

    def __init__(self, fabric: NeuralFabric, spec: EnergySpec, kernels) -> None:
        self.k = kernels
        self.spec = spec
        self.n_in, self.n_out = fabric.n_in, fabric.n_out
        self.n_units = fabric.n_units
        self.activation = fabric.activation
        self.act = ACTIVATIONS[fabric.activation]
        self.loss = LOSSES[spec.loss]
        self.layer_sizes = fabric.layer_sizes
        self._fabric_pairs = fabric._pairs
        ps, pt = fabric.allowed_pairs()
        order = np.lexsort((pt, ps))  # allowed pairs sorted by (source, target)
        self.psrc = ps[order].astype(np.int64)
        self.pdst = pt[order].astype(np.int64)
        P = len(self.psrc)
        self.sorder = np.argsort(self.psrc, kind="stable").astype(np.int64)
        self.sptr = np.searchsorted(self.psrc[self.sorder], np.arange(self.n_units + 1)).astype(
            np.int64
        )
        key = self.psrc * self.n_units + self.pdst
        ekey = fabric.source.astype(np.int64) * self.n_units + fabric.target.astype(np.int64)
        epair = np.searchsorted(key, ekey) if P else np.zeros(0, np.int64)
        if P and not np.array_equal(key[np.minimum(epair, P - 1)], ekey):
            raise ValueError("a connection is not among the allowed pairs")
        E = fabric.n_edges
        cap = max(P, E)
        self.esrc = np.zeros(cap, np.int64)
        self.edst = np.zeros(cap, np.int64)
        self.ew = np.zeros(cap, np.float64)
        self.epair = np.zeros(cap, np.int64)
        self.esrc[:E] = fabric.source
        self.edst[:E] = fabric.target
        self.ew[:E] = fabric.weight
        self.epair[:E] = epair
        self.pair_edge = np.full(P, -1, np.int64)
        self.pair_edge[epair] = np.arange(E)
        self.bias = np.array(fabric.bias, dtype=np.float64)
        self.counters = np.array([E, 0], np.int64)
        self.cand = np.zeros(cap, np.int64)
        self.cand_pos = np.full(cap, -1, np.int64)
        self.score = np.ones(P)
        self.elig = np.ones(P, np.uint8)
        self.age = np.zeros(P, np.int64)
        self.tree = np.zeros(P + 1)
        self.energy = np.zeros(2)
        self.stats = np.zeros((N_MOVES, N_STATS))
        n = self.n_units
        self.mark = np.zeros(n, np.int8)
        self.cone = np.zeros(n, np.int64)
        self.pos = np.full(n, -1, np.int64)
        self.dzl = np.zeros(n)
        self.logits = np.zeros(self.n_out)
        self.w_buf = np.zeros(cap)
        self.b_buf = np.zeros(n)
        self.B = -1
        # the kernels' named arguments, over the arrays above (updated in place from here on)
        self.net = Net(self.n_in, self.n_out, self.act, self.loss)
        self.pairs = Pairs(
            self.psrc,
            self.pdst,
            self.sptr,
            self.sorder,
            self.pair_edge,
            self.score,
            self.elig,
            self.tree,
        )
        self.edges = Edges(
            self.esrc,
            self.edst,
            self.ew,
            self.epair,
            self.bias,
            self.cand,
            self.cand_pos,
            self.counters,
        )
        self._rebuild_candidates()
        self._rebuild_tree()

    # ----------------------------------------------------------------- batch and energy
    def set_batch(self, X: np.ndarray, y: np.ndarray, scale: float = 1.0) -> None:
        """Cache activations for samples X (n_samples, n_in) and labels y (0..n_out-1)."""
        B = len(X)
        if B != self.B:
            self.B = B
            h = self.n_units - self.n_in
            self.A = np.zeros((B, self.n_units))
            self.Z = np.zeros((B, h))
            self.L = np.zeros(B)
            self.A2 = np.zeros_like(self.A)
            self.Z2 = np.zeros_like(self.Z)
            self.L2 = np.zeros(B)
            self.zb = np.zeros((B, h))
            self.idx = np.zeros(B, np.int64)
            self.lnew = np.zeros(B)
        self.X = np.ascontiguousarray(X, dtype=np.float64)
        rows, cols = np.nonzero(self.X.T)  # per input unit, the samples where it is non-zero
        self.nz_idx = cols.astype(np.int64)
        self.nz_ptr = np.searchsorted(rows, np.arange(self.n_in + 1)).astype(np.int64)
        self.y = np.ascontiguousarray(y, dtype=np.int64)
        self.scale = float(scale)
        self.batch = Batch(
            self.X,
            self.nz_ptr,
            self.nz_idx,
            self.y,
            self.A,
            self.Z,
            self.L,
            self.A2,
            self.Z2,
            self.L2,
        )
        self.scratch = Scratch(
            self.mark,
            self.cone,
            self.pos,
            self.dzl,
            self.zb,
            self.idx,
            self.lnew,
            self.logits,
            self.w_buf,
            self.b_buf,
        )
        self.recompute()

    def recompute(self) -> None:
        """Full forward pass and energy from scratch (resets accumulated rounding)."""
        E = int(self.counters[0])
        self.k.forward(
            self.n_in,
            self.n_out,
            self.act,
            self.esrc,
            self.edst,
            self.ew,
            E,
            self.bias,
            self.X,
            self.A,
            self.Z,
        )
        err = self.k.sample_losses(self.n_out, self.loss, self.A, self.y, self.L)
        s = self.spec
        self.energy[1] = err
        self.energy[0] = (
            self.scale * err + s.lambda_l0 * E + s.lambda_l1 * np.abs(self.ew[:E]).sum()
        )

    @property
    def n_edges(self) -> int:
        return int(self.counters[0])

    def accuracy(self) -> float:
        """Accuracy on the cached batch, from the cached logits."""
        logits = self.A[:, self.n_units - self.n_out :]
        return float(np.mean(np.argmax(logits, axis=1) == self.y))

    # ----------------------------------------------------------------- proposal kernel
    def refresh(
        self,
        *,
        patience: int,
        floor: float,
        score_samples: np.ndarray | None = None,
        scores: bool = True,
        recompute: bool = True,
    ) -> None:
        """Between generations: caches recomputed from scratch (no drift; skip with
        ``recompute=False`` right after ``set_batch``), edge ages, death eligibility and
        (``scores``) new birth scores from the current activations."""
        if recompute:
            self.recompute()
        E = self.n_edges
        live = self.epair[:E]
        small = np.abs(self.ew[:E]) <= self.spec.w_prune
        aged = np.zeros(len(self.age), np.int64)
        aged[live] = np.where(small, self.age[live] + 1, 0)
        self.age = aged
        self.elig[:] = (self.pair_edge < 0) | (self.age >= patience)
        if scores:
            A = self.A if score_samples is None else np.ascontiguousarray(self.A[score_samples])
            y = self.y if score_samples is None else self.y[score_samples]
            k = self.k
            k.pair_scores(self.psrc, self.pdst, self.n_units, self.n_out, A, y, floor, self.score)
        self._rebuild_tree()
        self._rebuild_candidates()

    def _rebuild_tree(self) -> None:
        self.k.fenwick_build(np.where(self.pair_edge < 0, self.score, 0.0), self.tree)

    def _rebuild_candidates(self) -> None:
        E = self.n_edges
        ok = (self.elig[self.epair[:E]] != 0) & (np.abs(self.ew[:E]) <= self.spec.w_prune)
        members = np.flatnonzero(ok)
        self.cand_pos[:] = -1
        self.cand[: len(members)] = members
        self.cand_pos[members] = np.arange(len(members))
        self.counters[1] = len(members)

    def run(
        self,
        n: int,
        *,
        temperature: float,
        move_cum: np.ndarray,
        sigma: np.ndarray,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """Run ``n`` proposals; returns this generation's [proposed, accepted, dE] per move."""
        draws = draw_generation(rng, n, move_cum, len(self.esrc) + self.n_units)
        self.stats[:] = 0.0
        s = self.spec
        prop = Proposal(
            np.ascontiguousarray(move_cum, dtype=np.float64),
            np.ascontiguousarray(sigma, dtype=np.float64),
            float(temperature),
            float(self.scale),
            float(s.lambda_l0),
            float(s.lambda_l1),
            float(s.w_prune),
            float(s.w_max),
            float(s.grid),
        )
        self.k.mh_generation(
            self.net,
            self.pairs,
            self.edges,
            self.batch,
            prop,
            draws,
            self.scratch,
            self.energy,
            self.stats,
        )
        return self.stats.copy()

    def to_fabric(self) -> NeuralFabric:
        E = self.n_edges
        return NeuralFabric(
            n_in=self.n_in,
            n_out=self.n_out,
            source=self.esrc[:E].astype(np.uint32),
            target=self.edst[:E].astype(np.uint32),
            weight=self.ew[:E].copy(),
            bias=self.bias.copy(),
            activation=self.activation,
            layer_sizes=self.layer_sizes,
            pairs=self._fabric_pairs,
        ).sorted_by_target()[0]
