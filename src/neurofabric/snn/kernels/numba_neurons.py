"""Steps 1-3 of the step loop in compiled code: arrivals, integration, threshold and reset
of every neuron (one loop per synapse model, branch-free so LLVM vectorizes it), the
threshold homeostasis after the test, and the collection of the step's spikes.

The per-neuron formulas come from :mod:`.formulas` (compiled by :mod:`.numba_jit`).
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
from neurofabric.snn.kernels.numba_jit import formula, variant

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
def _cuba_neuron(v, ge, gi, r, a_e, a_i, p, ref, syn):
    """One CUBA neuron (parameters ``p``: a column of ``Neurons.params``; ``syn``: the
    synapse constants): returns (v, g_e, g_i, refractory counter, fired)."""
    x_e = ge + a_e
    x_i = gi + a_i
    vn = cuba_v(v, x_e, x_i, p[V_INF], p[DECAY_M], p[C_E], p[C_I])
    v_new, r_new, fired = _refractory_step(r, vn, v, p[V_TH], p[V_RESET], ref)
    return v_new, flushed(x_e * syn[DECAY_E]), flushed(x_i * syn[DECAY_I]), r_new, fired


@njit(cache=True, inline="always")
def _coba_neuron(v, ge, gi, r, a_e, a_i, p, ref, syn):
    """One COBA neuron, as :func:`_cuba_neuron`."""
    x_e = ge + a_e
    x_i = gi + a_i
    vn = coba_v(v, x_e, x_i, p[V_INF], p[DT_TAU_M], syn[E_EXC], syn[E_INH])
    v_new, r_new, fired = _refractory_step(r, vn, v, p[V_TH], p[V_RESET], ref)
    return v_new, flushed(x_e * syn[DECAY_E]), flushed(x_i * syn[DECAY_I]), r_new, fired


@njit(cache=True, inline="always")
def _delta_neuron(v, ge, gi, r, a_e, a_i, p, ref, syn):
    """One neuron with delta synapses (g_e and g_i stay 0), as :func:`_cuba_neuron`."""
    vn = delta_v(v, a_e, a_i, p[V_INF], p[DECAY_M])
    v_new, r_new, fired = _refractory_step(r, vn, v, p[V_TH], p[V_RESET], ref)
    return v_new, ge, gi, r_new, fired


@njit(cache=True, inline="always")
def _column(params, i):
    """The parameters of neuron ``i`` (a column of ``Neurons.params``), as a tuple."""
    return (
        params[0, i],
        params[1, i],
        params[2, i],
        params[3, i],
        params[4, i],
        params[5, i],
        params[6, i],
    )


_neuron = _cuba_neuron  # rebound per synapse model (see UPDATES)


def update(hom, v, ge, gi, refrac, be, bi, params, ref, syn, flag):
    """Steps 1-3 for every neuron: take the arrivals ``be``/``bi`` (and clear them),
    integrate, test the threshold, reset; ``flag[i]`` says whether neuron ``i`` fired.
    ``hom``: all neurons share their parameters, so column 0 is read once (the per-step
    memory traffic is then the state alone). Compiled per model with ``_neuron`` bound to
    its neuron; the loops are branch-free, so LLVM vectorizes them."""
    constants = (syn[0], syn[1], syn[2], syn[3])  # read once, not in the loop
    if hom:
        p = _column(params, 0)
        rf = ref[0]
        for i in range(v.shape[0]):
            v[i], ge[i], gi[i], refrac[i], flag[i] = _neuron(
                v[i], ge[i], gi[i], refrac[i], be[i], bi[i], p, rf, constants
            )
            be[i] = 0.0
            bi[i] = 0.0
    else:
        for i in range(v.shape[0]):
            v[i], ge[i], gi[i], refrac[i], flag[i] = _neuron(
                v[i], ge[i], gi[i], refrac[i], be[i], bi[i], _column(params, i), ref[i], constants
            )
            be[i] = 0.0
            bi[i] = 0.0


#: the neuron update of each synapse model
UPDATES = {
    model: variant(update, {"_neuron": neuron}, f"update_{name}")
    for model, neuron, name in (
        (MODEL_CUBA, _cuba_neuron, "cuba"),
        (MODEL_COBA, _coba_neuron, "coba"),
        (MODEL_DELTA, _delta_neuron, "delta"),
    )
}
# ``_update`` is a placeholder: each compiled variant of ``update_parallel`` (and of the step
# loop) rebinds it to the update of one neuron model (see ``numba_step``).
_update = UPDATES[MODEL_CUBA]


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
