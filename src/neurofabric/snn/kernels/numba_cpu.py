"""Compiled CPU kernels (numba): the public names of the numba backend, the same names and
semantics as :mod:`.reference`.

The whole multi-step loop runs inside :func:`simulate`, so the per-step cost is the neuron
update plus the synaptic events; nothing is allocated inside the loop. The code is spread by
concern: :mod:`.numba_jit` (compilation, the disk cache, compiled spec), :mod:`.numba_step`
(the step loop and its variants), :mod:`.numba_neurons` and :mod:`.numba_synapses` (what the
step loop inlines); the formulas are :mod:`.formulas`, shared with the reference.
"""

import numpy as np
from numba import njit, prange

from neurofabric.core import numba_cache
from neurofabric.snn.kernels.layout import C_THREADS
from neurofabric.snn.kernels.numba_jit import formula, gen_row_for_kind, spec, variant
from neurofabric.snn.kernels.numba_step import features, kernel
from neurofabric.snn.kernels.numba_synapses import (  # noqa: F401
    plastic_post,
    plastic_pre,
    push_csr,
)

BACKEND = "numba"
PARALLEL_MIN_NEURONS = 100_000  # below this, thread hand-off costs more than it saves

gen_targets = spec["gen_targets"]
gen_row = spec["gen_row"]
gen_in_degree_sources = spec["gen_in_degree_sources"]
gen_fixed_total = spec["gen_fixed_total"]
poisson_count = spec["poisson_count"]
row_key = spec["row_key"]
uniform = spec["uniform"]
stp_scale = formula["stp_scale"]


def threads(n_neurons):
    """Threads for the neuron update of ``n_neurons``: the configured number (default: all
    cores) from ``PARALLEL_MIN_NEURONS`` neurons on, else one."""
    if n_neurons < PARALLEL_MIN_NEURONS:
        return 1
    import numba

    from neurofabric.core.config import get_config

    wanted = get_config().threads or numba.config.NUMBA_NUM_THREADS
    numba.set_num_threads(min(wanted, numba.config.NUMBA_NUM_THREADS))
    return numba.get_num_threads()


#: step loops being compiled by a helper process (:func:`compile_ahead`): kernel key ->
#: (helper, the signature it compiles)
_ahead: dict = {}


def _key(net, counters):
    return int(net.model), bool(counters[C_THREADS] > 1), features(net)


def compile_ahead(n_steps, t0, net, state, inputs, mon, counters):
    """Have the step loop that :func:`simulate` will run for arguments of these types
    compiled meanwhile by a helper process (:func:`neurofabric.core.numba_cache.compile_ahead`),
    when numba's disk cache lacks it; ``simulate`` waits for the helper, then loads it.
    Threaded step loops are not cached on disk and are left alone. Returns True when a
    helper was started."""
    key = _key(net, counters)
    if key[1] or key in _ahead:
        return False
    args = (n_steps, t0, net, state, inputs, mon, counters)
    step_loop = kernel(*key)
    helper = numba_cache.compile_ahead(step_loop, args)
    if helper is not None:
        _ahead[key] = helper, numba_cache.argument_types(step_loop, args)
    return helper is not None


def simulate(n_steps, t0, net, state, inputs, mon, counters):
    """Advance ``n_steps`` steps from step ``t0``: :func:`.reference.simulate`, dispatched to
    a kernel compiled for this (model, threads, features) combination only."""
    key = _key(net, counters)
    step_loop = kernel(*key)
    args = (n_steps, t0, net, state, inputs, mon, counters)
    if key in _ahead:  # wait for the helper if it compiles for these types
        helper, sig = _ahead[key]
        if numba_cache.argument_types(step_loop, args) == sig:
            del _ahead[key]
            numba_cache.settle(helper)
    return step_loop(*args)


def _build_rows(ip, fp, key, sources, max_row, counts_only):
    """Generate the rows of ``sources``: (counts, targets, weights, delays) concatenated."""
    n = sources.shape[0]
    counts = np.zeros(n, np.int64)
    st = np.empty(max_row, np.int64)
    sw = np.empty(max_row, np.float64)
    sd = np.empty(max_row, np.int64)
    for a in range(n):
        counts[a] = gen_row(ip, fp, key, sources[a], st, sw, sd)
    if counts_only:
        return counts, np.empty(0, np.int32), np.empty(0, np.float32), np.empty(0, np.int32)
    total = counts.sum()
    tg = np.empty(total, np.int32)
    wt = np.empty(total, np.float32)
    dl = np.empty(total, np.int32)
    pos = 0
    for a in range(n):
        c = gen_row(ip, fp, key, sources[a], st, sw, sd)
        for b in range(c):
            tg[pos + b] = st[b]
            wt[pos + b] = sw[b]
            dl[pos + b] = sd[b]
        pos += c
    return counts, tg, wt, dl


@njit(cache=True)
def transpose(indptr, indices, n_targets, need_pos):
    """CSC of a CSR by counting sort (no argsort temporaries); same output as the reference."""
    c_ptr = np.zeros(n_targets + 1, np.int64)
    for q in range(indices.shape[0]):
        c_ptr[indices[q] + 1] += 1
    for j in range(n_targets):
        c_ptr[j + 1] += c_ptr[j]
    fill = c_ptr[:-1].copy()
    c_src = np.empty(indices.shape[0], np.int32)
    c_pos = np.empty(indices.shape[0] if need_pos else 0, np.int32)
    for s in range(indptr.shape[0] - 1):
        for q in range(indptr[s], indptr[s + 1]):
            p = fill[indices[q]]
            c_src[p] = s
            if need_pos:
                c_pos[p] = q
            fill[indices[q]] += 1
    return c_ptr, c_src, c_pos


_build_rows_variants: dict = {}


def build_rows(ip, fp, key, sources, max_row, counts_only):
    """Generate the rows of ``sources``: (counts, targets, weights, delays) concatenated.
    Compiled per topology kind, so a network compiles only the generators it uses."""
    kind = int(ip[0])
    if kind not in _build_rows_variants:
        gen = gen_row_for_kind(kind)
        _build_rows_variants[kind] = variant(
            _build_rows, {"gen_row": gen}, f"build_rows_kind{kind}"
        )
    return _build_rows_variants[kind](ip, fp, key, sources, max_row, counts_only)


@njit(cache=True)
def build_in_degree(ip, fp, key, targets, k):
    """Fixed in-degree: (sources, targets, weights, delays), ``k`` synapses per target."""
    n = targets.shape[0]
    src = np.empty(n * k, np.int32)
    tgt = np.empty(n * k, np.int32)
    wt = np.empty(n * k, np.float32)
    dl = np.empty(n * k, np.int32)
    ss = np.empty(max(k, 1), np.int64)
    sw = np.empty(max(k, 1), np.float64)
    sd = np.empty(max(k, 1), np.int64)
    pos = 0
    for a in range(n):
        c = gen_in_degree_sources(ip, fp, key, targets[a], ss, sw, sd)
        for b in range(c):
            src[pos] = ss[b]
            tgt[pos] = targets[a]
            wt[pos] = sw[b]
            dl[pos] = sd[b]
            pos += 1
    return src[:pos], tgt[:pos], wt[:pos], dl[:pos]


@njit(cache=True, parallel=True)
def build_fixed_total(ip, fp, key, n):
    """Fixed total number: (sources, targets, weights, delays) of the ``n`` synapses, in
    parallel chunks (synapse ``a`` depends only on the key and ``a``: any thread count gives
    the same synapses)."""
    ss = np.empty(n, np.int64)
    st = np.empty(n, np.int64)
    sw = np.empty(n, np.float64)
    sd = np.empty(n, np.int64)
    chunk = 1 << 16
    for c in prange((n + chunk - 1) // chunk):
        lo = c * chunk
        hi = min(n, lo + chunk)
        gen_fixed_total(ip, fp, key, lo, hi - lo, ss[lo:hi], st[lo:hi], sw[lo:hi], sd[lo:hi])
    return ss.astype(np.int32), st.astype(np.int32), sw.astype(np.float32), sd.astype(np.int32)


@njit(cache=True)
def row_order(src, tgt, s0, n_s):
    """The permutation that orders synapses by source, then target, keeping the draw order of
    equal pairs (``np.lexsort((tgt, src))``): a counting sort by source, O(n), then a stable
    sort of each row's targets."""
    n = src.shape[0]
    starts = np.zeros(n_s + 1, np.int64)
    for a in range(n):
        starts[src[a] - s0 + 1] += 1
    for r in range(n_s):
        starts[r + 1] += starts[r]
    fill = starts[:-1].copy()
    order = np.empty(n, np.int64)
    for a in range(n):
        r = src[a] - s0
        order[fill[r]] = a
        fill[r] += 1
    longest = 0
    for r in range(n_s):
        longest = max(longest, starts[r + 1] - starts[r])
    seg = np.empty(longest, np.int64)  # scratch for one row, allocated once
    keys = np.empty(longest, np.int64)
    for r in range(n_s):
        lo, hi = starts[r], starts[r + 1]
        m = hi - lo
        if m > 1:
            for q in range(m):
                seg[q] = order[lo + q]
                keys[q] = tgt[seg[q]]
            perm = np.argsort(keys[:m], kind="mergesort")
            for q in range(m):
                order[lo + q] = seg[perm[q]]
    return order


@njit(cache=True)
def normalize_rows(indptr, indices, weights, mask, lo, hi, total, n_targets):
    """Scale the (masked) synapses of rows [lo, hi) so each target's sum is ``total``; the
    sums run in storage order, as in the reference."""
    masked = mask.shape[0] > 0
    sums = np.zeros(n_targets)
    for q in range(indptr[lo], indptr[hi]):
        if not masked or mask[q] == 1:
            sums[indices[q]] += np.float64(weights[q])
    for j in range(n_targets):
        sums[j] = total / sums[j] if sums[j] > 0 else 1.0
    for q in range(indptr[lo], indptr[hi]):
        if not masked or mask[q] == 1:
            weights[q] = np.float32(np.float64(weights[q]) * sums[indices[q]])


@njit(cache=True)
def push_events(steps, sources, syn, buf_e, buf_i, inh_sign):
    """:func:`.reference.push_events`: the rows of the given spikes, one after the other."""
    dmod = buf_e.shape[0]
    for k in range(steps.shape[0]):
        push_csr(sources[k], 1, syn, buf_e, buf_i, steps[k] % dmod, dmod, inh_sign)
