"""`ThermoClassifier`: train a network without gradients, by Metropolis-Hastings annealing.

The network is a :class:`NeuralFabric`; training is a Markov chain over its weights, biases
and topology that samples exp(-E / T) while T is lowered (see ``kernels/reference.py`` for the
energy, the moves and their acceptance ratios). Training runs in *generations*: between two
generations the shell draws a new minibatch (if ``batch_size`` is set), refreshes the birth
scores and death eligibility, adapts the step sizes toward ``target_acceptance``, sets the
next temperature, exchanges replicas (``replicas > 1``: parallel tempering) and records the
history. Within a generation the proposal kernel is fixed, so every step leaves the target
distribution invariant.
"""

from __future__ import annotations

import inspect
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from neurofabric.core import backend as backends
from neurofabric.core import mpi
from neurofabric.core.errors import ConfigError, DistributedError, NotFittedError, ShapeError
from neurofabric.core.progress import ProgressCallback, ProgressReporter, check_callback
from neurofabric.core.rng import SeedLike, make_rng, seed_to_int
from neurofabric.core.validation import (
    check_array,
    check_choice,
    check_int,
    check_interval,
    check_nonnegative,
    check_positive,
    check_probability,
)
from neurofabric.thermo.chain import Chain, EnergySpec
from neurofabric.thermo.fabric import NeuralFabric
from neurofabric.thermo.kernels.common import ACTIVATIONS, LOSSES, MOVE_NAMES
from neurofabric.thermo.params import Moves
from neurofabric.thermo.schedules import Geometric, ladder
from neurofabric.thermo.tempering import replica_exchange

log = logging.getLogger(__name__)

_ADAPTED = (0, 1, 4)  # the moves whose step size adapts: weight, bias, all


@dataclass
class History:
    """One row per generation (the lowest-temperature replica)."""

    rows: list[dict[str, float]] = field(default_factory=list)

    def column(self, name: str) -> np.ndarray:
        return np.array([r.get(name, np.nan) for r in self.rows], dtype=np.float64)

    def __len__(self) -> int:
        return len(self.rows)


class FabricModel:
    """What the trainers share: the scikit-learn parameter contract (the keyword arguments of
    ``__init__``), the checks of (X, y), prediction from a fitted ``fabric_`` and its
    ``classes_``, and saving the fabric with the classes and parameters in its manifest."""

    @classmethod
    def _param_names(cls) -> tuple[str, ...]:
        return tuple(inspect.signature(cls.__init__).parameters)[1:]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self._param_names()}

    def set_params(self, **params: Any) -> Any:
        names = self._param_names()
        for k, v in params.items():
            if k not in names:
                raise ConfigError(f"unknown parameter {k!r}; valid: {', '.join(names)}")
            setattr(self, k, v)
        return self

    def save(self, path: Any, *, dtype: Any = None) -> Any:
        """Save the fabric (Arrow columns) with the classes and parameters in its manifest."""
        fab = self._fabric()
        meta = {
            "engine": f"thermo.{type(self).__name__}",
            "classes": self.classes_.tolist(),
            "params": {k: _jsonable(v) for k, v in self.get_params().items()},
            "proposals": int(getattr(self, "n_proposals_done_", 0)),
        }
        return fab.save(path, dtype=dtype, meta=meta)

    @classmethod
    def load(cls, path: Any, *, mmap: bool = True, verify: bool = True) -> Any:
        """A model saved by :meth:`save` of this class (parameters at their defaults)."""
        fab = NeuralFabric.load(path, mmap=mmap, verify=verify)
        meta = getattr(fab, "meta", {})
        if meta.get("engine") != f"thermo.{cls.__name__}" or "classes" not in meta:
            raise ConfigError(
                f"{path} holds a bare NeuralFabric or another model "
                f"({meta.get('engine', 'no engine')}), not a {cls.__name__}; use "
                f"NeuralFabric.load or the class that saved it"
            )
        model = cls()
        model.fabric_ = fab
        model.classes_ = np.asarray(meta["classes"])
        model.n_proposals_done_ = meta.get("proposals", 0)
        return model

    def _check_xy(
        self, X: Any, y: Any, *, fit: bool, classes: Any = None
    ) -> tuple[np.ndarray, np.ndarray]:
        X = check_array("X", X, dtype=np.float64)
        if X.ndim != 2 or len(X) == 0:
            raise ShapeError(
                f"`X` must be a non-empty 2-D array (n_samples, n_features), got {X.shape}"
            )
        y = np.asarray(y)
        if y.shape != (len(X),):
            raise ShapeError(f"`y` must have shape ({len(X)},) like X's rows, got {y.shape}")
        if fit:
            self.classes_ = np.unique(y if classes is None else np.asarray(classes))
            if len(self.classes_) < 2:
                what = "`y`" if classes is None else "`classes`"
                raise ConfigError(
                    f"{what} must hold at least 2 classes, got {self.classes_.tolist()}"
                )
        idx = np.searchsorted(self.classes_, y)
        idx = np.minimum(idx, len(self.classes_) - 1)
        if not np.array_equal(self.classes_[idx], y):
            raise ConfigError(
                "`y` holds labels not seen during fit"
                if classes is None and not fit
                else f"`y` holds labels missing from `classes` {self.classes_.tolist()}"
            )
        return X, idx

    def _fabric(self) -> NeuralFabric:
        if not hasattr(self, "fabric_"):
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet; call fit(X, y) first"
            )
        return self.fabric_

    def predict_proba(self, X: Any) -> np.ndarray:
        return self._fabric().predict_proba(X)

    def predict(self, X: Any) -> np.ndarray:
        fabric = self._fabric()
        return self.classes_[fabric.predict(X)]

    def score(self, X: Any, y: Any) -> float:
        """Mean accuracy on (X, y)."""
        return float(np.mean(self.predict(X) == np.asarray(y)))


class ThermoClassifier(FabricModel):
    """A classifier trained by Metropolis-Hastings on E = error + lambda * topology.

    Parameters (all keyword-only):
        hidden: hidden layer widths of the layered network (ignored when ``fit`` gets ``init``).
        activation: "relu", "tanh" or "sigmoid" for hidden units; outputs are linear logits.
        loss: "cross_entropy" (softmax) or "squared_error" (against one-hot targets).
        density: fraction of the allowed connections present at the start.
        lambda_l0: energy per connection (nats at T = 1): the price of keeping a connection.
        lambda_l1: energy per unit of |w|.
        moves: probabilities of the proposal kinds (:class:`Moves` or a dict).
        sigma: initial Gaussian step of weight and bias moves; ``sigma_all`` of the all-weights
            move. Both adapt between generations toward ``target_acceptance``.
        w_prune: connections with |w| <= w_prune may die; newborn weights are uniform in
            [-w_prune, w_prune].
        adapt: between generations, adapt the step sizes toward ``target_acceptance``, refresh
            the birth scores from the current activations and age the connections (death needs
            ``patience`` generations near zero). All three depend on the chain's own past, as in
            any adaptive MCMC: good for optimisation. ``adapt=False`` fixes the step sizes, the
            scores (computed once) and makes every near-zero connection eligible, so the chain
            samples exp(-E/T) exactly at a constant temperature.
        patience: generations a connection must have stayed near zero before it may die.
        score_floor: birth scores get this fraction of their mean added (every pair stays
            proposable).
        grid: > 0 keeps weights on the lattice k * grid (quantized weights); 0 for real weights.
        w_max: bound on |w| and |b| (a move beyond it is rejected); the adapted step sizes stay
            below w_max / 4. Without a bound, weights of rarely active inputs (whose moves
            change little) can random-walk far and generalise badly.
        schedule: a temperature schedule (``neurofabric.thermo.schedules``).
        n_proposals: total proposals (per replica); ``generation`` proposals per generation.
        batch_size: samples per generation's minibatch (its error scaled by N / B); None uses
            the whole training set every generation.
        replicas, replica_ratio: parallel tempering with temperatures T * ratio**k.
        max_time: stop after this many seconds (checked between generations); the schedule
            then advances by the larger of the fraction of proposals and of time used, so a
            run cut by the budget still ends cold.
        seed: int, numpy Generator or None. backend: "auto", "numba" or "reference".
    """

    def __init__(
        self,
        *,
        hidden: tuple[int, ...] = (32,),
        activation: str = "relu",
        loss: str = "cross_entropy",
        density: float = 1.0,
        lambda_l0: float = 0.0,
        lambda_l1: float = 0.0,
        moves: Moves | dict | None = None,
        sigma: float = 0.05,
        sigma_all: float = 0.002,
        target_acceptance: float = 0.3,
        adapt: bool = True,
        w_prune: float = 0.02,
        patience: int = 2,
        score_floor: float = 0.1,
        grid: float = 0.0,
        w_max: float = math.inf,
        schedule: Callable[..., float] | None = None,
        n_proposals: int = 1_000_000,
        generation: int = 20_000,
        batch_size: int | None = None,
        replicas: int = 1,
        replica_ratio: float = 2.0,
        max_time: float | None = None,
        seed: SeedLike = None,
        backend: str = "auto",
    ) -> None:
        self.hidden = hidden
        self.activation = activation
        self.loss = loss
        self.density = density
        self.lambda_l0 = lambda_l0
        self.lambda_l1 = lambda_l1
        self.moves = moves
        self.sigma = sigma
        self.sigma_all = sigma_all
        self.target_acceptance = target_acceptance
        self.adapt = adapt
        self.w_prune = w_prune
        self.patience = patience
        self.score_floor = score_floor
        self.grid = grid
        self.w_max = w_max
        self.schedule = schedule
        self.n_proposals = n_proposals
        self.generation = generation
        self.batch_size = batch_size
        self.replicas = replicas
        self.replica_ratio = replica_ratio
        self.max_time = max_time
        self.seed = seed
        self.backend = backend

    def _validate(self) -> tuple[Moves, EnergySpec]:
        check_choice("activation", self.activation, tuple(ACTIVATIONS))
        check_choice("loss", self.loss, tuple(LOSSES))
        check_interval("density", self.density, 0.0, 1.0, low_open=True)
        for name in ("sigma", "sigma_all", "w_prune", "replica_ratio"):
            check_positive(name, getattr(self, name))
        for name in ("lambda_l0", "lambda_l1", "grid", "score_floor"):
            check_nonnegative(name, getattr(self, name))
        check_probability("target_acceptance", self.target_acceptance)
        check_int("patience", self.patience, min_value=0)
        check_int("n_proposals", self.n_proposals, min_value=1)
        check_int("generation", self.generation, min_value=1)
        check_int("replicas", self.replicas, min_value=1)
        if self.batch_size is not None:
            check_int("batch_size", self.batch_size, min_value=1)
        if self.max_time is not None:
            check_positive("max_time", self.max_time, "seconds")
        if not self.w_max > 0:  # math.inf: unbounded weights
            raise ConfigError(f"`w_max` must be > 0 (inf: unbounded), got {self.w_max!r}")
        if self.grid > 0 and self.w_prune < self.grid:
            raise ConfigError(
                f"`w_prune` ({self.w_prune}) must be >= `grid` ({self.grid}) so a newborn "
                "connection can have a non-zero weight"
            )
        spec = EnergySpec(
            loss=self.loss,
            lambda_l0=float(self.lambda_l0),
            lambda_l1=float(self.lambda_l1),
            w_prune=float(self.w_prune),
            w_max=float(self.w_max),
            grid=float(self.grid),
        )
        return Moves.coerce(self.moves), spec

    # ----------------------------------------------------------------- training
    def fit(
        self,
        X: Any,
        y: Any,
        *,
        init: NeuralFabric | None = None,
        eval_set: tuple[Any, Any] | None = None,
        callback: ProgressCallback | None = None,
        comm: Any = None,
        classes: Any = None,
    ) -> ThermoClassifier:
        """Train from ``init`` (a fabric, e.g. from pre-trained dense weights) or from a new
        He-initialised layered network.

        ``callback`` gets a :class:`neurofabric.core.progress.Progress` (task "thermo.fit",
        unit "generation", the generation's history row as ``metrics``) after each generation;
        returning True stops training there (``stopped_`` is then True and the model holds
        the network of that generation).

        ``classes``: every label the model knows (default: the labels in ``y``). Learning new
        classes from their data only, after a network trained on old ones (``init``), needs
        it: the outputs are the old and the new classes together.

        ``comm``: an MPI communicator (mpi4py; ``neurofabric.core.mpi.world()`` is
        ``COMM_WORLD``) to spread the replicas over its ranks in blocks; every rank calls
        ``fit`` with the same data and parameters and ends with the same model. Each replica
        draws from its own random stream (spawned from ``seed`` and keyed by the replica, not
        the rank), and the shell's draws (minibatches, exchanges) come from one stream every
        rank holds, so the result does not depend on the number of ranks (without
        ``max_time``, whose clock is rank 0's). Under several ranks, ``callback`` and
        ``max_time`` are rank 0's to decide; a failure on one rank raises
        :class:`~neurofabric.core.errors.DistributedError` on every rank."""
        check_callback(callback)
        moves, spec = self._validate()
        X, y_idx = self._check_xy(X, y, fit=True, classes=classes)
        comm = mpi.Serial() if comm is None else comm
        ranks, rank = comm.Get_size(), comm.Get_rank()
        R = int(self.replicas)
        if ranks > R:
            raise ConfigError(
                f"`replicas` ({R}) must be at least the number of MPI ranks ({ranks}): each "
                "rank runs one or more replicas; raise `replicas` or start fewer ranks"
            )
        seed = self.seed
        if ranks > 1:  # one root seed for every rank (drawn on rank 0 when not an int)
            seed = comm.bcast(seed_to_int(seed) if rank == 0 else None, root=0)
        rng = make_rng(seed)
        if init is None:
            sizes = [X.shape[1], *[int(h) for h in self.hidden], len(self.classes_)]
            init = NeuralFabric.layered(
                sizes, activation=self.activation, density=self.density, seed=rng
            )
        elif init.n_in != X.shape[1] or init.n_out != len(self.classes_):
            raise ShapeError(
                f"`init` has {init.n_in} inputs and {init.n_out} outputs; the data needs "
                f"{X.shape[1]} and {len(self.classes_)}"
            )
        self.backend_, kernels = backends.resolve("thermo", self.backend)
        temps = ladder(R, float(self.replica_ratio))
        # walker k: a chain with its own random stream and step sizes; the temperature slots
        # are what replicas exchange (walker_at[slot] is the walker at T * temps[slot])
        streams = [rng] if R == 1 else rng.spawn(R)
        lo, hi = mpi.partition(R, ranks, rank)
        mine = range(lo, hi)
        width = -(-R // ranks)  # the largest block: every rank sends this many energies
        owner = np.repeat(np.arange(ranks), [b - a for a, b in _blocks(R, ranks)])
        chains = {w: Chain(init, spec, kernels) for w in mine}
        walker_at = np.arange(R)
        Xv, yv = (None, None)
        if eval_set is not None:
            Xv, yv = self._check_xy(*eval_set, fit=False)
        schedule = self.schedule if self.schedule is not None else Geometric()
        n_gen = max(1, -(-int(self.n_proposals) // int(self.generation)))
        sigma = np.array([self.sigma, self.sigma, 0.0, 0.0, self.sigma_all], dtype=np.float64)
        # a step larger than a quarter of the weight range would mostly be rejected at the bound
        sigma_hi = min(10.0, float(self.w_max) / 4.0)
        sigmas = {w: sigma.copy() for w in mine}
        cum = moves.cumulative()
        self.history_ = History()
        swaps = np.zeros((max(R - 1, 0), 2))
        N = len(X)
        t0 = time.perf_counter()
        report = ProgressReporter("thermo.fit", n_gen, "generation", callback)
        temperature, uphill, done, elapsed = None, None, 0, 0.0
        by_callback = False
        for g in range(n_gen):
            batch = (
                rng.choice(N, self.batch_size, replace=False)
                if self.batch_size and self.batch_size < N
                else None
            )
            fresh = g == 0 or batch is not None
            frac = g / max(n_gen - 1, 1)
            if self.max_time is not None:
                # the generation about to run should end the budget at frac = 1
                per_gen = elapsed / max(g, 1)
                frac = max(frac, min(1.0, (elapsed + per_gen) / self.max_time))
            temperature = schedule(frac, temperature, uphill)
            if not temperature > 0:
                raise ConfigError(
                    f"the schedule returned temperature {temperature!r}; it must be > 0"
                )
            n = min(int(self.generation), int(self.n_proposals) - done)
            B = len(batch) if batch is not None else N
            sub = rng.choice(B, 512, replace=False) if B > 512 else None
            slot_of = np.argsort(walker_at)
            tg = time.perf_counter()
            stats, error = {}, None
            try:
                for w, ch in chains.items():
                    if fresh:
                        Xb, yb = (X, y_idx) if batch is None else (X[batch], y_idx[batch])
                        ch.set_batch(Xb, yb, N / len(yb))
                    ch.refresh(
                        patience=int(self.patience) if self.adapt else 0,
                        floor=float(self.score_floor),
                        score_samples=sub,
                        scores=bool(self.adapt) or g == 0,
                        recompute=not fresh,
                    )
                    T_w = temperature * temps[slot_of[w]]
                    st = ch.run(n, temperature=T_w, move_cum=cum, sigma=sigmas[w], rng=streams[w])
                    if self.adapt:
                        _adapt(sigmas[w], st, self.target_acceptance, sigma_hi)
                    stats[w] = st
            except Exception as exc:
                if ranks == 1:
                    raise
                error = f"rank {rank}: {type(exc).__name__}: {exc}"
            # every walker's energy, each rank's generation time and clock (one collective)
            mine_e = np.full(width + 2, np.nan)
            mine_e[: len(mine)] = [chains[w].energy[0] for w in mine] if error is None else np.nan
            mine_e[width] = time.perf_counter() - tg
            mine_e[width + 1] = time.perf_counter() - t0
            got = mpi.allgather_checked(comm, mine_e, error, f"in generation {g} of thermo.fit")
            energies = np.concatenate(
                [got[r, : b - a] for r, (a, b) in enumerate(_blocks(R, ranks))]
            )
            elapsed_g = float(got[:, width].max())
            elapsed = float(got[0, width + 1])  # rank 0's clock, the same on every rank
            done += n
            cold = int(walker_at[0])  # the walker that ran at the schedule's temperature
            row, row_error = None, None
            if cold in chains:
                st = stats[cold]
                up = st[:, 3].sum()
                try:
                    row = self._row(
                        chains[cold], st, temperature, sigmas[cold], n * R / elapsed_g, Xv, yv
                    )
                    row["uphill_acceptance"] = float(st[:, 4].sum() / up) if up > 0 else 0.0
                except Exception as exc:
                    if ranks == 1:
                        raise
                    row_error = f"rank {rank}: {type(exc).__name__}: {exc}"
            if ranks > 1:
                row, row_error = comm.bcast((row, row_error), root=int(owner[cold]))
                if row_error is not None:
                    raise DistributedError(
                        f"a rank failed in generation {g} of thermo.fit: {row_error}"
                    )
            uphill = row.pop("uphill_acceptance")
            row.update(generation=g, proposals=done, seconds=elapsed, uphill_acceptance=uphill)
            self.history_.rows.append(row)
            stop = report.update(g + 1, **row)
            by_callback = report.stopped
            if self.max_time is not None and elapsed >= self.max_time:
                log.info("stopping after %.1f s (max_time)", elapsed)
                stop = True
            if ranks > 1:  # rank 0's callback and clock decide for every rank
                stop, by_callback = comm.bcast((stop, by_callback), root=0)
            if by_callback:
                log.info("stopped by the callback after generation %d", g)
            if stop:
                break
            if R > 1 and g < n_gen - 1:  # the last generation's cold walker is the model
                walker_at = walker_at[
                    _exchange(energies, walker_at, temps, temperature, rng, swaps, g)
                ]
        self.swap_rate_ = swaps[:, 1] / np.maximum(swaps[:, 0], 1)
        cold = int(walker_at[0])
        fabric = chains[cold].to_fabric() if cold in chains else None
        if ranks > 1:
            fabric = comm.bcast(fabric, root=int(owner[cold]))
        self.fabric_ = fabric
        self.n_proposals_done_ = done
        self.stopped_ = bool(by_callback)
        self.ranks_ = ranks
        return self

    def _row(
        self, ch: Chain, st: np.ndarray, T: float, sigma: np.ndarray, rate: float, Xv, yv
    ) -> dict[str, float]:
        prop, acc = st[:, 0], st[:, 1]
        row = {
            "temperature": T,
            "energy": float(ch.energy[0]),
            "error": float(ch.energy[1] * ch.scale),
            "train_accuracy": ch.accuracy(),
            "connections": ch.n_edges,
            "sparsity": 1.0 - ch.n_edges / max(len(ch.psrc), 1),
            "acceptance": float(acc.sum() / max(prop.sum(), 1)),
            "sigma": float(sigma[0]),
            "proposals_per_s": rate,
        }
        for m, name in enumerate(MOVE_NAMES):
            row[f"accept_{name}"] = float(acc[m] / prop[m]) if prop[m] else float("nan")
        if Xv is not None:
            row["val_accuracy"] = float(np.mean(ch.to_fabric().predict(Xv) == yv))
        return row


def _jsonable(v: Any) -> Any:
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v if not (isinstance(v, float) and not math.isfinite(v)) else str(v)
    if isinstance(v, (tuple, list)):
        return [_jsonable(x) for x in v]
    return repr(v)


def _adapt(sigma: np.ndarray, st: np.ndarray, target: float, hi: float) -> None:
    """Multiply each adapted step size by exp(acceptance - target), within [1e-6, hi]. The
    acceptance counts only proposals that changed the energy: a move of a weight whose input
    is always 0 is free at any step size and would otherwise drive the step up forever."""
    for m in _ADAPTED:
        live = st[m, 0] - st[m, 5]
        if live >= 20:
            rate = (st[m, 1] - st[m, 5]) / live
            sigma[m] = min(hi, max(1e-6, sigma[m] * math.exp(rate - target)))


def _blocks(n: int, ranks: int) -> list[tuple[int, int]]:
    return [mpi.partition(n, ranks, r) for r in range(ranks)]


def _exchange(energies, walker_at, temps, T, rng, swaps, g) -> np.ndarray:
    """Replica exchange between neighbouring temperatures (even pairs on even generations),
    accepted by :func:`neurofabric.thermo.tempering.replica_exchange`. ``energies`` are by
    walker, ``walker_at[slot]`` the walker at temperature ``T * temps[slot]``; returns the
    order: after the sweep, slot k holds the walker that was at slot ``order[k]`` (the walkers
    keep their states, step sizes and random streams; they exchange temperatures)."""
    by_slot = [float(energies[w]) for w in walker_at]
    order, accepted = replica_exchange(by_slot, [T * t for t in temps], start=g % 2, rng=rng)
    swaps[g % 2 :: 2, 0] += 1
    swaps[:, 1] += accepted
    return order
