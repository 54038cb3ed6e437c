"""Synaptic events in compiled loops: delivery into the ring buffers (push along a row,
procedural rows, dense pull along the transposed index) and plasticity on them.

Every function here is inlined into the step loop (:mod:`.numba_step`); the formulas come
from :mod:`.formulas`, compiled by :mod:`.numba_jit`.
"""

import numpy as np
from numba import njit

from neurofabric.snn.kernels.layout import (
    CONST_DELAY,
    NEAREST,
    ROW_WEIGHTS,
    TAU_O1,
    TAU_O2,
    TAU_R1,
    TAU_R2,
)
from neurofabric.snn.kernels.numba_jit import formula, spec

gen_row = spec["gen_row"]
trace_decay = formula["trace_decay"]
bump_trace = formula["bump_trace"]
clip_weight = formula["clip_weight"]
depression = formula["depression"]
potentiation = formula["potentiation"]


@njit(cache=True, inline="always")
def _slot(tm, d, dmod):
    """(tm + d) % dmod for 0 <= tm < dmod and 1 <= d < dmod, without a division."""
    s = tm + d
    return s - dmod if s >= dmod else s


@njit(cache=True, inline="always")
def deliver(buf_e, buf_i, tm, dmod, d, tgt, w, inh_sign):
    """Weight ``w`` into slot ``tm + d`` of target ``tgt``: excitatory to ``buf_e``,
    inhibitory (times ``inh_sign``) to ``buf_i``."""
    s = _slot(tm, d, dmod)
    if w >= 0:
        buf_e[s, tgt] += w
    else:
        buf_i[s, tgt] += w * inh_sign


@njit(cache=True, inline="always")
def push_csr(src, mult, syn, buf_e, buf_i, tm, dmod, inh_sign):
    """Push the row of ``src`` (``mult`` coincident spikes) of the synapses ``syn`` (a
    :class:`.layout.Synapses`) into the ring buffers."""
    indices, weights = syn.indices, syn.weights
    a = syn.indptr[src]
    b = syn.indptr[src + 1]
    dconst = syn.flags[CONST_DELAY]
    if syn.flags[ROW_WEIGHTS] == 1:  # one weight for the whole row: pick the buffer once
        w = weights[src]
        if mult != 1:
            w = w * mult
        buf = buf_e if w >= 0 else buf_i
        wv = w if w >= 0 else w * inh_sign
        if dconst >= 0:
            row = buf[_slot(tm, dconst, dmod)]
            for q in range(a, b):
                row[indices[q]] += wv
        else:
            for q in range(a, b):
                buf[_slot(tm, syn.delays[q], dmod), indices[q]] += wv
    else:
        for q in range(a, b):
            d = dconst if dconst >= 0 else syn.delays[q]
            w = weights[q]
            if mult != 1:
                w = w * mult
            deliver(buf_e, buf_i, tm, dmod, d, indices[q], w, inh_sign)


@njit(cache=True, inline="always")
def push_procedural(src, mult, is_input, proc, buf_e, buf_i, tm, dmod, inh_sign):
    """Regenerate and push the rows of ``src`` of the procedural projections of its side."""
    st, sw, sd = proc.targets, proc.weights, proc.delays
    for p in range(proc.ip.shape[0]):
        if proc.is_input[p] != is_input or src < proc.ip[p, 1] or src >= proc.ip[p, 2]:
            continue
        c = gen_row(proc.ip[p], proc.fp[p], proc.keys[p], src, st, sw, sd)
        for q in range(c):
            w = np.float32(sw[q])
            if mult != 1:
                w = w * mult
            deliver(buf_e, buf_i, tm, dmod, sd[q], st[q], w, inh_sign)


@njit(cache=True, inline="always")
def no_procedural(src, mult, is_input, proc, buf_e, buf_i, tm, dmod, inh_sign):
    """Stands in for ``push_procedural`` in kernels of networks without procedural rows."""
    return None


@njit(cache=True, inline="always")
def pull_dense(spiked, n_spk, flag, rec, csc, buf_e, buf_i, slot, dmod, inh_sign):
    """Dense pull: every target's incoming synapses (the transposed index) in target order,
    delivered where the source spiked; the same sums as the push, in the same order."""
    for q in range(n_spk):
        flag[spiked[q]] = 1
    dconst = rec.flags[CONST_DELAY]
    by_row = rec.flags[ROW_WEIGHTS] == 1 and dconst >= 0  # then csc.pos is not stored
    for j in range(csc.ptr.shape[0] - 1):
        for q in range(csc.ptr[j], csc.ptr[j + 1]):
            s = csc.src[q]
            if flag[s]:
                if by_row:
                    deliver(buf_e, buf_i, slot, dmod, dconst, j, rec.weights[s], inh_sign)
                else:
                    pos = csc.pos[q]
                    w = rec.weights[s] if rec.flags[ROW_WEIGHTS] == 1 else rec.weights[pos]
                    d = dconst if dconst >= 0 else rec.delays[pos]
                    deliver(buf_e, buf_i, slot, dmod, d, j, w, inh_sign)
    for q in range(n_spk):
        flag[spiked[q]] = 0


@njit(cache=True, inline="always")
def _trace_now(tr, last, i, t, tau1, tau2, dt, one1, one2):
    """Decay the two traces of neuron ``i`` to step ``t`` (once per neuron and step);
    ``one1``/``one2`` are the one-step factors, the common case."""
    k = t - last[i]
    if k == 1:
        tr[0, i] *= one1
        tr[1, i] *= one2
        last[i] = t
    elif k > 0:
        tr[0, i] *= trace_decay(k, dt, tau1)
        tr[1, i] *= trace_decay(k, dt, tau2)
        last[i] = t


@njit(cache=True, inline="always")
def plastic_pre(s, m, t, dt, syn, side):
    """Depression on the row of source ``s`` of ``syn`` for ``m`` coincident spikes, then
    its traces (``side``: the group's :class:`.layout.Plastic`)."""
    rule, mask, indices, weights = side.rule, side.mask, syn.indices, syn.weights
    pre_tr, pre_last, post_tr, post_last = side.pre, side.pre_last, side.post, side.post_last
    tau_r1, tau_r2, tau_o1, tau_o2 = rule[TAU_R1], rule[TAU_R2], rule[TAU_O1], rule[TAU_O2]
    pa, pb = trace_decay(1, dt, tau_r1), trace_decay(1, dt, tau_r2)
    _trace_now(pre_tr, pre_last, s, t, tau_r1, tau_r2, dt, pa, pb)
    oa, ob = trace_decay(1, dt, tau_o1), trace_decay(1, dt, tau_o2)
    masked = mask.shape[0] > 0
    for _ in range(m):
        r2 = pre_tr[1, s]
        for q in range(syn.indptr[s], syn.indptr[s + 1]):
            if masked and mask[q] == 0:
                continue
            j = indices[q]
            _trace_now(post_tr, post_last, j, t, tau_o1, tau_o2, dt, oa, ob)
            w = np.float64(weights[q])
            weights[q] = clip_weight(w - depression(rule, w, post_tr[0, j], r2), rule)
        bump_trace(pre_tr, s, rule[NEAREST] == 1.0)


@njit(cache=True, inline="always")
def plastic_post(j, t, dt, csc, weights, side):
    """Potentiation on the incoming synapses of neuron ``j`` (``csc``: the group's
    :class:`.layout.Incoming`, ``weights`` its CSR weights), then its traces."""
    rule, mask = side.rule, side.mask
    pre_tr, pre_last, post_tr, post_last = side.pre, side.pre_last, side.post, side.post_last
    tau_r1, tau_r2, tau_o1, tau_o2 = rule[TAU_R1], rule[TAU_R2], rule[TAU_O1], rule[TAU_O2]
    oa, ob = trace_decay(1, dt, tau_o1), trace_decay(1, dt, tau_o2)
    _trace_now(post_tr, post_last, j, t, tau_o1, tau_o2, dt, oa, ob)
    o2 = post_tr[1, j]
    pa, pb = trace_decay(1, dt, tau_r1), trace_decay(1, dt, tau_r2)
    masked = mask.shape[0] > 0
    for q in range(csc.ptr[j], csc.ptr[j + 1]):
        pos = csc.pos[q]
        if masked and mask[pos] == 0:
            continue
        i = csc.src[q]
        _trace_now(pre_tr, pre_last, i, t, tau_r1, tau_r2, dt, pa, pb)
        w = np.float64(weights[pos])
        weights[pos] = clip_weight(w + potentiation(rule, w, pre_tr[0, i], o2), rule)
    bump_trace(post_tr, j, rule[NEAREST] == 1.0)


@njit(cache=True, inline="always")
def no_plastic_pre(s, m, t, dt, syn, side):
    """Stands in for ``plastic_pre`` in kernels of networks without plasticity."""
    return None


@njit(cache=True, inline="always")
def no_plastic_post(j, t, dt, csc, weights, side):
    """Stands in for ``plastic_post`` in kernels of networks without plasticity."""
    return None


@njit(cache=True, inline="always")
def no_stp(s, m, t, dt, stp):
    """Stands in for ``stp_scale`` in kernels of networks without short-term plasticity:
    ``m`` spikes at full efficacy."""
    return np.float64(m)


@njit(cache=True, inline="always")
def no_external(k, t, slot, inputs, net, buf_e, buf_i):
    """Stands in for the step loop's input events in kernels of networks without inputs
    (no input synapses, procedural rows or Poisson groups: events would reach nothing)."""
    return None


@njit(cache=True, inline="always")
def no_homeostasis(h, theta, params, spiked, n_spk):
    """Stands in for ``homeostasis`` in kernels of networks without it."""
    return None
