r"""A spiking network on many MPI ranks: neurons split in blocks, spikes exchanged once per
minimum-delay window.

    mpiexec -n 4 python my_script.py          # every rank runs the same script

.. code-block:: python

    from neurofabric.snn.distributed import run_distributed
    from neurofabric.snn.models import cuba

    result = run_distributed(cuba(400_000, seed=1), 1.0)   # the same result on every rank

**How.** Rank r of K owns neurons ``[r N / K, (r + 1) N / K)``: their state and the synapses
that end on them (every projection's rows are generated on every rank from the seed, as in
one process, and each rank keeps the synapses whose target it owns). A spike can reach a
neuron no sooner than the shortest recurrent delay ``D`` (in steps), so each rank advances
its neurons ``D`` steps at a time with its own inputs (Poisson groups and spike-array
inputs are drawn from counter-based streams keyed by source and step, so every rank draws
the same), then all ranks exchange that window's spikes in one ``Allgatherv`` (the principle
of NEST and Arbor), and each rank delivers every spike of the window to its own neurons, in
(step, neuron) order, before the window in which they arrive.

**Results do not depend on K.** The order in which a neuron's inputs are added does not
depend on which rank a spike came from: inputs as they happen, the recurrent spikes of a
window at its end, ordered by step and neuron. So 1, 2 or 4 ranks give bit-identical spike
trains in float64, and so does any thread count. (A distributed run and a plain
``SpikingNetwork.run`` add the recurrent spikes of a step at different moments, after and
before that step's inputs, so the two can differ in the last bit of a sum.)

**Errors.** Every window's exchange carries each rank's status: a rank that fails sends its
message and every rank raises :class:`DistributedError` with it, at the same window; no rank
is left waiting.

**Checkpoints.** :func:`save_distributed` gathers every rank's neurons to rank 0, which
writes an ordinary checkpoint (``SpikingNetwork.save``); any number of ranks (or one process)
can then ``SpikingNetwork.load`` it and go on: the spikes equal an uninterrupted run's.

Not distributed yet (a :class:`~neurofabric.core.errors.ConfigError` says so): plasticity,
short-term plasticity, homeostasis, procedural storage and the torch backend. Every rank
builds the whole network before keeping its part, so the build's peak memory is the whole
network's.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neurofabric.core.errors import ConfigError, DistributedError
from neurofabric.core.mpi import allgather_checked, launched_by_mpiexec, partition, world
from neurofabric.snn.kernels import layout as L
from neurofabric.snn.network import SpikingNetwork
from neurofabric.snn.recording import step_monitors

log = logging.getLogger(__name__)

__all__ = [
    "DistributedError",
    "DistributedResult",
    "launched_by_mpiexec",
    "partition",
    "run_distributed",
    "save_distributed",
]

#: the window when the network has no recurrent synapses (nothing to exchange early)
_MAX_WINDOW = 2000
#: steps of every local neuron spiking that the spike buffer holds between drains
_BUFFER_STEPS = 16


@dataclass
class DistributedResult:
    """What :func:`run_distributed` returns on every rank: the whole network's spikes."""

    n_neurons: int
    dt: float
    t_start: float
    duration: float
    n_spikes: int
    ranks: int
    rank: int
    neurons: tuple[int, int]  # the rank's block [lo, hi)
    window_steps: int  # the minimum recurrent delay: steps between exchanges
    exchanges: int  # collective exchanges of spikes (one per window)
    windows: int
    bytes_exchanged: int  # spike payload this rank received over the run (all windows)
    wall_s: float
    exchange_s: float  # time in the exchanges (waiting included)
    spike_times: np.ndarray = field(default_factory=lambda: np.empty(0))
    spike_indices: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))

    @property
    def mean_rate_hz(self) -> float:
        return self.n_spikes / self.n_neurons / self.duration if self.duration > 0 else 0.0

    def to_run_result(self, n_synapses: int, backend: str):
        """The spikes as a :class:`~neurofabric.snn.monitors.RunResult` (for its plots and
        exports); every step is event-driven (each window's spikes are pushed)."""
        from neurofabric.snn.monitors import RunResult

        return RunResult(
            n_neurons=self.n_neurons,
            n_synapses=n_synapses,
            dt=self.dt,
            t_start=self.t_start,
            duration=self.duration,
            n_spikes=self.n_spikes,
            wall_s=self.wall_s,
            backend=backend,
            event_steps=int(round(self.duration / self.dt)),
            dense_steps=0,
            spike_indices=self.spike_indices.astype(np.int32),
            spike_times=self.spike_times,
        )


def _check_supported(net: SpikingNetwork) -> None:
    what = None
    if any(p.plasticity is not None for p in net.projections):
        what = "plasticity"
    elif any(getattr(p, "stp", None) is not None for p in net.projections):
        what = "short-term plasticity"
    elif net.homeostasis is not None:
        what = "homeostasis"
    elif net.storage != "csr":
        what = f"storage={net.storage!r}"
    elif net.backend not in ("auto", "numba", "reference"):
        what = f"backend={net.backend!r}"
    if what is not None:
        raise ConfigError(
            f"run_distributed does not support {what} yet; run this network in one process "
            "(SpikingNetwork.run), or drop it"
        )


def _local_rows(syn: L.Synapses, lo: int, hi: int) -> L.Synapses:
    """The synapses of ``syn`` whose target is in ``[lo, hi)``, targets renumbered from 0,
    in their CSR order (so each neuron's inputs add in the same order as in one process)."""
    if lo == 0 and (syn.indices.shape[0] == 0 or int(syn.indices.max()) < hi):
        return syn  # every target is this rank's (one rank)
    keep = (syn.indices >= lo) & (syn.indices < hi)
    kept = np.concatenate([[0], np.cumsum(keep, dtype=np.int64)])
    indptr = kept[syn.indptr]
    indices = (syn.indices[keep] - lo).astype(np.int32)
    row_weights = syn.flags[L.ROW_WEIGHTS] == 1
    weights = syn.weights if row_weights else syn.weights[keep]
    delays = syn.delays if syn.flags[L.CONST_DELAY] >= 0 else syn.delays[keep]
    return L.Synapses(indptr, indices, np.ascontiguousarray(weights), delays, syn.flags)


def _min_delay(syn: L.Synapses) -> int | None:
    if syn.indices.shape[0] == 0:
        return None
    if syn.flags[L.CONST_DELAY] >= 0:
        return int(syn.flags[L.CONST_DELAY])
    return int(syn.delays.min())


def run_distributed(net: SpikingNetwork, duration: float, *, comm: Any = None) -> DistributedResult:
    """Simulate ``duration`` seconds of ``net`` split over the ranks of ``comm`` (default:
    ``MPI.COMM_WORLD``); every rank calls it with the same network (same parameters and
    seed), built or not. Returns the whole network's spikes, sorted by time then neuron, on
    every rank. The network's ``state_`` then holds this rank's neurons' new state (the
    other neurons' entries are stale) and its step count moves on by the run."""
    from neurofabric.core.validation import check_positive

    comm = world(comm, needed_by="run_distributed")
    duration = check_positive("duration", duration, "s")
    _check_supported(net)
    n_steps = int(round(duration / net.dt))
    if n_steps < 1:
        raise ConfigError(f"`duration` must be at least one step (dt={net.dt}), got {duration}")
    if not net._built:
        net.build()
    k = net._k
    size, rank = comm.Get_size(), comm.Get_rank()
    n = net.n_neurons
    lo, hi = partition(n, size, rank)
    full = net._kernel_network()
    rec = _local_rows(full.rec, lo, hi)
    ext = _local_rows(full.ext, lo, hi)
    delays = [d for d in (_min_delay(full.rec),) if d is not None]
    window = min(delays) if delays else _MAX_WINDOW
    nr = full.neurons
    neurons = L.Neurons(np.ascontiguousarray(nr.params[:, lo:hi]), nr.ref_steps[lo:hi], nr.syn)
    no_rec = L.Synapses(
        np.zeros(1, np.int64),
        np.empty(0, np.int32),
        np.empty(0, np.float32),
        np.empty(0, np.uint8),
        np.array([0, 1], np.int64),
    )
    local_net = full._replace(
        neurons=neurons,
        rec=no_rec,
        rec_csc=L.no_incoming(),
        dense_limit=-1,
        ext=ext,
        ext_csc=L.no_incoming(),
    )
    st = net.state_
    state = L.State(
        st.v[lo:hi].copy(),
        st.ge[lo:hi].copy(),
        st.gi[lo:hi].copy(),
        st.refrac[lo:hi].copy(),
        np.ascontiguousarray(st.buf_e[:, lo:hi]),
        np.ascontiguousarray(st.buf_i[:, lo:hi]),
    )
    n_local = hi - lo
    # room for _BUFFER_STEPS steps of every local neuron spiking between drains
    cap = max(n_local * min(window, _BUFFER_STEPS), 1)
    mon = step_monitors(n_local, np.dtype(net.dtype), steps=window, capacity=cap)
    counters = np.zeros(L.N_COUNTERS, np.int64)
    counters[L.C_MONITORED] = n_local
    counters[L.C_THREADS] = k.threads(n_local)
    counters[L.C_HOMOGENEOUS] = net._homogeneous  # one parameter set: the scalar update
    inh_sign = float(nr.syn[L.INH_SIGN])
    t_start = st.t
    times: list[np.ndarray] = []
    ids: list[np.ndarray] = []
    exchanges = received = 0
    exchange_s = 0.0
    wall0 = time.perf_counter()
    done = 0
    while done < n_steps:
        steps = min(window, n_steps - done)
        error = None
        packed = np.empty(0, np.int64)
        try:
            inputs = net._input_spikes(st.t, steps, st.rng)
            parts, j = [], 0
            while j < steps:  # the kernel returns early when its spike buffer needs draining
                counters[L.C_WRITTEN] = 0
                chunk = inputs._replace(ptr=inputs.ptr[j:])
                did, _ = k.simulate(steps - j, st.t + j, local_net, state, chunk, mon, counters)
                w = int(counters[L.C_WRITTEN])
                parts.append(mon.spk_t[:w] * n + (mon.spk_i[:w].astype(np.int64) + lo))
                j += did
            packed = np.concatenate(parts)
        except Exception as exc:  # sent to every rank with the exchange below
            error = f"rank {rank}: {type(exc).__name__}: {exc}"
        t0 = time.perf_counter()
        # each rank's spike count and status (the messages travel only when a rank failed)
        counts = allgather_checked(
            comm, np.array([packed.size]), error, f"at step {st.t} of a distributed run"
        )[:, 0]
        everything = np.empty(int(counts.sum()), np.int64)
        comm.Allgatherv(packed, [everything, counts])
        exchange_s += time.perf_counter() - t0
        exchanges += 1
        received += everything.nbytes
        everything.sort()  # (step, neuron) order
        spike_steps, spike_ids = np.divmod(everything, n)
        if rec.indices.shape[0]:
            k.push_events(spike_steps, spike_ids, rec, state.buf_e, state.buf_i, inh_sign)
        times.append(spike_steps)
        ids.append(spike_ids)
        st.t += steps
        done += steps
    wall_s = time.perf_counter() - wall0
    st.v[lo:hi], st.ge[lo:hi], st.gi[lo:hi] = state.v, state.ge, state.gi
    st.refrac[lo:hi] = state.refrac
    st.buf_e[:, lo:hi], st.buf_i[:, lo:hi] = state.buf_e, state.buf_i
    all_steps = np.concatenate(times) if times else np.empty(0, np.int64)
    log.info(
        "rank %d of %d: %d neurons, %d steps in %d windows of %d, %.2f s (%.2f s exchanging)",
        rank,
        size,
        n_local,
        n_steps,
        exchanges,
        window,
        wall_s,
        exchange_s,
    )
    return DistributedResult(
        n_neurons=n,
        dt=net.dt,
        t_start=t_start * net.dt,
        duration=n_steps * net.dt,
        n_spikes=int(all_steps.size),
        ranks=size,
        rank=rank,
        neurons=(lo, hi),
        window_steps=window,
        exchanges=exchanges,
        windows=-(-n_steps // window),
        bytes_exchanged=received,
        wall_s=wall_s,
        exchange_s=exchange_s,
        spike_times=all_steps * net.dt,
        spike_indices=np.concatenate(ids) if ids else np.empty(0, np.int64),
    )


def save_distributed(net: SpikingNetwork, path: Any, *, comm: Any = None) -> Path | None:
    """Save ``net`` after :func:`run_distributed` on the ranks of ``comm``: every rank sends
    its neurons' state to rank 0, which writes the checkpoint (atomic, as
    ``SpikingNetwork.save``). Every rank calls it; rank 0 returns the path, the others None.
    A failure on rank 0 raises :class:`DistributedError` on every rank."""
    comm = world(comm, needed_by="save_distributed")
    size, rank = comm.Get_size(), comm.Get_rank()
    st = net.state_
    lo, hi = partition(net.n_neurons, size, rank)
    part = (lo, hi, st.v[lo:hi], st.ge[lo:hi], st.gi[lo:hi], st.refrac[lo:hi])
    parts = comm.gather(part + (st.buf_e[:, lo:hi], st.buf_i[:, lo:hi]), root=0)
    error, saved = None, None
    if rank == 0:
        try:
            for a, b, v, ge, gi, refrac, buf_e, buf_i in parts:
                st.v[a:b], st.ge[a:b], st.gi[a:b], st.refrac[a:b] = v, ge, gi, refrac
                st.buf_e[:, a:b], st.buf_i[:, a:b] = buf_e, buf_i
            saved = net.save(path)
        except Exception as exc:  # every rank learns of it below
            error = f"rank 0: {type(exc).__name__}: {exc}"
    error = comm.bcast(error, root=0)
    if error is not None:
        raise DistributedError(f"saving the distributed network failed: {error}")
    return saved
