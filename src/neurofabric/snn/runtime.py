"""What ``SpikingNetwork.build`` assembles, as functions of the parameters: per-neuron
constants, the synapses (generated with :mod:`.connectivity` or read back from saved
arrays), plasticity and short-term plasticity state, and the pieces of
:class:`~neurofabric.snn.kernels.layout.Network` derived from them."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

import numpy as np

from neurofabric.core.errors import ConfigError
from neurofabric.snn.connectivity import (
    CSR,
    Projection,
    build_csc,
    build_csr,
    csr_from_arrays,
    empty_csr,
    projection_key,
)
from neurofabric.snn.kernels import layout as L
from neurofabric.snn.params import SynapseParams
from neurofabric.snn.plasticity import PlasticState, Rule, single_rule
from neurofabric.snn.stp import STPState, single_stp, stp_state


def cuba_coupling(tau_s: float, tau_m: np.ndarray, dt: float) -> np.ndarray:
    """How much of a CUBA synaptic variable at the start of a step reaches ``v`` by its end
    (``kernels/reference.py``): ``tau_s/(tau_s - tau_m) (e^{-dt/tau_s} - e^{-dt/tau_m})``,
    or ``dt/tau_m e^{-dt/tau_m}`` where the time constants are equal."""
    ds, dm = math.exp(-dt / tau_s), np.exp(-dt / tau_m)
    same = np.isclose(tau_m, tau_s, rtol=1e-12, atol=0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        c = tau_s / (tau_s - tau_m) * (ds - dm)
    return np.where(same, dt / tau_m * dm, c)


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
    rows = [None] * L.N_NEURON_PARAMS
    rows[L.V_INF] = arrays["v_rest"] + arrays["r_m"] * arrays["i_ext"]
    rows[L.V_RESET] = arrays["v_reset"]
    rows[L.V_TH] = arrays["v_th"]
    rows[L.DECAY_M] = dm
    rows[L.C_E] = cuba_coupling(synapse.tau_e, tau, dt)
    rows[L.C_I] = cuba_coupling(synapse.tau_i, tau, dt)
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


def input_offsets(inputs: Mapping[str, Any]) -> tuple[dict[str, int], int]:
    """The global index of each input group's first source (input groups are numbered one
    after the other, in the order they were added) and the number of input sources."""
    offsets, at = {}, 0
    for name, group in inputs.items():
        offsets[name] = at
        at += group.n
    return offsets, at


def keyed_projections(
    projections: Sequence[Projection], seed: int, offsets: Mapping[str, int], procedural: bool
) -> list[tuple[Projection, int, int, bool]]:
    """(projection, stream key, source offset, from an input) of the stored (CSR) or the
    procedural projections; the key depends on the seed and the projection's index only,
    so both storage modes draw the same synapses."""
    out = []
    for index, proj in enumerate(projections):
        if proj.procedural == procedural:
            is_input = proj.source != "neurons"
            offset = offsets[proj.source] if is_input else 0
            out.append((proj, projection_key(seed & 0xFFFFFFFF, index), offset, is_input))
    return out


def generate_synapses(
    stored: Sequence[tuple[Projection, int, int, bool]],
    n_neurons: int,
    n_inputs: int,
    kernels: ModuleType,
    with_csc: bool,
    dry: bool = False,
) -> tuple[CSR, CSR]:
    """The recurrent CSR (with its transposed index if ``with_csc``) and the input CSR of
    the stored projections (:func:`keyed_projections`); ``dry``: their layout without a
    synapse (see :func:`~neurofabric.snn.connectivity.build_csr`)."""
    rec = [(p, key, offset) for p, key, offset, is_input in stored if not is_input]
    ext = [(p, key, offset) for p, key, offset, is_input in stored if is_input]
    csr = build_csr(rec, n_neurons, kernels, with_csc, dry) if rec else empty_csr()
    input_csr = build_csr(ext, max(n_inputs, 1), kernels, dry=dry) if ext else empty_csr()
    return csr, input_csr


def stored_csr(
    arrays: Mapping[str, np.ndarray],
    n_neurons: int,
    kernels: ModuleType,
    with_csc: bool,
    plastic: bool,
) -> CSR:
    """A CSR from saved arrays (copied: the kernels write the weights of plastic ones)."""
    own = {k: np.array(a) for k, a in arrays.items()}
    return csr_from_arrays(own, n_neurons, with_csc, kernels, plastic)


def plastic_state(
    rules: tuple[Rule | None, Rule | None],
    csr: CSR,
    input_csr: CSR,
    n_neurons: int,
    n_inputs: int,
    kernels: ModuleType,
) -> PlasticState:
    """Traces for the plastic groups (recurrent, input) and the input synapses' transposed
    index, which potentiation walks."""
    rec_rule, ext_rule = rules
    ext_csc = build_csc(input_csr, n_neurons, kernels) if ext_rule is not None else None
    return PlasticState.create(
        rec_rule, csr.mask, n_neurons, ext_rule, input_csr.mask, max(n_inputs, 1), ext_csc
    )


def stp_groups(projections: Sequence[Projection], n_neurons: int, n_inputs: int) -> STPState:
    """The short-term plasticity state of the recurrent and the input group (from rest)."""
    rec = single_stp([p for p in projections if p.source == "neurons"], "recurrent")
    ext = single_stp([p for p in projections if p.source != "neurons"], "input")
    return STPState(stp_state(rec, n_neurons), stp_state(ext, max(n_inputs, 1)))


def group_rules(projections: Sequence[Projection]) -> tuple[Rule | None, Rule | None]:
    """The plasticity rule of the recurrent and of the input group (None: not plastic)."""
    rec = single_rule([p for p in projections if p.source == "neurons"], "recurrent")
    ext = single_rule([p for p in projections if p.source != "neurons"], "input")
    return rec, ext
