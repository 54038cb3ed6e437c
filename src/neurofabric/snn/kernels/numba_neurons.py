"""Steps 1-3 of the step loop in compiled code: arrivals, integration, threshold and reset
of every neuron (one loop per synapse model, branch-free so LLVM vectorizes it), the
threshold homeostasis after the test, and the collection of the step's spikes.

The per-neuron formulas come from :mod:`.formulas` (compiled by :mod:`.numba_jit`); the
three update loops differ only in the neuron they call and the parameters they read. One
generic loop compiled per model (the neuron bound in, as the step loop's variants are)
gave the same machine code for the update (instruction count, vector width; update-bound
networks ran as fast), yet Diehl & Cook training, many short runs with plasticity, ran
3.5-5 % slower with it, reproducibly and with bit-identical results; the cause was not
isolated, so the three loops stay.
"""

import numpy as np
from numba import get_num_threads, njit, prange

from neurofabric.snn.kernels.layout import (
    C_E,
    C_I,
    DECAY_E,
    DECAY_I,
    DECAY_M,
    DT_TAU_M,
    E_EXC,
    E_INH,
    H_DECAY,
    H_DRIFT,
    H_HI,
    H_LO,
    H_STEP,
    H_THETA_MIN,
    MODEL_COBA,
    MODEL_CUBA,
    MODEL_DELTA,
    V_INF,
    V_RESET,
    V_TH,
)
from neurofabric.snn.kernels.numba_jit import formula

flushed = formula["flushed"]
cuba_v = formula["cuba_v"]
coba_v = formula["coba_v"]
delta_v = formula["delta_v"]


@njit(cache=True, inline="always")
def _refractory_step(r, vn, v_old, v_th, v_reset, ref):
    """(new v, new counter, fired) for one neuron: hold while refractory, then threshold.

    ``ref`` packs the refractory steps (low 16 bits) and the lockout steps (high bits, 0 for
    none): after a spike the counter starts at the lockout, ``v`` is held for the refractory
    steps, then integrates, and the neuron can fire again once the counter is back at 0."""
    hold = ref & 65535
    lock = ref >> 16
    if lock < hold:
        lock = hold
    vn = vn if r <= lock - hold else v_old
    fired = r <= 0 and vn > v_th
    v_new = v_reset if fired else vn
    r_new = lock if fired else (r - 1 if r > 0 else 0)
    return v_new, r_new, fired


@njit(cache=True, inline="always")
def _cuba_neuron(v, ge, gi, r, a_e, a_i, v_inf, v_reset, v_th, dm, ce, ci, ref, de, di):
    """One CUBA neuron: returns (v, g_e, g_i, refractory counter, fired)."""
    x_e = ge + a_e
    x_i = gi + a_i
    vn = cuba_v(v, x_e, x_i, v_inf, dm, ce, ci)
    v_new, r_new, fired = _refractory_step(r, vn, v, v_th, v_reset, ref)
    return v_new, flushed(x_e * de), flushed(x_i * di), r_new, fired


@njit(cache=True, inline="always")
def _coba_neuron(v, ge, gi, r, a_e, a_i, v_inf, v_reset, v_th, dtm, ref, de, di, e_exc, e_inh):
    x_e = ge + a_e
    x_i = gi + a_i
    vn = coba_v(v, x_e, x_i, v_inf, dtm, e_exc, e_inh)
    v_new, r_new, fired = _refractory_step(r, vn, v, v_th, v_reset, ref)
    return v_new, flushed(x_e * de), flushed(x_i * di), r_new, fired


@njit(cache=True, inline="always")
def _delta_neuron(v, r, a_e, a_i, v_inf, v_reset, v_th, dm, ref):
    vn = delta_v(v, a_e, a_i, v_inf, dm)
    return _refractory_step(r, vn, v, v_th, v_reset, ref)


@njit(cache=True)
def update_cuba(hom, v, ge, gi, refrac, be, bi, nparam, ref, sc, flag):
    """Steps 1-3 for every CUBA neuron. ``hom``: all neurons share parameters (column 0 is
    read, which keeps the per-step memory traffic to the state alone)."""
    de = sc[DECAY_E]
    di = sc[DECAY_I]
    if hom:
        p0, p1, p2, p3, p4, p5, rf = (
            nparam[V_INF, 0],
            nparam[V_RESET, 0],
            nparam[V_TH, 0],
            nparam[DECAY_M, 0],
            nparam[C_E, 0],
            nparam[C_I, 0],
            ref[0],
        )
        for i in range(v.shape[0]):
            v[i], ge[i], gi[i], refrac[i], flag[i] = _cuba_neuron(
                v[i], ge[i], gi[i], refrac[i], be[i], bi[i], p0, p1, p2, p3, p4, p5, rf, de, di
            )
            be[i] = 0.0
            bi[i] = 0.0
    else:
        for i in range(v.shape[0]):
            v[i], ge[i], gi[i], refrac[i], flag[i] = _cuba_neuron(
                v[i],
                ge[i],
                gi[i],
                refrac[i],
                be[i],
                bi[i],
                nparam[V_INF, i],
                nparam[V_RESET, i],
                nparam[V_TH, i],
                nparam[DECAY_M, i],
                nparam[C_E, i],
                nparam[C_I, i],
                ref[i],
                de,
                di,
            )
            be[i] = 0.0
            bi[i] = 0.0


@njit(cache=True)
def update_coba(hom, v, ge, gi, refrac, be, bi, nparam, ref, sc, flag):
    """Steps 1-3 for every COBA neuron."""
    de = sc[DECAY_E]
    di = sc[DECAY_I]
    if hom:
        p0, p1, p2, p6, rf = (
            nparam[V_INF, 0],
            nparam[V_RESET, 0],
            nparam[V_TH, 0],
            nparam[DT_TAU_M, 0],
            ref[0],
        )
        for i in range(v.shape[0]):
            v[i], ge[i], gi[i], refrac[i], flag[i] = _coba_neuron(
                v[i],
                ge[i],
                gi[i],
                refrac[i],
                be[i],
                bi[i],
                p0,
                p1,
                p2,
                p6,
                rf,
                de,
                di,
                sc[E_EXC],
                sc[E_INH],
            )
            be[i] = 0.0
            bi[i] = 0.0
    else:
        for i in range(v.shape[0]):
            v[i], ge[i], gi[i], refrac[i], flag[i] = _coba_neuron(
                v[i],
                ge[i],
                gi[i],
                refrac[i],
                be[i],
                bi[i],
                nparam[V_INF, i],
                nparam[V_RESET, i],
                nparam[V_TH, i],
                nparam[DT_TAU_M, i],
                ref[i],
                de,
                di,
                sc[E_EXC],
                sc[E_INH],
            )
            be[i] = 0.0
            bi[i] = 0.0


@njit(cache=True)
def update_delta(hom, v, ge, gi, refrac, be, bi, nparam, ref, sc, flag):
    """Steps 1-3 for every neuron with delta synapses (jumps of v)."""
    if hom:
        p0, p1, p2, p3, rf = (
            nparam[V_INF, 0],
            nparam[V_RESET, 0],
            nparam[V_TH, 0],
            nparam[DECAY_M, 0],
            ref[0],
        )
        for i in range(v.shape[0]):
            v[i], refrac[i], flag[i] = _delta_neuron(
                v[i], refrac[i], be[i], bi[i], p0, p1, p2, p3, rf
            )
            be[i] = 0.0
            bi[i] = 0.0
    else:
        for i in range(v.shape[0]):
            v[i], refrac[i], flag[i] = _delta_neuron(
                v[i],
                refrac[i],
                be[i],
                bi[i],
                nparam[V_INF, i],
                nparam[V_RESET, i],
                nparam[V_TH, i],
                nparam[DECAY_M, i],
                ref[i],
            )
            be[i] = 0.0
            bi[i] = 0.0


#: the neuron update of each synapse model
UPDATES = {MODEL_CUBA: update_cuba, MODEL_COBA: update_coba, MODEL_DELTA: update_delta}
# ``_update`` is a placeholder: each compiled variant of ``update_parallel`` (and of the step
# loop) rebinds it to the update of one neuron model (see ``numba_step``).
_update = update_cuba


def update_parallel(hom, v, ge, gi, refrac, be, bi, nparam, ref, sc, flag):
    """``_update`` on contiguous slices in parallel (identical results: every neuron's
    arithmetic is independent of the others). ``_update`` is bound per model below."""
    n = v.shape[0]
    n_chunks = 8 * get_num_threads()
    for c in prange(n_chunks):
        a = c * n // n_chunks
        b = (c + 1) * n // n_chunks
        _update(
            hom,
            v[a:b],
            ge[a:b],
            gi[a:b],
            refrac[a:b],
            be[a:b],
            bi[a:b],
            nparam[:, a:b],
            ref[a:b],
            sc,
            flag[a:b],
        )


@njit(cache=True)
def homeostasis(h, theta, params, spiked, n_spk):
    """Threshold homeostasis after the threshold test (see :mod:`neurofabric.snn.homeostasis`):
    theta decays (or drifts down toward the target rate), spikes raise it; the effective
    threshold ``params[V_TH]`` follows."""
    decay = h[H_DECAY]
    down = h[H_DRIFT]
    floor = h[H_THETA_MIN]
    lo = int(h[H_LO])
    hi = int(h[H_HI])
    for i in range(lo, hi):
        th = theta[i] * decay - down
        if th < floor:
            th = floor
        params[V_TH, i] += th - theta[i]
        theta[i] = th
    for q in range(n_spk):
        j = spiked[q]
        if lo <= j < hi:
            params[V_TH, j] += h[H_STEP]
            theta[j] += h[H_STEP]


@njit(cache=True)
def collect(flag, spiked):
    """Indices of the set flags (ascending) into ``spiked``; clears the flags."""
    n = flag.shape[0]
    words = flag[: n - n % 8].view(np.uint64)
    count = 0
    for w in range(words.shape[0]):
        if words[w] != 0:
            for i in range(8 * w, 8 * w + 8):
                if flag[i]:
                    spiked[count] = i
                    count += 1
                    flag[i] = 0
    for i in range(n - n % 8, n):
        if flag[i]:
            spiked[count] = i
            count += 1
            flag[i] = 0
    return count
