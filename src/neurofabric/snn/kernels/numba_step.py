"""The step loop of the numba backend: steps 1-8 of :func:`.reference.simulate` for many
steps in one compiled call, allocating nothing.

:func:`kernel` compiles a variant of :func:`simulate_steps` per (synapse model, threads,
procedural rows, plasticity): the neuron update of that model (serial or on threads) and
no-op stand-ins for what the network lacks are bound in, so each network compiles and runs
only its own code paths.
"""

import numpy as np

from neurofabric.snn.kernels.layout import (
    C_DENSE_STEPS,
    C_EVENT_STEPS,
    C_HOMOGENEOUS,
    C_MONITORED,
    C_RECORD_EVERY,
    C_RECORDED,
    C_SPIKES,
    C_WRITTEN,
    DT,
    H_FROZEN,
    INH_SIGN,
    MODEL_CUBA,
    STATUS_DONE,
    STATUS_DRAIN,
)
from neurofabric.snn.kernels.numba_jit import formula, spec, variant
from neurofabric.snn.kernels.numba_neurons import UPDATES, collect, homeostasis, update_parallel
from neurofabric.snn.kernels.numba_synapses import (
    no_plastic_post,
    no_plastic_pre,
    no_procedural,
    plastic_post,
    plastic_pre,
    pull_dense,
    push_csr,
    push_procedural,
)

row_key = spec["row_key"]
uniform = spec["uniform"]
poisson_count = spec["poisson_count"]
stp_scale = formula["stp_scale"]
_update = UPDATES[MODEL_CUBA]  # rebound per variant (see ``kernel``)


def _input_event(s, m, t, dt, net, buf_e, buf_i, slot, dmod, inh_sign, has_ext, has_proc):
    """One input event (source ``s``, ``m`` spikes): STP efficacy, transmission through the
    input CSR and procedural rows, then plasticity of the input synapses. Compiled per
    variant with :func:`simulate_steps` (see :func:`kernel`)."""
    scale = np.float64(m)
    if net.ext_stp.prm.shape[0] > 0:
        scale = stp_scale(s, m, t, dt, net.ext_stp)
    if has_ext:
        push_csr(s, scale, net.ext, buf_e, buf_i, slot, dmod, inh_sign)
    if has_proc:
        push_procedural(s, scale, 1, net.procedural, buf_e, buf_i, slot, dmod, inh_sign)
    if net.ext_plastic.rule.shape[0] > 0:
        plastic_pre(s, m, t, dt, net.ext, net.ext_plastic)


def simulate_steps(n_steps, t0, net, state, inputs, mon, counters):
    """Advance ``n_steps`` steps from step ``t0``; see :func:`.reference.simulate`.

    Compiled once per (model, threads, procedural, plastic) by :func:`kernel`, so a network
    compiles only what it runs.
    """
    v, ge, gi, buf_e, buf_i = state.v, state.ge, state.gi, state.buf_e, state.buf_i
    rec, csc, proc, pois = net.rec, net.rec_csc, net.procedural, net.poisson
    params, ref_steps, sc = net.neurons.params, net.neurons.ref_steps, net.neurons.syn
    spk_mask, spk_t, spk_i, rate = mon.spk_mask, mon.spk_t, mon.spk_i, mon.rate
    rec_idx, spiked, flag = mon.rec_idx, mon.spiked, mon.flag
    h_prm, theta = net.homeostasis
    has_homeo = h_prm.shape[0] > 0 and h_prm[H_FROZEN] == 0.0
    r_has_stp = net.rec_stp.prm.shape[0] > 0
    r_plastic = net.rec_plastic.rule.shape[0] > 0
    x_plastic = net.ext_plastic.rule.shape[0] > 0
    dense_limit = net.dense_limit
    dt = sc[DT]
    inh_sign = sc[INH_SIGN]
    rec_every = counters[C_RECORD_EVERY]
    hom = counters[C_HOMOGENEOUS] == 1
    dmod = buf_e.shape[0]
    has_rec = rec.indptr.shape[0] > 1
    has_ext = net.ext.indptr.shape[0] > 1
    has_proc = proc.ip.shape[0] > 0
    cap = spk_t.shape[0]
    n_written = counters[C_WRITTEN]
    n_rec = counters[C_RECORDED]
    n_mon = counters[C_MONITORED]
    for k in range(n_steps):
        if cap - n_written < n_mon:
            counters[C_WRITTEN] = n_written
            counters[C_RECORDED] = n_rec
            return k, STATUS_DRAIN  # the spike buffer may overflow: the shell drains it first
        t = t0 + k
        slot = t % dmod
        # --- 1-3: arrivals, integration, threshold and reset: branch-free, vectorizable
        _update(hom, v, ge, gi, state.refrac, buf_e[slot], buf_i[slot], params, ref_steps, sc, flag)
        n_spk = collect(flag, spiked)
        if has_homeo:
            homeostasis(h_prm, theta, params, spiked, n_spk)
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
                mon.rec_v[n_rec, q] = v[j]
                mon.rec_ge[n_rec, q] = ge[j]
                mon.rec_gi[n_rec, q] = gi[j]
            n_rec += 1
        # --- 5: recurrent propagation: event-driven push or dense pull
        if has_rec and n_spk > 0:
            if dense_limit >= 0 and n_spk > dense_limit:
                counters[C_DENSE_STEPS] += 1
                pull_dense(spiked, n_spk, flag, rec, csc, buf_e, buf_i, slot, dmod, inh_sign)
            else:
                counters[C_EVENT_STEPS] += 1
                for q in range(n_spk):
                    scale = 1.0
                    if r_has_stp:
                        scale = stp_scale(spiked[q], 1, t, dt, net.rec_stp)
                    push_csr(spiked[q], scale, rec, buf_e, buf_i, slot, dmod, inh_sign)
        elif n_spk > 0:
            counters[C_EVENT_STEPS] += 1
        if r_plastic:  # depression on the rows of this step's spikes (after transmission)
            for q in range(n_spk):
                plastic_pre(spiked[q], 1, t, dt, rec, net.rec_plastic)
        if has_proc:
            for q in range(n_spk):
                push_procedural(spiked[q], 1, 0, proc, buf_e, buf_i, slot, dmod, inh_sign)
        # --- 6: external input spikes of this step
        for q in range(inputs.ptr[k], inputs.ptr[k + 1]):
            _input_event(
                inputs.idx[q],
                inputs.cnt[q],
                t,
                dt,
                net,
                buf_e,
                buf_i,
                slot,
                dmod,
                inh_sign,
                has_ext,
                has_proc,
            )
        # --- 7: Poisson groups: counts drawn from the (seed, group, step, source) stream
        for g in range(pois.first.shape[0]):
            key_t = row_key(pois.keys[g], t)
            for i in range(pois.size[g]):
                j = pois.start[g] + i
                if pois.lam[j] <= 0.0:
                    continue  # silent source: no draw (the stream is keyed by source)
                u = uniform(key_t, i)
                if u > pois.elam[j]:
                    m = poisson_count(pois.lam[j], pois.elam[j], u)
                    _input_event(
                        pois.first[g] + i,
                        m,
                        t,
                        dt,
                        net,
                        buf_e,
                        buf_i,
                        slot,
                        dmod,
                        inh_sign,
                        has_ext,
                        has_proc,
                    )
        # --- 8: potentiation on the incoming synapses of this step's spikes (pre before post)
        for q in range(n_spk):
            if r_plastic:
                plastic_post(spiked[q], t, dt, csc, rec.weights, net.rec_plastic)
            if x_plastic:
                plastic_post(spiked[q], t, dt, net.ext_csc, net.ext.weights, net.ext_plastic)
        counters[C_SPIKES] += n_spk
    counters[C_WRITTEN] = n_written
    counters[C_RECORDED] = n_rec
    return n_steps, STATUS_DONE


_kernels: dict = {}


def _step_loop(update, name, parallel, procedural, plastic):
    """:func:`simulate_steps` compiled with ``update`` (called ``name``: the disk cache
    keeps variants apart by name) and, where the network lacks them,
    no-op procedural rows and plasticity (the input-event helper gets the same). Numba
    cannot cache parallel kernels (or their callers) on disk: those compile in memory."""
    bindings = {"_update": update}
    if not procedural:
        bindings["push_procedural"] = no_procedural
    if not plastic:
        bindings["plastic_pre"] = no_plastic_pre
        bindings["plastic_post"] = no_plastic_post
    suffix = f"{'' if procedural else '__noproc'}{'' if plastic else '__static'}"
    bindings["_input_event"] = variant(
        _input_event, bindings, f"_input_event{suffix}", inline="always"
    )
    return variant(
        simulate_steps,
        bindings,
        f"simulate_steps__{name}{suffix}",
        cache=not parallel,
        # Without the runtime's reference counting: the step loop allocates nothing, and
        # with it every inlined helper that takes an array pays two atomic operations per
        # call (25 ns a synapse on the input rows, 30x the work itself).
        _nrt=False,
    )


def kernel(model, parallel, procedural, plastic):
    """The compiled step loop for this (model, threads > 1, procedural, plastic)."""
    key = (model, parallel, procedural, plastic)
    if key not in _kernels:
        update = UPDATES[model]
        name = update.py_func.__qualname__  # update_cuba, update_coba, update_delta
        if parallel:
            name = f"parallel_{name}"
            update = variant(
                update_parallel, {"_update": update}, name, parallel=True, cache=False, _nrt=False
            )
        _kernels[key] = _step_loop(update, name, parallel, procedural, plastic)
    return _kernels[key]
