"""Checkpoints of a :class:`SpikingNetwork`: everything needed to resume a run exactly.

Parameters, projections (with their plasticity and STP rules) and input groups go to the
manifest; synapses (CSR arrays, masks), neuron parameters, the dynamic state (potentials,
conductances, refractory counters, ring buffers), learning state (STDP traces, STP u/x,
adapted thresholds) go to Arrow arrays. See :mod:`neurofabric.core.checkpoint`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from neurofabric.core.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from neurofabric.core.errors import CheckpointError
from neurofabric.snn.connectivity import Projection
from neurofabric.snn.homeostasis import homeostasis_from_json
from neurofabric.snn.inputs import input_from_json
from neurofabric.snn.params import LIFParams, SynapseParams
from neurofabric.snn.plasticity import rule_from_json, rule_to_json
from neurofabric.snn.state import STATE_ARRAYS, NetworkState, Snapshot
from neurofabric.snn.stp import ShortTermPlasticity, stp_to_json
from neurofabric.snn.topology import Explicit, topology_from_json, topology_to_json

FORMAT_ENGINE = "snn.SpikingNetwork"
_NEURON = ("v_rest", "v_th", "v_reset", "tau_m", "t_ref", "r_m", "i_ext", "t_lock")
_CSR = ("indptr", "indices", "weights", "delays", "flags", "mask")
# the STP variables by their file names (the index in the kernels' former flat STP tuple)
_STP_FILES = {
    "rec.u": "stp.1",
    "rec.x": "stp.2",
    "rec.last": "stp.3",
    "ext.u": "stp.5",
    "ext.x": "stp.6",
    "ext.last": "stp.7",
}


class _Network(Protocol):
    """What this module needs of a :class:`~neurofabric.snn.network.SpikingNetwork`
    (which imports this module, so it is not imported here)."""

    n_neurons: int
    max_delay_steps: int
    inputs: dict[str, Any]
    projections: list[Projection]
    neuron: LIFParams

    def get_params(self) -> dict[str, Any]: ...
    def snapshot(self) -> Snapshot: ...
    def build(self, *, saved: Snapshot | None = None) -> Any: ...


N = TypeVar("N", bound=_Network)


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
        "delay_normal": None if p.delay_normal is None else list(p.delay_normal),
        "allow_self": p.allow_self,
        "dale_split": p.dale_split,
        "procedural": p.procedural,
        "plasticity": None if p.plasticity is None else rule_to_json(p.plasticity),
        "stp": None if p.stp is None else stp_to_json(p.stp),
    }


def _projection_arrays(ck: Checkpoint, k: int) -> dict[str, np.ndarray]:
    """The arrays of projection ``k`` (those of an Explicit topology), copied."""
    prefix = f"projection.{k}."
    return {n[len(prefix) :]: np.array(a) for n, a in ck.arrays.items() if n.startswith(prefix)}


def _projection_from_json(
    pj: dict[str, Any], shared: dict[Any, Any], arrays: dict[str, np.ndarray]
) -> Projection:
    """A saved projection. Its rule and STP objects are taken from ``shared`` when an equal
    one was read already: a source group's projections shared one object when saved, and
    the network accepts one rule (and one STP) object per group."""
    rule = None if pj.get("plasticity") is None else rule_from_json(pj["plasticity"])
    stp = None if pj.get("stp") is None else ShortTermPlasticity(**pj["stp"])
    return Projection(
        **dict(
            pj,
            topology=topology_from_json(pj["topology"], arrays),
            explicit_steps=arrays.get("steps"),
            src_range=tuple(pj["src_range"]),
            tgt_range=tuple(pj["tgt_range"]),
            delay_steps=tuple(pj["delay_steps"]),
            delay_normal=None if pj.get("delay_normal") is None else tuple(pj["delay_normal"]),
            plasticity=None if rule is None else shared.setdefault(rule, rule),
            stp=None if stp is None else shared.setdefault(stp, stp),
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


def save_network(net: _Network, path: str | Path) -> Path:
    """Write ``net`` as a checkpoint directory (atomically) and return its path."""
    snap = net.snapshot()
    arrays: dict[str, np.ndarray] = {}
    inputs_meta = []
    for name, group in net.inputs.items():
        meta, arrs = group.to_json()
        inputs_meta.append({"name": name, **meta})
        arrays.update({f"input.{name}.{k}": v for k, v in arrs.items()})
    for k, proj in enumerate(net.projections):
        if isinstance(proj.topology, Explicit):
            arrays.update({f"projection.{k}.{n}": a for n, a in proj.topology.arrays().items()})
            if proj.explicit_steps is not None:
                arrays[f"projection.{k}.steps"] = np.asarray(proj.explicit_steps, np.int64)
    for prefix, csr in (("csr", snap.csr), ("input_csr", snap.input_csr)):
        arrays.update({f"{prefix}.{k}": v for k, v in csr.items()})
    arrays.update(snap.traces)
    arrays["homeostasis.theta"] = snap.theta
    arrays.update({_STP_FILES[k]: a for k, a in snap.stp.items()})
    arrays.update({f"state.{k}": getattr(snap.state, k) for k in STATE_ARRAYS})
    neuron = net.neuron.arrays(net.n_neurons)
    arrays.update({f"neuron.{k}": neuron[k] for k in _NEURON})
    meta = {
        "t": snap.state.t,
        "rng_state": _rng_state_json(snap.state.rng),
        "inputs": inputs_meta,
        "projections": [_projection_json(p) for p in net.projections],
    }
    return save_checkpoint(
        path, engine=FORMAT_ENGINE, params=net.get_params(), arrays=arrays, meta=meta
    )


def load_network(cls: type[N], path: str | Path, *, backend: str | None = None) -> N:
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
        shared: dict[Any, Any] = {}
        net.projections.extend(
            _projection_from_json(pj, shared, _projection_arrays(ck, k))
            for k, pj in enumerate(ck.meta["projections"])
        )
        _validate(net, ck)
        net.build(saved=_snapshot(ck))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: checkpoint content is inconsistent ({exc!r})") from exc
    return net


def _validate_csr(ck: Checkpoint, prefix: str, n_rows: int, n_targets: int, max_d: int) -> None:
    """Everything a propagation kernel indexes with, checked against the network's sizes."""
    flags = ck.array(f"{prefix}.flags", kinds="iu", shape=(2,))
    if flags[0] not in (0, 1) or not (flags[1] == -1 or 1 <= flags[1] <= max_d):
        raise ck.fail(
            f"{prefix}.flags",
            f"must be [0 or 1, -1 or a delay in 1..{max_d}], got {flags.tolist()}",
        )
    if ck.array(f"{prefix}.indptr", kinds="iu").shape == (1,):
        n_rows = 0  # no synapses from this group (procedural or none): the empty CSR
    ptr = ck.indptr(f"{prefix}.indptr", n_rows)
    nnz = int(ptr[-1])
    ck.array(f"{prefix}.indices", kinds="iu", shape=(nnz,), lo=0, hi=n_targets - 1)
    ck.array(f"{prefix}.weights", kinds="f", shape=(n_rows if flags[0] else nnz,), finite=True)
    ck.array(f"{prefix}.delays", kinds="iu", shape=(0 if flags[1] >= 0 else nnz,), lo=1, hi=max_d)
    mask = ck.array(f"{prefix}.mask", kinds="u", lo=0, hi=1)
    if mask.shape not in ((0,), (nnz,)):
        raise ck.fail(f"{prefix}.mask", f"must have 0 or {nnz} entries, got {mask.shape}")


def _validate(net: _Network, ck: Checkpoint) -> None:
    """Check every saved array and projection against the network before a kernel sees them:
    a checkpoint with valid checksums can still hold out-of-range indices."""
    n, max_d = net.n_neurons, net.max_delay_steps
    n_inputs = sum(group.n for group in net.inputs.values())
    sizes = {"neurons": n, **{name: g.n for name, g in net.inputs.items()}}
    for k, proj in enumerate(net.projections):
        n_src = sizes.get(proj.source)
        (s0, s1), (t0, t1), (d0, d1) = proj.src_range, proj.tgt_range, proj.delay_steps
        if n_src is None or not (0 <= s0 < s1 <= n_src and 0 <= t0 < t1 <= n):
            raise CheckpointError(
                f"{ck.path}: projection {k} (source {proj.source!r}) has ranges "
                f"{proj.src_range} -> {proj.tgt_range} outside its groups' sizes; the "
                "checkpoint is corrupt: restore it from a backup or save it again"
            )
        if not (1 <= d0 <= d1 <= max_d):
            raise CheckpointError(
                f"{ck.path}: projection {k} has delays {proj.delay_steps} steps outside "
                f"1..{max_d}; the checkpoint is corrupt: restore it from a backup"
            )
    _validate_csr(ck, "csr", n, n, max_d)
    _validate_csr(ck, "input_csr", n_inputs, n, max_d)
    for k in ("v", "ge", "gi"):
        ck.array(f"state.{k}", kinds="f", shape=(n,), finite=True)
    ck.array("state.refrac", kinds="i", shape=(n,), lo=0, hi=65535)
    for k in ("buf_e", "buf_i"):
        ck.array(f"state.{k}", kinds="f", shape=(max_d + 1, n), finite=True)
    ck.array("homeostasis.theta", kinds="f", shape=(n,), finite=True)
    t = ck.meta.get("t")
    if not isinstance(t, int) or isinstance(t, bool) or t < 0:
        raise CheckpointError(f"{ck.path}: meta 't' must be a step count >= 0, got {t!r}")
    for name, arr in ck.arrays.items():
        if name.startswith(("stp.", "plastic.")):
            ck.array(name, kinds="fi", finite=arr.dtype.kind == "f")


def _snapshot(ck: Checkpoint) -> Snapshot:
    """The checkpoint's synapses, learning and dynamic state, as ``build(saved=...)`` takes
    them (memory-mapped arrays; ``build`` copies what the kernels write to)."""
    arrays = ck.arrays
    rng = np.random.Generator(np.random.PCG64())
    rng.bit_generator.state = ck.meta["rng_state"]
    state = NetworkState(
        int(ck.meta["t"]), *(np.array(arrays[f"state.{k}"]) for k in STATE_ARRAYS), rng
    )
    return Snapshot(
        csr={k: arrays[f"csr.{k}"] for k in _CSR},
        input_csr={k: arrays[f"input_csr.{k}"] for k in _CSR},
        theta=arrays["homeostasis.theta"],
        state=state,
        traces={k: a for k, a in arrays.items() if k.startswith("plastic.")},
        stp={k: arrays[f] for k, f in _STP_FILES.items() if f in arrays},
    )
