r"""The simulator's step on torch tensors (CPU or CUDA): the torch backend.

The same step as :func:`.reference.simulate`, in the same order (see there for the
equations), written as whole-array torch operations so that it runs on a GPU as well as on
the CPU:

* the neuron update, threshold, reset, refractoriness and homeostasis, on every neuron;
* propagation through CSR rows with per-synapse delays into the ring buffers, event-driven
  push (the rows of the step's spikes) or dense pull (every incoming synapse, kept where the
  source fired), by ``index_put_(accumulate=True)``;
* the Poisson groups, from the same counter-based stream (:mod:`.rowgen`: 32-bit hashes,
  computed exactly in int64), and the spike-array inputs;
* pair/triplet STDP (and Diehl & Cook's rule): a step's presynaptic events touch disjoint
  rows and its postsynaptic spikes disjoint columns, so each phase is one vectorized update
  (events of a source repeated within a step are taken one at a time, as the reference does).

Short-term plasticity and procedural rows are computed on the host with the numpy/numba code
of the other backends (their per-event state is scalar), then delivered on the device.

**Identity.** On the CPU in float64 a run gives the reference's spikes bit for bit: the
buffers add in the reference's order (torch adds float64 ``index_put_`` accumulations one
after the other on the CPU), and every formula is the shared one of :mod:`.formulas`,
evaluated on tensors. CUDA adds the contributions to one target in an unspecified order, so
on a GPU the sums may differ in the last bit (and then, rarely, a spike).

On the CPU the tensors share memory with the network's numpy arrays (nothing is copied); on
a GPU the arrays are copied in at the start of each call (up to 2,000 steps) and the state,
monitors, weights and traces copied back at its end.
"""

from __future__ import annotations

import types

import numpy as np
import torch

from neurofabric.snn.kernels import formulas
from neurofabric.snn.kernels import reference as ref
from neurofabric.snn.kernels.layout import (
    C_DENSE_STEPS,
    C_E,
    C_EVENT_STEPS,
    C_I,
    C_MONITORED,
    C_RECORD_EVERY,
    C_RECORDED,
    C_SPIKES,
    C_THREADS,
    C_WRITTEN,
    CONST_DELAY,
    DECAY_E,
    DECAY_I,
    DECAY_M,
    DT,
    DT_TAU_M,
    E_EXC,
    E_INH,
    H_DECAY,
    H_DRIFT,
    H_FROZEN,
    H_HI,
    H_LO,
    H_STEP,
    H_THETA_MIN,
    INH_SIGN,
    MODEL_CUBA,
    MODEL_DELTA,
    NEAREST,
    ROW_WEIGHTS,
    STATUS_DONE,
    STATUS_DRAIN,
    TAU_O1,
    TAU_O2,
    TAU_R1,
    TAU_R2,
    V_INF,
    V_RESET,
    V_TH,
)

try:  # synapse generation at build time: compiled where numba is installed
    from neurofabric.snn.kernels import numba_cpu as _build
except ImportError:  # pragma: no cover - numba is a dependency
    _build = ref

BACKEND = "torch"

build_rows = _build.build_rows
build_in_degree = _build.build_in_degree
build_fixed_total = _build.build_fixed_total
row_order = _build.row_order
transpose = _build.transpose
normalize_rows = _build.normalize_rows
gen_targets = _build.gen_targets
gen_row = _build.gen_row
gen_in_degree_sources = _build.gen_in_degree_sources
gen_fixed_total = _build.gen_fixed_total
poisson_count = _build.poisson_count
row_key = ref.row_key
M32 = ref.M32


PARALLEL_MIN_NEURONS = 100_000  # below this, torch's thread hand-offs cost more than they save


def threads(n_neurons):
    """CPU threads for torch's operations on ``n_neurons``: the configured number (default:
    all cores) from ``PARALLEL_MIN_NEURONS`` neurons on, else one. (Small operations on
    several threads wait on each other's wake-ups: measured, 5 ms for a 1,500-element
    ``repeat_interleave`` on two busy cores against 15 us on one.)"""
    if n_neurons < PARALLEL_MIN_NEURONS:
        return 1
    from neurofabric.core.config import get_config

    return get_config().threads or torch.get_num_threads()


# ---------------------------------------------------------------- the shared formulas
def _max(a, b):
    return torch.clamp(a, min=float(b)) if not torch.is_tensor(b) else torch.maximum(a, b)


def _min(a, b):
    return torch.clamp(a, max=float(b)) if not torch.is_tensor(b) else torch.minimum(a, b)


_TORCH_PRIMITIVES = {
    "_max": _max,
    "_min": _min,
    "_abs": torch.abs,
    "_select": torch.where,
    "np": types.SimpleNamespace(exp=torch.exp),
}


def _over_torch():
    """The functions of :mod:`.formulas` recreated over torch's element-wise primitives (one
    globals dict, so a formula calls the torch versions of the others)."""
    shared = dict(vars(formulas))
    shared.update(_TORCH_PRIMITIVES)
    for name in formulas.NAMES:
        fn = getattr(formulas, name)
        shared[name] = types.FunctionType(fn.__code__, shared, fn.__name__, fn.__defaults__)
    return {name: shared[name] for name in formulas.NAMES}


_F = _over_torch()


# ---------------------------------------------------------------- arrays on the device
class _Dev:
    """numpy arrays as tensors on one device: shared memory on the CPU; on a GPU, copies
    whose written ones go back to their arrays at :meth:`sync`."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cpu = device.type == "cpu"
        self.written: list[tuple[np.ndarray, torch.Tensor]] = []

    def __call__(self, a: np.ndarray, written: bool = False) -> torch.Tensor:
        a = np.asarray(a)
        if self.cpu:
            if a.flags.writeable and a.flags.c_contiguous:
                return torch.from_numpy(a)
            if written:
                raise ValueError("a written array must be writable and C-contiguous")
            return torch.from_numpy(np.ascontiguousarray(a).copy())
        t = torch.as_tensor(np.ascontiguousarray(a), device=self.device)
        if written:
            self.written.append((a, t))
        return t

    def sync(self) -> None:
        for a, t in self.written:
            a[...] = t.cpu().numpy()


def _syn(dev, s, written_weights=False):
    return types.SimpleNamespace(
        indptr=dev(s.indptr),
        indices=dev(s.indices).long(),
        weights=dev(s.weights, written_weights),
        delays=dev(s.delays).long(),
        row_weights=int(s.flags[ROW_WEIGHTS]) == 1,
        const_delay=int(s.flags[CONST_DELAY]),
        n_rows=s.indptr.shape[0] - 1,
    )


def _csc(dev, c):
    n = c.ptr.shape[0] - 1
    ptr = dev(c.ptr)
    return types.SimpleNamespace(
        ptr=ptr,
        src=dev(c.src).long(),
        pos=dev(c.pos).long(),
        tgt=torch.repeat_interleave(torch.arange(n, device=dev.device), ptr.diff()),
    )


def _plastic(dev, p):
    if p.rule.size == 0:
        return None
    return types.SimpleNamespace(
        rule=p.rule,
        mask=dev(p.mask),
        pre=dev(p.pre, True),
        pre_last=dev(p.pre_last, True),
        post=dev(p.post, True),
        post_last=dev(p.post_last, True),
    )


# ---------------------------------------------------------------- pieces of the step
def _segments(indptr, rows):
    """CSR positions of the rows ``rows``, concatenated in order, and each one's row."""
    starts = indptr[rows]
    counts = indptr[rows + 1] - starts
    total = int(counts.sum())
    owner = torch.repeat_interleave(torch.arange(rows.numel(), device=rows.device), counts)
    offset = torch.arange(total, device=rows.device) - (counts.cumsum(0) - counts)[owner]
    return starts[owner] + offset, owner


def _rows(sources, syn):
    """(targets, weights, delays, index of the source in ``sources``) of their CSR rows."""
    pos, owner = _segments(syn.indptr, sources)
    w = syn.weights[sources][owner] if syn.row_weights else syn.weights[pos]
    if syn.const_delay >= 0:
        d = torch.full_like(pos, syn.const_delay)
    else:
        d = syn.delays[pos]
    return syn.indices[pos], w, d, owner


def _deliver(bufs, t, tg, w, d, inh_sign):
    """Add ``w`` to slots ``(t + d) % D`` of targets ``tg`` (see the reference)."""
    buf_e, buf_i = bufs
    if tg.numel() == 0:
        return
    slots = (t + d) % buf_e.shape[0]
    exc = w >= 0
    inh = ~exc
    buf_e.index_put_((slots[exc], tg[exc]), w[exc].to(buf_e.dtype), accumulate=True)
    buf_i.index_put_(
        (slots[inh], tg[inh]), (w[inh].to(torch.float64) * inh_sign).to(buf_i.dtype), True
    )


def _uniform(key, i):
    """:func:`.rowgen.uniform` for an int64 tensor of draw indices: the reference's 32-bit
    hash (exact in int64; it is written with operators only), then float64 as numpy does
    (an int64 tensor plus a Python float would be float32)."""
    x = (key + 2654435769 * (i + 1)) & M32
    h = ref._hash32_array(ref._hash32_array(x) ^ key)
    return (h.to(torch.float64) + 0.5) / 4294967296.0


def _poisson_counts(lam, elam, u):
    """:func:`.reference.poisson_counts` on tensors."""
    k = torch.zeros_like(lam, dtype=torch.int64)
    p = elam.clone()
    c = elam.clone()
    active = torch.nonzero(u > c).flatten()
    while active.numel():
        k[active] += 1
        p[active] = p[active] * lam[active] / k[active]
        c[active] = c[active] + p[active]
        keep = (u[active] > c[active]) & (p[active] != 0.0) & (k[active] < 100000)
        active = active[keep]
    return k


class _Step:
    """One call's tensors and the step of :func:`.reference.simulate` on them."""

    def __init__(self, net, state, inputs, mon, counters, device):
        dev = self.dev = _Dev(device)
        self.model = int(net.model)
        nr = net.neurons
        self.p = dev(nr.params, True)  # V_TH moves with homeostasis
        hold, lock = ref._unpack_ref(nr.ref_steps)
        self.hold, self.lock = dev(hold), dev(lock)
        self.syn = nr.syn
        self.dt = float(nr.syn[DT])
        self.inh_sign = float(nr.syn[INH_SIGN])
        self.v = dev(state.v, True)
        self.ge = dev(state.ge, True)
        self.gi = dev(state.gi, True)
        self.refrac = dev(state.refrac, True)
        self.bufs = (dev(state.buf_e, True), dev(state.buf_i, True))
        self.rec_plastic = _plastic(dev, net.rec_plastic)
        self.ext_plastic = _plastic(dev, net.ext_plastic)
        self.rec = _syn(dev, net.rec, self.rec_plastic is not None)
        self.ext = _syn(dev, net.ext, self.ext_plastic is not None)
        self.rec_csc = _csc(dev, net.rec_csc)
        self.ext_csc = _csc(dev, net.ext_csc)
        self.dense_limit = int(net.dense_limit)
        self.proc = net.procedural
        self.rec_stp = net.rec_stp if net.rec_stp.prm.size else None
        self.ext_stp = net.ext_stp if net.ext_stp.prm.size else None
        pois = net.poisson
        self.poisson = [
            (
                int(pois.first[g]),
                int(pois.keys[g]),
                dev(pois.lam[pois.start[g] : pois.start[g] + pois.size[g]]),
                dev(pois.elam[pois.start[g] : pois.start[g] + pois.size[g]]),
                torch.arange(int(pois.size[g]), device=device),
            )
            for g in range(pois.first.shape[0])
        ]
        h, theta = net.homeostasis
        self.h = h if h.size and h[H_FROZEN] == 0.0 else None
        self.theta = dev(theta, True) if self.h is not None else None
        self.inputs = inputs
        self.in_idx = dev(inputs.idx).long()
        self.in_cnt = dev(inputs.cnt).long()
        self.mon = mon
        self.spk_mask = dev(mon.spk_mask)
        self.spk_t = dev(mon.spk_t, True)
        self.spk_i = dev(mon.spk_i, True)
        self.rate = dev(mon.rate, True)
        self.rec_idx = dev(mon.rec_idx).long()
        self.rec_v = dev(mon.rec_v, True)
        self.rec_ge = dev(mon.rec_ge, True)
        self.rec_gi = dev(mon.rec_gi, True)
        self.counters = counters

    # -- steps 1-3
    def neurons(self, t):
        buf_e, buf_i = self.bufs
        slot = t % buf_e.shape[0]
        a_e, a_i = buf_e[slot].clone(), buf_i[slot].clone()
        buf_e[slot] = 0
        buf_i[slot] = 0
        can_fire = self.refrac <= 0
        p, syn, v, F = self.p, self.syn, self.v, _F
        active = self.refrac <= self.lock - self.hold
        self.refrac -= (self.refrac > 0).to(self.refrac.dtype)
        if self.model == MODEL_DELTA:
            new_v = F["delta_v"](v, a_e, a_i, p[V_INF], p[DECAY_M])
        else:
            x_e, x_i = self.ge + a_e, self.gi + a_i
            if self.model == MODEL_CUBA:
                new_v = F["cuba_v"](v, x_e, x_i, p[V_INF], p[DECAY_M], p[C_E], p[C_I])
            else:
                new_v = F["coba_v"](
                    v, x_e, x_i, p[V_INF], p[DT_TAU_M], float(syn[E_EXC]), float(syn[E_INH])
                )
            self.ge[:] = F["flushed"](x_e * float(syn[DECAY_E]))
            self.gi[:] = F["flushed"](x_i * float(syn[DECAY_I]))
        v[:] = torch.where(active, new_v, v)
        fired = can_fire & (v > p[V_TH])
        spikes = torch.nonzero(fired).flatten()
        v[spikes] = p[V_RESET][spikes].to(v.dtype)
        self.refrac[spikes] = self.lock[spikes].to(self.refrac.dtype)
        if self.h is not None:  # threshold homeostasis (after the test)
            h, theta = self.h, self.theta
            lo, hi = int(h[H_LO]), int(h[H_HI])
            th = torch.clamp(
                theta[lo:hi] * float(h[H_DECAY]) - float(h[H_DRIFT]), min=float(h[H_THETA_MIN])
            )
            p[V_TH][lo:hi] += th - theta[lo:hi]
            theta[lo:hi] = th
            hit = spikes[(spikes >= lo) & (spikes < hi)]
            p[V_TH][hit] += float(h[H_STEP])
            theta[hit] += float(h[H_STEP])
        return spikes, fired

    # -- step 4
    def record(self, k, t, spikes):
        c = self.counters
        n = spikes.numel()
        self.rate[k] = n
        c[C_SPIKES] += n
        shown = spikes[self.spk_mask[spikes] != 0]
        w0, m = int(c[C_WRITTEN]), shown.numel()
        self.spk_t[w0 : w0 + m] = t
        self.spk_i[w0 : w0 + m] = shown.to(self.spk_i.dtype)
        c[C_WRITTEN] += m
        if c[C_RECORD_EVERY] > 0 and t % c[C_RECORD_EVERY] == 0:
            r = int(c[C_RECORDED])
            self.rec_v[r] = self.v[self.rec_idx]
            self.rec_ge[r] = self.ge[self.rec_idx]
            self.rec_gi[r] = self.gi[self.rec_idx]
            c[C_RECORDED] += 1

    # -- step 5
    def propagate(self, t, spikes, fired):
        rec, csc = self.rec, self.rec_csc
        if rec.n_rows > 0 and 0 <= self.dense_limit < spikes.numel():
            self.counters[C_DENSE_STEPS] += 1
            keep = fired[csc.src]
            src = csc.src[keep]
            pos = csc.pos[keep] if csc.pos.numel() else None
            w = rec.weights[src] if rec.row_weights else rec.weights[pos]
            if rec.const_delay >= 0:
                d = torch.full_like(src, rec.const_delay)
            else:
                d = rec.delays[pos]
            _deliver(self.bufs, t, csc.tgt[keep], w, d, self.inh_sign)
        else:
            self.counters[C_EVENT_STEPS] += 1
            if rec.n_rows > 0:
                tg, w, d, owner = _rows(spikes, rec)
                if self.rec_stp is not None:  # each spike's row scaled by its STP efficacy
                    s = spikes.cpu().numpy()
                    f = ref._scales(s, np.ones(s.size, np.int64), t, self.dt, self.rec_stp)
                    f = torch.as_tensor(f, device=w.device)[owner]
                    w = torch.where(f == 1, w, w * f)
                _deliver(self.bufs, t, tg, w, d, self.inh_sign)
        if self.proc.ip.shape[0]:
            self._procedural(spikes.cpu().numpy(), 0, None)
        if self.rec_plastic is not None:
            self.pre_events(spikes, torch.ones_like(spikes), t, rec, self.rec_plastic)

    def _procedural(self, sources, is_input, scale):
        """Procedural rows of ``sources`` (host-generated, in the reference's order: source
        by source, projection by projection), scaled per source by ``scale``."""
        proc, parts = self.proc, []
        for p in range(proc.ip.shape[0]):
            lo, hi = proc.ip[p, 1], proc.ip[p, 2]
            mine = np.flatnonzero((proc.is_input[p] == is_input) & (sources >= lo) & (sources < hi))
            if mine.size == 0:
                continue
            counts, tg, wt, dl = build_rows(
                proc.ip[p],
                proc.fp[p],
                proc.keys[p],
                sources[mine].astype(np.int64),
                proc.targets.shape[0],
                False,
            )
            parts.append((np.repeat(mine, counts), np.full(tg.size, p), tg, wt, dl))
        if not parts:
            return
        which, proj, tg, wt, dl = (np.concatenate(x) for x in zip(*parts, strict=True))
        order = np.lexsort((proj, which))  # stable: source, then projection, then row order
        w = wt[order]
        if scale is not None:
            f = scale[which[order]]
            w = np.where(f == 1, w, w * f)
        dev = self.dev.device
        _deliver(
            self.bufs,
            self._t,
            torch.as_tensor(tg[order].astype(np.int64), device=dev),
            torch.as_tensor(w, device=dev),
            torch.as_tensor(dl[order].astype(np.int64), device=dev),
            self.inh_sign,
        )

    # -- steps 6-7
    def external(self, k, t):
        inp = self.inputs
        lo, hi = int(inp.ptr[k]), int(inp.ptr[k + 1])
        self.push_inputs(self.in_idx[lo:hi], self.in_cnt[lo:hi], t)
        for first, key, lam, elam, idx in self.poisson:
            u = _uniform(int(ref.row_key(key, t)), idx)
            fire = torch.nonzero(u > elam).flatten()
            if fire.numel():
                counts = _poisson_counts(lam[fire], elam[fire], u[fire])
                self.push_inputs(fire + first, counts, t)

    def push_inputs(self, ins, counts, t):
        if ins.numel() == 0:
            return
        if self.ext_stp is not None:
            scale = torch.as_tensor(
                ref._scales(ins.cpu().numpy(), counts.cpu().numpy(), t, self.dt, self.ext_stp),
                device=ins.device,
            )
        else:
            scale = counts.to(torch.float64)
        learn = self.ext_plastic is not None
        if learn and torch.unique(ins).numel() < ins.numel():  # a source twice: in order
            for j in range(ins.numel()):
                self.transmit(ins[j : j + 1], scale[j : j + 1], t)
                self.pre_events(ins[j : j + 1], counts[j : j + 1], t, self.ext, self.ext_plastic)
            return
        self.transmit(ins, scale, t)
        if learn:  # each event after its own transmission; rows of distinct sources
            self.pre_events(ins, counts, t, self.ext, self.ext_plastic)

    def transmit(self, ins, scale, t):
        ext = self.ext
        if ext.n_rows > 0:
            tg, w, d, owner = _rows(ins, ext)
            f = scale[owner]
            _deliver(self.bufs, t, tg, torch.where(f == 1, w, w * f), d, self.inh_sign)
        if self.proc.ip.shape[0]:
            self._procedural(ins.cpu().numpy(), 1, scale.cpu().numpy())

    # -- step 8 and the depression of steps 5-7
    @staticmethod
    def _decay(tr, last, idx, t, tau1, tau2, dt):
        """Decay the traces of neurons ``idx`` to step ``t`` (each at most once per step)."""
        idx = torch.unique(idx)
        k = t - last[idx]
        sel = idx[k > 0]
        kk = k[k > 0]
        if sel.numel():
            kk = kk.to(torch.float64)  # as numpy: int64 steps times a float are float64
            tr[0, sel] = tr[0, sel] * _F["trace_decay"](kk, dt, tau1)
            tr[1, sel] = tr[1, sel] * _F["trace_decay"](kk, dt, tau2)
            last[sel] = t

    @staticmethod
    def _bump(tr, idx, nearest):
        if nearest:
            tr[0, idx] = 1.0
            tr[1, idx] = 1.0
        else:
            tr[0, idx] += 1.0
            tr[1, idx] += 1.0

    def pre_events(self, sources, counts, t, syn, side):
        """Depression on the rows of distinct ``sources``, ``counts[i]`` events each, then
        their traces (:func:`.reference.plastic_pre` for all of them at once)."""
        rule, dt = side.rule, self.dt
        self._decay(side.pre, side.pre_last, sources, t, rule[TAU_R1], rule[TAU_R2], dt)
        q, owner = _segments(syn.indptr, sources)
        if side.mask.numel():
            keep = side.mask[q] != 0
            q, owner = q[keep], owner[keep]
        j = syn.indices[q]
        nearest = rule[NEAREST] == 1.0
        for r in range(int(counts.max())):
            live = counts[owner] > r
            qs, js, srcs = q[live], j[live], sources[owner[live]]
            r2 = side.pre[1, srcs]
            self._decay(side.post, side.post_last, js, t, rule[TAU_O1], rule[TAU_O2], dt)
            w = syn.weights[qs].to(torch.float64)
            new = _F["clip_weight"](w - _F["depression"](rule, w, side.post[0, js], r2), rule)
            syn.weights[qs] = new.to(syn.weights.dtype)
            self._bump(side.pre, sources[counts > r], nearest)

    def post_spikes(self, spikes, t, csc, weights, side):
        """Potentiation on the incoming synapses of ``spikes``, then their traces
        (:func:`.reference.plastic_post` for all of them at once)."""
        rule, dt = side.rule, self.dt
        self._decay(side.post, side.post_last, spikes, t, rule[TAU_O1], rule[TAU_O2], dt)
        o2 = side.post[1, spikes]
        at, owner = _segments(csc.ptr, spikes)
        pos, src = csc.pos[at], csc.src[at]
        if side.mask.numel():
            keep = side.mask[pos] != 0
            pos, src, owner = pos[keep], src[keep], owner[keep]
        self._decay(side.pre, side.pre_last, src, t, rule[TAU_R1], rule[TAU_R2], dt)
        w = weights[pos].to(torch.float64)
        new = _F["clip_weight"](w + _F["potentiation"](rule, w, side.pre[0, src], o2[owner]), rule)
        weights[pos] = new.to(weights.dtype)
        self._bump(side.post, spikes, rule[NEAREST] == 1.0)

    def potentiate(self, t, spikes):
        if spikes.numel() == 0:
            return
        if self.rec_plastic is not None:
            self.post_spikes(spikes, t, self.rec_csc, self.rec.weights, self.rec_plastic)
        if self.ext_plastic is not None:
            self.post_spikes(spikes, t, self.ext_csc, self.ext.weights, self.ext_plastic)

    def run(self, n_steps, t0):
        cap = self.spk_t.shape[0]
        c = self.counters
        for k in range(n_steps):
            if cap - c[C_WRITTEN] < c[C_MONITORED]:
                return k, STATUS_DRAIN
            t = self._t = t0 + k
            spikes, fired = self.neurons(t)
            self.record(k, t, spikes)
            if spikes.numel():
                self.propagate(t, spikes, fired)
            self.external(k, t)
            self.potentiate(t, spikes)
        return n_steps, STATUS_DONE


def simulate(n_steps, t0, net, state, inputs, mon, counters, device="cpu"):
    """Advance ``n_steps`` steps from step ``t0`` on ``device`` (a ``torch.device`` or its
    name): :func:`.reference.simulate`'s arguments, effects and result."""
    device = torch.device(device)
    step = _Step(net, state, inputs, mon, counters, device)
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(counters[C_THREADS])))
    try:
        with torch.no_grad():
            return step.run(n_steps, t0)
    finally:
        torch.set_num_threads(before)
        step.dev.sync()
