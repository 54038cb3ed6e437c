"""Many chains at once on torch tensors: a population of Metropolis-Hastings chains over one
layered network's weights and biases, advanced together, on the CPU or a CUDA device.

:class:`TorchChains` holds C chains of one :class:`NeuralFabric` topology as dense masked
layer tensors (C, n_out, n_in) with their activation caches (C, B, n) for a batch, and runs the
*weight*, *bias* and *all* moves of ``kernels/reference.py`` for every chain in one step of
tensor operations: chain c's proposal i uses the random numbers ``draws[c, i]`` exactly as the
reference uses ``draws[i]`` (``tests/thermo/test_population.py`` checks the acceptances, the
energies and the weights against the reference chain by chain). A weight or bias move
changes one unit's pre-activation; its effect reaches the logits as a rank-one update
(through the next layer's column of weights), so a step costs O(C B n_out) for a network
with one hidden layer. Birth and death moves need the numba backend: here the topology is
fixed (the L1 cost still pulls weights toward zero).

:class:`PopulationAnnealer` is population annealing (Hukushima & Iba 2003, Machta 2010) on
it: C chains sampled at a temperature, then, when the schedule lowers it from T to T',
resampled in proportion to exp(-(1/T' - 1/T) E_c), so the population tracks the Boltzmann
distribution as it cools, and the best chain is the model.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import numpy as np

from neurofabric.core.errors import BackendUnavailableError, ConfigError, NotFittedError, ShapeError
from neurofabric.core.progress import ProgressCallback, ProgressReporter, check_callback
from neurofabric.core.rng import SeedLike, make_rng
from neurofabric.core.validation import (
    check_array,
    check_choice,
    check_int,
    check_interval,
    check_positive,
)
from neurofabric.thermo.chain import EnergySpec, draw_generation
from neurofabric.thermo.fabric import NeuralFabric
from neurofabric.thermo.kernels.common import (
    MOVE_ALL,
    MOVE_BIAS,
    MOVE_BIRTH,
    MOVE_DEATH,
    MOVE_WEIGHT,
    N_MOVES,
    N_STATS,
    ST_ACCEPTED,
    ST_DE,
    ST_NEUTRAL,
    ST_PROPOSED,
    ST_UP_ACCEPTED,
    ST_UP_PROPOSED,
    Draws,
)
from neurofabric.thermo.params import Moves
from neurofabric.thermo.schedules import Geometric
from neurofabric.thermo.thermo import FabricModel, History, _adapt

log = logging.getLogger(__name__)

__all__ = ["PopulationAnnealer", "TorchChains", "cooling_step", "draw_generation", "resample"]


def _torch():
    try:
        import torch
    except ImportError as exc:
        raise BackendUnavailableError(
            "the torch chains need torch: install neurofabric with the `seq` extra "
            "(pip install 'neurofabric[seq]')"
        ) from exc
    return torch


def _draw_population(rng: np.random.Generator, C: int, n: int, move_cum, need: int) -> Draws:
    """The random numbers of ``n`` proposals of ``C`` chains from one stream, as (C, n)
    arrays (``need`` normal numbers per all-weights move, enough for the busiest chain)."""
    u_move = rng.random((C, n))
    u_pick = rng.random((C, n))
    gauss = rng.standard_normal((C, n))
    u_aux = rng.random((C, n))
    u_acc = rng.random((C, n))
    n_all = (u_move >= move_cum[MOVE_ALL - 1]).sum(1).max() if move_cum[MOVE_ALL - 1] < 1 else 0
    return Draws(u_move, u_pick, gauss, u_aux, u_acc, rng.standard_normal((C, int(n_all) * need)))


class TorchChains:
    """C chains over the weights and biases of one layered fabric (fixed topology).

    ``fabric`` must be layered (``layer_sizes``; connections only between consecutive
    layers); every chain starts from its weights. ``device``: "cpu", "cuda", ...;
    ``dtype``: torch.float64 (default, what the reference computes in) or torch.float32.
    """

    def __init__(
        self,
        fabric: NeuralFabric,
        n_chains: int,
        spec: EnergySpec,
        *,
        device: Any = "cpu",
        dtype: Any = None,
    ) -> None:
        torch = self.torch = _torch()
        self.C = check_int("n_chains", n_chains, min_value=1)
        self.spec = spec
        sizes = fabric.layer_sizes
        if sizes is None:
            raise ConfigError(
                "the torch chains need a layered fabric (`layer_sizes`, e.g. from "
                "NeuralFabric.layered or from_dense)"
            )
        self.sizes = tuple(int(s) for s in sizes)
        self.dtype = torch.float64 if dtype is None else dtype
        self.device = torch.device(device)
        self.n_in, self.n_out = fabric.n_in, fabric.n_out
        self.n_units = fabric.n_units
        self.activation = fabric.activation
        self.layer_sizes = fabric.layer_sizes
        self._fabric_pairs = fabric._pairs
        starts = np.cumsum([0, *self.sizes])
        src = fabric.source.astype(np.int64)
        dst = fabric.target.astype(np.int64)
        ls = np.searchsorted(starts, src, side="right") - 1  # layer of the source unit
        lt = np.searchsorted(starts, dst, side="right") - 1
        L = len(self.sizes) - 1
        self.L = L
        self.E = len(src)
        dev, dt = self.device, self.dtype
        self.src_np, self.dst_np = src, dst
        self.e_layer = torch.as_tensor(lt, device=dev)  # 1..L
        self.e_row = torch.as_tensor(dst - starts[lt], device=dev)
        self.e_col = torch.as_tensor(src - starts[ls], device=dev)
        unit = np.arange(self.n_in, self.n_units)
        ul = np.searchsorted(starts, unit, side="right") - 1
        self.u_layer = torch.as_tensor(ul, device=dev)
        self.u_idx = torch.as_tensor(unit - starts[ul], device=dev)
        C = self.C
        w0 = torch.as_tensor(fabric.weight, dtype=dt, device=dev)
        self.w = w0.expand(C, -1).clone()  # (C, E): the weights in the fabric's edge order
        b0 = torch.as_tensor(np.asarray(fabric.bias)[self.n_in :], dtype=dt, device=dev)
        self.b = b0.expand(C, -1).clone()  # (C, n_units - n_in)
        self.W = [None] + [
            torch.zeros(C, self.sizes[k], self.sizes[k - 1], dtype=dt, device=dev)
            for k in range(1, L + 1)
        ]
        self.Bias = [None] + [
            torch.zeros(C, self.sizes[k], dtype=dt, device=dev) for k in range(1, L + 1)
        ]
        self._scatter_all()
        self.B = -1

    # ----------------------------------------------------------------- state
    def _scatter_all(self) -> None:
        """Dense layer tensors from the flat weights and biases."""
        torch = self.torch
        for k in range(1, self.L + 1):
            sel = torch.nonzero(self.e_layer == k).flatten()
            self.W[k].zero_()
            self.W[k][:, self.e_row[sel], self.e_col[sel]] = self.w[:, sel]
            bs = torch.nonzero(self.u_layer == k).flatten()
            self.Bias[k][:] = self.b[:, bs]

    def _act(self, z):
        torch = self.torch
        if self.activation == "relu":
            return torch.relu(z)
        if self.activation == "tanh":
            return torch.tanh(z)
        return torch.sigmoid(z)

    def _forward_from(self, k0: int, A_prev, W, Bias):
        """Layers k0..L from the activations of layer k0 - 1 (chains stacked on dim 0)."""
        Zs, As = [], []
        a = A_prev
        for k in range(k0, self.L + 1):
            z = self.torch.matmul(a, W[k].transpose(1, 2)) + Bias[k][:, None, :]
            Zs.append(z)
            a = z if k == self.L else self._act(z)
            As.append(a)
        return Zs, As

    def _err(self, logits, y):
        """Per chain: the sum over samples of the loss (``spec.loss``)."""
        torch = self.torch
        if self.spec.loss == "cross_entropy":
            lse = torch.logsumexp(logits, dim=2)
            pick = logits.gather(2, y.expand(logits.shape[0], -1)[:, :, None])[:, :, 0]
            return (lse - pick).sum(1)
        target = torch.nn.functional.one_hot(y, self.n_out).to(logits.dtype)
        return 0.5 * ((logits - target) ** 2).sum((1, 2))

    def set_batch(self, X: Any, y: Any, scale: float = 1.0) -> None:
        """Cache every chain's activations for samples X (n, n_in) and labels y (0..n_out-1)."""
        torch = self.torch
        X = check_array("X", X, dtype=np.float64)
        y = np.asarray(y)
        if X.ndim != 2 or X.shape[1] != self.n_in or y.shape != (len(X),):
            raise ShapeError(
                f"`X` must be (n_samples, {self.n_in}) and `y` (n_samples,), got {X.shape} "
                f"and {y.shape}"
            )
        if len(y) and (y.min() < 0 or y.max() >= self.n_out):
            raise ShapeError(f"`y` must hold class indices 0..{self.n_out - 1}")
        self.X = torch.as_tensor(X, dtype=self.dtype, device=self.device)
        self.y = torch.as_tensor(y.astype(np.int64), device=self.device)
        self.B = len(self.y)
        self.scale = float(scale)
        self.recompute()

    def recompute(self) -> None:
        Zs, As = self._forward_from(1, self.X.expand(self.C, -1, -1), self.W, self.Bias)
        self.Z = [None, *Zs]
        self.A = [self.X.expand(self.C, -1, -1), *As]
        self.err = self._err(self.A[self.L], self.y)

    def energy(self):
        """(C,) the energy of every chain: scale * error + lam0 * edges + lam1 * sum |w|."""
        s = self.spec
        return self.scale * self.err + s.lambda_l0 * self.E + s.lambda_l1 * self.w.abs().sum(1)

    def to_fabric(self, c: int) -> NeuralFabric:
        bias = np.zeros(self.n_units)
        bias[self.n_in :] = self.b[c].cpu().numpy()
        return NeuralFabric(
            n_in=self.n_in,
            n_out=self.n_out,
            source=self.src_np.astype(np.uint32),
            target=self.dst_np.astype(np.uint32),
            weight=self.w[c].cpu().numpy().astype(np.float64),
            bias=bias,
            activation=self.activation,
            layer_sizes=self.layer_sizes,
            pairs=self._fabric_pairs,
        ).sorted_by_target()[0]

    def select(self, index: Any) -> None:
        """Keep chains ``index`` (a length-C array of chain indices: population resampling)."""
        i = self.torch.as_tensor(np.asarray(index, dtype=np.int64), device=self.device)
        self.w, self.b, self.err = self.w[i], self.b[i], self.err[i]
        for k in range(1, self.L + 1):
            self.W[k], self.Bias[k] = self.W[k][i], self.Bias[k][i]
            self.Z[k], self.A[k] = self.Z[k][i], self.A[k][i]

    # ----------------------------------------------------------------- proposals
    def _step(self, g, sigma):
        grid = self.spec.grid
        if grid <= 0:
            return g * sigma
        k = self.torch.round(g * sigma / grid)
        return self.torch.where(k != 0, k, self.torch.where(g >= 0, 1.0, -1.0).to(g.dtype)) * grid

    def run(
        self,
        n: int,
        *,
        temperature: Any,
        move_cum: np.ndarray,
        sigma: np.ndarray,
        draws: Draws | None = None,
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        """Run ``n`` proposals on every chain. ``temperature``: a scalar or one per chain;
        ``sigma``: (5,) or (C, 5) step sizes; ``draws``: a :class:`Draws` of arrays shaped
        (C, n) (``all_gauss`` (C, m)), or None to draw them from ``rng``. Returns the stats
        (C, moves, 6) as in the reference: [proposed, accepted, sum of accepted dE, uphill
        proposed, uphill accepted, neutral]."""
        torch = self.torch
        if self.B < 0:
            raise NotFittedError("call set_batch(X, y) before run")
        move_cum = np.asarray(move_cum, dtype=np.float64)
        probs = np.diff(np.concatenate([[0.0], move_cum]))
        if probs[MOVE_BIRTH] > 0 or probs[MOVE_DEATH] > 0:
            raise ConfigError(
                "the torch chains move weights and biases on a fixed topology: birth and "
                f"death must have probability 0 (got {probs[MOVE_BIRTH]}, {probs[MOVE_DEATH]}); "
                "use the numba backend to grow and prune"
            )
        C, dev, dt = self.C, self.device, self.dtype
        need = self.E + self.n_units - self.n_in
        if draws is None:
            draws = _draw_population(rng, C, n, move_cum, need)
        D = [torch.as_tensor(np.asarray(a), dtype=dt, device=dev) for a in draws]
        u_move, u_pick, gauss, _u_aux, u_acc, all_gauss = D
        if u_move.shape != (C, n):
            raise ShapeError(f"draws must be shaped ({C}, {n}), got {tuple(u_move.shape)}")
        cum = torch.as_tensor(move_cum, dtype=dt, device=dev)
        sig = torch.as_tensor(np.broadcast_to(sigma, (C, N_MOVES)).copy(), dtype=dt, device=dev)
        T = torch.as_tensor(np.broadcast_to(temperature, (C,)).copy(), dtype=dt, device=dev)
        s = self.spec
        stats = torch.zeros(C, N_MOVES, N_STATS, dtype=dt, device=dev)
        rows = torch.arange(C, device=dev)
        gptr = torch.zeros(C, dtype=torch.long, device=dev)
        n_units_h = self.n_units - self.n_in
        for i in range(n):
            move = torch.clamp(
                torch.searchsorted(cum, u_move[:, i].contiguous(), right=True), max=N_MOVES - 1
            )
            stats[rows, move, ST_PROPOSED] += 1
            is_w, is_b, is_all = move == MOVE_WEIGHT, move == MOVE_BIAS, move == MOVE_ALL
            # the target unit of a weight or bias move: its layer k, index j and dz (C, B)
            e = torch.clamp((u_pick[:, i] * self.E).long(), max=max(self.E - 1, 0))
            t = torch.clamp((u_pick[:, i] * n_units_h).long(), max=n_units_h - 1)
            dw = self._step(gauss[:, i], sig[:, MOVE_WEIGHT])
            db = self._step(gauss[:, i], sig[:, MOVE_BIAS])
            if self.E:
                w_old = self.w[rows, e]
                ok_w = is_w & ((w_old + dw).abs() <= s.w_max)
            else:
                w_old = torch.zeros(C, dtype=dt, device=dev)
                ok_w = torch.zeros(C, dtype=torch.bool, device=dev)
            b_old = self.b[rows, t]
            ok_b = is_b & ((b_old + db).abs() <= s.w_max)
            k_w = self.e_layer[e] if self.E else torch.ones(C, dtype=torch.long, device=dev)
            k = torch.where(is_w, k_w, self.u_layer[t])
            j = torch.where(is_w, self.e_row[e] if self.E else k_w, self.u_idx[t])
            err_new = self.err.clone()
            new = {}  # per layer k: (chains, dz, Z/A replacements, logits)
            for kk in range(1, self.L + 1):
                idx = torch.nonzero((ok_w | ok_b) & (k == kk)).flatten()
                if idx.numel() == 0:
                    continue
                jj = j[idx]
                prev = self.A[kk - 1]
                wmove = is_w[idx]
                col = None
                if self.E:  # a bias move reads column 0 and ignores it
                    col = prev[idx, :, torch.where(wmove, self.e_col[e[idx]], 0)]
                dz = torch.where(
                    wmove[:, None],
                    dw[idx, None] * (col if col is not None else 0.0),
                    db[idx, None].expand(-1, self.B),
                )
                z_col = self.Z[kk][idx, :, jj] + dz
                if kk == self.L:
                    logits = self.A[self.L][idx].clone()
                    logits[torch.arange(len(idx), device=dev), :, jj] = z_col
                    ups = []
                else:
                    a_col = self._act(z_col)
                    da = a_col - self.A[kk][idx, :, jj]
                    Wn = self.W[kk + 1][idx, :, jj]  # (m, n_{k+1})
                    z_next = self.Z[kk + 1][idx] + da[:, :, None] * Wn[:, None, :]
                    if kk + 1 == self.L:
                        logits, ups = z_next, [(kk + 1, z_next, z_next)]
                    else:
                        a_next = self._act(z_next)
                        Wi = [None] + [W[idx] if W is not None else None for W in self.W[1:]]
                        Bi = [None] + [b[idx] for b in self.Bias[1:]]
                        Zs, As = self._forward_from(kk + 2, a_next, Wi, Bi)
                        ups = [(kk + 1, z_next, a_next)] + [
                            (kk + 2 + q, Zs[q], As[q]) for q in range(len(Zs))
                        ]
                        logits = As[-1]
                    ups = [(kk, z_col, a_col)] + ups
                err = self._err(logits, self.y)
                if kk + 1 < self.L:  # a full pass above: an unchanged unit must give dE = 0
                    err = torch.where((da == 0).all(1), self.err[idx], err)
                err_new[idx] = err
                new[kk] = (idx, z_col, ups, logits)
            # the all-weights move: every weight and bias of the chain, a full forward pass
            aidx = torch.nonzero(is_all).flatten()
            all_new = None
            if aidx.numel():
                offs = gptr[aidx, None] + torch.arange(need, device=dev)[None, :]
                enough = (gptr[aidx] + need) <= all_gauss.shape[1]
                if all_gauss.shape[1]:
                    offs = torch.clamp(offs, max=all_gauss.shape[1] - 1)
                    g = torch.gather(all_gauss[aidx], 1, offs)
                else:
                    g = torch.zeros(len(aidx), need, dtype=dt, device=dev)
                steps = self._step(g, sig[aidx, MOVE_ALL][:, None])
                gptr[aidx] += torch.where(enough, need, 0)
                w_all = self.w[aidx] + steps[:, : self.E]
                b_all = self.b[aidx] + steps[:, self.E :]
                inb = (w_all.abs() <= s.w_max).all(1) & enough
                Wi, Bi = self._dense(w_all, b_all)
                Zs, As = self._forward_from(1, self.X.expand(len(aidx), -1, -1), Wi, Bi)
                err_new[aidx] = torch.where(inb, self._err(As[-1], self.y), self.err[aidx])
                all_new = (aidx, inb, w_all, b_all, Wi, Bi, Zs, As)
            valid = ok_w | ok_b
            if all_new is not None:
                valid[aidx] = all_new[1]
            l1 = torch.where(ok_w, (w_old + dw).abs() - w_old.abs(), torch.zeros_like(w_old))
            if all_new is not None:
                l1[aidx] = all_new[2].abs().sum(1) - self.w[aidx].abs().sum(1)
            dE = self.scale * (err_new - self.err) + s.lambda_l1 * l1
            log_r = -dE / T
            p_acc = torch.where(
                log_r >= 0, torch.ones_like(log_r), torch.exp(torch.clamp(log_r, max=0))
            )
            acc = valid & (u_acc[:, i] < p_acc)
            zero, up = valid & (dE == 0), valid & (dE > 0)
            stats[rows, move, ST_NEUTRAL] += zero.to(dt)
            stats[rows, move, ST_UP_PROPOSED] += up.to(dt)
            stats[rows, move, ST_UP_ACCEPTED] += (up & acc).to(dt)
            stats[rows, move, ST_ACCEPTED] += acc.to(dt)
            stats[rows, move, ST_DE] += torch.where(acc, dE, torch.zeros_like(dE))
            if not bool(acc.any()):
                continue
            # apply the accepted moves: parameters, then the caches they changed
            aw = torch.nonzero(acc & ok_w).flatten()
            if aw.numel():
                self.w[aw, e[aw]] = w_old[aw] + dw[aw]
                for kk in range(1, self.L + 1):
                    sel = aw[self.e_layer[e[aw]] == kk]
                    if sel.numel():
                        es = e[sel]
                        self.W[kk][sel, self.e_row[es], self.e_col[es]] = self.w[sel, es]
            ab = torch.nonzero(acc & ok_b).flatten()
            if ab.numel():
                self.b[ab, t[ab]] = b_old[ab] + db[ab]
                for kk in range(1, self.L + 1):
                    sel = ab[self.u_layer[t[ab]] == kk]
                    if sel.numel():
                        self.Bias[kk][sel, self.u_idx[t[sel]]] = self.b[sel, t[sel]]
            for kk, (idx, z_new, ups, _logits) in new.items():
                keep = acc[idx]
                if not bool(keep.any()):
                    continue
                ci = idx[keep]
                jj = j[ci]
                z_col = z_new[keep]
                a_col = z_col if kk == self.L else self._act(z_col)
                self.Z[kk][ci, :, jj] = z_col
                self.A[kk][ci, :, jj] = a_col
                for layer, z, a in ups[1:]:
                    self.Z[layer][ci] = z[keep]
                    self.A[layer][ci] = a[keep]
            if all_new is not None:
                aidx, inb, w_all, b_all, Wi, Bi, Zs, As = all_new
                keep = acc[aidx]
                if bool(keep.any()):
                    ci = aidx[keep]
                    self.w[ci], self.b[ci] = w_all[keep], b_all[keep]
                    for q in range(self.L):
                        self.W[q + 1][ci], self.Bias[q + 1][ci] = Wi[q + 1][keep], Bi[q + 1][keep]
                        self.Z[q + 1][ci], self.A[q + 1][ci] = Zs[q][keep], As[q][keep]
            self.err = torch.where(acc, err_new, self.err)
        return stats.cpu().numpy()

    def _dense(self, w, b):
        """Dense layer tensors of a stack of flat weights (m, E) and biases (m, n_units - n_in)."""
        torch = self.torch
        m = w.shape[0]
        W = [None] + [
            torch.zeros(m, self.sizes[k], self.sizes[k - 1], dtype=self.dtype, device=self.device)
            for k in range(1, self.L + 1)
        ]
        Bias = [None]
        for k in range(1, self.L + 1):
            sel = torch.nonzero(self.e_layer == k).flatten()
            W[k][:, self.e_row[sel], self.e_col[sel]] = w[:, sel]
            Bias.append(b[:, torch.nonzero(self.u_layer == k).flatten()])
        return W, Bias


def _ess(E: np.ndarray, dbeta: float) -> float:
    logw = -dbeta * E
    w = np.exp(logw - logw.max())
    return float(w.sum() ** 2 / (w * w).sum() / len(E))


def cooling_step(E: np.ndarray, t_now: float, t_next: float, ess_min: float) -> float:
    """The temperature to resample to on the way from ``t_now`` to ``t_next``: ``t_next``
    when resampling the population (energies ``E``) there keeps an effective sample size of
    at least ``ess_min`` (a fraction of the chains), else the lowest temperature that does
    (bisection on 1/T): the population never cools faster than it can follow."""
    b0, b1 = 1.0 / t_now, 1.0 / t_next
    if b1 <= b0 or _ess(E, b1 - b0) >= ess_min:
        return t_next
    lo, hi = b0, b1  # ESS(lo) = 1 >= ess_min > ESS(hi)
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        if _ess(E, mid - b0) >= ess_min:
            lo = mid
        else:
            hi = mid
    return 1.0 / lo


def resample(log_weights: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Systematic resampling: C indices where chain c appears floor(C w_c) or ceil(C w_c)
    times (w the normalised weights), and the effective sample size ESS / C = 1 / (C sum w^2)."""
    C = len(log_weights)
    w = np.exp(log_weights - log_weights.max())
    w /= w.sum()
    pos = (rng.random() + np.arange(C)) / C
    keep = np.minimum(np.searchsorted(np.cumsum(w), pos, side="right"), C - 1)
    return keep, _ess(-log_weights, 1.0)


class PopulationAnnealer(FabricModel):
    """A classifier trained by population annealing of ``n_chains`` chains on torch tensors.

    Every generation the population runs ``generation`` proposals per chain (weight, bias and
    all-weights moves; the topology stays fixed) at the schedule's temperature; when the
    temperature falls from T to T', the chains are resampled (systematic resampling) with
    weights exp(-(1/T' - 1/T) E_c), so good chains multiply and poor ones die out; the step
    sizes adapt per chain toward ``target_acceptance``. The model is the chain of lowest
    energy. ``ess_min``: a cooling step the population cannot follow (its resampling would
    keep an effective sample size below this fraction of the chains) is shortened to one it
    can (:func:`cooling_step`), so the run may end above the schedule's last temperature;
    None follows the schedule whatever the ESS. ``device`` "cpu" or "cuda"; ``dtype`` "float64" or "float32". Parameters as in
    :class:`~neurofabric.thermo.ThermoClassifier` where they share a name; ``n_proposals``
    counts per chain.
    """

    def __init__(
        self,
        *,
        hidden: tuple[int, ...] = (32,),
        activation: str = "relu",
        loss: str = "cross_entropy",
        lambda_l1: float = 0.0,
        w_max: float = math.inf,
        grid: float = 0.0,
        n_chains: int = 64,
        moves: Moves | dict | None = None,
        sigma: float = 0.05,
        sigma_all: float = 0.002,
        target_acceptance: float = 0.3,
        schedule: Any = None,
        n_proposals: int = 20_000,
        generation: int = 500,
        batch_size: int | None = None,
        resample: bool = True,
        ess_min: float | None = 0.5,
        max_time: float | None = None,
        device: str = "cpu",
        dtype: str = "float64",
        seed: SeedLike = None,
    ) -> None:
        self.hidden = hidden
        self.activation = activation
        self.loss = loss
        self.lambda_l1 = lambda_l1
        self.w_max = w_max
        self.grid = grid
        self.n_chains = n_chains
        self.moves = moves
        self.sigma = sigma
        self.sigma_all = sigma_all
        self.target_acceptance = target_acceptance
        self.schedule = schedule
        self.n_proposals = n_proposals
        self.generation = generation
        self.batch_size = batch_size
        self.resample = resample
        self.ess_min = ess_min
        self.max_time = max_time
        self.device = device
        self.dtype = dtype
        self.seed = seed

    def fit(
        self,
        X: Any,
        y: Any,
        *,
        init: NeuralFabric | None = None,
        classes: Any = None,
        callback: ProgressCallback | None = None,
    ) -> PopulationAnnealer:
        """Anneal the population on (X, y) from ``init`` (a layered fabric) or a new
        He-initialised network; ``classes``: every label the model must know (default: those
        in ``y``). ``callback`` gets a Progress per generation (task "thermo.population")."""
        torch = _torch()
        check_callback(callback)
        check_choice("dtype", self.dtype, ("float64", "float32"))
        check_choice("activation", self.activation, ("relu", "tanh", "sigmoid"))
        check_choice("loss", self.loss, ("cross_entropy", "squared_error"))
        for name in ("sigma", "sigma_all"):
            check_positive(name, getattr(self, name))
        check_int("n_proposals", self.n_proposals, min_value=1)
        if self.ess_min is not None:
            check_interval("ess_min", self.ess_min, 0.0, 1.0, low_open=True, high_open=True)
        check_int("generation", self.generation, min_value=1)
        if self.max_time is not None:
            check_positive("max_time", self.max_time, "seconds")
        moves = Moves.coerce(self.moves if self.moves is not None else _FIXED_TOPOLOGY)
        X, y_idx = self._check_xy(X, y, fit=True, classes=classes)
        rng = make_rng(self.seed)
        if init is None:
            sizes = [X.shape[1], *[int(h) for h in self.hidden], len(self.classes_)]
            init = NeuralFabric.layered(sizes, activation=self.activation, seed=rng)
        elif init.n_in != X.shape[1] or init.n_out != len(self.classes_):
            raise ShapeError(
                f"`init` has {init.n_in} inputs and {init.n_out} outputs; the data needs "
                f"{X.shape[1]} and {len(self.classes_)}"
            )
        spec = EnergySpec(
            loss=self.loss,
            lambda_l1=float(self.lambda_l1),
            w_max=float(self.w_max),
            grid=float(self.grid),
        )
        dtype = torch.float64 if self.dtype == "float64" else torch.float32
        chains = TorchChains(init, self.n_chains, spec, device=self.device, dtype=dtype)
        C = chains.C
        schedule = self.schedule if self.schedule is not None else Geometric()
        n_gen = max(1, -(-int(self.n_proposals) // int(self.generation)))
        sigma = np.tile([self.sigma, self.sigma, 0.0, 0.0, self.sigma_all], (C, 1))
        sigma_hi = min(10.0, float(self.w_max) / 4.0)
        cum = moves.cumulative()
        N = len(X)
        self.history_ = History()
        report = ProgressReporter("thermo.population", n_gen, "generation", callback)
        t0 = time.perf_counter()
        temperature, done = None, 0
        for g in range(n_gen):
            if g == 0 or (self.batch_size and self.batch_size < N):
                rows = (
                    rng.choice(N, self.batch_size, replace=False)
                    if self.batch_size and self.batch_size < N
                    else np.arange(N)
                )
                chains.set_batch(X[rows], y_idx[rows], N / len(rows))
            frac = g / max(n_gen - 1, 1)
            if self.max_time is not None:
                spent = time.perf_counter() - t0
                frac = max(frac, min(1.0, (spent + spent / max(g, 1)) / self.max_time))
            previous, temperature = temperature, schedule(frac, temperature, None)
            if not temperature > 0:
                raise ConfigError(
                    f"the schedule returned temperature {temperature!r}; it must be > 0"
                )
            ess = 1.0
            if self.resample and previous is not None and temperature != previous:
                E = chains.energy().double().cpu().numpy()
                if self.ess_min is not None:
                    temperature = cooling_step(E, previous, temperature, float(self.ess_min))
                keep, ess = resample(-(1.0 / temperature - 1.0 / previous) * E, rng)
                chains.select(keep)
                sigma = sigma[keep]
            n = min(int(self.generation), int(self.n_proposals) - done)
            tg = time.perf_counter()
            st = chains.run(n, temperature=temperature, move_cum=cum, sigma=sigma, rng=rng)
            elapsed_g = time.perf_counter() - tg
            done += n
            if self.target_acceptance is not None:
                for c in range(C):
                    _adapt(sigma[c], st[c], self.target_acceptance, sigma_hi)
            E = chains.energy().double().cpu().numpy()
            best = int(np.argmin(E))
            logits = chains.A[chains.L][best]
            row = {
                "temperature": temperature,
                "energy": float(E[best]),
                "mean_energy": float(E.mean()),
                "train_accuracy": float((logits.argmax(1) == chains.y).double().mean()),
                "acceptance": float(st[:, :, 1].sum() / max(st[:, :, 0].sum(), 1)),
                "ess": ess,
                "sigma": float(np.median(sigma[:, 0])),
                "proposals_per_s": C * n / elapsed_g,
                "generation": g,
                "proposals": done,
                "seconds": time.perf_counter() - t0,
            }
            self.history_.rows.append(row)
            if report.update(g + 1, **row):
                break
            if self.max_time is not None and time.perf_counter() - t0 >= self.max_time:
                break
        E = chains.energy().double().cpu().numpy()
        self.fabric_ = chains.to_fabric(int(np.argmin(E)))
        self.n_proposals_done_ = done
        self.stopped_ = report.stopped
        return self


#: the default mix of the torch chains: weights and biases (birth and death need numba)
_FIXED_TOPOLOGY = {"weight": 0.8, "bias": 0.2, "birth": 0.0, "death": 0.0, "all": 0.0}
