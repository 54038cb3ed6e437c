r"""Reference kernels in numpy: the readable spec of the simulator. Same names as numba_cpu.

One time step ``t`` (``dt``) of :func:`simulate`, for every neuron ``i``:

1. **Arrivals.** Inputs scheduled for step ``t`` are taken from the ring buffers
   ``buf_e[t % D]`` and ``buf_i[t % D]`` (and those slots are cleared).
2. **Integration** from ``t`` to ``t + dt`` unless the neuron is refractory (then ``v`` is
   held at ``v_reset`` and the refractory counter counts down; synapses still decay):

   * CUBA (exact: the equations are linear with constant coefficients between events)::

       tau_m dv/dt = v_inf - v + g_e + g_i,   tau_e dg_e/dt = -g_e,   tau_i dg_i/dt = -g_i
       v(t+dt) = v_inf + (v - v_inf) e^{-dt/tau_m} + g_e c_e + g_i c_i
       c_x = tau_x / (tau_x - tau_m) (e^{-dt/tau_x} - e^{-dt/tau_m})   (dt/tau_m e^{-dt/tau_m} if equal)

     with ``v_inf = V_rest + R I_ext``; ``g`` in volts (the current times R).
   * COBA (exponential Euler: exact while the conductances are frozen over the step)::

       tau_m dv/dt = (v_inf - v) + g_e (E_e - v) + g_i (E_i - v)
       g = 1 + g_e + g_i,  v_s = (v_inf + g_e E_e + g_i E_i) / g,  v <- v_s + (v - v_s) e^{-g dt/tau_m}

     with ``g`` dimensionless (relative to the leak conductance). The conductances decay exactly.
   * delta synapses: ``v <- v_inf + (v + a_e + a_i - v_inf) e^{-dt/tau_m}`` (jumps of v).
3. **Threshold and reset.** ``v > v_th`` emits a spike at step ``t``; ``v <- v_reset`` and the
   neuron stays refractory for ``t_ref`` (``v`` held). With a lockout ``t_lock > t_ref``
   (``LIFParams``) ``v`` integrates again after ``t_ref`` but cannot fire before ``t_lock``.
4. **Monitors** record spikes, the spike count and sampled state.
5. **Propagation.** Each spike of source ``s`` adds weight ``w`` to slot ``(t + d) % D`` of its
   targets (``d >= 1`` steps): excitatory (``w >= 0``) to ``buf_e``, inhibitory to ``buf_i``
   (times ``inh_sign``: +1 when ``g_i`` is a signed current, -1 when it is a conductance).
   Event-driven *push* walks the CSR rows of the spiking sources (cost ~ spikes x fan-out);
   dense *pull* walks every target's incoming synapses (CSC, cost ~ synapses) and is used
   when more than ``dense_limit`` neurons spike in a step. Both add in the same order, so
   they give bit-identical results.
6. **External inputs** of step ``t`` are propagated the same way; an input event carries a
   spike count ``m`` (a Poisson source may fire several times in a step) and delivers ``m w``.
7. **Poisson groups**, in the order they were added: source ``i`` of group ``g`` emits
   ``m = PoissonInverse(lam_i, u)`` spikes with ``u = uniform(row_key(key_g, t), i)`` from the
   counter-based stream of :mod:`.rowgen`, so the draws depend on (seed, group, step,
   source) only, not on chunking or backend.
   With short-term plasticity (:mod:`neurofabric.snn.stp`) a source's spike is delivered
   with its release ``r`` (or ``1 + k r``) as that factor.
   Threshold homeostasis (:mod:`neurofabric.snn.homeostasis`) acts right after step 3.
8. **Plasticity** (:mod:`neurofabric.snn.plasticity`): each presynaptic event of the step
   (steps 5-7) is transmitted with the current weight and then depresses its row; after all
   of them, each neuron that spiked in step 3 potentiates its incoming synapses.
"""

import numpy as np

from neurofabric.snn.kernels.formulas import (  # noqa: F401  (G_FLUSH re-exported)
    G_FLUSH,
    bump_trace,
    clip_weight,
    coba_v,
    cuba_v,
    delta_v,
    depression,
    flushed,
    potentiation,
    stp_scale,
    trace_decay,
)
from neurofabric.snn.kernels.layout import (
    C_DENSE_STEPS,
    C_E,
    C_EVENT_STEPS,
    C_I,
    C_MONITORED,
    C_RECORD_EVERY,
    C_RECORDED,
    C_SPIKES,
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
from neurofabric.snn.kernels.rowgen import (  # noqa: F401  (re-exported spec functions)
    M32,
    gen_fixed_total,
    gen_in_degree_sources,
    gen_row,
    gen_targets,
    poisson_count,
    row_key,
)

BACKEND = "reference"


def threads(n_neurons):
    """Threads for the neuron update: the reference runs on one."""
    return 1


def build_rows(ip, fp, key, sources, max_row, counts_only):
    """Generate the rows of ``sources``: (counts, targets, weights, delays) concatenated."""
    st = np.empty(max_row, np.int64)
    sw = np.empty(max_row, np.float64)
    sd = np.empty(max_row, np.int64)
    counts = np.zeros(len(sources), np.int64)
    tgs, wts, dls = [], [], []
    for a, s in enumerate(sources):
        c = gen_row(ip, fp, int(key), int(s), st, sw, sd)
        counts[a] = c
        if not counts_only:
            tgs.append(st[:c].astype(np.int32))
            wts.append(sw[:c].astype(np.float32))
            dls.append(sd[:c].astype(np.int32))
    if counts_only or not tgs:
        return counts, np.empty(0, np.int32), np.empty(0, np.float32), np.empty(0, np.int32)
    return counts, np.concatenate(tgs), np.concatenate(wts), np.concatenate(dls)


def build_in_degree(ip, fp, key, targets, k):
    """Fixed in-degree: (sources, targets, weights, delays), ``k`` synapses per target."""
    ss = np.empty(max(k, 1), np.int64)
    sw = np.empty(max(k, 1), np.float64)
    sd = np.empty(max(k, 1), np.int64)
    out = ([], [], [], [])
    for t in targets:
        c = gen_in_degree_sources(ip, fp, int(key), int(t), ss, sw, sd)
        out[0].append(ss[:c].astype(np.int32))
        out[1].append(np.full(c, t, np.int32))
        out[2].append(sw[:c].astype(np.float32))
        out[3].append(sd[:c].astype(np.int32))
    if not out[0]:
        return (
            np.empty(0, np.int32),
            np.empty(0, np.int32),
            np.empty(0, np.float32),
            np.empty(0, np.int32),
        )
    return tuple(np.concatenate(x) for x in out)


def build_fixed_total(ip, fp, key, n):
    """Fixed total number: (sources, targets, weights, delays) of the ``n`` synapses."""
    ss, st = np.empty(n, np.int64), np.empty(n, np.int64)
    sw, sd = np.empty(n, np.float64), np.empty(n, np.int64)
    gen_fixed_total(ip, fp, int(key), 0, n, ss, st, sw, sd)
    return ss.astype(np.int32), st.astype(np.int32), sw.astype(np.float32), sd.astype(np.int32)


def row_order(src, tgt, s0, n_s):
    """The permutation that orders synapses by source, then target, keeping the draw order of
    equal pairs."""
    return np.lexsort((tgt, src))


def transpose(indptr, indices, n_targets, need_pos):
    """CSC of a CSR: (pointers, sources, CSR positions), sources ascending within a target."""
    order = np.argsort(indices, kind="stable")
    c_ptr = np.zeros(n_targets + 1, np.int64)
    np.cumsum(np.bincount(indices, minlength=n_targets), out=c_ptr[1:])
    sources = np.repeat(np.arange(len(indptr) - 1, dtype=np.int32), np.diff(indptr))
    c_pos = order.astype(np.int32) if need_pos else np.empty(0, np.int32)
    return c_ptr, sources[order], c_pos


def normalize_rows(indptr, indices, weights, mask, lo, hi, total, n_targets):
    """Scale the (masked) synapses of rows [lo, hi) so each target's sum is ``total``
    (targets without such synapses are left alone); the sums run in storage order."""
    sel = np.arange(indptr[lo], indptr[hi])
    if mask.size:
        sel = sel[mask[sel] == 1]
    targets = indices[sel]
    sums = np.bincount(targets, weights=weights[sel].astype(np.float64), minlength=n_targets)
    factor = np.divide(total, sums, out=np.ones(n_targets), where=sums > 0)
    weights[sel] = (weights[sel] * factor[targets]).astype(np.float32)


def _rows(sources, syn):
    """Concatenated (targets, weights, delays) of the CSR rows of ``sources``, in order."""
    starts = syn.indptr[sources]
    counts = syn.indptr[sources + 1] - starts
    total = int(counts.sum())
    pos = np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(total)
    if syn.flags[ROW_WEIGHTS] == 1:
        w = np.repeat(syn.weights[sources], counts)
    else:
        w = syn.weights[pos]
    if syn.flags[CONST_DELAY] >= 0:
        d = np.full(total, syn.flags[CONST_DELAY])
    else:
        d = syn.delays[pos].astype(np.int64)
    return syn.indices[pos], w, d


def _procedural_rows(sources, is_input, proc):
    tg, wt, dl = [], [], []
    for s in sources:
        for p in range(proc.ip.shape[0]):
            if proc.is_input[p] != is_input or s < proc.ip[p, 1] or s >= proc.ip[p, 2]:
                continue
            c = gen_row(
                proc.ip[p],
                proc.fp[p],
                int(proc.keys[p]),
                int(s),
                proc.targets,
                proc.weights,
                proc.delays,
            )
            tg.append(proc.targets[:c].copy())
            wt.append(proc.weights[:c].astype(np.float32))
            dl.append(proc.delays[:c].copy())
    if not tg:
        return np.empty(0, np.int64), np.empty(0, np.float32), np.empty(0, np.int64)
    return np.concatenate(tg), np.concatenate(wt), np.concatenate(dl)


def uniform_array(key, i):
    """:func:`.rowgen.uniform` for an int64 array of draw indices (int64 wraps keep the low
    32 bits exact, as numba's do)."""
    x = (key + 2654435769 * (i + 1)) & M32
    return (_hash32_array(_hash32_array(x) ^ key) + 0.5) / 4294967296.0


def _hash32_array(x):
    x = x & M32
    x = ((x ^ (x >> 16)) * 73244475) & M32
    x = ((x ^ (x >> 16)) * 73244475) & M32
    return x ^ (x >> 16)


def poisson_counts(lam, elam, u):
    """:func:`.rowgen.poisson_count` for arrays: inversion, all sources advanced together."""
    k = np.zeros(lam.shape[0], np.int64)
    p = elam.copy()
    c = elam.copy()
    active = np.flatnonzero(u > c)
    while active.size:
        k[active] += 1
        p[active] = p[active] * lam[active] / k[active]
        c[active] = c[active] + p[active]
        active = active[(u[active] > c[active]) & (p[active] != 0.0) & (k[active] < 100000)]
    return k.astype(np.int32)


def _decay_traces(tr, last, idx, t, tau1, tau2, dt):
    """Decay the traces of neurons ``idx`` to step ``t`` (each at most once per step)."""
    k = t - last[idx]
    sel = idx[k > 0]
    kk = k[k > 0]
    if sel.size:
        tr[0, sel] = tr[0, sel] * trace_decay(kk, dt, tau1)
        tr[1, sel] = tr[1, sel] * trace_decay(kk, dt, tau2)
        last[sel] = t


def plastic_pre(s, m, t, dt, syn, side):
    """Depression on the row of source ``s`` of the synapses ``syn`` for ``m`` coincident
    spikes (see :mod:`neurofabric.snn.plasticity` for the rules), then the source's traces;
    ``side`` is the group's :class:`.layout.Plastic`."""
    rule = side.rule
    _decay_traces(side.pre, side.pre_last, np.array([s]), t, rule[TAU_R1], rule[TAU_R2], dt)
    q = np.arange(syn.indptr[s], syn.indptr[s + 1])
    if side.mask.size:
        q = q[side.mask[q] != 0]
    j = syn.indices[q]
    for _ in range(m):
        r2 = side.pre[1, s]
        _decay_traces(side.post, side.post_last, j, t, rule[TAU_O1], rule[TAU_O2], dt)
        w = syn.weights[q].astype(np.float64)
        syn.weights[q] = clip_weight(w - depression(rule, w, side.post[0, j], r2), rule)
        bump_trace(side.pre, s, rule[NEAREST] == 1.0)


def plastic_post(j, t, dt, csc, weights, side):
    """Potentiation on the incoming synapses of neuron ``j`` (``csc``: the group's
    :class:`.layout.Incoming`, ``weights`` its CSR weights), then its traces."""
    rule = side.rule
    _decay_traces(side.post, side.post_last, np.array([j]), t, rule[TAU_O1], rule[TAU_O2], dt)
    o2 = side.post[1, j]
    pos = csc.pos[csc.ptr[j] : csc.ptr[j + 1]]
    src = csc.src[csc.ptr[j] : csc.ptr[j + 1]]
    if side.mask.size:
        keep = side.mask[pos] != 0
        pos, src = pos[keep], src[keep]
    _decay_traces(side.pre, side.pre_last, src, t, rule[TAU_R1], rule[TAU_R2], dt)
    w = weights[pos].astype(np.float64)
    weights[pos] = clip_weight(w + potentiation(rule, w, side.pre[0, src], o2), rule)
    bump_trace(side.post, j, rule[NEAREST] == 1.0)


def _scales(sources, counts, t, dt, stp):
    """Per-event efficacy factors: the spike counts, or the STP release of each event."""
    if stp is None:
        return np.asarray(counts, dtype=np.float64)
    return np.array(
        [stp_scale(int(s), int(m), t, dt, stp) for s, m in zip(sources, counts, strict=True)],
        dtype=np.float64,
    )


def _push_inputs(ins, counts, t, net, bufs, stp, learn):
    """Propagate input events (global source indices, spike counts): each delivers ``f w``,
    ``f`` its spike count or its STP efficacy. With plasticity on the input synapses
    (``learn``), each event is transmitted and then learns, in order."""
    if not ins.size:
        return
    dt = net.neurons.syn[DT]
    scale = _scales(ins, counts, t, dt, stp)
    if learn:
        for s, m, f in zip(ins, counts, scale, strict=True):
            _transmit_inputs(np.array([s]), np.array([f]), t, net, bufs)
            plastic_pre(int(s), int(m), t, dt, net.ext, net.ext_plastic)
    else:
        _transmit_inputs(ins, scale, t, net, bufs)


def _transmit_inputs(ins, scale, t, net, bufs):
    ext = net.ext
    if ext.indptr.shape[0] > 1:
        tg, w, d = _rows(ins, ext)
        f = np.repeat(scale, np.diff(ext.indptr)[ins])
        _deliver(bufs, t, tg, np.where(f == 1, w, w * f), d, net.neurons.syn[INH_SIGN])
    if net.procedural.ip.shape[0]:
        for s, f in zip(ins, scale, strict=True):
            tg, w, d = _procedural_rows(np.array([s]), 1, net.procedural)
            _deliver(bufs, t, tg, w if f == 1 else w * f, d, net.neurons.syn[INH_SIGN])


def _deliver(bufs, t, tg, w, d, inh_sign):
    """Add weights ``w`` to slots ``(t + d) % D`` of targets ``tg``: excitatory ones to
    ``buf_e``, inhibitory ones (times ``inh_sign``) to ``buf_i``."""
    buf_e, buf_i = bufs
    slots = (t + d) % buf_e.shape[0]
    exc = w >= 0
    # np.add.at adds element by element in array order: the same order as the loops
    np.add.at(buf_e, (slots[exc], tg[exc]), w[exc])
    np.add.at(buf_i, (slots[~exc], tg[~exc]), w[~exc] * buf_i.dtype.type(inh_sign))


def _unpack_ref(ref_steps):
    """(refractory steps, lockout steps) from the packed ``ref_steps`` (see LIFParams)."""
    hold = ref_steps & 65535
    return hold, np.maximum(ref_steps >> 16, hold)


def _integrate(model, state, a_e, a_i, neurons):
    """Step 2 for every neuron: ``v`` of the active ones, then the synaptic variables."""
    v, ge, gi, refrac = state.v, state.ge, state.gi, state.refrac
    p, syn = neurons.params, neurons.syn
    hold, lock = _unpack_ref(neurons.ref_steps)
    active = refrac <= lock - hold
    refrac[refrac > 0] -= 1
    if model == MODEL_DELTA:
        new_v = delta_v(v, a_e, a_i, p[V_INF], p[DECAY_M])
        v[active] = new_v[active]
        return
    x_e = ge + a_e
    x_i = gi + a_i
    if model == MODEL_CUBA:
        new_v = cuba_v(v, x_e, x_i, p[V_INF], p[DECAY_M], p[C_E], p[C_I])
    else:
        new_v = coba_v(v, x_e, x_i, p[V_INF], p[DT_TAU_M], syn[E_EXC], syn[E_INH])
    v[active] = new_v[active]
    ge[:] = flushed(x_e * syn[DECAY_E])
    gi[:] = flushed(x_i * syn[DECAY_I])


def _neuron_step(t, net, state):
    """Steps 1-3 (and homeostasis): arrivals, integration, threshold and reset. Returns the
    indices of the neurons that spiked and the boolean mask of them."""
    buf_e, buf_i = state.buf_e, state.buf_i
    slot = t % buf_e.shape[0]
    a_e = buf_e[slot].copy()
    a_i = buf_i[slot].copy()
    buf_e[slot] = 0
    buf_i[slot] = 0
    can_fire = state.refrac <= 0
    p = net.neurons.params
    _integrate(net.model, state, a_e, a_i, net.neurons)
    fired = can_fire & (state.v > p[V_TH])
    spikes = np.flatnonzero(fired)
    state.v[spikes] = p[V_RESET][spikes]
    state.refrac[spikes] = _unpack_ref(net.neurons.ref_steps)[1][spikes]
    h, theta = net.homeostasis
    if h.size and h[H_FROZEN] == 0.0:  # threshold homeostasis (after the test)
        lo, hi = int(h[H_LO]), int(h[H_HI])
        th = np.maximum(theta[lo:hi] * h[H_DECAY] - h[H_DRIFT], h[H_THETA_MIN])
        p[V_TH][lo:hi] += th - theta[lo:hi]
        theta[lo:hi] = th
        hit = spikes[(spikes >= lo) & (spikes < hi)]
        p[V_TH][hit] += h[H_STEP]
        theta[hit] += h[H_STEP]
    return spikes, fired


def _record(k, t, spikes, state, mon, counters):
    """Step 4: the step's spike count, the monitored spikes, the sampled state."""
    mon.rate[k] = spikes.size
    counters[C_SPIKES] += spikes.size
    shown = spikes[mon.spk_mask[spikes]]
    w0 = counters[C_WRITTEN]
    mon.spk_t[w0 : w0 + shown.size] = t
    mon.spk_i[w0 : w0 + shown.size] = shown
    counters[C_WRITTEN] += shown.size
    if counters[C_RECORD_EVERY] > 0 and t % counters[C_RECORD_EVERY] == 0:
        r = counters[C_RECORDED]
        mon.rec_v[r] = state.v[mon.rec_idx]
        mon.rec_ge[r] = state.ge[mon.rec_idx]
        mon.rec_gi[r] = state.gi[mon.rec_idx]
        counters[C_RECORDED] += 1


def _propagate(t, spikes, fired, net, bufs, counters):
    """Step 5: the spikes' recurrent synapses (push, or dense pull above ``dense_limit``),
    procedural rows, then depression on the rows that spiked."""
    rec, csc, inh_sign = net.rec, net.rec_csc, net.neurons.syn[INH_SIGN]
    dt = net.neurons.syn[DT]
    if rec.indptr.shape[0] > 1 and 0 <= net.dense_limit < spikes.size:
        counters[C_DENSE_STEPS] += 1
        # dense pull: every incoming synapse, in target order, kept where the source fired
        tgt = np.repeat(np.arange(csc.ptr.shape[0] - 1), np.diff(csc.ptr))
        keep = fired[csc.src]
        src = csc.src[keep]
        pos = csc.pos[keep] if csc.pos.size else None  # absent when rows are uniform
        w = rec.weights[src] if rec.flags[ROW_WEIGHTS] == 1 else rec.weights[pos]
        if rec.flags[CONST_DELAY] >= 0:
            d = np.full(src.size, rec.flags[CONST_DELAY])
        else:
            d = rec.delays[pos].astype(np.int64)
        _deliver(bufs, t, tgt[keep], w, d, inh_sign)
    else:
        counters[C_EVENT_STEPS] += 1
        if rec.indptr.shape[0] > 1:
            tg, w, d = _rows(spikes, rec)
            if net.rec_stp.prm.size:  # each spike's row scaled by its STP efficacy
                once = np.ones(spikes.size, np.int64)
                scales = _scales(spikes, once, t, dt, net.rec_stp)
                f = np.repeat(scales, np.diff(rec.indptr)[spikes])
                w = np.where(f == 1, w, w * f)
            _deliver(bufs, t, tg, w, d, inh_sign)
    if net.procedural.ip.shape[0]:
        _deliver(bufs, t, *_procedural_rows(spikes, 0, net.procedural), inh_sign)
    if net.rec_plastic.rule.size:  # depression on the rows of this step's spikes
        for s in spikes:
            plastic_pre(int(s), 1, t, dt, rec, net.rec_plastic)


def _external(k, t, net, inputs, bufs):
    """Steps 6-7: the spike-array inputs of the step, then the Poisson groups."""
    stp = net.ext_stp if net.ext_stp.prm.size else None
    learn = net.ext_plastic.rule.size > 0
    sl = slice(inputs.ptr[k], inputs.ptr[k + 1])
    _push_inputs(inputs.idx[sl], inputs.cnt[sl], t, net, bufs, stp, learn)
    pois = net.poisson
    for g in range(pois.first.shape[0]):
        lo = pois.start[g]
        lam, elam = pois.lam[lo : lo + pois.size[g]], pois.elam[lo : lo + pois.size[g]]
        u = uniform_array(row_key(int(pois.keys[g]), t), np.arange(pois.size[g], dtype=np.int64))
        fire = np.flatnonzero(u > elam)
        counts = poisson_counts(lam[fire], elam[fire], u[fire])
        _push_inputs(fire + pois.first[g], counts, t, net, bufs, stp, learn)


def _potentiate(t, spikes, net):
    """Step 8: potentiation on the incoming synapses of this step's spikes."""
    dt = net.neurons.syn[DT]
    for j in spikes:
        if net.rec_plastic.rule.size:
            plastic_post(int(j), t, dt, net.rec_csc, net.rec.weights, net.rec_plastic)
        if net.ext_plastic.rule.size:
            plastic_post(int(j), t, dt, net.ext_csc, net.ext.weights, net.ext_plastic)


def simulate(n_steps, t0, net, state, inputs, mon, counters):
    """Advance ``n_steps`` steps from step ``t0``, mutating ``state``, ``mon`` and ``counters``
    (and, with plasticity or STP, the weights, traces and STP state in ``net``). The
    arguments are the named tuples of :mod:`.layout`; ``counters`` is indexed by its ``C_*``
    constants. Returns ``(steps done, status)``; ``STATUS_DRAIN`` means the spike buffer
    must be drained before going on.
    """
    bufs = (state.buf_e, state.buf_i)
    cap = mon.spk_t.shape[0]
    for k in range(n_steps):
        if cap - counters[C_WRITTEN] < counters[C_MONITORED]:
            return k, STATUS_DRAIN
        t = t0 + k
        spikes, fired = _neuron_step(t, net, state)
        _record(k, t, spikes, state, mon, counters)
        if spikes.size:
            _propagate(t, spikes, fired, net, bufs, counters)
        _external(k, t, net, inputs, bufs)
        _potentiate(t, spikes, net)
    return n_steps, STATUS_DONE


def push_events(steps, sources, syn, buf_e, buf_i, inh_sign):
    """Deliver spikes that were not propagated when they happened (the spikes of other MPI
    ranks, exchanged once per minimum-delay window): spike ``k`` of source ``sources[k]`` at
    step ``steps[k]`` adds its CSR row ``syn`` to slots ``(steps[k] + d) % D``, spike after
    spike in the given order (``_deliver``'s rule; the caller orders them by step, then
    source)."""
    for t in np.unique(steps):
        at = steps == t
        tg, w, d = _rows(sources[at], syn)
        _deliver((buf_e, buf_i), int(t), tg, w, d, inh_sign)
