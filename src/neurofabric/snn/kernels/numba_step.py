"""The step loop of the numba backend: steps 1-8 of :func:`.reference.simulate` for many
steps in one compiled call, allocating nothing.

:func:`kernel` compiles a variant of :func:`simulate_steps` per (synapse model, threads,
features): the neuron update of that model (serial or on threads) and no-op stand-ins for
the features (:data:`FEATURES`) the network lacks are bound in, so each network compiles and
runs only its own code paths. A first run compiles the step loop of its network (no disk
cache yet): without inputs, STP or homeostasis, that is 2 s instead of 5.
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
    no_external,
    no_homeostasis,
    no_plastic_post,
    no_plastic_pre,
    no_procedural,
    no_stp,
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


def _record(k, t, n_spk, state, mon, n_written, n_rec, rec_every):
    """Step 4: the step's spike count, the monitored spikes, the sampled state. Returns
    the new (spikes written, state rows written)."""
    mon.rate[k] = n_spk
    for q in range(n_spk):
        i = mon.spiked[q]
        if mon.spk_mask[i]:
            mon.spk_t[n_written] = t
            mon.spk_i[n_written] = i
            n_written += 1
    if rec_every > 0 and t % rec_every == 0:
        for q in range(mon.rec_idx.shape[0]):
            j = mon.rec_idx[q]
            mon.rec_v[n_rec, q] = state.v[j]
            mon.rec_ge[n_rec, q] = state.ge[j]
            mon.rec_gi[n_rec, q] = state.gi[j]
        n_rec += 1
    return n_written, n_rec


def _propagate(t, slot, n_spk, spiked, flag, net, buf_e, buf_i, counters):
    """Step 5: the recurrent synapses of the step's spikes (event-driven push, or dense
    pull above ``dense_limit``), then depression on their rows and their procedural rows."""
    rec, dmod, inh_sign, dt = (
        net.rec,
        buf_e.shape[0],
        net.neurons.syn[INH_SIGN],
        net.neurons.syn[DT],
    )
    if rec.indptr.shape[0] > 1 and n_spk > 0:
        if net.dense_limit >= 0 and n_spk > net.dense_limit:
            counters[C_DENSE_STEPS] += 1
            pull_dense(spiked, n_spk, flag, rec, net.rec_csc, buf_e, buf_i, slot, dmod, inh_sign)
        else:
            counters[C_EVENT_STEPS] += 1
            r_has_stp = net.rec_stp.prm.shape[0] > 0
            for q in range(n_spk):
                scale = 1.0
                if r_has_stp:
                    scale = stp_scale(spiked[q], 1, t, dt, net.rec_stp)
                push_csr(spiked[q], scale, rec, buf_e, buf_i, slot, dmod, inh_sign)
    elif n_spk > 0:
        counters[C_EVENT_STEPS] += 1
    if net.rec_plastic.rule.shape[0] > 0:  # depression on the rows of this step's spikes
        for q in range(n_spk):
            plastic_pre(spiked[q], 1, t, dt, rec, net.rec_plastic)
    if net.procedural.ip.shape[0] > 0:
        for q in range(n_spk):
            push_procedural(spiked[q], 1, 0, net.procedural, buf_e, buf_i, slot, dmod, inh_sign)


def _external(k, t, slot, inputs, net, buf_e, buf_i):
    """Steps 6-7: the spike-array input events of the step, then the Poisson groups, whose
    counts come from the (seed, group, step, source) stream."""
    dmod, inh_sign, dt = buf_e.shape[0], net.neurons.syn[INH_SIGN], net.neurons.syn[DT]
    has_ext = net.ext.indptr.shape[0] > 1
    has_proc = net.procedural.ip.shape[0] > 0
    for q in range(inputs.ptr[k], inputs.ptr[k + 1]):
        s, m = inputs.idx[q], inputs.cnt[q]
        _input_event(s, m, t, dt, net, buf_e, buf_i, slot, dmod, inh_sign, has_ext, has_proc)
    pois = net.poisson
    for g in range(pois.first.shape[0]):
        key_t = row_key(pois.keys[g], t)
        for i in range(pois.size[g]):
            j = pois.start[g] + i
            if pois.lam[j] <= 0.0:
                continue  # silent source: no draw (the stream is keyed by source)
            u = uniform(key_t, i)
            if u > pois.elam[j]:
                s, m = pois.first[g] + i, poisson_count(pois.lam[j], pois.elam[j], u)
                _input_event(
                    s, m, t, dt, net, buf_e, buf_i, slot, dmod, inh_sign, has_ext, has_proc
                )


def _potentiate(t, n_spk, spiked, net):
    """Step 8: potentiation on the incoming synapses of the step's spikes (pre before
    post: after every presynaptic event of the step)."""
    dt = net.neurons.syn[DT]
    for q in range(n_spk):
        if net.rec_plastic.rule.shape[0] > 0:
            plastic_post(spiked[q], t, dt, net.rec_csc, net.rec.weights, net.rec_plastic)
        if net.ext_plastic.rule.shape[0] > 0:
            plastic_post(spiked[q], t, dt, net.ext_csc, net.ext.weights, net.ext_plastic)


def simulate_steps(n_steps, t0, net, state, inputs, mon, counters):
    """Advance ``n_steps`` steps from step ``t0``; see :func:`.reference.simulate`.

    Compiled once per (model, threads, features) by :func:`kernel`, so a network compiles
    only what it runs; the step helpers above are inlined into it.
    """
    buf_e, buf_i, spiked, flag = state.buf_e, state.buf_i, mon.spiked, mon.flag
    params, ref_steps, sc = net.neurons.params, net.neurons.ref_steps, net.neurons.syn
    h_prm, theta = net.homeostasis
    has_homeo = h_prm.shape[0] > 0 and h_prm[H_FROZEN] == 0.0
    hom = counters[C_HOMOGENEOUS] == 1
    rec_every = counters[C_RECORD_EVERY]
    dmod = buf_e.shape[0]
    cap = mon.spk_t.shape[0]
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
        v, ge, gi, refrac = state.v, state.ge, state.gi, state.refrac
        _update(hom, v, ge, gi, refrac, buf_e[slot], buf_i[slot], params, ref_steps, sc, flag)
        n_spk = collect(flag, spiked)
        if has_homeo:
            homeostasis(h_prm, theta, params, spiked, n_spk)
        n_written, n_rec = _record(k, t, n_spk, state, mon, n_written, n_rec, rec_every)
        _propagate(t, slot, n_spk, spiked, flag, net, buf_e, buf_i, counters)
        _external(k, t, slot, inputs, net, buf_e, buf_i)
        _potentiate(t, n_spk, spiked, net)
        counters[C_SPIKES] += n_spk
    counters[C_WRITTEN] = n_written
    counters[C_RECORDED] = n_rec
    return n_steps, STATUS_DONE


#: the helpers of simulate_steps, compiled (inlined) per variant in this order, so each
#: sees the variant's stand-ins and the helpers compiled before it
_HELPERS = ("_input_event", "_record", "_propagate", "_external", "_potentiate")

#: what a network may lack, and the no-op stand-ins bound into its step loop when it does:
#: procedural rows, plasticity, input events (spike arrays, Poisson groups, input synapses),
#: short-term plasticity, homeostasis
FEATURES = {
    "procedural": {"push_procedural": no_procedural},
    "plastic": {"plastic_pre": no_plastic_pre, "plastic_post": no_plastic_post},
    "external": {"_external": no_external},
    "stp": {"stp_scale": no_stp},
    "homeostasis": {"homeostasis": no_homeostasis},
}


def features(net):
    """The :data:`FEATURES` the network ``net`` (a :class:`.layout.Network`) has."""
    plastic = net.rec_plastic.rule.shape[0] > 0 or net.ext_plastic.rule.shape[0] > 0
    stp = net.rec_stp.prm.shape[0] > 0 or net.ext_stp.prm.shape[0] > 0
    procedural = net.procedural.ip.shape[0] > 0
    # input events reach input synapses, procedural rows, or the inputs' STP state
    external = (
        net.ext.indptr.shape[0] > 1
        or net.poisson.first.shape[0] > 0
        or procedural
        or net.ext_stp.prm.shape[0] > 0
    )
    present = {
        "procedural": procedural,
        "plastic": plastic,
        "external": external,
        "stp": stp,
        "homeostasis": net.homeostasis[0].shape[0] > 0,
    }
    return frozenset(name for name, has in present.items() if has)


_kernels: dict = {}


def _step_loop(update, name, parallel, present):
    """:func:`simulate_steps` compiled with ``update`` (called ``name``: the disk cache
    keeps variants apart by name) and the stand-ins of the features not ``present``. Numba
    cannot cache parallel kernels (or their callers) on disk: those compile in memory."""
    bindings = {"_update": update}
    lacking = [f for f in FEATURES if f not in present]
    for feature in lacking:
        bindings.update(FEATURES[feature])
    suffix = "".join(f"__no_{f}" for f in lacking)
    for helper in _HELPERS:
        if helper not in bindings:
            fn = globals()[helper]
            bindings[helper] = variant(fn, dict(bindings), f"{helper}{suffix}", inline="always")
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


def kernel(model, parallel, present):
    """The compiled step loop for this (model, threads > 1, features ``present``)."""
    key = (model, parallel, frozenset(present))
    if key not in _kernels:
        update = UPDATES[model]
        name = update.py_func.__qualname__  # update_cuba, update_coba, update_delta
        if parallel:
            name = f"parallel_{name}"
            update = variant(
                update_parallel, {"_update": update}, name, parallel=True, cache=False, _nrt=False
            )
        _kernels[key] = _step_loop(update, name, parallel, key[2])
    return _kernels[key]
