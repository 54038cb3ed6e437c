"""The kernels' view of a built network: per-neuron constants and the pieces of
:class:`~neurofabric.snn.kernels.layout.Network` that ``SpikingNetwork.build`` derives from
the parameters (the synapses come from :mod:`.connectivity`)."""

from __future__ import annotations

import math

import numpy as np

from neurofabric.core.errors import ConfigError
from neurofabric.snn.kernels import layout as L
from neurofabric.snn.params import SynapseParams


def neuron_constants(
    arrays: dict[str, np.ndarray],
    synapse: SynapseParams,
    dt: float,
    dtype: str,
    theta: np.ndarray,
) -> L.Neurons:
    """The exact one-step factors of the LIF equations (see ``kernels/reference.py``) per
    neuron, thresholds raised by the adapted ``theta``, packed refractory steps and the
    synapse constants."""
    tau = arrays["tau_m"]
    dm = np.exp(-dt / tau)

    def coupling(tau_s: float) -> np.ndarray:
        ds = math.exp(-dt / tau_s)
        same = np.isclose(tau, tau_s, rtol=1e-12, atol=0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            c = tau_s / (tau_s - tau) * (ds - dm)
        return np.where(same, dt / tau * dm, c)

    rows = [None] * L.N_NEURON_PARAMS
    rows[L.V_INF] = arrays["v_rest"] + arrays["r_m"] * arrays["i_ext"]
    rows[L.V_RESET] = arrays["v_reset"]
    rows[L.V_TH] = arrays["v_th"]
    rows[L.DECAY_M] = dm
    rows[L.C_E] = coupling(synapse.tau_e)
    rows[L.C_I] = coupling(synapse.tau_i)
    rows[L.DT_TAU_M] = dt / tau
    params = np.stack(rows).astype(dtype)
    params[L.V_TH] += theta.astype(params.dtype)  # adapted thresholds (homeostasis)
    syn = np.zeros(L.N_SYN_CONSTANTS)
    syn[L.DECAY_E] = math.exp(-dt / synapse.tau_e)
    syn[L.DECAY_I] = math.exp(-dt / synapse.tau_i)
    syn[L.E_EXC] = synapse.e_exc
    syn[L.E_INH] = synapse.e_inh
    syn[L.INH_SIGN] = -1.0 if synapse.model == "coba" else 1.0
    syn[L.DT] = dt
    return L.Neurons(params, refractory_steps(arrays, dt), syn)


def refractory_steps(arrays: dict[str, np.ndarray], dt: float) -> np.ndarray:
    """Refractory steps in the low 16 bits, lockout steps above (0: none), int32."""
    hold = np.rint(arrays["t_ref"] / dt).astype(np.int64)
    lock = np.rint(arrays["t_lock"] / dt).astype(np.int64)
    if hold.max(initial=0) >= 65536 or lock.max(initial=0) >= 32768:
        raise ConfigError(
            f"`t_ref` must be < 65536 steps and `t_lock` < 32768 steps of dt={dt} s, got "
            f"{hold.max()} and {lock.max()} steps; use a larger dt or shorter times"
        )
    return (hold | np.where(lock > hold, lock, 0) << 16).astype(np.int32)


def homogeneous(neurons: L.Neurons, adapting: bool) -> int:
    """1 when every neuron has the same parameters (the kernels then read scalars)."""
    if adapting:
        return 0  # thresholds adapt per neuron
    p, r = neurons.params, neurons.ref_steps
    return int(bool(np.all(p == p[:, :1])) and bool(np.all(r == r[0])))


def dense_limit(propagation: str, has_csc: bool, recurrent_stp: bool, limit: int) -> int:
    """The spike count above which a step pulls through the transposed index; -1: push
    only (event-driven, no transposed index, or STP, which scales each source's row)."""
    if propagation == "event" or not has_csc or recurrent_stp:
        return -1
    return 0 if propagation == "dense" else limit
