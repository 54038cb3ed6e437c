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

import math

import numpy as np

from neurofabric.snn.kernels.rowgen import (  # noqa: F401  (re-exported spec functions)
    M32,
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


def transpose(indptr, indices, n_targets, need_pos):
    """CSC of a CSR: (pointers, sources, CSR positions), sources ascending within a target."""
    order = np.argsort(indices, kind="stable")
    c_ptr = np.zeros(n_targets + 1, np.int64)
    np.cumsum(np.bincount(indices, minlength=n_targets), out=c_ptr[1:])
    sources = np.repeat(np.arange(len(indptr) - 1, dtype=np.int32), np.diff(indptr))
    c_pos = order.astype(np.int32) if need_pos else np.empty(0, np.int32)
    return c_ptr, sources[order], c_pos


def _rows(sources, indptr, indices, weights, delays, flags):
    """Concatenated (targets, weights, delays) of the CSR rows of ``sources``, in order."""
    starts = indptr[sources]
    counts = indptr[sources + 1] - starts
    total = int(counts.sum())
    pos = np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(total)
    w = np.repeat(weights[sources], counts) if flags[0] == 1 else weights[pos]
    d = np.full(total, flags[1]) if flags[1] >= 0 else delays[pos].astype(np.int64)
    return indices[pos], w, d


def _procedural_rows(sources, is_input, proc):
    p_ip, p_fp, p_key, p_input, st, sw, sd = proc
    tg, wt, dl = [], [], []
    for s in sources:
        for p in range(p_ip.shape[0]):
            if p_input[p] != is_input or s < p_ip[p, 1] or s >= p_ip[p, 2]:
                continue
            c = gen_row(p_ip[p], p_fp[p], int(p_key[p]), int(s), st, sw, sd)
            tg.append(st[:c].copy())
            wt.append(sw[:c].astype(np.float32))
            dl.append(sd[:c].copy())
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
        tr[0, sel] = tr[0, sel] * np.exp(-(kk * dt) / tau1)
        tr[1, sel] = tr[1, sel] * np.exp(-(kk * dt) / tau2)
        last[sel] = t


def _bump(tr, i, nearest):
    if nearest:
        tr[:, i] = 1.0
    else:
        tr[:, i] += 1.0


def _soft(x, mu):
    """(distance to a bound)^mu, 0 where the distance is not positive; mu = 0 gives 1."""
    if mu == 0.0:
        return np.ones_like(x)
    pos = np.maximum(x, 0.0)
    return np.where(x > 0.0, pos if mu == 1.0 else pos**mu, 0.0)


def plastic_pre(s, m, t, dt, indptr, indices, weights, mask, rule, pre, pre_last, post, post_last):
    """Depression on the row of source ``s`` for ``m`` coincident spikes (see
    :mod:`neurofabric.snn.plasticity` for the rules), then the source's traces."""
    _decay_traces(pre, pre_last, np.array([s]), t, rule[11], rule[12], dt)
    q = np.arange(indptr[s], indptr[s + 1])
    if mask.size:
        q = q[mask[q] != 0]
    j = indices[q]
    for _ in range(m):
        r2 = pre[1, s]
        _decay_traces(post, post_last, j, t, rule[13], rule[14], dt)
        w = weights[q].astype(np.float64)
        if rule[0] == 0.0:
            dw = post[0, j] * (rule[3] + rule[4] * r2) * _soft(w - rule[5], rule[8])
        else:
            dw = rule[3] * post[0, j]
        weights[q] = np.minimum(np.maximum(w - dw, rule[5]), rule[6])
        _bump(pre, s, rule[9] == 1.0)


def plastic_post(
    j, t, dt, c_ptr, c_src, c_pos, weights, mask, rule, pre, pre_last, post, post_last
):
    """Potentiation on the incoming synapses of neuron ``j``, then its traces."""
    _decay_traces(post, post_last, np.array([j]), t, rule[13], rule[14], dt)
    o2 = post[1, j]
    pos = c_pos[c_ptr[j] : c_ptr[j + 1]]
    src = c_src[c_ptr[j] : c_ptr[j + 1]]
    if mask.size:
        keep = mask[pos] != 0
        pos, src = pos[keep], src[keep]
    _decay_traces(pre, pre_last, src, t, rule[11], rule[12], dt)
    w = weights[pos].astype(np.float64)
    if rule[0] == 0.0:
        dw = pre[0, src] * (rule[1] + rule[2] * o2) * _soft(rule[6] - w, rule[7])
    else:
        dw = rule[1] * (pre[0, src] - rule[10]) * _soft(rule[6] - w, rule[7])
    weights[pos] = np.minimum(np.maximum(w + dw, rule[5]), rule[6])
    _bump(post, j, rule[9] == 1.0)


def stp_scale(s, m, t, dt, prm, u, x, last):
    """Efficacy factor of ``m`` coincident spikes of source ``s`` (see
    :mod:`neurofabric.snn.stp`); updates the source's u, x and last spike step."""
    total = 0.0
    for _ in range(m):
        if last[s] >= 0:
            elapsed = (t - last[s]) * dt
            u[s] = u[s] * math.exp(-elapsed / prm[2]) if prm[2] > 0.0 else 0.0
            x[s] = 1.0 - (1.0 - x[s]) * math.exp(-elapsed / prm[1]) if prm[1] > 0.0 else 1.0
        last[s] = t
        u[s] = u[s] + prm[0] * (1.0 - u[s])
        r = u[s] * x[s]
        x[s] = x[s] - r
        total += r if prm[3] == 0.0 else 1.0 + prm[4] * r
    return total


def _scales(sources, counts, t, dt, stp_side):
    """Per-event efficacy factors: the spike counts, or the STP release of each event."""
    if stp_side is None:
        return np.asarray(counts, dtype=np.float64)
    return np.array(
        [stp_scale(int(s), int(m), t, dt, *stp_side) for s, m in zip(sources, counts, strict=True)],
        dtype=np.float64,
    )


def _push_inputs(ins, mult, t, ext, proc, buf_e, buf_i, inh_sign, xplast=None, scale=None):
    """Propagate input events (global source indices; ``scale`` the efficacy factor of each,
    by default its spike count); with plasticity on the input synapses, each event is
    transmitted and then learns, in order."""
    if not ins.size:
        return
    scale = np.asarray(mult, dtype=np.float64) if scale is None else scale
    if xplast is not None:
        for s, m, f in zip(ins, mult, scale, strict=True):
            _push_inputs(
                np.array([s]),
                np.array([m]),
                t,
                ext,
                proc,
                buf_e,
                buf_i,
                inh_sign,
                scale=np.array([f]),
            )
            plastic_pre(int(s), int(m), t, *xplast)
        return
    x_indptr, x_indices, x_weights, x_delays, x_flags = ext
    # an event delivers f * w, f its spike count (or its STP efficacy)
    if x_indptr.shape[0] > 1:
        tg, w, d = _rows(ins, x_indptr, x_indices, x_weights, x_delays, x_flags)
        f = np.repeat(scale, np.diff(x_indptr)[ins])
        _deliver(buf_e, buf_i, t, tg, np.where(f == 1, w, w * f), d, inh_sign)
    if proc[0].shape[0]:
        for s, f in zip(ins, scale, strict=True):
            tg, w, d = _procedural_rows(np.array([s]), 1, proc)
            _deliver(buf_e, buf_i, t, tg, w if f == 1 else w * f, d, inh_sign)


def _deliver(buf_e, buf_i, t, tg, w, d, inh_sign):
    slots = (t + d) % buf_e.shape[0]
    exc = w >= 0
    # np.add.at adds element by element in array order: the same order as the loops
    np.add.at(buf_e, (slots[exc], tg[exc]), w[exc])
    np.add.at(buf_i, (slots[~exc], tg[~exc]), w[~exc] * buf_i.dtype.type(inh_sign))


def _unpack_ref(ref_steps):
    """(refractory steps, lockout steps) from the packed ``ref_steps`` (see LIFParams)."""
    hold = ref_steps & 65535
    return hold, np.maximum(ref_steps >> 16, hold)


def _integrate(model, v, ge, gi, refrac, a_e, a_i, nparam, sc, ref_steps):
    de, di, e_exc, e_inh = sc[0], sc[1], sc[2], sc[3]
    hold, lock = _unpack_ref(ref_steps)
    active = refrac <= lock - hold
    refrac[refrac > 0] -= 1
    vi = nparam[0]
    if model == 2:
        new_v = vi + (v + a_e + a_i - vi) * nparam[3]
        v[active] = new_v[active]
        return
    x_e = ge + a_e
    x_i = gi + a_i
    if model == 0:
        new_v = vi + (v - vi) * nparam[3] + x_e * nparam[4] + x_i * nparam[5]
    else:
        gt = 1.0 + x_e + x_i
        vs = (vi + x_e * e_exc + x_i * e_inh) / gt
        new_v = vs + (v - vs) * np.exp(-nparam[6] * gt)
    v[active] = new_v[active]
    ge[:] = _flush(x_e * de)
    gi[:] = _flush(x_i * di)


#: Decayed synaptic variables (conductances relative to the leak, or currents in volts) below
#: this are set to 0. Without it a silent synapse never reaches 0: g e^{-dt/tau} rounds back up
#: to the smallest subnormal double (4.9e-324) and stays there, and arithmetic on subnormals
#: costs tens of times more on x86 (measured: the Diehl & Cook network's idle steps ran 2.6x
#: slower). 1e-30 is far below anything that moves a membrane potential.
G_FLUSH = 1e-30


def _flush(g):
    return np.where(np.abs(g) >= G_FLUSH, g, 0.0 * g)


def simulate(
    n_steps,
    t0,
    model,
    state,
    nparam,
    ref_steps,
    sc,
    rec,
    csc,
    dense_limit,
    ext,
    inputs,
    proc,
    mon,
    counters,
    plast,
    stp,
    homeo,
):
    """Advance ``n_steps`` steps from step ``t0``, mutating ``state``, ``mon`` and ``counters``
    (and, with plasticity, the weights and traces in ``plast``).

    ``counters``: [spikes written, total spikes, event steps, dense steps, state records,
    record interval, monitored neurons, homogeneous parameters and threads (hints for the
    fast kernels)]. Returns ``(steps done, status)``; status 1 means the
    spike buffer must be drained before going on.
    """
    v, ge, gi, refrac, buf_e, buf_i = state
    r_indptr, r_indices, r_weights, r_delays, r_flags = rec
    c_ptr, c_src, c_pos = csc
    x_indptr, x_indices, x_weights, x_delays, x_flags = ext
    in_ptr, in_idx, in_cnt, p_first, p_start, p_n, p_key, p_lam, p_elam = inputs
    spk_mask, spk_t, spk_i, rate, rec_idx, rec_v, rec_ge, rec_gi, _spiked, _flag = mon
    r_rule, r_mask, r_pre, r_pre_last, r_post, r_post_last = plast[:6]
    x_rule, x_mask, x_pre, x_pre_last, x_post, x_post_last, xc_ptr, xc_src, xc_pos = plast[6:]
    dt = sc[5]
    rplast = (
        (dt, r_indptr, r_indices, r_weights, r_mask, r_rule, r_pre, r_pre_last, r_post, r_post_last)
        if r_rule.size
        else None
    )
    xplast = (
        (dt, x_indptr, x_indices, x_weights, x_mask, x_rule, x_pre, x_pre_last, x_post, x_post_last)
        if x_rule.size
        else None
    )
    rstp = stp[:4] if stp[0].size else None
    xstp = stp[4:] if stp[4].size else None
    inh_sign = sc[4]
    dmod = buf_e.shape[0]
    cap = spk_t.shape[0]
    for k in range(n_steps):
        if cap - counters[0] < counters[6]:
            return k, 1
        t = t0 + k
        slot = t % dmod
        a_e = buf_e[slot].copy()
        a_i = buf_i[slot].copy()
        buf_e[slot] = 0
        buf_i[slot] = 0
        can_fire = refrac <= 0
        _integrate(model, v, ge, gi, refrac, a_e, a_i, nparam, sc, ref_steps)
        fired = can_fire & (v > nparam[2])
        spikes = np.flatnonzero(fired)
        v[spikes] = nparam[1][spikes]
        refrac[spikes] = _unpack_ref(ref_steps)[1][spikes]
        h_prm, theta = homeo
        if h_prm.size and h_prm[5] == 0.0:  # threshold homeostasis (after the test)
            lo, hi = int(h_prm[7]), int(h_prm[8])
            th = np.maximum(theta[lo:hi] * h_prm[2] - h_prm[3], h_prm[6])
            nparam[2][lo:hi] += th - theta[lo:hi]
            theta[lo:hi] = th
            hit = spikes[(spikes >= lo) & (spikes < hi)]
            nparam[2][hit] += h_prm[1]
            theta[hit] += h_prm[1]
        rate[k] = spikes.size
        counters[1] += spikes.size
        shown = spikes[spk_mask[spikes]]
        w0 = counters[0]
        spk_t[w0 : w0 + shown.size] = t
        spk_i[w0 : w0 + shown.size] = shown
        counters[0] += shown.size
        if counters[5] > 0 and t % counters[5] == 0:
            r = counters[4]
            rec_v[r] = v[rec_idx]
            rec_ge[r] = ge[rec_idx]
            rec_gi[r] = gi[rec_idx]
            counters[4] += 1
        if spikes.size:
            if r_indptr.shape[0] > 1 and 0 <= dense_limit < spikes.size:
                counters[3] += 1
                # dense pull: every incoming synapse, in target order, kept where the source fired
                tgt = np.repeat(np.arange(c_ptr.shape[0] - 1), np.diff(c_ptr))
                keep = fired[c_src]
                src = c_src[keep]
                pos = c_pos[keep] if c_pos.size else None  # absent when rows are uniform
                w = r_weights[src] if r_flags[0] == 1 else r_weights[pos]
                d = (
                    np.full(src.size, r_flags[1])
                    if r_flags[1] >= 0
                    else r_delays[pos].astype(np.int64)
                )
                _deliver(buf_e, buf_i, t, tgt[keep], w, d, inh_sign)
            else:
                counters[2] += 1
                if r_indptr.shape[0] > 1:
                    tg, w, d = _rows(spikes, r_indptr, r_indices, r_weights, r_delays, r_flags)
                    if rstp is not None:  # each spike's row scaled by its STP efficacy
                        f = np.repeat(
                            _scales(spikes, np.ones(spikes.size, np.int64), t, dt, rstp),
                            np.diff(r_indptr)[spikes],
                        )
                        w = np.where(f == 1, w, w * f)
                    _deliver(buf_e, buf_i, t, tg, w, d, inh_sign)
            if proc[0].shape[0]:
                _deliver(buf_e, buf_i, t, *_procedural_rows(spikes, 0, proc), inh_sign)
            if rplast is not None:  # depression on the rows of this step's spikes
                for s in spikes:
                    plastic_pre(int(s), 1, t, *rplast)
        sl = slice(in_ptr[k], in_ptr[k + 1])
        _push_inputs(
            in_idx[sl],
            in_cnt[sl],
            t,
            ext,
            proc,
            buf_e,
            buf_i,
            inh_sign,
            xplast,
            _scales(in_idx[sl], in_cnt[sl], t, dt, xstp),
        )
        for g in range(p_first.shape[0]):
            lo = p_start[g]
            lam, elam = p_lam[lo : lo + p_n[g]], p_elam[lo : lo + p_n[g]]
            u = uniform_array(row_key(int(p_key[g]), t), np.arange(p_n[g], dtype=np.int64))
            fire = np.flatnonzero(u > elam)
            counts = poisson_counts(lam[fire], elam[fire], u[fire])
            _push_inputs(
                fire + p_first[g],
                counts,
                t,
                ext,
                proc,
                buf_e,
                buf_i,
                inh_sign,
                xplast,
                _scales(fire + p_first[g], counts, t, dt, xstp),
            )
        # 8. potentiation on the incoming synapses of this step's spikes (pre before post)
        for j in spikes:
            if rplast is not None:
                plastic_post(
                    int(j),
                    t,
                    dt,
                    c_ptr,
                    c_src,
                    c_pos,
                    r_weights,
                    r_mask,
                    r_rule,
                    r_pre,
                    r_pre_last,
                    r_post,
                    r_post_last,
                )
            if xplast is not None:
                plastic_post(
                    int(j),
                    t,
                    dt,
                    xc_ptr,
                    xc_src,
                    xc_pos,
                    x_weights,
                    x_mask,
                    x_rule,
                    x_pre,
                    x_pre_last,
                    x_post,
                    x_post_last,
                )
    return n_steps, 0
