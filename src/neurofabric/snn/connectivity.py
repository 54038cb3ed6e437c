"""Projections and their two storage modes.

``csr``: materialized compressed sparse rows, int32 targets + float32 weights (a single
float32 per row when every synapse of the row has the same weight), int64 row pointers, and a
delay per synapse only when delays differ (uint8/uint16 steps). ``procedural``: nothing per
synapse; a source's targets, weights and delays are regenerated from (seed, source) by
:mod:`.kernels.rowgen` whenever it spikes. Both run the same generator, so they hold identical
synapses for a seed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from neurofabric.core.errors import ConfigError
from neurofabric.core.validation import check_nonnegative, check_positive
from neurofabric.snn.kernels import layout as L
from neurofabric.snn.kernels import rowgen
from neurofabric.snn.topology import (
    Explicit,
    FixedTotalNumber,
    Random,
    Topology,
    max_row_length,
)

log = logging.getLogger(__name__)

_CHUNK_SYNAPSES = 1 << 22  # generate rows in chunks of about this many synapses


@dataclass(frozen=True)
class Projection:
    """One connection rule from a source group (``"neurons"`` or an input) to the neurons."""

    source: str
    topology: Topology
    src_range: tuple[int, int]
    tgt_range: tuple[int, int]
    weight: float
    weight_std: float = 0.0
    inh_weight: float | None = None
    inh_weight_std: float = 0.0
    delay_steps: tuple[int, int] = (1, 1)
    #: (mean, sd) in steps of normal delays within ``delay_steps`` (None: uniform integers)
    delay_normal: tuple[float, float] | None = None
    allow_self: bool = False
    dale_split: int = -1  # absolute source index from which sources are inhibitory; -1: off
    procedural: bool = False
    plasticity: Any = None  # a rule of neurofabric.snn.plasticity, or None
    stp: Any = None  # a neurofabric.snn.stp.ShortTermPlasticity, or None
    #: per-synapse delays in steps of an ``Explicit`` topology with delays (else None)
    explicit_steps: Any = field(default=None, compare=False, repr=False)

    def row_params(self, src_offset: int) -> tuple[np.ndarray, np.ndarray]:
        """The (ip, fp) rows of :mod:`.kernels.rowgen` for this projection."""
        topo = self.topology
        s0, s1 = self.src_range[0] + src_offset, self.src_range[1] + src_offset
        split = -1 if self.dale_split < 0 else self.dale_split + src_offset
        inh_w = self.weight if self.inh_weight is None else self.inh_weight
        inh_std = self.weight_std if self.inh_weight is None else self.inh_weight_std
        ip = np.array(
            [
                topo.kind(),
                s0,
                s1,
                self.tgt_range[0],
                self.tgt_range[1],
                topo.degree(),
                getattr(topo, "dims", 1),
                2 if getattr(topo, "skip_partner", False) else int(self.allow_self),
                split,
                self.delay_steps[0],
                self.delay_steps[1],
            ],
            dtype=np.int64,
        )
        fp = np.array(
            [
                getattr(topo, "p", None) or getattr(topo, "p_max", 0.0) or 0.0,
                getattr(topo, "beta", 0.0),
                getattr(topo, "sigma", 0.0),
                self.weight,
                self.weight_std,
                inh_w,
                inh_std,
                *(self.delay_normal or (0.0, 0.0)),
            ],
            dtype=np.float64,
        )
        if isinstance(topo, Random) and topo.p is None:
            fp[0] = 0.0
        return ip, fp


@dataclass(frozen=True)
class Normal:
    """Normally distributed synaptic delays (seconds): ``mean`` and ``sd``, redrawn outside
    [``low``, ``high``] and rounded to the nearest step, as NEST draws and rounds them
    (``low`` default: dt, the shortest delay, i.e. draws below dt / 2 are redrawn; ``high``
    default: the network's ``max_delay``)."""

    mean: float
    sd: float
    low: float | None = None
    high: float | None = None

    def __post_init__(self) -> None:
        check_positive("delay mean", self.mean, "s")
        check_nonnegative("delay sd", self.sd, "s")
        for name in ("low", "high"):
            if getattr(self, name) is not None:
                check_positive(f"delay {name}", getattr(self, name), "s")


def normal_delay(
    delay: Normal, dt: float, max_delay: float, max_steps: int
) -> tuple[tuple[int, int], tuple[float, float] | None]:
    """``(delay_steps, delay_normal)`` of a :class:`Normal` delay (sd 0: the mean, fixed)."""
    low = dt if delay.low is None else delay.low
    high = max_delay if delay.high is None else delay.high
    steps = delay_steps((low, high), dt, max_delay, max_steps)
    if delay.sd == 0.0:
        fixed = delay_steps(delay.mean, dt, max_delay, max_steps)
        return fixed, None
    mean_steps = delay.mean / dt
    if not steps[0] - 0.5 <= mean_steps < steps[1] + 0.5:
        raise ConfigError(
            f"delay mean {delay.mean} s lies outside [low, high] = [{low}, {high}] s; "
            "move the bounds or the mean"
        )
    return steps, (float(mean_steps), float(delay.sd / dt))


def delay_steps(
    delay: float | tuple[float, float] | None, dt: float, max_delay: float, max_steps: int
) -> tuple[int, int]:
    """The (low, high) delay range of a projection in steps (None: one step): each in
    1..``max_steps``, the ring buffer's length."""
    if delay is None:
        return 1, 1
    lo, hi = (delay, delay) if np.ndim(delay) == 0 else tuple(delay)  # type: ignore[misc]
    lo = check_positive("delay", lo, "s")
    hi = check_positive("delay", hi, "s")
    steps = (int(round(lo / dt)), int(round(hi / dt)))
    if steps[0] < 1:
        raise ConfigError(f"`delay` must be >= dt ({dt} s), got {lo} s")
    if steps[1] > max_steps:
        raise ConfigError(
            f"`delay` must be <= max_delay ({max_delay} s, the ring buffer), got {hi} s; "
            "raise max_delay"
        )
    if steps[1] < steps[0]:
        raise ConfigError(f"`delay` range must be (low, high) with low <= high, got {delay}")
    return steps


def check_partner_overlap(
    topology: Topology,
    recurrent: bool,
    src: tuple[int, int],
    tgt: tuple[int, int],
    allow_self: bool,
) -> None:
    """``AllToAll(skip_partner=True)`` leaves out source i -> target i of the ranges, which
    removes self connections only when the ranges are equal or disjoint."""
    overlap = recurrent and src[0] < tgt[1] and tgt[0] < src[1]
    if getattr(topology, "skip_partner", False) and overlap and src != tgt and not allow_self:
        raise ConfigError(
            "AllToAll(skip_partner=True) on overlapping but different source and target "
            f"ranges {src} and {tgt} would keep self connections; use equal or disjoint "
            "ranges, or pass allow_self=True"
        )


def projection_key(seed32: int, index: int) -> int:
    """The stream key of projection ``index``: the same in CSR and procedural mode."""
    return rowgen.hash32(seed32 ^ rowgen.hash32(index * 2246822519 + 1))


@dataclass
class CSR:
    """Materialized synapses of one source group, rows = sources."""

    indptr: np.ndarray
    indices: np.ndarray
    weights: np.ndarray
    delays: np.ndarray
    flags: np.ndarray  # [row-constant weights (0/1), constant delay in steps or -1]
    csc: L.Incoming | None = None
    # 1 where a synapse is plastic; empty when all or none are (see ``plastic``)
    mask: np.ndarray = field(default_factory=lambda: np.empty(0, np.uint8))
    plastic: bool = False

    @property
    def n_synapses(self) -> int:
        return int(self.indptr[-1])

    def nbytes(self, include_csc: bool = True) -> int:
        total = sum(
            a.nbytes for a in (self.indptr, self.indices, self.weights, self.delays, self.mask)
        )
        if include_csc and self.csc is not None:
            total += sum(a.nbytes for a in self.csc)
        return int(total)

    def synapse_weights(self) -> np.ndarray:
        """One float32 weight per synapse (expanding row-constant weights)."""
        if self.flags[0] == 1:
            return np.repeat(self.weights, np.diff(self.indptr))
        return self.weights

    def synapse_delays(self) -> np.ndarray:
        """One delay (steps) per synapse."""
        if self.flags[1] >= 0:
            return np.full(self.n_synapses, self.flags[1], dtype=np.int32)
        return self.delays.astype(np.int32)

    def sources(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.indptr) - 1, dtype=np.int32), np.diff(self.indptr))

    def kernel_args(self) -> L.Synapses:
        return L.Synapses(self.indptr, self.indices, self.weights, self.delays, self.flags)

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "indptr": self.indptr,
            "indices": self.indices,
            "weights": self.weights,
            "delays": self.delays,
            "flags": self.flags,
            "mask": self.mask,
        }


def empty_csr() -> CSR:
    return CSR(
        np.zeros(1, np.int64),
        np.empty(0, np.int32),
        np.empty(0, np.float32),
        np.empty(0, np.uint8),
        np.array([0, 1], np.int64),
    )


def _row_chunks(counts: np.ndarray) -> list[tuple[int, int]]:
    """Split rows into runs of about ``_CHUNK_SYNAPSES`` synapses."""
    csum = np.cumsum(counts)
    chunks, start = [], 0
    while start < len(counts):
        base = csum[start - 1] if start else 0
        stop = max(int(np.searchsorted(csum, base + _CHUNK_SYNAPSES, side="right")), start + 1)
        chunks.append((start, stop))
        start = stop
    return chunks


def _is_in_degree(proj: Projection) -> bool:
    return isinstance(proj.topology, Random) and proj.topology.in_degree is not None


def _explicit_rows(proj: Projection, s0: int, s1: int) -> tuple:
    """The given synapses of an ``Explicit`` projection, ordered by source then target
    (equal pairs in the given order): counts per row and (targets, weights, delays)."""
    topo = proj.topology
    src = topo.pre + s0
    tgt = topo.post + proj.tgt_range[0]
    order = np.lexsort((tgt, src))
    w = (topo.weight * proj.weight).astype(np.float32)
    if proj.explicit_steps is not None:
        d = np.asarray(proj.explicit_steps, np.int64)
    else:
        d = np.full(src.size, proj.delay_steps[0], np.int64)
    counts = np.bincount(src - s0, minlength=s1 - s0).astype(np.int64)
    return counts, (tgt[order].astype(np.int32), w[order], d[order])


def _plan(proj: Projection, key: int, offset: int, kernels: ModuleType, dry: bool) -> tuple:
    """(ip, fp, key, counts per row, pre-generated rows or None) of one projection; with
    ``dry``, no synapse in any row."""
    ip, fp = proj.row_params(offset)
    s0, s1 = int(ip[1]), int(ip[2])
    if dry:
        return ip, fp, key, np.zeros(s1 - s0, np.int64), None
    if isinstance(proj.topology, Explicit):
        counts, rows = _explicit_rows(proj, s0, s1)
        return ip, fp, key, counts, rows
    if isinstance(proj.topology, FixedTotalNumber):  # drawn as pairs, then ordered by row
        src, tgt, w, d = kernels.build_fixed_total(ip, fp, key, proj.topology.n)
        order = kernels.row_order(src, tgt, s0, s1 - s0)
        counts = np.bincount(src - s0, minlength=s1 - s0).astype(np.int64)
        return ip, fp, key, counts, (tgt[order], w[order], d[order])
    if _is_in_degree(proj):  # generated per target, then ordered by source
        targets = np.arange(proj.tgt_range[0], proj.tgt_range[1], dtype=np.int64)
        src, tgt, w, d = kernels.build_in_degree(ip, fp, key, targets, proj.topology.in_degree)
        order = np.argsort(src, kind="stable")
        counts = np.bincount(src - s0, minlength=s1 - s0).astype(np.int64)
        return ip, fp, key, counts, (tgt[order], w[order], d[order])
    max_row = max_row_length(proj.topology, proj.tgt_range[1] - proj.tgt_range[0]) + 1
    sources = np.arange(s0, s1, dtype=np.int64)
    counts = kernels.build_rows(ip, fp, key, sources, max_row, True)[0]
    return ip, fp, key, counts, None


def build_csr(
    projections: list[tuple[Projection, int, int]],
    n_rows: int,
    kernels: ModuleType,
    with_csc: bool = False,
    dry: bool = False,
) -> CSR:
    """Materialize ``(projection, key, source offset)`` triples into one CSR of ``n_rows``.

    Rows are generated twice, in chunks: once to count, once to write straight into the
    final arrays, so the peak memory is the CSR itself plus one chunk. ``dry``: the CSR of
    the same layout and dtypes with no synapse, made without calling a kernel.
    """
    plans = [_plan(proj, key, offset, kernels, dry) for proj, key, offset in projections]
    row_counts = np.zeros(n_rows, np.int64)
    for ip, _, _, counts, _ in plans:
        row_counts[int(ip[1]) : int(ip[1]) + len(counts)] += counts
    indptr = np.zeros(n_rows + 1, np.int64)
    np.cumsum(row_counts, out=indptr[1:])
    nnz = int(indptr[-1])
    if nnz >= 2**31:
        raise ConfigError(f"{nnz} synapses exceed the int32 CSR limit; use storage='procedural'")
    ranges = {(int(p[0][9]), int(p[0][10])) for p in plans}
    lo, hi = min(r[0] for r in ranges), max(r[1] for r in ranges)
    const_delay = lo if len(ranges) == 1 and lo == hi else -1
    indices = np.empty(nnz, np.int32)
    weights = np.empty(nnz, np.float32)
    delays = (
        np.empty(0, np.uint8)
        if const_delay >= 0
        else np.empty(nnz, np.uint8 if hi < 256 else np.uint16)
    )
    plastic = [proj.plasticity is not None for proj, _, _ in projections]
    mask = np.zeros(nnz if any(plastic) and not all(plastic) else 0, np.uint8)
    fill = indptr[:-1].copy()
    for (ip, fp, key, counts, pre), learns in zip(plans, plastic, strict=True):
        s0 = int(ip[1])
        if pre is not None:
            _place(indices, weights, delays, fill, s0, counts, *pre, mask, learns)
            continue
        if not counts.any():  # no row to generate
            continue
        max_row = int(counts.max(initial=0)) + 1
        for a, b in _row_chunks(counts):
            sources = np.arange(s0 + a, s0 + b, dtype=np.int64)
            _, tg, wt, dl = kernels.build_rows(ip, fp, key, sources, max_row, False)
            _place(indices, weights, delays, fill, s0 + a, counts[a:b], tg, wt, dl, mask, learns)
    row_weights = 0
    if not any(plastic):  # learning needs one weight per synapse
        weights, row_weights = _compact_weights(indptr, weights, n_rows)
    csr = CSR(
        indptr,
        indices,
        weights,
        delays,
        np.array([row_weights, const_delay], np.int64),
        mask=mask,
        plastic=any(plastic),
    )
    if with_csc:
        csr.csc = build_csc(csr, n_rows, kernels)
    return csr


def _place(
    indices, weights, delays, fill, first_row, counts, tg, wt, dl, mask=None, learns=False
) -> None:
    """Write generated rows ``first_row ...`` at the current fill positions of their rows."""
    rows = slice(first_row, first_row + len(counts))
    starts = fill[rows]
    offsets = np.cumsum(counts) - counts
    if len(counts) and np.array_equal(starts - starts[0], offsets):
        where = slice(int(starts[0]), int(starts[0]) + len(tg))  # contiguous: no index array
    else:
        where = np.repeat(starts - offsets, counts) + np.arange(len(tg))
    indices[where] = tg
    weights[where] = wt
    if delays.size:
        delays[where] = dl
    if mask is not None and mask.size:
        mask[where] = learns
    fill[rows] += counts


def _compact_weights(
    indptr: np.ndarray, weights: np.ndarray, n_rows: int
) -> tuple[np.ndarray, int]:
    """One float per row when every row's weights are equal (checked in chunks of rows)."""
    counts = np.diff(indptr)
    first = np.zeros(n_rows, np.float32)
    has = counts > 0
    first[has] = weights[indptr[:-1][has]]
    for a, b in _row_chunks(counts):
        block = weights[indptr[a] : indptr[b]]
        if not np.array_equal(np.repeat(first[a:b], counts[a:b]), block):
            return weights, 0
    return first, 1


def build_csc(csr: CSR, n_targets: int, kernels: ModuleType) -> L.Incoming:
    """Incoming synapses per target (stable: sources ascending), for the dense pull path:
    (pointers, source of each, position of each in the CSR arrays). The positions are left
    out when weight and delay follow from the source alone."""
    need_pos = not (csr.flags[0] == 1 and csr.flags[1] >= 0)
    if csr.indices.size == 0:  # nothing to transpose: the kernel's output, without a kernel
        return L.Incoming(
            np.zeros(n_targets + 1, np.int64), np.empty(0, np.int32), np.empty(0, np.int32)
        )
    return L.Incoming(*kernels.transpose(csr.indptr, csr.indices, n_targets, need_pos))


def csr_from_arrays(
    arrays: dict[str, np.ndarray],
    n_targets: int,
    with_csc: bool,
    kernels: ModuleType,
    plastic: bool = False,
) -> CSR:
    csr = CSR(
        arrays["indptr"],
        arrays["indices"],
        arrays["weights"],
        arrays["delays"],
        np.asarray(arrays["flags"], np.int64),
        mask=np.asarray(arrays.get("mask", np.empty(0, np.uint8)), np.uint8),
        plastic=plastic,
    )
    if with_csc:
        csr.csc = build_csc(csr, n_targets, kernels)
    return csr


@dataclass
class ProceduralTable:
    """Row parameters of the procedural projections, as the kernels take them."""

    ip: np.ndarray = field(default_factory=lambda: np.zeros((0, 11), np.int64))
    fp: np.ndarray = field(default_factory=lambda: np.zeros((0, 9), np.float64))
    keys: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    is_input: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    max_row: int = 1

    def kernel_args(self) -> L.Procedural:
        return L.Procedural(
            self.ip,
            self.fp,
            self.keys,
            self.is_input,
            np.empty(self.max_row, np.int64),
            np.empty(self.max_row, np.float64),
            np.empty(self.max_row, np.int64),
        )

    def nbytes(self) -> int:
        return int(
            self.ip.nbytes
            + self.fp.nbytes
            + self.keys.nbytes
            + self.is_input.nbytes
            + self.max_row * 24
        )


def procedural_table(projections: list[tuple[Projection, int, int, bool]]) -> ProceduralTable:
    if not projections:
        return ProceduralTable()
    ips, fps, keys, inputs, max_row = [], [], [], [], 1
    for proj, key, offset, is_input in projections:
        if isinstance(proj.topology, Random) and proj.topology.in_degree is not None:
            raise ConfigError(
                "Random(in_degree=...) cannot be procedural: the synapses of a "
                "source depend on every target's draw; use storage='csr' or "
                "Random(out_degree=...)"
            )
        if isinstance(proj.topology, FixedTotalNumber):
            raise ConfigError(
                "FixedTotalNumber cannot be procedural: a source's synapses are spread over "
                "the projection's whole stream of draws; use storage='csr'"
            )
        ip, fp = proj.row_params(offset)
        ips.append(ip)
        fps.append(fp)
        keys.append(key)
        inputs.append(int(is_input))
        n_tgt = proj.tgt_range[1] - proj.tgt_range[0]
        max_row = max(max_row, max_row_length(proj.topology, n_tgt) + 1)
    return ProceduralTable(
        np.stack(ips), np.stack(fps), np.array(keys, np.int64), np.array(inputs, np.int64), max_row
    )


def degree_stats(csr: CSR, n_targets: int) -> dict[str, float]:
    """Mean and variance of the out- and in-degree."""
    out_deg = np.diff(csr.indptr)
    in_deg = np.bincount(csr.indices, minlength=n_targets)
    return {
        "out_mean": float(out_deg.mean()),
        "out_var": float(out_deg.var()),
        "in_mean": float(in_deg.mean()),
        "in_var": float(in_deg.var()),
    }


def clustering_coefficient(csr: CSR, n: int) -> float:
    """Average local clustering coefficient of the undirected graph of ``csr`` (n x n)."""
    import scipy.sparse as sp

    src = csr.sources()
    a = sp.coo_matrix((np.ones(csr.n_synapses), (src, csr.indices)), shape=(n, n)).tocsr()
    a = ((a + a.T) > 0).astype(np.float64)
    a.setdiag(0)
    a.eliminate_zeros()
    deg = np.asarray(a.sum(axis=1)).ravel()
    triangles = np.asarray((a @ a).multiply(a).sum(axis=1)).ravel() / 2.0
    possible = deg * (deg - 1) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        local = np.where(possible > 0, triangles / possible, 0.0)
    return float(local.mean())
