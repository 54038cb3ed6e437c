"""Reference hash-grid kernels: numpy, level by level, the spec of ``numba_cpu``.

For level l with scale s_l = 2^(l log2 b) N_min - 1 and resolution R_l = ceil(s_l) + 1
(tiny-cuda-nn's grid_scale / grid_resolution), a coordinate x in [0, 1] maps to
p = s_l x + 0.5 (fmaf in float32), cell floor(p) and fraction p - floor(p). Each of the 2^D
corners c of the cell gets the d-linear weight prod_d (c_d ? frac_d : 1 - frac_d) and a row:
the dense index sum_d c_d R_l^d when R_l^D fits the level's table, otherwise the coherent
prime hash xor_d (c_d * pi_d) (uint32 products in the 32-bit mode, uint64 in the 64-bit one),
modulo the level's size, plus the level's offset. The encoding of level l is the weighted sum
of the F features of its 2^D corner rows; levels are concatenated (output l * F + f).
"""

from __future__ import annotations

import numpy as np

from neurofabric.field.params import PRIMES


def _positions(x: np.ndarray, scale: np.float32):
    # fmaf(scale, x, 0.5): the float32 product is exact in float64, one rounding at the end
    pos = (np.float64(scale) * x.astype(np.float64) + 0.5).astype(np.float32)
    cell = np.floor(pos)
    return cell.astype(np.int64).astype(np.uint64), (pos - cell).astype(np.float32)


def _corner_rows(cells, corner, resolution, size, hashed, bits):
    n_dims = cells.shape[1]
    dtype = np.uint32 if bits == 32 else np.uint64
    grid = (cells + np.array([(corner >> d) & 1 for d in range(n_dims)], np.uint64)).astype(dtype)
    if hashed:
        index = np.zeros(len(cells), dtype=dtype)
        for d in range(n_dims):
            index ^= grid[:, d] * dtype(PRIMES[d])
    else:
        index = np.zeros(len(cells), dtype=dtype)
        stride = dtype(1)
        for d in range(n_dims):
            index += grid[:, d] * stride
            stride = dtype(stride * dtype(resolution))
    return index.astype(np.uint64) % np.uint64(size)


def hash_corners(x, scales, resolutions, sizes, offsets, hashed, bits):
    """Rows (n, L, 2^D) uint64 and d-linear weights (n, L, 2^D) float32 of every corner."""
    n, n_dims = x.shape
    L = len(scales)
    rows = np.empty((n, L, 1 << n_dims), dtype=np.uint64)
    weights = np.empty((n, L, 1 << n_dims), dtype=np.float32)
    for level in range(L):
        cells, frac = _positions(x, scales[level])
        for corner in range(1 << n_dims):
            w = np.ones(n, dtype=np.float32)
            for d in range(n_dims):
                w = w * (frac[:, d] if (corner >> d) & 1 else np.float32(1) - frac[:, d])
            weights[:, level, corner] = w
            index = _corner_rows(
                cells, corner, resolutions[level], sizes[level], hashed[level], bits
            )
            rows[:, level, corner] = index + offsets[level]
    return rows, weights


def hash_combine(values, weights):
    """Encodings (n, L*F) from corner rows' features (n, L, 2^D, F) and weights (n, L, 2^D)."""
    n, L, corners, F = values.shape
    out = np.zeros((n, L, F), dtype=np.float32)
    for corner in range(corners):  # tiny-cuda-nn's order: corner by corner, in float32
        out += weights[:, :, corner, None] * values[:, :, corner, :]
    return out.reshape(n, L * F)


def hash_encode(x, table, scales, resolutions, sizes, offsets, hashed, bits):
    """Encodings (n, L*F) of points x (n, D) in [0, 1] with an in-memory table (rows, F)."""
    rows, weights = hash_corners(x, scales, resolutions, sizes, offsets, hashed, bits)
    return hash_combine(table[rows.astype(np.int64)], weights)


def hash_backward(x, grad_out, scales, resolutions, sizes, offsets, hashed, bits):
    """d(loss)/d(table) as (rows, grads): row r of the table receives grads[k] for each k
    with rows[k] == r (summed); grad_out is d(loss)/d(encoding), (n, L*F)."""
    rows, weights = hash_corners(x, scales, resolutions, sizes, offsets, hashed, bits)
    n, L, corners = rows.shape
    F = grad_out.shape[1] // L
    g = grad_out.reshape(n, L, 1, F).astype(np.float32) * weights[..., None]
    return rows.reshape(-1), g.reshape(-1, F)


def _slots_of(pages, page_slot, resident, slots):
    """Pool slot of each page, -1 where it is not in DRAM: ``page_slot[page]`` below
    ``len(page_slot)`` (a direct map), the sorted ``resident`` index (``slots[i]`` holds page
    ``resident[i]``) above."""
    out = np.full(len(pages), -1, dtype=np.int64)
    low = pages < np.uint64(len(page_slot))
    out[low] = page_slot[pages[low].astype(np.int64)]
    high = np.nonzero(~low)[0]
    if len(high) and len(resident):
        pos = np.searchsorted(resident, pages[high])
        ok = (pos < len(resident)) & (resident[np.minimum(pos, len(resident) - 1)] == pages[high])
        out[high[ok]] = slots[pos[ok]]
    return out


def gather_rows(rows, row_bytes, page_size, resident, slots, page_slot, pool, slot_tick, tick, out):
    """Copy each row found in the DRAM pool into ``out`` (rows x row_bytes, uint8); return a
    mask of the rows whose page is not resident (see ``_slots_of``); a hit stamps its slot
    with ``tick`` (for LRU)."""
    pages = (rows.astype(np.uint64) * np.uint64(row_bytes)) // np.uint64(page_size)
    row_slots = _slots_of(pages, page_slot, resident, slots)
    for i in np.nonzero(row_slots >= 0)[0]:
        slot = row_slots[i]
        start = int(rows[i]) * row_bytes - int(pages[i]) * page_size
        out[i] = pool[slot, start : start + row_bytes]
        slot_tick[slot] = tick
    return row_slots < 0


hash_corners_serial = hash_corners
hash_combine_serial = hash_combine


def scatter_rows(rows, row_bytes, page_size, resident, slots, page_slot, pool, data):
    """Write ``data[i]`` (row_bytes uint8) into the DRAM pool at row ``rows[i]`` where the
    row's page is resident. Rows are written in order, so a repeated row keeps its last value.
    Returns the pool slot of each row, -1 where the page is not resident (nothing written)."""
    pages = (rows.astype(np.uint64) * np.uint64(row_bytes)) // np.uint64(page_size)
    out = _slots_of(pages, page_slot, resident, slots)
    for i in np.nonzero(out >= 0)[0]:
        start = int(rows[i]) * row_bytes - int(pages[i]) * page_size
        pool[out[i], start : start + row_bytes] = data[i]
    return out


def accumulate_rows(rows, weights, grad_enc):
    """The table gradient as unique rows and their summed gradients, in first-seen order, and
    where each row is first seen (its index in ``rows.reshape(-1)``).

    ``rows``/``weights`` (n, L, 2^D) from ``hash_corners``; ``grad_enc`` (n, L*F) is
    d(loss)/d(encoding). Corner k of level l of point i adds ``weights[i, l, k] *
    grad_enc[i, l*F:(l+1)*F]`` to its row; the sums run in point, level, corner order (float32),
    so the numba kernel gives the same bits."""
    n, L, corners = rows.shape
    F = grad_enc.shape[1] // L
    flat = rows.reshape(-1)
    g = (grad_enc.reshape(n, L, 1, F).astype(np.float32) * weights[..., None]).reshape(-1, F)
    uniq, first, inverse = np.unique(flat, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # first-seen order
    rank = np.empty(len(uniq), dtype=np.int64)
    rank[order] = np.arange(len(uniq))
    sums = np.zeros((len(uniq), F), dtype=np.float32)
    np.add.at(sums, rank[inverse.reshape(-1)], g)
    return uniq[order], sums, first[order].astype(np.int64)


def encode_paged(
    x,
    scales,
    resolutions,
    sizes,
    offsets,
    hashed,
    bits,
    row_offset,
    row_bytes,
    page_size,
    resident,
    slots,
    page_slot,
    pool_f32,
    slot_tick,
    tick,
):
    """Encodings (n, L*F) of points whose corner rows are all in the DRAM pool, and the mask of
    points with a corner whose page is not (their encoding 0): ``hash_corners``, ``gather_rows``
    (global row = table row + ``row_offset``) and ``hash_combine`` in a row."""
    rows, weights = hash_corners(x, scales, resolutions, sizes, offsets, hashed, bits)
    n, L, corners = rows.shape
    flat = rows.reshape(-1) + np.uint64(row_offset)
    raw = np.zeros((len(flat), row_bytes), dtype=np.uint8)
    pool = pool_f32.view(np.uint8)
    miss_rows = gather_rows(
        flat, row_bytes, page_size, resident, slots, page_slot, pool, slot_tick, tick, raw
    )
    values = raw.view(np.float32).reshape(n, L, corners, row_bytes // 4)
    missing = miss_rows.reshape(n, -1).any(axis=1)
    out = hash_combine(values, weights)
    out[missing] = 0.0
    return out, missing


encode_paged_serial = encode_paged


def mlp_forward(feats, W1, b1, W2, b2, W3, b3):
    """Decoder outputs (n, n_out) of features (n, n_in) for one or two hidden layers (``W3``,
    ``b3`` of size 0 for one): ReLU between layers, none after the last."""
    a = np.maximum(np.asarray(feats, dtype=np.float32) @ W1 + b1, np.float32(0.0))
    if W3.shape[0] > 0:
        return np.maximum(a @ W2 + b2, np.float32(0.0)) @ W3 + b3
    return a @ W2 + b2


mlp_forward_serial = mlp_forward


def adam_rows_paged(
    x,
    grad_enc,
    scales,
    resolutions,
    sizes,
    offsets,
    hashed,
    bits,
    row_offsets,
    row_bytes,
    page_size,
    resident,
    slots,
    page_slot,
    pool_f32,
    hyper,
    slot_dirty,
    slot_tick,
    tick,
):
    """One sparse Adam step of the table, applied in the DRAM pool, or nothing written.

    ``grad_enc`` (n, L*F) is d(loss)/d(encoding) at points ``x``; ``accumulate_rows`` gives the
    touched table rows r and their gradients g. ``row_offsets`` = (table, m, v): the global
    rows of r's value, first and second moment. ``hyper`` = (lr, beta1, 1 - beta1, beta2,
    1 - beta2, eps, 1 - beta1^t, 1 - beta2^t), each computed in float64 and rounded to float32
    (as numpy does with the Python floats of ``adam_update``). For each r, in float32 as
    ``neurofabric.field.optim.adam_update``::

        m' = beta1 m + (1 - beta1) g      v' = beta2 v + (1 - beta2) g^2
        w' = w - lr (m' / (1 - beta1^t)) / (sqrt(v' / (1 - beta2^t)) + eps)

    Returns (number of touched rows, status): status 0, applied (the written slots dirty and
    stamped with ``tick``); 1, a row's value or moment is on a page not in DRAM; 2, a new
    value is not finite. With 1 or 2 the pool is as it was."""
    rows, weights = hash_corners(x, scales, resolutions, sizes, offsets, hashed, bits)
    uniq, g, _ = accumulate_rows(rows, weights, grad_enc)
    k, F = g.shape
    glob = (uniq[:, None] + np.asarray(row_offsets, dtype=np.uint64)[None, :]).reshape(-1)
    pages = (glob * np.uint64(row_bytes)) // np.uint64(page_size)
    row_slots = _slots_of(pages, page_slot, resident, slots)
    if (row_slots < 0).any():
        return k, 1
    start = (glob * np.uint64(row_bytes) - pages * np.uint64(page_size)).astype(np.int64) // 4
    where = (row_slots * (page_size // 4) + start)[:, None] + np.arange(F)  # (3k, F)
    flat = pool_f32.reshape(-1)
    cur = flat[where].reshape(k, 3, F)
    w, m, v = cur[:, 0], cur[:, 1], cur[:, 2]
    lr, b1, d1, b2, d2, eps, c1, c2 = (np.float32(h) for h in hyper)
    with np.errstate(all="ignore"):  # a non-finite value is the status below
        m2 = b1 * m + d1 * g
        v2 = b2 * v + d2 * (g * g)
        w2 = w - lr * (m2 / c1) / (np.sqrt(v2 / c2) + eps)
    values = np.stack([w2, m2, v2], axis=1).reshape(3 * k, F).astype(np.float32)
    if not np.isfinite(values).all():
        return k, 2
    flat[where] = values
    slot_dirty[row_slots] = True
    slot_tick[row_slots] = tick
    return k, 0
