r"""The formulas both backends share, written once in plain Python.

:mod:`.reference` calls them on numpy arrays (one call for many neurons or synapses) or on
scalars; :mod:`.numba_jit` compiles the same functions (inlined) for the loops of the numba
kernels, where they see scalars. So each is written with arithmetic, ``np.exp`` and the
element-wise primitives ``_max``, ``_min``, ``_abs`` and ``_select`` (numpy's maximum,
minimum, abs and where here; numba_jit binds the scalar builtins and a conditional instead,
which keep the compiled loops as fast as hand-written ones: numpy's NaN-aware maximum cost
the plasticity loops 6 %, a branch-free multiply the neuron loop 10 %), and branches only on
parameters (``mu``, the rule kind), which are scalars in both.

Neurons, one step ``dt`` (see :mod:`.reference` for the equations and step order)::

    CUBA:   v <- v_inf + (v - v_inf) e^{-dt/tau_m} + x_e c_e + x_i c_i
    COBA:   g = 1 + x_e + x_i,  v_s = (v_inf + x_e E_e + x_i E_i) / g,
            v <- v_s + (v - v_s) e^{-g dt/tau_m}
    delta:  v <- v_inf + (v + a_e + a_i - v_inf) e^{-dt/tau_m}

with ``x = g + a`` (the synaptic variable plus the step's arrivals); then each synaptic
variable decays, ``g <- flushed(x e^{-dt/tau})``.

Traces (plasticity) decay by :func:`trace_decay` over the steps since they were last read and
are bumped at their neuron's spikes; the rules' weight changes are :func:`depression` (on a
presynaptic event) and :func:`potentiation` (on a postsynaptic spike), see
:mod:`neurofabric.snn.plasticity`. Short-term plasticity is :func:`stp_scale`, see
:mod:`neurofabric.snn.stp`.
"""

import math

import numpy as np

from neurofabric.snn.kernels.layout import (
    A2_MINUS,
    A2_PLUS,
    A3_MINUS,
    A3_PLUS,
    KIND_TRIPLET,
    MU_MINUS,
    MU_PLUS,
    RULE_KIND,
    STP_K,
    STP_MODULATE,
    STP_TAU_FACIL,
    STP_TAU_REC,
    STP_U,
    W_MAX,
    W_MIN,
    X_TAR,
)

#: Decayed synaptic variables (conductances relative to the leak, or currents in volts) below
#: this are set to 0. Without it a silent synapse never reaches 0: g e^{-dt/tau} rounds back up
#: to the smallest subnormal double (4.9e-324) and stays there, and arithmetic on subnormals
#: costs tens of times more on x86 (measured: the Diehl & Cook network's idle steps ran 2.6x
#: slower). 1e-30 is far below anything that moves a membrane potential.
G_FLUSH = 1e-30

# element-wise primitives on arrays; numba_jit.SCALAR_PRIMITIVES replaces them for numba
_max = np.maximum
_min = np.minimum
_abs = np.abs
_select = np.where

#: the functions :mod:`.numba_jit` compiles, in an order where callees come first
NAMES = (
    "flushed",
    "cuba_v",
    "coba_v",
    "delta_v",
    "trace_decay",
    "bump_trace",
    "soft_bound",
    "clip_weight",
    "depression",
    "potentiation",
    "stp_scale",
)


def flushed(g):
    """``g``, or 0 where ``|g| < G_FLUSH``."""
    return _select(_abs(g) >= G_FLUSH, g, 0.0 * g)


def cuba_v(v, x_e, x_i, v_inf, decay_m, c_e, c_i):
    """CUBA: exact integration over one step (linear, constant coefficients)."""
    return v_inf + (v - v_inf) * decay_m + x_e * c_e + x_i * c_i


def coba_v(v, x_e, x_i, v_inf, dt_tau_m, e_exc, e_inh):
    """COBA: exponential Euler, exact while the conductances are frozen over the step."""
    gt = 1.0 + x_e + x_i
    vs = (v_inf + x_e * e_exc + x_i * e_inh) / gt
    return vs + (v - vs) * np.exp(-dt_tau_m * gt)


def delta_v(v, a_e, a_i, v_inf, decay_m):
    """Delta synapses: the arrivals jump ``v``, which then decays to ``v_inf``."""
    return v_inf + (v + a_e + a_i - v_inf) * decay_m


def trace_decay(steps, dt, tau):
    """The factor a trace decays by over ``steps`` steps: ``exp(-steps dt / tau)``."""
    return np.exp(-(steps * dt) / tau)


def bump_trace(tr, i, nearest):
    """The spike of neuron ``i`` on its two traces ``tr[:, i]``: set to 1 (nearest-spike
    interaction) or incremented (all-to-all)."""
    if nearest:
        tr[0, i] = 1.0
        tr[1, i] = 1.0
    else:
        tr[0, i] += 1.0
        tr[1, i] += 1.0


def soft_bound(x, mu):
    """``max(x, 0)^mu`` for the distance ``x`` to a weight bound; 1 for ``mu = 0``
    (additive), the distance itself for ``mu = 1`` (multiplicative)."""
    if mu == 0.0:
        return 1.0
    pos = _max(x, 0.0)
    return pos if mu == 1.0 else pos**mu


def clip_weight(w, rule):
    """``w`` within the rule's hard bounds [w_min, w_max]."""
    return _min(_max(w, rule[W_MIN]), rule[W_MAX])


def depression(rule, w, post1, r2):
    """The weight decrease of a presynaptic event: triplet rules
    ``o1 (A2- + A3- r2) f_-(w)``, Diehl & Cook ``nu_pre x_post``."""
    if rule[RULE_KIND] == KIND_TRIPLET:
        return (
            post1
            * (rule[A2_MINUS] + rule[A3_MINUS] * r2)
            * soft_bound(w - rule[W_MIN], rule[MU_MINUS])
        )
    return rule[A2_MINUS] * post1


def potentiation(rule, w, pre1, o2):
    """The weight increase of a postsynaptic spike: triplet rules
    ``r1 (A2+ + A3+ o2) f_+(w)``, Diehl & Cook ``nu_post (x_pre - x_tar) (w_max - w)^mu``."""
    soft = soft_bound(rule[W_MAX] - w, rule[MU_PLUS])
    if rule[RULE_KIND] == KIND_TRIPLET:
        return pre1 * (rule[A2_PLUS] + rule[A3_PLUS] * o2) * soft
    return rule[A2_PLUS] * (pre1 - rule[X_TAR]) * soft


def stp_scale(s, m, t, dt, stp):
    """Efficacy factor of ``m`` coincident spikes of source ``s`` under Tsodyks-Markram
    short-term plasticity (``stp``: the group's :class:`.layout.STP`, updated): exact decay
    of ``u`` and ``x`` since the source's last spike, then per spike facilitation
    ``u += U (1 - u)``, release ``r = u x``, depression ``x -= r``; the factor adds ``r``
    per spike, or ``1 + k r`` in the modulation mode. A zero time constant recovers at once."""
    prm, u, x, last = stp.prm, stp.u, stp.x, stp.last
    total = 0.0
    for _ in range(m):
        if last[s] >= 0:
            elapsed = (t - last[s]) * dt
            tau_f, tau_r = prm[STP_TAU_FACIL], prm[STP_TAU_REC]
            u[s] = u[s] * math.exp(-elapsed / tau_f) if tau_f > 0.0 else 0.0
            x[s] = 1.0 - (1.0 - x[s]) * math.exp(-elapsed / tau_r) if tau_r > 0.0 else 1.0
        last[s] = t
        u[s] = u[s] + prm[STP_U] * (1.0 - u[s])
        r = u[s] * x[s]
        x[s] = x[s] - r
        total += r if prm[STP_MODULATE] == 0.0 else 1.0 + prm[STP_K] * r
    return total
