"""Checkpoints of a :class:`SpikingNetwork`: everything needed to resume a run exactly.

Parameters, projections (with their plasticity and STP rules) and input groups go to the
manifest; synapses (CSR arrays, masks), neuron parameters, the dynamic state (potentials,
conductances, refractory counters, ring buffers), learning state (STDP traces, STP u/x,
adapted thresholds) go to Arrow arrays. See :mod:`neurofabric.core.checkpoint`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from neurofabric.core import backend as backends
from neurofabric.core.checkpoint import load_checkpoint, save_checkpoint
from neurofabric.core.errors import CheckpointError
from neurofabric.snn.connectivity import Projection, csr_from_arrays
from neurofabric.snn.homeostasis import homeostasis_from_json
from neurofabric.snn.inputs import input_from_json
from neurofabric.snn.params import LIFParams, SynapseParams
from neurofabric.snn.plasticity import rule_from_json, rule_to_json, single_rule
from neurofabric.snn.stp import ShortTermPlasticity, stp_to_json
from neurofabric.snn.topology import topology_from_json, topology_to_json

if TYPE_CHECKING:
    from neurofabric.snn.network import SpikingNetwork

FORMAT_ENGINE = "snn.SpikingNetwork"
_STATE = ("v", "ge", "gi", "refrac", "buf_e", "buf_i")
_NEURON = ("v_rest", "v_th", "v_reset", "tau_m", "t_ref", "r_m", "i_ext", "t_lock")
_CSR = ("indptr", "indices", "weights", "delays", "flags", "mask")


def _projection_json(p: Projection) -> dict[str, Any]:
    return {
        "source": p.source,
        "topology": topology_to_json(p.topology),
        "src_range": list(p.src_range),
        "tgt_range": list(p.tgt_range),
        "weight": p.weight,
        "weight_std": p.weight_std,
        "inh_weight": p.inh_weight,
        "inh_weight_std": p.inh_weight_std,
        "delay_steps": list(p.delay_steps),
        "allow_self": p.allow_self,
        "dale_split": p.dale_split,
        "procedural": p.procedural,
        "plasticity": None if p.plasticity is None else rule_to_json(p.plasticity),
        "stp": None if p.stp is None else stp_to_json(p.stp),
    }


def _projection_from_json(pj: dict[str, Any]) -> Projection:
    return Projection(
        **dict(
            pj,
            topology=topology_from_json(pj["topology"]),
            src_range=tuple(pj["src_range"]),
            tgt_range=tuple(pj["tgt_range"]),
            delay_steps=tuple(pj["delay_steps"]),
            plasticity=None if pj.get("plasticity") is None else rule_from_json(pj["plasticity"]),
            stp=None if pj.get("stp") is None else ShortTermPlasticity(**pj["stp"]),
        )
    )


def _rng_state_json(rng: np.random.Generator) -> dict[str, Any]:
    state = rng.bit_generator.state
    if state.get("bit_generator") != "PCG64":
        raise CheckpointError(
            "only PCG64 random streams can be saved; seed the network with "
            "an int or a PCG64 Generator"
        )
    return state


def save_network(net: SpikingNetwork, path: str | Path) -> Path:
    """Write ``net`` as a checkpoint directory (atomically) and return its path."""
    net._require_built()
    arrays: dict[str, np.ndarray] = {}
    inputs_meta = []
    for name, group in net.inputs.items():
        meta, arrs = group.to_json()
        inputs_meta.append({"name": name, **meta})
        arrays.update({f"input.{name}.{k}": v for k, v in arrs.items()})
    for prefix, csr in (("csr", net.csr_), ("input_csr", net.input_csr_)):
        arrays.update({f"{prefix}.{k}": v for k, v in csr.arrays().items()})
    arrays.update(net.plastic_.arrays())
    arrays["homeostasis.theta"] = net.theta_
    arrays.update({f"stp.{k}": a for k, a in enumerate(net.stp_) if k % 4 and a.size})
    arrays.update({f"state.{k}": getattr(net.state_, k) for k in _STATE})
    arrays.update({f"neuron.{k}": net._neuron_arrays[k] for k in _NEURON})
    meta = {
        "t": net.state_.t,
        "rng_state": _rng_state_json(net.state_.rng),
        "inputs": inputs_meta,
        "projections": [_projection_json(p) for p in net.projections],
    }
    return save_checkpoint(
        path, engine=FORMAT_ENGINE, params=net.get_params(), arrays=arrays, meta=meta
    )


def load_network(
    cls: type[SpikingNetwork], path: str | Path, *, backend: str | None = None
) -> SpikingNetwork:
    """Read a checkpoint written by :func:`save_network`; ``CheckpointError`` if it is
    corrupt, foreign or inconsistent."""
    ck = load_checkpoint(path, engine=FORMAT_ENGINE)
    try:
        p = dict(ck.params)
        neuron = LIFParams(**{k: ck.arrays[f"neuron.{k}"] for k in p.pop("neuron")})
        synapse = SynapseParams(**p.pop("synapse"))
        homeo = p.pop("homeostasis", None)
        p["homeostasis"] = None if homeo is None else homeostasis_from_json(homeo)
        if backend is not None:
            p["backend"] = backend
        net = cls(p.pop("n_neurons"), neuron=neuron, synapse=synapse, **p)
        for meta in ck.meta["inputs"]:
            name = meta.pop("name")
            arrs = {
                k.split(".")[-1]: v for k, v in ck.arrays.items() if k.startswith(f"input.{name}.")
            }
            net.inputs[name] = input_from_json(meta, arrs)
        net.projections.extend(_projection_from_json(pj) for pj in ck.meta["projections"])
        _restore(net, ck.arrays, ck.meta)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: checkpoint content is inconsistent ({exc!r})") from exc
    return net


def _restore(net: SpikingNetwork, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Rebuild the runtime structures of ``net`` from saved arrays (no regeneration)."""
    from neurofabric.snn.network import NetworkState

    net.backend_, net._k = backends.resolve("snn", net.backend)
    net.theta_[:] = arrays["homeostasis.theta"]
    net._index_inputs()
    net._nparam, net._ref_steps, net._sc = net._neuron_constants()
    rec_rule = single_rule([p for p in net.projections if p.source == "neurons"], "recurrent")
    ext_rule = single_rule([p for p in net.projections if p.source != "neurons"], "input")

    def csr(prefix: str, with_csc: bool, plastic: bool):
        return csr_from_arrays(
            {k: np.array(arrays[f"{prefix}.{k}"]) for k in _CSR},
            net.n_neurons,
            with_csc,
            net._k,
            plastic,
        )

    with_csc = (net.propagation != "event" or rec_rule is not None) and arrays[
        "csr.indptr"
    ].size > 1
    net.csr_ = csr("csr", with_csc, rec_rule is not None)
    net.input_csr_ = csr("input_csr", False, ext_rule is not None)
    net._make_plastic_state(rec_rule, ext_rule)
    net.plastic_.load_traces(arrays)
    net._make_stp_state()
    for k, a in enumerate(net.stp_):
        if f"stp.{k}" in arrays:
            a[:] = arrays[f"stp.{k}"]
    net.procedural_ = net._procedural_table()
    rng = np.random.Generator(np.random.PCG64())
    rng.bit_generator.state = meta["rng_state"]
    net.state_ = NetworkState(
        int(meta["t"]), *(np.array(arrays[f"state.{k}"]) for k in _STATE), rng
    )
    net.build_s_ = 0.0
    net._built = True
