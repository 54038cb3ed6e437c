"""Compiled CPU kernels (numba). Same names and semantics as :mod:`.reference`.

The whole multi-step loop runs inside :func:`simulate`, so the per-step cost is the neuron
update plus the synaptic events; nothing is allocated inside the loop.
"""

import hashlib
import logging
import math
from pathlib import Path

import numpy as np
from numba import get_num_threads, njit, prange

from neurofabric.snn.kernels import rowgen
from neurofabric.snn.kernels.reference import G_FLUSH

log = logging.getLogger(__name__)


def _drop_stale_cache() -> None:
    """Numba's on-disk cache does not notice when a *called* function in another file
    changes; key the whole cache of this package on the source of both kernel files."""
    here = Path(__file__).parent
    cache = here / "__pycache__"
    digest = hashlib.sha256()
    for name in ("rowgen.py", "numba_cpu.py"):
        digest.update((here / name).read_bytes())
    stamp = digest.hexdigest()
    marker = cache / "neurofabric-kernels.stamp"
    try:
        if marker.is_file() and marker.read_text() == stamp:
            return
        cache.mkdir(exist_ok=True)
        for pattern in ("*.nbi", "*.nbc"):
            for stale in cache.glob(pattern):
                stale.unlink()
        marker.write_text(stamp)
    except OSError as exc:  # a read-only install: numba then compiles in memory
        log.debug("cannot manage the numba cache in %s: %s", cache, exc)


_drop_stale_cache()


def _clone(fn, shared, qualname=None, **options):
    """``fn`` recreated over the globals ``shared`` and compiled; ``qualname`` keeps the
    variant's entry in numba's disk cache apart from the others."""
    import types

    clone = types.FunctionType(fn.__code__, shared, fn.__name__, fn.__defaults__)
    clone.__qualname__ = qualname or fn.__qualname__
    options.setdefault("cache", True)
    return njit(**options)(clone)


def _compile_spec(names, shared):
    """Compile the pure-Python spec functions of :mod:`.rowgen` with numba, over one globals
    dict in which every spec name is bound to its compiled version."""
    for name in names:
        shared[name] = _clone(getattr(rowgen, name), shared)
    return shared


_SPEC_NAMES = [
    "hash32",
    "row_key",
    "uniform",
    "normal",
    "synapse_weight",
    "synapse_delay",
    "_sample_distinct",
    "_lattice_side",
    "_sort_prefix",
    "_shift",
    "_all_targets",
    "_no_targets",
    *rowgen.KIND_GENERATORS.values(),
    "gen_targets",
    "gen_row",
    "gen_in_degree_sources",
    "poisson_count",
]
_spec = _compile_spec(_SPEC_NAMES, dict(vars(rowgen)))
gen_targets = _spec["gen_targets"]
gen_row = _spec["gen_row"]
gen_in_degree_sources = _spec["gen_in_degree_sources"]
poisson_count = _spec["poisson_count"]
row_key = _spec["row_key"]
uniform = _spec["uniform"]


def _gen_row_for_kind(kind):
    """A compiled ``gen_row`` that only knows topology ``kind`` (faster to compile)."""
    shared = dict(_spec)
    for k, name in rowgen.KIND_GENERATORS.items():
        if k != kind:
            shared[name] = _spec["_no_targets"]
    shared["gen_targets"] = _clone(rowgen.gen_targets, shared, f"gen_targets_kind{kind}")
    return _clone(rowgen.gen_row, shared, f"gen_row_kind{kind}")


BACKEND = "numba"


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
        shared = dict(globals())
        shared["gen_row"] = _gen_row_for_kind(kind)
        _build_rows_variants[kind] = _clone(_build_rows, shared, f"build_rows_kind{kind}")
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


@njit(cache=True, inline="always")
def _slot(tm, d, dmod):
    """(tm + d) % dmod for 0 <= tm < dmod and 1 <= d < dmod, without a division."""
    s = tm + d
    return s - dmod if s >= dmod else s


@njit(cache=True, inline="always")
def _deliver(buf_e, buf_i, tm, dmod, d, tgt, w, inh_sign):
    s = _slot(tm, d, dmod)
    if w >= 0:
        buf_e[s, tgt] += w
    else:
        buf_i[s, tgt] += w * inh_sign


@njit(cache=True, inline="always")
def _push_csr(src, mult, indptr, indices, weights, delays, flags, buf_e, buf_i, tm, dmod, inh_sign):
    """Push the row of ``src`` (``mult`` coincident spikes) into the ring buffers."""
    a = indptr[src]
    b = indptr[src + 1]
    dconst = flags[1]
    if flags[0] == 1:  # one weight for the whole row: pick the buffer once
        w = weights[src]
        if mult != 1:
            w = w * mult
        buf = buf_e if w >= 0 else buf_i
        wv = w if w >= 0 else w * inh_sign
        if dconst >= 0:
            row = buf[_slot(tm, dconst, dmod)]
            for q in range(a, b):
                row[indices[q]] += wv
        else:
            for q in range(a, b):
                buf[_slot(tm, delays[q], dmod), indices[q]] += wv
    else:
        for q in range(a, b):
            d = dconst if dconst >= 0 else delays[q]
            w = weights[q]
            if mult != 1:
                w = w * mult
            _deliver(buf_e, buf_i, tm, dmod, d, indices[q], w, inh_sign)


@njit(cache=True, inline="always")
def _push_procedural(src, mult, is_input, proc, buf_e, buf_i, tm, dmod, inh_sign):
    p_ip, p_fp, p_key, p_input, st, sw, sd = proc
    for p in range(p_ip.shape[0]):
        if p_input[p] != is_input or src < p_ip[p, 1] or src >= p_ip[p, 2]:
            continue
        c = gen_row(p_ip[p], p_fp[p], p_key[p], src, st, sw, sd)
        for q in range(c):
            w = np.float32(sw[q])
            if mult != 1:
                w = w * mult
            _deliver(buf_e, buf_i, tm, dmod, sd[q], st[q], w, inh_sign)


@njit(cache=True, inline="always")
def _trace_now(tr, last, i, t, tau1, tau2, dt, one1, one2):
    """Decay the two traces of neuron ``i`` to step ``t`` (once per neuron and step);
    ``one1``/``one2`` are the one-step factors exp(-dt/tau), the common case."""
    k = t - last[i]
    if k == 1:
        tr[0, i] *= one1
        tr[1, i] *= one2
        last[i] = t
    elif k > 0:
        tr[0, i] *= math.exp(-(k * dt) / tau1)
        tr[1, i] *= math.exp(-(k * dt) / tau2)
        last[i] = t


@njit(cache=True, inline="always")
def _bump(tr, i, nearest):
    if nearest:
        tr[0, i] = 1.0
        tr[1, i] = 1.0
    else:
        tr[0, i] += 1.0
        tr[1, i] += 1.0


@njit(cache=True, inline="always")
def _soft(x, mu):
    """(distance to a bound)^mu, with the common exponents 0 and 1 exact."""
    if mu == 0.0:
        return 1.0
    if x <= 0.0:
        return 0.0
    return x if mu == 1.0 else x**mu


@njit(cache=True, inline="always")
def _clip(w, rule):
    return min(max(w, rule[5]), rule[6])


@njit(cache=True, inline="always")
def plastic_pre(
    s, m, t, dt, indptr, indices, weights, mask, rule, pre_tr, pre_last, post_tr, post_last
):
    """Depression on the row of source ``s`` for ``m`` coincident spikes, then its traces."""
    pa, pb = math.exp(-dt / rule[11]), math.exp(-dt / rule[12])
    _trace_now(pre_tr, pre_last, s, t, rule[11], rule[12], dt, pa, pb)
    oa, ob = math.exp(-dt / rule[13]), math.exp(-dt / rule[14])
    masked = mask.shape[0] > 0
    nearest = rule[9] == 1.0
    for _ in range(m):
        r2 = pre_tr[1, s]
        for q in range(indptr[s], indptr[s + 1]):
            if masked and mask[q] == 0:
                continue
            j = indices[q]
            _trace_now(post_tr, post_last, j, t, rule[13], rule[14], dt, oa, ob)
            w = np.float64(weights[q])
            if rule[0] == 0.0:
                dw = post_tr[0, j] * (rule[3] + rule[4] * r2) * _soft(w - rule[5], rule[8])
            else:
                dw = rule[3] * post_tr[0, j]
            weights[q] = _clip(w - dw, rule)
        _bump(pre_tr, s, nearest)


@njit(cache=True, inline="always")
def plastic_post(
    j, t, dt, c_ptr, c_src, c_pos, weights, mask, rule, pre_tr, pre_last, post_tr, post_last
):
    """Potentiation on the incoming synapses of neuron ``j``, then its traces."""
    oa, ob = math.exp(-dt / rule[13]), math.exp(-dt / rule[14])
    _trace_now(post_tr, post_last, j, t, rule[13], rule[14], dt, oa, ob)
    o2 = post_tr[1, j]
    pa, pb = math.exp(-dt / rule[11]), math.exp(-dt / rule[12])
    masked = mask.shape[0] > 0
    for q in range(c_ptr[j], c_ptr[j + 1]):
        pos = c_pos[q]
        if masked and mask[pos] == 0:
            continue
        i = c_src[q]
        _trace_now(pre_tr, pre_last, i, t, rule[11], rule[12], dt, pa, pb)
        w = np.float64(weights[pos])
        if rule[0] == 0.0:
            dw = pre_tr[0, i] * (rule[1] + rule[2] * o2) * _soft(rule[6] - w, rule[7])
        else:
            dw = rule[1] * (pre_tr[0, i] - rule[10]) * _soft(rule[6] - w, rule[7])
        weights[pos] = _clip(w + dw, rule)
    _bump(post_tr, j, rule[9] == 1.0)


@njit(cache=True)
def normalize_rows(indptr, indices, weights, mask, lo, hi, total, n_targets):
    """Scale the (masked) synapses of rows [lo, hi) so each target's sum is ``total``; the
    sums run in storage order, as the numpy version in ``plasticity.normalize_incoming``."""
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


@njit(cache=True, inline="always")
def stp_scale(s, m, t, dt, prm, u, x, last):
    """Efficacy factor of ``m`` coincident spikes of source ``s`` under Tsodyks-Markram STP
    (see :mod:`neurofabric.snn.stp`): exact decay since its last spike, facilitation,
    release, depression; ``r`` per spike, or ``1 + k r`` in the modulation mode."""
    total = 0.0
    for _ in range(m):
        if last[s] >= 0:
            elapsed = (t - last[s]) * dt
            u[s] = u[s] * math.exp(-elapsed / prm[2]) if prm[2] > 0.0 else 0.0
            x[s] = 1.0 - (1.0 - x[s]) * math.exp(-elapsed / prm[1]) if prm[1] > 0.0 else 1.0
        last[s] = t
        u[s] = u[s] + prm[0] * (1.0 - u[s])
        r = u[s] * x[s]
        x[s] = x[s] - r
        total += r if prm[3] == 0.0 else 1.0 + prm[4] * r
    return total


@njit(cache=True, inline="always")
def _refractory_step(r, vn, v_old, v_th, v_reset, ref):
    """(new v, new counter, fired) for one neuron: hold while refractory, then threshold.

    ``ref`` packs the refractory steps (low 16 bits) and the lockout steps (high bits, 0 for
    none): after a spike the counter starts at the lockout, ``v`` is held for the refractory
    steps, then integrates, and the neuron can fire again once the counter is back at 0."""
    hold = ref & 65535
    lock = ref >> 16
    if lock < hold:
        lock = hold
    vn = vn if r <= lock - hold else v_old
    fired = r <= 0 and vn > v_th
    v_new = v_reset if fired else vn
    r_new = lock if fired else (r - 1 if r > 0 else 0)
    return v_new, r_new, fired


@njit(cache=True, inline="always")
def _flush(g):
    """A decayed synaptic variable, set to 0 below ``G_FLUSH`` (see ``reference.G_FLUSH``)."""
    return g if abs(g) >= G_FLUSH else 0.0 * g


@njit(cache=True, inline="always")
def _cuba_neuron(v, ge, gi, r, a_e, a_i, v_inf, v_reset, v_th, dm, ce, ci, ref, de, di):
    """One CUBA neuron: returns (v, g_e, g_i, refractory counter, fired)."""
    x_e = ge + a_e
    x_i = gi + a_i
    vn = v_inf + (v - v_inf) * dm + x_e * ce + x_i * ci
    v_new, r_new, fired = _refractory_step(r, vn, v, v_th, v_reset, ref)
    return v_new, _flush(x_e * de), _flush(x_i * di), r_new, fired


@njit(cache=True, inline="always")
def _coba_neuron(v, ge, gi, r, a_e, a_i, v_inf, v_reset, v_th, dtm, ref, de, di, e_exc, e_inh):
    x_e = ge + a_e
    x_i = gi + a_i
    gt = 1.0 + x_e + x_i
    vs = (v_inf + x_e * e_exc + x_i * e_inh) / gt
    vn = vs + (v - vs) * np.exp(-dtm * gt)
    v_new, r_new, fired = _refractory_step(r, vn, v, v_th, v_reset, ref)
    return v_new, _flush(x_e * de), _flush(x_i * di), r_new, fired


@njit(cache=True, inline="always")
def _delta_neuron(v, r, a_e, a_i, v_inf, v_reset, v_th, dm, ref):
    vn = v_inf + (v + a_e + a_i - v_inf) * dm
    return _refractory_step(r, vn, v, v_th, v_reset, ref)


@njit(cache=True)
def _update_cuba(hom, v, ge, gi, refrac, be, bi, nparam, ref, sc, flag):
    """Steps 1-3 for every CUBA neuron. ``hom``: all neurons share parameters (column 0 is
    read, which keeps the per-step memory traffic to the state alone)."""
    de = sc[0]
    di = sc[1]
    if hom:
        p0, p1, p2, p3, p4, p5, rf = (
            nparam[0, 0],
            nparam[1, 0],
            nparam[2, 0],
            nparam[3, 0],
            nparam[4, 0],
            nparam[5, 0],
            ref[0],
        )
        for i in range(v.shape[0]):
            v[i], ge[i], gi[i], refrac[i], flag[i] = _cuba_neuron(
                v[i], ge[i], gi[i], refrac[i], be[i], bi[i], p0, p1, p2, p3, p4, p5, rf, de, di
            )
            be[i] = 0.0
            bi[i] = 0.0
    else:
        for i in range(v.shape[0]):
            v[i], ge[i], gi[i], refrac[i], flag[i] = _cuba_neuron(
                v[i],
                ge[i],
                gi[i],
                refrac[i],
                be[i],
                bi[i],
                nparam[0, i],
                nparam[1, i],
                nparam[2, i],
                nparam[3, i],
                nparam[4, i],
                nparam[5, i],
                ref[i],
                de,
                di,
            )
            be[i] = 0.0
            bi[i] = 0.0


@njit(cache=True)
def _update_coba(hom, v, ge, gi, refrac, be, bi, nparam, ref, sc, flag):
    """Steps 1-3 for every COBA neuron."""
    de = sc[0]
    di = sc[1]
    if hom:
        p0, p1, p2, p6, rf = nparam[0, 0], nparam[1, 0], nparam[2, 0], nparam[6, 0], ref[0]
        for i in range(v.shape[0]):
            v[i], ge[i], gi[i], refrac[i], flag[i] = _coba_neuron(
                v[i],
                ge[i],
                gi[i],
                refrac[i],
                be[i],
                bi[i],
                p0,
                p1,
                p2,
                p6,
                rf,
                de,
                di,
                sc[2],
                sc[3],
            )
            be[i] = 0.0
            bi[i] = 0.0
    else:
        for i in range(v.shape[0]):
            v[i], ge[i], gi[i], refrac[i], flag[i] = _coba_neuron(
                v[i],
                ge[i],
                gi[i],
                refrac[i],
                be[i],
                bi[i],
                nparam[0, i],
                nparam[1, i],
                nparam[2, i],
                nparam[6, i],
                ref[i],
                de,
                di,
                sc[2],
                sc[3],
            )
            be[i] = 0.0
            bi[i] = 0.0


@njit(cache=True)
def _update_delta(hom, v, ge, gi, refrac, be, bi, nparam, ref, sc, flag):
    """Steps 1-3 for every neuron with delta synapses (jumps of v)."""
    if hom:
        p0, p1, p2, p3, rf = nparam[0, 0], nparam[1, 0], nparam[2, 0], nparam[3, 0], ref[0]
        for i in range(v.shape[0]):
            v[i], refrac[i], flag[i] = _delta_neuron(
                v[i], refrac[i], be[i], bi[i], p0, p1, p2, p3, rf
            )
            be[i] = 0.0
            bi[i] = 0.0
    else:
        for i in range(v.shape[0]):
            v[i], refrac[i], flag[i] = _delta_neuron(
                v[i],
                refrac[i],
                be[i],
                bi[i],
                nparam[0, i],
                nparam[1, i],
                nparam[2, i],
                nparam[3, i],
                ref[i],
            )
            be[i] = 0.0
            bi[i] = 0.0


PARALLEL_MIN_NEURONS = 100_000  # below this, thread hand-off costs more than it saves


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


# ``_update`` is a placeholder: each compiled variant of the two functions below rebinds it
# to the update of one neuron model (see ``_variant``).
_update = _update_cuba


def _update_parallel(hom, v, ge, gi, refrac, be, bi, nparam, ref, sc, flag):
    """``_update`` on contiguous slices in parallel (identical results: every neuron's
    arithmetic is independent of the others). ``_update`` is bound per model below."""
    n = v.shape[0]
    n_chunks = 8 * get_num_threads()
    for c in prange(n_chunks):
        a = c * n // n_chunks
        b = (c + 1) * n // n_chunks
        _update(
            hom,
            v[a:b],
            ge[a:b],
            gi[a:b],
            refrac[a:b],
            be[a:b],
            bi[a:b],
            nparam[:, a:b],
            ref[a:b],
            sc,
            flag[a:b],
        )


@njit(cache=True)
def _homeostasis(h_prm, theta, nparam, spiked, n_spk):
    """Threshold homeostasis after the threshold test (see :mod:`neurofabric.snn.homeostasis`):
    theta decays (or drifts down toward the target rate), spikes raise it; the effective
    threshold ``nparam[2]`` follows."""
    decay = h_prm[2]
    down = h_prm[3]
    floor = h_prm[6]
    lo = int(h_prm[7])
    hi = int(h_prm[8])
    for i in range(lo, hi):
        th = theta[i] * decay - down
        if th < floor:
            th = floor
        nparam[2, i] += th - theta[i]
        theta[i] = th
    for q in range(n_spk):
        j = spiked[q]
        if lo <= j < hi:
            nparam[2, j] += h_prm[1]
            theta[j] += h_prm[1]


@njit(cache=True)
def _collect(flag, spiked):
    """Indices of the set flags (ascending) into ``spiked``; clears the flags."""
    n = flag.shape[0]
    words = flag[: n - n % 8].view(np.uint64)
    count = 0
    for w in range(words.shape[0]):
        if words[w] != 0:
            for i in range(8 * w, 8 * w + 8):
                if flag[i]:
                    spiked[count] = i
                    count += 1
                    flag[i] = 0
    for i in range(n - n % 8, n):
        if flag[i]:
            spiked[count] = i
            count += 1
            flag[i] = 0
    return count


def _input_event(
    s, m, t, dt, ext, proc, x_side, buf_e, buf_i, slot, dmod, inh_sign, has_ext, has_proc
):
    """One input event (source ``s``, ``m`` spikes): STP efficacy, transmission through the
    input CSR and procedural rows, then plasticity of the input synapses. Compiled per
    variant with :func:`_simulate_steps` (see ``_variant``)."""
    x_indptr, x_indices, x_weights, x_delays, x_flags = ext
    x_stp, x_u, x_x, x_last, x_rule, x_mask, x_pre, x_pre_last, x_post, x_post_last = x_side
    scale = np.float64(m)
    if x_stp.shape[0] > 0:
        scale = stp_scale(s, m, t, dt, x_stp, x_u, x_x, x_last)
    if has_ext:
        _push_csr(
            s,
            scale,
            x_indptr,
            x_indices,
            x_weights,
            x_delays,
            x_flags,
            buf_e,
            buf_i,
            slot,
            dmod,
            inh_sign,
        )
    if has_proc:
        _push_procedural(s, scale, 1, proc, buf_e, buf_i, slot, dmod, inh_sign)
    if x_rule.shape[0] > 0:
        plastic_pre(
            s,
            m,
            t,
            dt,
            x_indptr,
            x_indices,
            x_weights,
            x_mask,
            x_rule,
            x_pre,
            x_pre_last,
            x_post,
            x_post_last,
        )


def _simulate_steps(
    n_steps,
    t0,
    model,
    state,
    nparam,
    ref_steps,
    sc,
    rec,
    csc,
    dense_limit,
    ext,
    inputs,
    proc,
    mon,
    counters,
    plast,
    stp,
    homeo,
):
    """Advance ``n_steps`` steps from step ``t0``; see :func:`.reference.simulate`.

    Compiled once per (model, threads, procedural, plastic) below, so a network compiles
    only what it runs.
    """
    v, ge, gi, refrac, buf_e, buf_i = state
    r_indptr, r_indices, r_weights, r_delays, r_flags = rec
    c_ptr, c_src, c_pos = csc
    x_indptr, x_indices, x_weights, x_delays, x_flags = ext
    in_ptr, in_idx, in_cnt, p_first, p_start, p_n, p_key, p_lam, p_elam = inputs
    spk_mask, spk_t, spk_i, rate, rec_idx, rec_v, rec_ge, rec_gi, spiked, flag = mon
    (
        r_rule,
        r_mask,
        r_pre,
        r_pre_last,
        r_post,
        r_post_last,
        x_rule,
        x_mask,
        x_pre,
        x_pre_last,
        x_post,
        x_post_last,
        xc_ptr,
        xc_src,
        xc_pos,
    ) = plast
    r_stp, r_u, r_x, r_last, x_stp, x_u, x_x, x_last = stp
    h_prm, theta = homeo
    has_homeo = h_prm.shape[0] > 0 and h_prm[5] == 0.0
    r_has_stp = r_stp.shape[0] > 0
    x_side = (x_stp, x_u, x_x, x_last, x_rule, x_mask, x_pre, x_pre_last, x_post, x_post_last)
    r_plastic = r_rule.shape[0] > 0
    x_plastic = x_rule.shape[0] > 0
    dt = sc[5]
    inh_sign = sc[4]
    rec_every = counters[5]
    hom = counters[7] == 1
    n = v.shape[0]
    dmod = buf_e.shape[0]
    has_rec = r_indptr.shape[0] > 1
    has_ext = x_indptr.shape[0] > 1
    has_proc = proc[0].shape[0] > 0
    cap = spk_t.shape[0]
    n_written = counters[0]
    n_rec = counters[4]
    n_mon = counters[6]
    for k in range(n_steps):
        if cap - n_written < n_mon:
            counters[0] = n_written
            counters[4] = n_rec
            return k, 1  # spike buffer may overflow in this step: the shell drains it first
        t = t0 + k
        slot = t % dmod
        # --- 1-3: arrivals, integration, threshold and reset: branch-free, vectorizable
        _update(hom, v, ge, gi, refrac, buf_e[slot], buf_i[slot], nparam, ref_steps, sc, flag)
        n_spk = _collect(flag, spiked)
        if has_homeo:
            _homeostasis(h_prm, theta, nparam, spiked, n_spk)
        # --- 4: monitors
        rate[k] = n_spk
        for q in range(n_spk):
            i = spiked[q]
            if spk_mask[i]:
                spk_t[n_written] = t
                spk_i[n_written] = i
                n_written += 1
        if rec_every > 0 and t % rec_every == 0:
            for q in range(rec_idx.shape[0]):
                j = rec_idx[q]
                rec_v[n_rec, q] = v[j]
                rec_ge[n_rec, q] = ge[j]
                rec_gi[n_rec, q] = gi[j]
            n_rec += 1
        # --- 5: recurrent propagation: event-driven push or dense pull
        if has_rec and n_spk > 0:
            if dense_limit >= 0 and n_spk > dense_limit:
                counters[3] += 1
                for q in range(n_spk):
                    flag[spiked[q]] = 1
                dconst = r_flags[1]
                by_row = r_flags[0] == 1 and dconst >= 0  # then c_pos is not stored
                for j in range(n):
                    for q in range(c_ptr[j], c_ptr[j + 1]):
                        s = c_src[q]
                        if flag[s]:
                            if by_row:
                                _deliver(
                                    buf_e, buf_i, slot, dmod, dconst, j, r_weights[s], inh_sign
                                )
                            else:
                                pos = c_pos[q]
                                w = r_weights[s] if r_flags[0] == 1 else r_weights[pos]
                                d = dconst if dconst >= 0 else r_delays[pos]
                                _deliver(buf_e, buf_i, slot, dmod, d, j, w, inh_sign)
                for q in range(n_spk):
                    flag[spiked[q]] = 0
            else:
                counters[2] += 1
                for q in range(n_spk):
                    scale = 1.0
                    if r_has_stp:
                        scale = stp_scale(spiked[q], 1, t, dt, r_stp, r_u, r_x, r_last)
                    _push_csr(
                        spiked[q],
                        scale,
                        r_indptr,
                        r_indices,
                        r_weights,
                        r_delays,
                        r_flags,
                        buf_e,
                        buf_i,
                        slot,
                        dmod,
                        inh_sign,
                    )
        elif n_spk > 0:
            counters[2] += 1
        if r_plastic:  # depression on the rows of this step's spikes (after transmission)
            for q in range(n_spk):
                plastic_pre(
                    spiked[q],
                    1,
                    t,
                    dt,
                    r_indptr,
                    r_indices,
                    r_weights,
                    r_mask,
                    r_rule,
                    r_pre,
                    r_pre_last,
                    r_post,
                    r_post_last,
                )
        if has_proc:
            for q in range(n_spk):
                _push_procedural(spiked[q], 1, 0, proc, buf_e, buf_i, slot, dmod, inh_sign)
        # --- 6: external input spikes of this step
        for q in range(in_ptr[k], in_ptr[k + 1]):
            _input_event(
                in_idx[q],
                in_cnt[q],
                t,
                dt,
                ext,
                proc,
                x_side,
                buf_e,
                buf_i,
                slot,
                dmod,
                inh_sign,
                has_ext,
                has_proc,
            )
        # --- 7: Poisson groups: counts drawn from the (seed, group, step, source) stream
        for g in range(p_first.shape[0]):
            key_t = row_key(p_key[g], t)
            for i in range(p_n[g]):
                j = p_start[g] + i
                if p_lam[j] <= 0.0:
                    continue  # silent source: no draw (the stream is keyed by source)
                u = uniform(key_t, i)
                if u > p_elam[j]:
                    m = poisson_count(p_lam[j], p_elam[j], u)
                    _input_event(
                        p_first[g] + i,
                        m,
                        t,
                        dt,
                        ext,
                        proc,
                        x_side,
                        buf_e,
                        buf_i,
                        slot,
                        dmod,
                        inh_sign,
                        has_ext,
                        has_proc,
                    )
        # --- 8: potentiation on the incoming synapses of this step's spikes (pre before post)
        for q in range(n_spk):
            if r_plastic:
                plastic_post(
                    spiked[q],
                    t,
                    dt,
                    c_ptr,
                    c_src,
                    c_pos,
                    r_weights,
                    r_mask,
                    r_rule,
                    r_pre,
                    r_pre_last,
                    r_post,
                    r_post_last,
                )
            if x_plastic:
                plastic_post(
                    spiked[q],
                    t,
                    dt,
                    xc_ptr,
                    xc_src,
                    xc_pos,
                    x_weights,
                    x_mask,
                    x_rule,
                    x_pre,
                    x_pre_last,
                    x_post,
                    x_post_last,
                )
        counters[1] += n_spk
    counters[0] = n_written
    counters[4] = n_rec
    return n_steps, 0


@njit(cache=True, inline="always")
def _no_procedural(src, mult, is_input, proc, buf_e, buf_i, tm, dmod, inh_sign):
    """Stands in for ``_push_procedural`` in kernels of networks without procedural rows."""
    return None


@njit(cache=True, inline="always")
def _no_plastic_pre(
    s, m, t, dt, indptr, indices, weights, mask, rule, pre_tr, pre_last, post_tr, post_last
):
    """Stands in for ``plastic_pre`` in kernels of networks without plasticity."""
    return None


@njit(cache=True, inline="always")
def _no_plastic_post(
    j, t, dt, c_ptr, c_src, c_pos, weights, mask, rule, pre_tr, pre_last, post_tr, post_last
):
    """Stands in for ``plastic_post`` in kernels of networks without plasticity."""
    return None


def _variant(fn, update, parallel=False, cached_off=False, procedural=True, plastic=True):
    """Recompile ``fn`` with the global ``_update`` bound to ``update`` (and, without
    procedural projections, ``_push_procedural`` to a no-op). Numba cannot cache parallel
    kernels (or their callers) on disk: those are compiled in memory."""
    shared = dict(fn.__globals__)
    shared["_update"] = update
    if not procedural:
        shared["_push_procedural"] = _no_procedural
    if not plastic:
        shared["plastic_pre"] = _no_plastic_pre
        shared["plastic_post"] = _no_plastic_post
    suffix = f"{'' if procedural else '__noproc'}{'' if plastic else '__static'}"
    # the input-event helper sees the same stand-ins
    shared["_input_event"] = _clone(
        _input_event, dict(shared), f"_input_event{suffix}", inline="always"
    )
    return _clone(
        fn,
        shared,
        f"{fn.__name__}__{update.__name__}{suffix}",
        cache=not cached_off,
        parallel=parallel,
        # Without the runtime's reference counting: the step loop allocates nothing, and
        # with it every inlined helper that takes an array pays two atomic operations per
        # call (25 ns a synapse on the input rows, 30x the work itself).
        _nrt=False,
    )


_UPDATES = {0: _update_cuba, 1: _update_coba, 2: _update_delta}
_simulate_variants: dict = {}


def _get_variant(model, parallel, procedural, plastic):
    key = (model, parallel, procedural, plastic)
    if key not in _simulate_variants:
        update = _UPDATES[model]
        if parallel:
            update = _variant(_update_parallel, update, parallel=True, cached_off=True)
            update.__name__ = f"parallel_{_UPDATES[model].__name__}"
        _simulate_variants[key] = _variant(
            _simulate_steps, update, cached_off=parallel, procedural=procedural, plastic=plastic
        )
    return _simulate_variants[key]


def simulate(*args):
    """Advance ``n_steps`` steps from step ``t0``: the arguments of
    :func:`.reference.simulate`, in the same order. Dispatches to a kernel compiled for this
    (model, threads, procedural, plastic) combination only."""
    model, proc, counters, plast = args[2], args[12], args[14], args[15]
    plastic = plast[0].shape[0] > 0 or plast[6].shape[0] > 0
    kernel = _get_variant(int(model), bool(counters[8] > 1), proc[0].shape[0] > 0, plastic)
    return kernel(*args)
