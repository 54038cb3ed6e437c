"""Saving a field compactly: only the neurons that have synapses, optional int8 weights.

Arrays of a saved field (inside a neurofabric checkpoint, see ``core.checkpoint``):

``active`` (u32)          input neurons that have at least one synapse, ascending
``active_target`` (u32)   their record's target: an output neuron, or FANOUT
``active_weight`` (f32)   their record's weight (the one synapse of a single-target neuron)
``fan_len`` (u8/u16/u32)  how many CSR synapses each active neuron has (0 for single-target)
``fan_out`` (u8/u16/u32)  the output index (0..n_outputs-1) of each CSR synapse
``fan_w`` (f32 or i8)     its weight; int8 codes come with ``fan_scale`` (f32, one per output,
                          symmetric: w = code * scale)
``out_threshold`` (f32)   the output neurons' thresholds
``in_threshold`` (f32)    only when the input thresholds are not all equal

Silent inputs cost nothing on disk; potentials are not saved (they reset after each sample).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neurofabric.core.errors import CheckpointError
from neurofabric.core.validation import check_choice
from neurofabric.guard.field import NeuronField
from neurofabric.guard.kernels.common import FANOUT, NEURON_DTYPE, SILENT

__all__ = ["field_from_arrays", "field_to_arrays"]

WEIGHT_FORMATS = ("float32", "int8")


def _small_uint(n: int) -> np.dtype:
    return np.dtype(np.uint8 if n < 256 else np.uint16 if n < 65536 else np.uint32)


def field_to_arrays(field: NeuronField, *, weights: str = "float32") -> tuple[dict, dict]:
    """(arrays, meta) of ``field`` in the compact on-disk form."""
    check_choice("weights", weights, WEIGHT_FORMATS)
    D, C = field.n_inputs, field.n_outputs
    rec = field.records
    tgt = rec["target"][:D]
    fan_len_all = np.diff(field.indptr)[:D]
    active = np.nonzero((tgt != SILENT) & ((tgt != FANOUT) | (fan_len_all > 0)))[0]
    fan_len = fan_len_all[active]
    starts = field.indptr[active]
    take = (
        np.repeat(starts - np.cumsum(np.r_[0, fan_len[:-1]]), fan_len) + np.arange(fan_len.sum())
    ).astype(np.int64)
    fan_out = field.indices[take].astype(np.int64) - D
    fan_w = field.weights[take]
    arrays: dict[str, np.ndarray] = {
        "active": active.astype(np.uint32),
        "active_target": tgt[active].astype(np.uint32),
        "active_weight": rec["weight"][:D][active].astype(np.float32),
        "fan_len": fan_len.astype(_small_uint(int(fan_len.max(initial=0)) + 1)),
        "fan_out": fan_out.astype(_small_uint(C)),
        "out_threshold": rec["threshold"][D:].astype(np.float32),
    }
    in_thr = rec["threshold"][:D]
    meta: dict[str, Any] = {"n_inputs": D, "n_outputs": C, "weights": weights}
    if np.all(in_thr == in_thr[0]):
        meta["input_threshold"] = float(in_thr[0])
    else:
        arrays["in_threshold"] = in_thr.astype(np.float32)
    if weights == "int8":
        peak = np.zeros(C, dtype=np.float32)
        np.maximum.at(peak, fan_out, np.abs(fan_w))
        scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
        arrays["fan_w"] = np.clip(np.rint(fan_w / scale[fan_out]), -127, 127).astype(np.int8)
        arrays["fan_scale"] = scale
    else:
        arrays["fan_w"] = fan_w.astype(np.float32)
    return arrays, meta


def field_from_arrays(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> NeuronField:
    """Rebuild the field saved by :func:`field_to_arrays` (int8 weights dequantized)."""
    try:
        D, C = int(meta["n_inputs"]), int(meta["n_outputs"])
        active = np.asarray(arrays["active"], dtype=np.int64)
        fan_len = np.asarray(arrays["fan_len"], dtype=np.int64)
        fan_out = np.asarray(arrays["fan_out"], dtype=np.int64)
        fan_w = np.asarray(arrays["fan_w"])
        if meta.get("weights") == "int8":
            scale = np.asarray(arrays["fan_scale"], dtype=np.float32)
            if scale.shape != (C,) or (len(fan_out) and (fan_out.min() < 0 or fan_out.max() >= C)):
                raise CheckpointError(
                    f"saved field: fan_scale must have {C} entries and fan_out values in "
                    f"[0, {C}); the checkpoint is corrupt: restore it or save the model again"
                )
            fan_w = fan_w.astype(np.float32) * scale[fan_out]
        out_thr = np.asarray(arrays["out_threshold"], dtype=np.float32)
        target = np.asarray(arrays["active_target"], dtype=np.uint32)
        weight = np.asarray(arrays["active_weight"], dtype=np.float32)
    except KeyError as exc:
        raise CheckpointError(f"saved field lacks {exc.args[0]!r}") from None
    n = D + C
    if (
        len(out_thr) != C
        or len(fan_len) != len(active)
        or len(target) != len(active)
        or len(fan_out) != fan_len.sum()
        or len(fan_w) != len(fan_out)
        or (len(active) and (active.min() < 0 or active.max() >= D))
        or (len(fan_out) and (fan_out.min() < 0 or fan_out.max() >= C))
        or (len(fan_len) and fan_len.min() < 0)
        or len(np.unique(active)) != len(active)
    ):
        raise CheckpointError(
            "saved field arrays are inconsistent (lengths, ranges, negative fan-out lengths or "
            "repeated active inputs); the checkpoint is corrupt: restore it from a backup or "
            "save the model again"
        )
    records = np.zeros(n, dtype=NEURON_DTYPE)
    records["target"] = SILENT
    records["target"][active] = target
    records["weight"][active] = weight
    if "in_threshold" in arrays:
        records["threshold"][:D] = arrays["in_threshold"]
    else:
        records["threshold"][:D] = float(meta.get("input_threshold", 0.0))
    records["threshold"][D:] = out_thr
    counts = np.zeros(n, dtype=np.int64)
    counts[active] = fan_len
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return NeuronField(
        records, indptr, (fan_out + D).astype(np.uint32), fan_w.astype(np.float32), D
    )
