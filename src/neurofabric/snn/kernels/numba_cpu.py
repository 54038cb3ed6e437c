"""Compiled CPU kernels (numba). Same names and semantics as :mod:`.reference`.

The whole multi-step loop runs inside :func:`simulate`, so the per-step cost is the neuron
update plus the synaptic events; nothing is allocated inside the loop.
"""

import numpy as np
from numba import njit

from neurofabric.snn.kernels import rowgen


def _compile_spec(names):
    """Compile the pure-Python spec functions of :mod:`.rowgen` with numba.

    They are recreated over one shared globals dict in which every spec name is bound to its
    compiled version, so compiled functions call compiled functions.
    """
    import types

    shared = dict(vars(rowgen))
    for name in names:
        fn = getattr(rowgen, name)
        clone = types.FunctionType(fn.__code__, shared, fn.__name__, fn.__defaults__)
        shared[name] = njit(cache=True)(clone)
    return shared


_spec = _compile_spec(["hash32", "row_key", "uniform", "normal", "synapse_weight",
                       "synapse_delay", "_sample_distinct", "_lattice_side", "gen_targets",
                       "gen_row", "gen_in_degree_sources"])
gen_targets = _spec["gen_targets"]
gen_row = _spec["gen_row"]
gen_in_degree_sources = _spec["gen_in_degree_sources"]

BACKEND = "numba"


@njit(cache=True)
def build_rows(ip, fp, key, sources, max_row, counts_only):
    """Generate the rows of ``sources``: (counts, targets, weights, delays) concatenated."""
    n = sources.shape[0]
    counts = np.zeros(n, np.int64)
    st = np.empty(max_row, np.int64)
    sw = np.empty(max_row, np.float64)
    sd = np.empty(max_row, np.int64)
    for a in range(n):
        counts[a] = gen_row(ip, fp, key, sources[a], st, sw, sd)
    if counts_only:
        return counts, np.empty(0, np.int32), np.empty(0, np.float32), np.empty(0, np.int32)
    total = counts.sum()
    tg = np.empty(total, np.int32)
    wt = np.empty(total, np.float32)
    dl = np.empty(total, np.int32)
    pos = 0
    for a in range(n):
        c = gen_row(ip, fp, key, sources[a], st, sw, sd)
        for b in range(c):
            tg[pos + b] = st[b]
            wt[pos + b] = sw[b]
            dl[pos + b] = sd[b]
        pos += c
    return counts, tg, wt, dl


@njit(cache=True)
def build_in_degree(ip, fp, key, targets, k):
    """Fixed in-degree: (sources, targets, weights, delays), ``k`` synapses per target."""
    n = targets.shape[0]
    src = np.empty(n * k, np.int32)
    tgt = np.empty(n * k, np.int32)
    wt = np.empty(n * k, np.float32)
    dl = np.empty(n * k, np.int32)
    ss = np.empty(max(k, 1), np.int64)
    sw = np.empty(max(k, 1), np.float64)
    sd = np.empty(max(k, 1), np.int64)
    pos = 0
    for a in range(n):
        c = gen_in_degree_sources(ip, fp, key, targets[a], ss, sw, sd)
        for b in range(c):
            src[pos] = ss[b]
            tgt[pos] = targets[a]
            wt[pos] = sw[b]
            dl[pos] = sd[b]
            pos += 1
    return src[:pos], tgt[:pos], wt[:pos], dl[:pos]


@njit(cache=True, inline="always")
def _deliver(buf_e, buf_i, slot_base, dmod, d, tgt, w, inh_sign):
    s = (slot_base + d) % dmod
    if w >= 0:
        buf_e[s, tgt] += w
    else:
        buf_i[s, tgt] += w * inh_sign


@njit(cache=True)
def _push_csr(src, indptr, indices, weights, delays, flags, buf_e, buf_i, t, dmod, inh_sign):
    row_w = flags[0]
    dconst = flags[1]
    a = indptr[src]
    b = indptr[src + 1]
    if row_w == 1:
        w = weights[src]
        for q in range(a, b):
            d = dconst if dconst >= 0 else delays[q]
            _deliver(buf_e, buf_i, t, dmod, d, indices[q], w, inh_sign)
    else:
        for q in range(a, b):
            d = dconst if dconst >= 0 else delays[q]
            _deliver(buf_e, buf_i, t, dmod, d, indices[q], weights[q], inh_sign)


@njit(cache=True)
def _push_procedural(src, is_input, proc, buf_e, buf_i, t, dmod, inh_sign):
    p_ip, p_fp, p_key, p_input, st, sw, sd = proc
    for p in range(p_ip.shape[0]):
        if p_input[p] != is_input or src < p_ip[p, 1] or src >= p_ip[p, 2]:
            continue
        c = gen_row(p_ip[p], p_fp[p], p_key[p], src, st, sw, sd)
        for q in range(c):
            w = np.float32(sw[q])
            _deliver(buf_e, buf_i, t, dmod, sd[q], st[q], w, inh_sign)


@njit(cache=True)
def simulate(n_steps, t0, model, state, nparam, ref_steps, sc, rec, csc, dense_limit,
             ext, inputs, proc, mon, counters):
    """Advance ``n_steps`` steps from step ``t0``; see :func:`.reference.simulate`."""
    v, ge, gi, refrac, buf_e, buf_i = state
    r_indptr, r_indices, r_weights, r_delays, r_flags = rec
    c_ptr, c_src, c_pos = csc
    x_indptr, x_indices, x_weights, x_delays, x_flags = ext
    in_ptr, in_idx = inputs
    spk_mask, spk_t, spk_i, rate, rec_idx, rec_v, rec_ge, rec_gi, spiked, flag = mon
    de = sc[0]
    di = sc[1]
    e_exc = sc[2]
    e_inh = sc[3]
    inh_sign = sc[4]
    rec_every = counters[5]
    n = v.shape[0]
    dmod = buf_e.shape[0]
    has_rec = r_indptr.shape[0] > 1
    has_ext = x_indptr.shape[0] > 1
    has_proc = proc[0].shape[0] > 0
    cap = spk_t.shape[0]
    n_written = counters[0]
    n_rec = counters[4]
    n_mon = counters[6]
    for k in range(n_steps):
        if cap - n_written < n_mon:
            counters[0] = n_written
            counters[4] = n_rec
            return k, 1  # spike buffer may overflow in this step: the shell drains it first
        t = t0 + k
        slot = t % dmod
        # --- 1-3: arrivals, integration, threshold and reset (one fused pass)
        n_spk = 0
        for i in range(n):
            a_e = buf_e[slot, i]
            a_i = buf_i[slot, i]
            buf_e[slot, i] = 0.0
            buf_i[slot, i] = 0.0
            if model == 0:  # CUBA, exact
                x_e = ge[i] + a_e
                x_i = gi[i] + a_i
                if refrac[i] > 0:
                    refrac[i] -= 1
                else:
                    vi = nparam[0, i]
                    v[i] = vi + (v[i] - vi) * nparam[3, i] + x_e * nparam[4, i] + x_i * nparam[5, i]
                ge[i] = x_e * de
                gi[i] = x_i * di
            elif model == 1:  # COBA, exponential Euler with conductances frozen over the step
                x_e = ge[i] + a_e
                x_i = gi[i] + a_i
                if refrac[i] > 0:
                    refrac[i] -= 1
                else:
                    gt = 1.0 + x_e + x_i
                    vs = (nparam[0, i] + x_e * e_exc + x_i * e_inh) / gt
                    v[i] = vs + (v[i] - vs) * np.exp(-nparam[6, i] * gt)
                ge[i] = x_e * de
                gi[i] = x_i * di
            else:  # delta synapses: jumps of v, dropped while refractory
                if refrac[i] > 0:
                    refrac[i] -= 1
                else:
                    vi = nparam[0, i]
                    v[i] = vi + (v[i] + a_e + a_i - vi) * nparam[3, i]
            if v[i] > nparam[2, i]:
                v[i] = nparam[1, i]
                refrac[i] = ref_steps[i]
                spiked[n_spk] = i
                n_spk += 1
        # --- 4: monitors
        rate[k] = n_spk
        for q in range(n_spk):
            i = spiked[q]
            if spk_mask[i]:
                spk_t[n_written] = t
                spk_i[n_written] = i
                n_written += 1
        if rec_every > 0 and t % rec_every == 0:
            for q in range(rec_idx.shape[0]):
                j = rec_idx[q]
                rec_v[n_rec, q] = v[j]
                rec_ge[n_rec, q] = ge[j]
                rec_gi[n_rec, q] = gi[j]
            n_rec += 1
        # --- 5: recurrent propagation: event-driven push or dense pull
        if has_rec and n_spk > 0:
            if dense_limit >= 0 and n_spk > dense_limit:
                counters[3] += 1
                for q in range(n_spk):
                    flag[spiked[q]] = 1
                dconst = r_flags[1]
                for j in range(n):
                    for q in range(c_ptr[j], c_ptr[j + 1]):
                        s = c_src[q]
                        if flag[s]:
                            pos = c_pos[q]
                            w = r_weights[s] if r_flags[0] == 1 else r_weights[pos]
                            d = dconst if dconst >= 0 else r_delays[pos]
                            _deliver(buf_e, buf_i, t, dmod, d, j, w, inh_sign)
                for q in range(n_spk):
                    flag[spiked[q]] = 0
            else:
                counters[2] += 1
                for q in range(n_spk):
                    _push_csr(spiked[q], r_indptr, r_indices, r_weights, r_delays, r_flags,
                              buf_e, buf_i, t, dmod, inh_sign)
        elif n_spk > 0:
            counters[2] += 1
        if has_proc:
            for q in range(n_spk):
                _push_procedural(spiked[q], 0, proc, buf_e, buf_i, t, dmod, inh_sign)
        # --- 6: external input spikes of this step
        for q in range(in_ptr[k], in_ptr[k + 1]):
            s = in_idx[q]
            if has_ext:
                _push_csr(s, x_indptr, x_indices, x_weights, x_delays, x_flags,
                          buf_e, buf_i, t, dmod, inh_sign)
            if has_proc:
                _push_procedural(s, 1, proc, buf_e, buf_i, t, dmod, inh_sign)
        counters[1] += n_spk
    counters[0] = n_written
    counters[4] = n_rec
    return n_steps, 0
