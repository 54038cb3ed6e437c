"""Numba hash-grid kernels: the same names, arguments and results as ``reference``.

Points run in parallel; the backward pass writes a sparse (row, gradient) list, so nothing
races and a table of any size (paged from disk) can take the update.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from neurofabric.core.numba_intrinsics import prefetch
from neurofabric.field.params import PRIMES

_M32 = np.uint64(0xFFFFFFFF)
_PRIMES64 = np.array(PRIMES, dtype=np.uint64)


#: points per chunk of a parallel loop (each chunk allocates its scratch once)
_CHUNK = 256


@njit(cache=True, inline="always")
def _level_corners(
    x, i, scale, resolution, size, offset, hashed, bits, rows, weights, level, cell, frac
):
    """Rows and weights of point i's 2^D corners at one level, into rows/weights[i, level];
    ``cell`` (uint64) and ``frac`` (float32) are the caller's scratch of 4 (no allocation here:
    one per call costs more than the arithmetic)."""
    n_dims = x.shape[1]
    for d in range(n_dims):
        p = np.float32(np.float64(scale) * np.float64(x[i, d]) + 0.5)
        c = np.floor(p)
        cell[d] = np.uint64(np.int64(c))
        frac[d] = np.float32(p - c)
    for corner in range(1 << n_dims):
        w = np.float32(1.0)
        index = np.uint64(0)
        stride = np.uint64(1)
        for d in range(n_dims):
            bit = (corner >> d) & 1
            w = w * (frac[d] if bit else np.float32(1.0) - frac[d])
            g = cell[d] + np.uint64(bit)
            if hashed:
                index ^= g * _PRIMES64[d]
            else:
                index += g * stride
                stride = stride * resolution
            if bits == 32:  # uint32 arithmetic: wrap every product and sum at 2^32
                index &= _M32
                stride &= _M32
        # index % size without a division where it can (a 64-bit division costs more than
        # the rest of the corner): a mask for power-of-two (hashed) levels, nothing for a
        # dense index already in range
        if size & (size - np.uint64(1)) == np.uint64(0):
            index &= size - np.uint64(1)
        elif index >= size:
            index %= size
        rows[i, level, corner] = index + offset
        weights[i, level, corner] = w


@njit(cache=True, inline="always")
def _corners_chunk(c, x, scales, resolutions, sizes, offsets, hashed, bits, rows, weights):
    cell = np.empty(4, dtype=np.uint64)
    frac = np.empty(4, dtype=np.float32)
    for i in range(c * _CHUNK, min(x.shape[0], (c + 1) * _CHUNK)):
        for level in range(scales.shape[0]):
            _level_corners(
                x,
                i,
                scales[level],
                resolutions[level],
                sizes[level],
                offsets[level],
                hashed[level],
                bits,
                rows,
                weights,
                level,
                cell,
                frac,
            )


@njit(cache=True)
def hash_corners_serial(x, scales, resolutions, sizes, offsets, hashed, bits):
    """``hash_corners`` on one thread (small batches: no thread start-up)."""
    n, n_dims = x.shape
    rows = np.empty((n, scales.shape[0], 1 << n_dims), dtype=np.uint64)
    weights = np.empty((n, scales.shape[0], 1 << n_dims), dtype=np.float32)
    for c in range((n + _CHUNK - 1) // _CHUNK):
        _corners_chunk(c, x, scales, resolutions, sizes, offsets, hashed, bits, rows, weights)
    return rows, weights


@njit(cache=True, parallel=True)
def hash_corners(x, scales, resolutions, sizes, offsets, hashed, bits):
    """Rows (n, L, 2^D) uint64 and d-linear weights (n, L, 2^D) float32 of every corner."""
    n, n_dims = x.shape
    rows = np.empty((n, scales.shape[0], 1 << n_dims), dtype=np.uint64)
    weights = np.empty((n, scales.shape[0], 1 << n_dims), dtype=np.float32)
    for c in prange((n + _CHUNK - 1) // _CHUNK):
        _corners_chunk(c, x, scales, resolutions, sizes, offsets, hashed, bits, rows, weights)
    return rows, weights


@njit(cache=True)
def hash_combine_serial(values, weights):
    """``hash_combine`` on one thread."""
    n, L, corners, F = values.shape
    out = np.zeros((n, L * F), dtype=np.float32)
    for i in range(n):
        for level in range(L):
            for corner in range(corners):
                w = weights[i, level, corner]
                for f in range(F):
                    out[i, level * F + f] += w * values[i, level, corner, f]
    return out


@njit(cache=True, parallel=True)
def hash_combine(values, weights):
    """Encodings (n, L*F) from corner rows' features (n, L, 2^D, F) and weights (n, L, 2^D)."""
    n, L, corners, F = values.shape
    out = np.zeros((n, L * F), dtype=np.float32)
    for i in prange(n):
        for level in range(L):
            for corner in range(corners):
                w = weights[i, level, corner]
                for f in range(F):
                    out[i, level * F + f] += w * values[i, level, corner, f]
    return out


@njit(cache=True, parallel=True)
def hash_encode(x, table, scales, resolutions, sizes, offsets, hashed, bits):
    """Encodings (n, L*F) of points x (n, D) in [0, 1] with an in-memory table (rows, F)."""
    n, n_dims = x.shape
    L = scales.shape[0]
    F = table.shape[1]
    corners = 1 << n_dims
    out = np.zeros((n, L * F), dtype=np.float32)
    for c in prange((n + _CHUNK - 1) // _CHUNK):
        rows = np.empty((1, L, corners), dtype=np.uint64)
        weights = np.empty((1, L, corners), dtype=np.float32)
        cell = np.empty(4, dtype=np.uint64)
        frac = np.empty(4, dtype=np.float32)
        for i in range(c * _CHUNK, min(n, (c + 1) * _CHUNK)):
            xi = x[i : i + 1]
            for level in range(L):
                _level_corners(
                    xi,
                    0,
                    scales[level],
                    resolutions[level],
                    sizes[level],
                    offsets[level],
                    hashed[level],
                    bits,
                    rows,
                    weights,
                    level,
                    cell,
                    frac,
                )
                for corner in range(corners):
                    w = weights[0, level, corner]
                    r = rows[0, level, corner]
                    for f in range(F):
                        out[i, level * F + f] += w * table[r, f]
    return out


@njit(cache=True, parallel=True)
def hash_backward(x, grad_out, scales, resolutions, sizes, offsets, hashed, bits):
    """d(loss)/d(table) as (rows, grads), summed over repeated rows by the caller."""
    rows, weights = hash_corners(x, scales, resolutions, sizes, offsets, hashed, bits)
    n, L, corners = rows.shape
    F = grad_out.shape[1] // L
    g = np.empty((n * L * corners, F), dtype=np.float32)
    for i in prange(n):
        for level in range(L):
            for corner in range(corners):
                k = (i * L + level) * corners + corner
                for f in range(F):
                    g[k, f] = weights[i, level, corner] * np.float32(grad_out[i, level * F + f])
    return rows.reshape(-1), g


@njit(cache=True)
def _search_slots(pages, out, resident, slots):
    """Resolve the entries of ``out`` marked -2 (pages above the direct map) by binary search
    of the sorted ``resident`` index: -1 where the page is not in DRAM."""
    m = resident.shape[0]
    for i in range(pages.shape[0]):
        if out[i] == -2:
            pos = np.searchsorted(resident, pages[i])
            out[i] = slots[pos] if pos < m and resident[pos] == pages[i] else -1


@njit(cache=True, inline="always")
def _slots_of(pages, resident, slots, page_slot):
    """The pool slot of each page, -1 if it is not in DRAM: a direct look-up below
    ``len(page_slot)``, then one binary-search pass for the pages above it. (Kept out of the
    copy loops: a search inside them, even one never taken, made them 3-7x slower.)"""
    n = pages.shape[0]
    out = np.empty(n, dtype=np.int64)
    n_map = np.uint64(page_slot.shape[0])
    far = False
    for i in range(n):
        page = pages[i]
        if page < n_map:
            out[i] = page_slot[page]
        else:
            out[i] = -2
            far = True
    if far:
        _search_slots(pages, out, resident, slots)
    return out


@njit(cache=True, inline="always")
def _shift_of(page_size):
    """log2 of a power-of-two page size (the store guarantees it), -1 otherwise."""
    ps = np.uint64(page_size)
    if ps & (ps - np.uint64(1)):
        return -1
    shift = 0
    while (np.uint64(1) << np.uint64(shift)) < ps:
        shift += 1
    return shift


@njit(cache=True, inline="always")
def _row_pages(rows, row_bytes, page_size):
    """(page, byte offset in the page) of each row: shifts for a power-of-two page size."""
    n = rows.shape[0]
    pages = np.empty(n, dtype=np.uint64)
    starts = np.empty(n, dtype=np.int64)
    rb = np.uint64(row_bytes)
    ps = np.uint64(page_size)
    shift = _shift_of(page_size)
    if shift >= 0:
        sh, mask = np.uint64(shift), ps - np.uint64(1)
        for i in range(n):
            byte = rows[i] * rb
            pages[i] = byte >> sh
            starts[i] = np.int64(byte & mask)
    else:
        for i in range(n):
            byte = rows[i] * rb
            pages[i] = byte // ps
            starts[i] = np.int64(byte - pages[i] * ps)
    return pages, starts


@njit(cache=True)
def gather_rows(rows, row_bytes, page_size, resident, slots, page_slot, pool, slot_tick, tick, out):
    """Copy each row found in the DRAM pool into ``out``; return the mask of missing rows."""
    pages, starts = _row_pages(rows, row_bytes, page_size)
    row_slots = _slots_of(pages, resident, slots, page_slot)
    n = rows.shape[0]
    missing = np.zeros(n, dtype=np.bool_)
    if row_bytes % 4 == 0:  # whole 32-bit words (every field row): a quarter of the copies
        words = row_bytes // 4
        pool_w = pool.view(np.uint32)
        out_w = out.view(np.uint32)
        for i in range(n):
            slot = row_slots[i]
            if slot < 0:
                missing[i] = True
                continue
            start = starts[i] // 4
            for b in range(words):
                out_w[i, b] = pool_w[slot, start + b]
            slot_tick[slot] = tick
        return missing
    for i in range(n):
        slot = row_slots[i]
        if slot < 0:
            missing[i] = True
            continue
        start = starts[i]
        for b in range(row_bytes):
            out[i, b] = pool[slot, start + b]
        slot_tick[slot] = tick
    return missing


@njit(cache=True)
def scatter_rows(rows, row_bytes, page_size, resident, slots, page_slot, pool, data):
    """Write ``data[i]`` into the DRAM pool at row ``rows[i]`` where its page is resident, in
    order (a repeated row keeps its last value); the slot of each row, -1 if not resident."""
    pages, starts = _row_pages(rows, row_bytes, page_size)
    row_slots = _slots_of(pages, resident, slots, page_slot)
    if row_bytes % 4 == 0 and data.shape[0] > 0:  # whole 32-bit words: a quarter of the copies
        words = row_bytes // 4
        pool_w = pool.view(np.uint32)
        data_w = data.view(np.uint32)
        for i in range(rows.shape[0]):
            slot = row_slots[i]
            if slot < 0:
                continue
            start = starts[i] // 4
            for b in range(words):
                pool_w[slot, start + b] = data_w[i, b]
        return row_slots
    for i in range(rows.shape[0]):
        slot = row_slots[i]
        if slot < 0:
            continue
        start = starts[i]
        for b in range(row_bytes):
            pool[slot, start + b] = data[i, b]
    return row_slots


@njit(cache=True)
def accumulate_rows(rows, weights, grad_enc):
    """Unique rows in first-seen order, their summed gradients and first indices (see the
    reference): an
    open-addressing hash table sized to the batch, so the cost does not grow with the table."""
    n, L, corners = rows.shape
    F = grad_enc.shape[1] // L
    total = n * L * corners
    cap = 1
    while cap < 2 * total:
        cap <<= 1
    mask = np.uint64(cap - 1)
    keys = np.empty(cap, dtype=np.uint64)
    where = np.full(cap, -1, dtype=np.int64)
    uniq = np.empty(total, dtype=np.uint64)
    first = np.empty(total, dtype=np.int64)
    sums = np.zeros((total, F), dtype=np.float32)
    m = 0
    flat = 0
    for i in range(n):
        for level in range(L):
            for corner in range(corners):
                r = rows[i, level, corner]
                h = (r * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(17)
                h &= mask
                while where[h] >= 0 and keys[h] != r:
                    h = (h + np.uint64(1)) & mask
                if where[h] < 0:
                    keys[h] = r
                    where[h] = m
                    uniq[m] = r
                    first[m] = flat
                    m += 1
                k = where[h]
                w = weights[i, level, corner]
                for f in range(F):
                    sums[k, f] += w * grad_enc[i, level * F + f]
                flat += 1
    return uniq[:m].copy(), sums[:m].copy(), first[:m].copy()


@njit(cache=True, inline="always")
def _encode_chunk(
    c,
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
    out,
    missing,
):
    """Encode points [c * _CHUNK, (c + 1) * _CHUNK): their corners, the pool slots of the
    corner rows (one look-up pass), then the sums."""
    lo, hi = c * _CHUNK, min(x.shape[0], (c + 1) * _CHUNK)
    L = scales.shape[0]
    corners = 1 << x.shape[1]
    F = row_bytes // 4
    xs = x[lo:hi]
    rows = np.empty((hi - lo, L, corners), dtype=np.uint64)
    weights = np.empty((hi - lo, L, corners), dtype=np.float32)
    cell = np.empty(4, dtype=np.uint64)
    frac = np.empty(4, dtype=np.float32)
    for i in range(hi - lo):
        for level in range(L):
            _level_corners(
                xs,
                i,
                scales[level],
                resolutions[level],
                sizes[level],
                offsets[level],
                hashed[level],
                bits,
                rows,
                weights,
                level,
                cell,
                frac,
            )
    flat = rows.reshape(-1) + np.uint64(row_offset)
    pages, starts = _row_pages(flat, row_bytes, page_size)
    row_slots = _slots_of(pages, resident, slots, page_slot)
    k = 0
    for i in range(hi - lo):
        for level in range(L):
            for corner in range(corners):
                slot = row_slots[k]
                if slot < 0:  # stamp every hit all the same, as the reference does
                    missing[lo + i] = True
                else:
                    if slot_tick[slot] != tick:  # write once per page and call: threads
                        slot_tick[slot] = tick  # rewriting shared cache lines do not scale
                    word = starts[k] // 4
                    w = weights[i, level, corner]
                    for f in range(F):
                        out[lo + i, level * F + f] += w * pool_f32[slot, word + f]
                k += 1
        if missing[lo + i]:
            for j in range(L * F):
                out[lo + i, j] = 0.0


@njit(cache=True, parallel=True)
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
    """Encodings (n, L*F) read straight from the DRAM pool: corners, page look-up and the
    d-linear sum in one pass, nothing materialized. Row r of the table is global row
    ``r + row_offset`` of the page space. A point with a corner whose page is not in DRAM is
    flagged in the returned mask (its encoding is left 0) for the caller's slow path. The sum
    runs level by level, corner by corner in float32, as ``hash_combine``: the same bits."""
    n = x.shape[0]
    out = np.zeros((n, scales.shape[0] * (row_bytes // 4)), dtype=np.float32)
    missing = np.zeros(n, dtype=np.bool_)
    for c in prange((n + _CHUNK - 1) // _CHUNK):
        _encode_chunk(
            c,
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
            out,
            missing,
        )
    return out, missing


@njit(cache=True)
def encode_paged_serial(
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
    """``encode_paged`` on the calling thread (small batches: no thread-pool wake-up)."""
    n = x.shape[0]
    out = np.zeros((n, scales.shape[0] * (row_bytes // 4)), dtype=np.float32)
    missing = np.zeros(n, dtype=np.bool_)
    for c in range((n + _CHUNK - 1) // _CHUNK):
        _encode_chunk(
            c,
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
            out,
            missing,
        )
    return out, missing


@njit(cache=True, inline="always", fastmath=True)
def _dense_relu(a, W, b, z):
    """z = relu(a @ W + b) for one point (W: n_in x n_out, C order; rows read contiguously)."""
    for j in range(W.shape[1]):
        z[j] = b[j]
    for i in range(W.shape[0]):
        ai = a[i]
        for j in range(W.shape[1]):
            z[j] += ai * W[i, j]
    for j in range(W.shape[1]):
        z[j] = max(z[j], np.float32(0.0))


@njit(cache=True, inline="always", fastmath=True)
def _dense_out(a, W, b, out, p):
    """out[p] = a @ W + b (the last layer: one dot product per output)."""
    for o in range(W.shape[1]):
        acc = b[o]
        for j in range(W.shape[0]):
            acc += a[j] * W[j, o]
        out[p, o] = acc


@njit(cache=True, inline="always", fastmath=True)
def _mlp_chunk(c, feats, W1, b1, W2, b2, W3, b3, out):
    """The decoder on points [c * _CHUNK, ...): per point, layer by layer in float32 scratch
    (ReLU between layers, none after the last); ``W3`` of shape (0, 0): one hidden layer.
    ``fastmath`` lets the inner loops vectorize (sums in another order than BLAS: the
    outputs agree to float32 rounding)."""
    n = feats.shape[0]
    lo = c * _CHUNK
    hi = min(n, lo + _CHUNK)
    a = np.empty(W1.shape[1], dtype=np.float32)
    h = np.empty(W2.shape[1], dtype=np.float32)
    two = W3.shape[0] > 0
    for p in range(lo, hi):
        _dense_relu(feats[p], W1, b1, a)
        if two:
            _dense_relu(a, W2, b2, h)
            _dense_out(h, W3, b3, out, p)
        else:
            _dense_out(a, W2, b2, out, p)


@njit(cache=True, parallel=True, fastmath=True)
def mlp_forward(feats, W1, b1, W2, b2, W3, b3):
    """Decoder outputs (n, n_out) float32 of features (n, n_in) for one or two hidden layers
    (W: n_in x n_out, C order; ``W3``, ``b3`` of size 0 for one hidden layer): ReLU between
    layers, none after the last."""
    n = feats.shape[0]
    n_out = W3.shape[1] if W3.shape[0] > 0 else W2.shape[1]
    out = np.empty((n, n_out), dtype=np.float32)
    for c in prange((n + _CHUNK - 1) // _CHUNK):
        _mlp_chunk(c, feats, W1, b1, W2, b2, W3, b3, out)
    return out


@njit(cache=True, fastmath=True)
def mlp_forward_serial(feats, W1, b1, W2, b2, W3, b3):
    """``mlp_forward`` on the calling thread (small batches)."""
    n = feats.shape[0]
    n_out = W3.shape[1] if W3.shape[0] > 0 else W2.shape[1]
    out = np.empty((n, n_out), dtype=np.float32)
    for c in range((n + _CHUNK - 1) // _CHUNK):
        _mlp_chunk(c, feats, W1, b1, W2, b2, W3, b3, out)
    return out


@njit(cache=True, inline="always")
def _slot_of(page, resident, slots, page_slot):
    """The pool slot of one page, -1 if it is not in DRAM (``_slots_of`` for one page)."""
    if page < np.uint64(page_slot.shape[0]):
        return page_slot[page]
    pos = np.searchsorted(resident, page)
    if pos < resident.shape[0] and resident[pos] == page:
        return slots[pos]
    return -1


#: rows of the Adam step's visits whose pool places are requested ahead of the one updated
_ADAM_AHEAD = 8


@njit(cache=True, parallel=True)
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
    """One sparse Adam step of the table in the DRAM pool (see the reference), level by level
    in parallel (a level's rows, moments and map stay in cache): the gradient of each touched
    row summed through a direct map of the level's rows (per row the points add in order, as
    ``accumulate_rows``: the same bits), then each row's value and moments read, updated and
    written in one visit, the old values kept aside. If any row of any level is on a page not
    in DRAM, or any new value is not finite, every level puts its old values back."""
    n, n_dims = x.shape
    L = scales.shape[0]
    corners = 1 << n_dims
    F = row_bytes // 4
    seg = n * corners  # the most rows one level can touch
    touched = np.zeros(L, dtype=np.int64)
    counts = np.zeros(L, dtype=np.int64)  # rows written (and kept aside) per level
    status = np.zeros(L, dtype=np.int64)
    where = np.empty((L * seg, 3), dtype=np.int64)
    old = np.empty((L * seg, 3, F), dtype=np.float32)
    lr, b1, d1, b2, d2 = hyper[0], hyper[1], hyper[2], hyper[3], hyper[4]
    eps, c1, c2 = hyper[5], hyper[6], hyper[7]
    flat = pool_f32.reshape(-1)
    line = flat.reshape(1, -1)  # the pool as one row, for ``prefetch``
    per_slot = page_size // 4
    ps = np.uint64(page_size)
    rb = np.uint64(row_bytes)
    # a page size that is a power of two (the default, 4,096) divides by a shift: a 64-bit
    # division for each of a step's places (about 480,000 for 4,096 points in 2-D) cost 2 ms
    shift = _shift_of(page_size)
    pow2, pshift = shift >= 0, np.uint64(max(shift, 0))
    for level in prange(L):
        # the map from a row to its place in this level's list: direct (an array over the
        # level's rows) for a level of up to a few times the batch's corners or 2^20 rows,
        # an open-addressing table sized to the batch above that (a huge sparse level)
        size = np.int64(sizes[level])
        direct = size <= max(4 * seg, 1 << 20)
        cap = 1
        while not direct and cap < 2 * seg:
            cap <<= 1
        index = np.full(size if direct else cap, -1, dtype=np.int32)
        keys = np.empty(0 if direct else cap, dtype=np.uint64)
        mask = np.uint64(cap - 1)
        uniq = np.empty(seg, dtype=np.uint64)
        g = np.zeros((seg, F), dtype=np.float32)
        rows = np.empty((1, L, corners), dtype=np.uint64)
        weights = np.empty((1, L, corners), dtype=np.float32)
        cell = np.empty(4, dtype=np.uint64)
        frac = np.empty(4, dtype=np.float32)
        base = offsets[level]
        k = 0
        for i in range(n):
            _level_corners(
                x[i : i + 1],
                0,
                scales[level],
                resolutions[level],
                sizes[level],
                base,
                hashed[level],
                bits,
                rows,
                weights,
                level,
                cell,
                frac,
            )
            for corner in range(corners):
                r = rows[0, level, corner]
                if direct:
                    h = np.int64(r - base)
                else:
                    h = np.int64(((r * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(17)) & mask)
                    while index[h] >= 0 and keys[h] != r:
                        h = np.int64((np.uint64(h) + np.uint64(1)) & mask)
                    keys[h] = r
                j = index[h]
                if j < 0:
                    j = k
                    index[h] = k
                    uniq[k] = r
                    k += 1
                w = weights[0, level, corner]
                for f in range(F):
                    g[j, f] += w * grad_enc[i, level * F + f]
        touched[level] = k
        off = level * seg
        for j in range(k):  # every row's three pool places, before anything is written
            for a in range(3):
                byte = (uniq[j] + np.uint64(row_offsets[a])) * rb
                page = byte >> pshift if pow2 else byte // ps
                slot = _slot_of(page, resident, slots, page_slot)
                if slot < 0:
                    status[level] = 1
                where[off + j, a] = slot * per_slot + np.int64(byte - page * ps) // 4
        if status[level] != 0:
            continue
        counts[level] = k
        for j in range(k):
            # the rows are scattered over the pool: their value and moments a few rows
            # ahead are requested now, so that they arrive while this one is updated
            if j + _ADAM_AHEAD < k:
                for a in range(3):
                    prefetch(line, 0, where[off + j + _ADAM_AHEAD, a])
            pw, pm, pv = where[off + j, 0], where[off + j, 1], where[off + j, 2]
            for f in range(F):
                gf = g[j, f]
                w, m, v = flat[pw + f], flat[pm + f], flat[pv + f]
                old[off + j, 0, f], old[off + j, 1, f], old[off + j, 2, f] = w, m, v
                m2 = b1 * m + d1 * gf
                v2 = b2 * v + d2 * (gf * gf)
                w2 = w - lr * (m2 / c1) / (np.sqrt(v2 / c2) + eps)
                if not (np.isfinite(w2) and np.isfinite(m2) and np.isfinite(v2)):
                    status[level] = 2
                flat[pw + f], flat[pm + f], flat[pv + f] = w2, m2, v2
    total = touched.sum()
    worst = status.max()
    if worst != 0:  # put every written row back (missing pages first: nothing is kept)
        for level in prange(L):
            off = level * seg
            for j in range(counts[level]):
                for a in range(3):
                    for f in range(F):
                        flat[where[off + j, a] + f] = old[off + j, a, f]
        return total, 1 if (status == 1).any() else 2
    for level in range(L):
        off = level * seg
        for j in range(counts[level]):
            for a in range(3):
                slot = where[off + j, a] // per_slot
                if not slot_dirty[slot] or slot_tick[slot] != tick:
                    slot_dirty[slot] = True
                    slot_tick[slot] = tick
    return total, 0
