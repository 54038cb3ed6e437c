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

With ``weights="int4"`` or ``"int2"`` (what :func:`neurofabric.guard.compress.compress` saves)
the layout is *rows* instead: every input that has a synapse keeps a full row of
``n_outputs`` weights, quantized symmetrically with one scale per row:

``row_delta`` (u8/u16/u32) the rows' input ids, ascending, as the first id then differences
                           (absent when every input has a row)
``row_codes`` (u8)         codes packed two (int4) or four (int2) per byte, row after row;
                           a code k stands for (k - 2^(b-1)) * scale, |k - 2^(b-1)| <= 2^(b-1) - 1
``row_scale`` (f16)        the scale of each row: max |w| / (2^(b-1) - 1)

Silent inputs cost nothing on disk; potentials are not saved (they reset after each sample).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neurofabric.core.errors import CheckpointError
from neurofabric.core.validation import check_choice
from neurofabric.guard.field import NeuronField
from neurofabric.guard.kernels.common import FANOUT, NEURON_DTYPE, SILENT
from neurofabric.quant.packing import pack_bits, packed_nbytes, unpack_bits

__all__ = [
    "decode_ids",
    "encode_ids",
    "field_from_arrays",
    "field_to_arrays",
    "quantize_rows",
]

WEIGHT_FORMATS = ("float32", "int8", "int4", "int2")
ROW_BITS = {"int4": 4, "int2": 2}


def _small_uint(n: int) -> np.dtype:
    return np.dtype(np.uint8 if n < 256 else np.uint16 if n < 65536 else np.uint32)


def encode_ids(ids: np.ndarray) -> np.ndarray:
    """Ascending ids as the first id then the differences, in the smallest unsigned type."""
    ids = np.asarray(ids, dtype=np.int64)
    delta = np.diff(ids, prepend=0)
    if len(delta) and delta[1:].min(initial=1) <= 0:
        raise CheckpointError("ids to encode must be strictly ascending")
    return delta.astype(_small_uint(int(delta.max(initial=0)) + 1))


def decode_ids(delta: np.ndarray) -> np.ndarray:
    return np.cumsum(np.asarray(delta, dtype=np.int64))


def quantize_rows(W: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric codes (signed, |q| <= 2^(bits-1) - 1) and float16 scales, one per row, such
    that ``q * scale`` is the row; quantizing that again gives the same codes."""
    top = (1 << (bits - 1)) - 1
    peak = np.abs(W).max(axis=1) if W.size else np.zeros(len(W))
    if not np.all(np.isfinite(peak)) or peak.max(initial=0.0) / top > 65504.0:
        raise CheckpointError(
            f"weights must be finite and below {65504.0 * top:g} in magnitude for float16 row "
            f"scales, got a row peak of {peak.max(initial=0.0)}; save with weights='float32'"
        )
    scale = (peak / top).astype(np.float16)
    scale[scale == 0] = np.float16(1.0)  # an all-zero row (or below float16's range)
    q = np.clip(np.rint(W / scale.astype(np.float64)[:, None]), -top, top).astype(np.int8)
    return q, scale


def _rows_to_arrays(field: NeuronField, active: np.ndarray, bits: int) -> dict[str, np.ndarray]:
    W = field.weight_matrix()[active]
    q, scale = quantize_rows(W, bits)
    arrays = {
        "row_codes": pack_bits((q + (1 << (bits - 1))).astype(np.uint8), bits),
        "row_scale": scale,
    }
    if len(active) != field.n_inputs:  # every input has a row: the ids go without saying
        arrays["row_delta"] = encode_ids(active)
    return arrays


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
    in_thr = rec["threshold"][:D]
    meta: dict[str, Any] = {"n_inputs": D, "n_outputs": C, "weights": weights}
    if weights in ROW_BITS:
        arrays = _rows_to_arrays(field, active, ROW_BITS[weights])
        arrays["out_threshold"] = rec["threshold"][D:].astype(np.float32)
        meta["layout"] = "rows"
        if np.all(in_thr == in_thr[0]):
            meta["input_threshold"] = float(in_thr[0])
        else:
            arrays["in_threshold"] = in_thr.astype(np.float32)
        return arrays, meta
    arrays = {
        "active": active.astype(np.uint32),
        "active_target": tgt[active].astype(np.uint32),
        "active_weight": rec["weight"][:D][active].astype(np.float32),
        "fan_len": fan_len.astype(_small_uint(int(fan_len.max(initial=0)) + 1)),
        "fan_out": fan_out.astype(_small_uint(C)),
        "out_threshold": rec["threshold"][D:].astype(np.float32),
    }
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


def _rows_from_arrays(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> dict:
    """The compact arrays of a *rows* layout: every row a fan-out of its nonzero weights."""
    D, C = int(meta["n_inputs"]), int(meta["n_outputs"])
    bits = ROW_BITS.get(meta.get("weights"))
    if bits is None:
        raise CheckpointError(f"saved field: layout 'rows' needs int4 or int2 weights, got {meta}")
    rows = decode_ids(arrays["row_delta"]) if "row_delta" in arrays else np.arange(D)
    scale = np.asarray(arrays["row_scale"], dtype=np.float16)
    packed = np.asarray(arrays["row_codes"], dtype=np.uint8)
    n = len(rows)
    if (
        len(scale) != n
        or packed.size != packed_nbytes(n * C, bits)
        or (n and (rows[0] < 0 or rows[-1] >= D or np.any(np.diff(rows) <= 0)))
    ):
        raise CheckpointError(
            f"saved field: {n} rows need {n} scales and {packed_nbytes(n * C, bits)} bytes of "
            f"codes, with ascending ids in [0, {D}); the checkpoint is corrupt: restore it or "
            "save the model again"
        )
    q = unpack_bits(packed, bits, n * C).astype(np.int16).reshape(n, C) - (1 << (bits - 1))
    W = q.astype(np.float32) * scale.astype(np.float32)[:, None]
    return {  # every row fans out to all outputs (zero codes too: no O(n C) search on load)
        "active": rows.astype(np.uint32),
        "active_target": np.full(n, FANOUT, dtype=np.uint32),
        "active_weight": np.zeros(n, dtype=np.float32),
        "fan_len": np.full(n, C, dtype=np.int64),
        "fan_out": np.tile(np.arange(C, dtype=np.int64), n),
        "fan_w": W.reshape(-1),
        "out_threshold": arrays["out_threshold"],
        **({"in_threshold": arrays["in_threshold"]} if "in_threshold" in arrays else {}),
    }


def field_from_arrays(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> NeuronField:
    """Rebuild the field saved by :func:`field_to_arrays` (int8 weights dequantized)."""
    if not isinstance(meta, dict):
        raise CheckpointError("guard checkpoint metadata is incomplete (no field description)")
    try:
        if meta.get("layout") == "rows":
            arrays = _rows_from_arrays(arrays, meta)
            meta = {**meta, "weights": "float32"}
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
    in_thr = np.asarray(arrays.get("in_threshold", np.zeros(0)), dtype=np.float32)
    if not all(np.all(np.isfinite(a)) for a in (fan_w, out_thr, weight, in_thr)):
        raise CheckpointError(
            "saved field holds a weight or threshold that is NaN or infinite; the checkpoint "
            "is corrupt: restore it from a backup or save the model again"
        )
    if (
        len(out_thr) != C
        or len(fan_len) != len(active)
        or len(target) != len(active)
        or len(fan_out) != fan_len.sum()
        or len(fan_w) != len(fan_out)
        or (len(active) and (active.min() < 0 or active.max() >= D))
        or (len(fan_out) and (fan_out.min() < 0 or fan_out.max() >= C))
        or (len(fan_len) and fan_len.min() < 0)
        or (len(active) > 1 and np.any(np.diff(active) <= 0))
    ):
        raise CheckpointError(
            "saved field arrays are inconsistent (lengths, ranges, negative fan-out lengths or "
            "active inputs not strictly ascending); the checkpoint is corrupt: restore it from "
            "a backup or save the model again"
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
