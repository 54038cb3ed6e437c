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
from neurofabric.snn.kernels.layout import (
    A2_MINUS,
    A2_PLUS,
    A3_MINUS,
    A3_PLUS,
    C_DENSE_STEPS,
    C_E,
    C_EVENT_STEPS,
    C_HOMOGENEOUS,
    C_I,
    C_MONITORED,
    C_RECORD_EVERY,
    C_RECORDED,
    C_SPIKES,
    C_THREADS,
    C_WRITTEN,
    CONST_DELAY,
    DECAY_E,
    DECAY_I,
    DECAY_M,
    DT,
    DT_TAU_M,
    E_EXC,
    E_INH,
    H_DECAY,
    H_DRIFT,
    H_FROZEN,
    H_HI,
    H_LO,
    H_STEP,
    H_THETA_MIN,
    INH_SIGN,
    KIND_TRIPLET,
    MODEL_COBA,
    MODEL_CUBA,
    MODEL_DELTA,
    MU_MINUS,
    MU_PLUS,
    NEAREST,
    ROW_WEIGHTS,
    RULE_KIND,
    STATUS_DONE,
    STATUS_DRAIN,
    STP_K,
    STP_MODULATE,
    STP_TAU_FACIL,
    STP_TAU_REC,
    STP_U,
    TAU_O1,
    TAU_O2,
    TAU_R1,
    TAU_R2,
    V_INF,
    V_RESET,
    V_TH,
    W_MAX,
    W_MIN,
    X_TAR,
)
from neurofabric.snn.kernels.reference import G_FLUSH

log = logging.getLogger(__name__)


def _drop_stale_cache() -> None:
    """Numba's on-disk cache does not notice when a *called* function (or a constant) in
    another file changes; key the whole cache of this package on the source of every
    kernel file."""
    here = Path(__file__).parent
    cache = here / "__pycache__"
    digest = hashlib.sha256()
    for path in sorted(here.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
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
def _push_csr(src, mult, syn, buf_e, buf_i, tm, dmod, inh_sign):
    """Push the row of ``src`` (``mult`` coincident spikes) of the synapses ``syn`` (a
    :class:`.layout.Synapses`) into the ring buffers."""
    indices, weights = syn.indices, syn.weights
    a = syn.indptr[src]
    b = syn.indptr[src + 1]
    dconst = syn.flags[CONST_DELAY]
    if syn.flags[ROW_WEIGHTS] == 1:  # one weight for the whole row: pick the buffer once
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
                buf[_slot(tm, syn.delays[q], dmod), indices[q]] += wv
    else:
        for q in range(a, b):
            d = dconst if dconst >= 0 else syn.delays[q]
            w = weights[q]
            if mult != 1:
                w = w * mult
            _deliver(buf_e, buf_i, tm, dmod, d, indices[q], w, inh_sign)


@njit(cache=True, inline="always")
def _push_procedural(src, mult, is_input, proc, buf_e, buf_i, tm, dmod, inh_sign):
    """Regenerate and push the rows of ``src`` of the procedural projections of its side."""
    st, sw, sd = proc.targets, proc.weights, proc.delays
    for p in range(proc.ip.shape[0]):
        if proc.is_input[p] != is_input or src < proc.ip[p, 1] or src >= proc.ip[p, 2]:
            continue
        c = gen_row(proc.ip[p], proc.fp[p], proc.keys[p], src, st, sw, sd)
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
    return min(max(w, rule[W_MIN]), rule[W_MAX])


@njit(cache=True, inline="always")
def plastic_pre(s, m, t, dt, syn, side):
    """Depression on the row of source ``s`` of ``syn`` for ``m`` coincident spikes, then
    its traces (``side``: the group's :class:`.layout.Plastic`)."""
    rule, mask, indices, weights = side.rule, side.mask, syn.indices, syn.weights
    pre_tr, pre_last, post_tr, post_last = side.pre, side.pre_last, side.post, side.post_last
    tau_r1, tau_r2, tau_o1, tau_o2 = rule[TAU_R1], rule[TAU_R2], rule[TAU_O1], rule[TAU_O2]
    pa, pb = math.exp(-dt / tau_r1), math.exp(-dt / tau_r2)
    _trace_now(pre_tr, pre_last, s, t, tau_r1, tau_r2, dt, pa, pb)
    oa, ob = math.exp(-dt / tau_o1), math.exp(-dt / tau_o2)
    masked = mask.shape[0] > 0
    nearest = rule[NEAREST] == 1.0
    for _ in range(m):
        r2 = pre_tr[1, s]
        for q in range(syn.indptr[s], syn.indptr[s + 1]):
            if masked and mask[q] == 0:
                continue
            j = indices[q]
            _trace_now(post_tr, post_last, j, t, tau_o1, tau_o2, dt, oa, ob)
            w = np.float64(weights[q])
            if rule[RULE_KIND] == KIND_TRIPLET:
                soft = _soft(w - rule[W_MIN], rule[MU_MINUS])
                dw = post_tr[0, j] * (rule[A2_MINUS] + rule[A3_MINUS] * r2) * soft
            else:
                dw = rule[A2_MINUS] * post_tr[0, j]
            weights[q] = _clip(w - dw, rule)
        _bump(pre_tr, s, nearest)


@njit(cache=True, inline="always")
def plastic_post(j, t, dt, csc, weights, side):
    """Potentiation on the incoming synapses of neuron ``j`` (``csc``: the group's
    :class:`.layout.Incoming`, ``weights`` its CSR weights), then its traces."""
    rule, mask = side.rule, side.mask
    pre_tr, pre_last, post_tr, post_last = side.pre, side.pre_last, side.post, side.post_last
    tau_r1, tau_r2, tau_o1, tau_o2 = rule[TAU_R1], rule[TAU_R2], rule[TAU_O1], rule[TAU_O2]
    oa, ob = math.exp(-dt / tau_o1), math.exp(-dt / tau_o2)
    _trace_now(post_tr, post_last, j, t, tau_o1, tau_o2, dt, oa, ob)
    o2 = post_tr[1, j]
    pa, pb = math.exp(-dt / tau_r1), math.exp(-dt / tau_r2)
    masked = mask.shape[0] > 0
    for q in range(csc.ptr[j], csc.ptr[j + 1]):
        pos = csc.pos[q]
        if masked and mask[pos] == 0:
            continue
        i = csc.src[q]
        _trace_now(pre_tr, pre_last, i, t, tau_r1, tau_r2, dt, pa, pb)
        w = np.float64(weights[pos])
        soft = _soft(rule[W_MAX] - w, rule[MU_PLUS])
        if rule[RULE_KIND] == KIND_TRIPLET:
            dw = pre_tr[0, i] * (rule[A2_PLUS] + rule[A3_PLUS] * o2) * soft
        else:
            dw = rule[A2_PLUS] * (pre_tr[0, i] - rule[X_TAR]) * soft
        weights[pos] = _clip(w + dw, rule)
    _bump(post_tr, j, rule[NEAREST] == 1.0)


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
def stp_scale(s, m, t, dt, stp):
    """Efficacy factor of ``m`` coincident spikes of source ``s`` under Tsodyks-Markram STP
    (see :mod:`neurofabric.snn.stp`): exact decay since its last spike, facilitation,
    release, depression; ``r`` per spike, or ``1 + k r`` in the modulation mode."""
    prm, u, x, last = stp.prm, stp.u, stp.x, stp.last
    total = 0.0
    for _ in range(m):
        if last[s] >= 0:
            elapsed = (t - last[s]) * dt
            tau_f, tau_r = prm[STP_TAU_FACIL], prm[STP_TAU_REC]
            u[s] = u[s] * math.exp(-elapsed / tau_f) if tau_f > 0.0 else 0.0
            x[s] = 1.0 - (1.0 - x[s]) * math.exp(-elapsed / tau_r) if tau_r > 0.0 else 1.0
        last[s] = t
        u[s] = u[s] + prm[STP_U] * (1.0 - u[s])
        r = u[s] * x[s]
        x[s] = x[s] - r
        total += r if prm[STP_MODULATE] == 0.0 else 1.0 + prm[STP_K] * r
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
    de = sc[DECAY_E]
    di = sc[DECAY_I]
    if hom:
        p0, p1, p2, p3, p4, p5, rf = (
            nparam[V_INF, 0],
            nparam[V_RESET, 0],
            nparam[V_TH, 0],
            nparam[DECAY_M, 0],
            nparam[C_E, 0],
            nparam[C_I, 0],
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
                nparam[V_INF, i],
                nparam[V_RESET, i],
                nparam[V_TH, i],
                nparam[DECAY_M, i],
                nparam[C_E, i],
                nparam[C_I, i],
                ref[i],
                de,
                di,
            )
            be[i] = 0.0
            bi[i] = 0.0


@njit(cache=True)
def _update_coba(hom, v, ge, gi, refrac, be, bi, nparam, ref, sc, flag):
    """Steps 1-3 for every COBA neuron."""
    de = sc[DECAY_E]
    di = sc[DECAY_I]
    if hom:
        p0, p1, p2, p6, rf = (
            nparam[V_INF, 0],
            nparam[V_RESET, 0],
            nparam[V_TH, 0],
            nparam[DT_TAU_M, 0],
            ref[0],
        )
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
                sc[E_EXC],
                sc[E_INH],
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
                nparam[V_INF, i],
                nparam[V_RESET, i],
                nparam[V_TH, i],
                nparam[DT_TAU_M, i],
                ref[i],
                de,
                di,
                sc[E_EXC],
                sc[E_INH],
            )
            be[i] = 0.0
            bi[i] = 0.0


@njit(cache=True)
def _update_delta(hom, v, ge, gi, refrac, be, bi, nparam, ref, sc, flag):
    """Steps 1-3 for every neuron with delta synapses (jumps of v)."""
    if hom:
        p0, p1, p2, p3, rf = (
            nparam[V_INF, 0],
            nparam[V_RESET, 0],
            nparam[V_TH, 0],
            nparam[DECAY_M, 0],
            ref[0],
        )
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
                nparam[V_INF, i],
                nparam[V_RESET, i],
                nparam[V_TH, i],
                nparam[DECAY_M, i],
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
def _homeostasis(h, theta, params, spiked, n_spk):
    """Threshold homeostasis after the threshold test (see :mod:`neurofabric.snn.homeostasis`):
    theta decays (or drifts down toward the target rate), spikes raise it; the effective
    threshold ``params[V_TH]`` follows."""
    decay = h[H_DECAY]
    down = h[H_DRIFT]
    floor = h[H_THETA_MIN]
    lo = int(h[H_LO])
    hi = int(h[H_HI])
    for i in range(lo, hi):
        th = theta[i] * decay - down
        if th < floor:
            th = floor
        params[V_TH, i] += th - theta[i]
        theta[i] = th
    for q in range(n_spk):
        j = spiked[q]
        if lo <= j < hi:
            params[V_TH, j] += h[H_STEP]
            theta[j] += h[H_STEP]


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


def _input_event(s, m, t, dt, net, buf_e, buf_i, slot, dmod, inh_sign, has_ext, has_proc):
    """One input event (source ``s``, ``m`` spikes): STP efficacy, transmission through the
    input CSR and procedural rows, then plasticity of the input synapses. Compiled per
    variant with :func:`_simulate_steps` (see ``_variant``)."""
    scale = np.float64(m)
    if net.ext_stp.prm.shape[0] > 0:
        scale = stp_scale(s, m, t, dt, net.ext_stp)
    if has_ext:
        _push_csr(s, scale, net.ext, buf_e, buf_i, slot, dmod, inh_sign)
    if has_proc:
        _push_procedural(s, scale, 1, net.procedural, buf_e, buf_i, slot, dmod, inh_sign)
    if net.ext_plastic.rule.shape[0] > 0:
        plastic_pre(s, m, t, dt, net.ext, net.ext_plastic)


def _simulate_steps(n_steps, t0, net, state, inputs, mon, counters):
    """Advance ``n_steps`` steps from step ``t0``; see :func:`.reference.simulate`.

    Compiled once per (model, threads, procedural, plastic) below, so a network compiles
    only what it runs.
    """
    v, ge, gi, buf_e, buf_i = state.v, state.ge, state.gi, state.buf_e, state.buf_i
    rec, csc, proc, pois = net.rec, net.rec_csc, net.procedural, net.poisson
    params, ref_steps, sc = net.neurons.params, net.neurons.ref_steps, net.neurons.syn
    spk_mask, spk_t, spk_i, rate = mon.spk_mask, mon.spk_t, mon.spk_i, mon.rate
    rec_idx, spiked, flag = mon.rec_idx, mon.spiked, mon.flag
    h_prm, theta = net.homeostasis
    has_homeo = h_prm.shape[0] > 0 and h_prm[H_FROZEN] == 0.0
    r_has_stp = net.rec_stp.prm.shape[0] > 0
    r_plastic = net.rec_plastic.rule.shape[0] > 0
    x_plastic = net.ext_plastic.rule.shape[0] > 0
    dense_limit = net.dense_limit
    dt = sc[DT]
    inh_sign = sc[INH_SIGN]
    rec_every = counters[C_RECORD_EVERY]
    hom = counters[C_HOMOGENEOUS] == 1
    dmod = buf_e.shape[0]
    has_rec = rec.indptr.shape[0] > 1
    has_ext = net.ext.indptr.shape[0] > 1
    has_proc = proc.ip.shape[0] > 0
    cap = spk_t.shape[0]
    n_written = counters[C_WRITTEN]
    n_rec = counters[C_RECORDED]
    n_mon = counters[C_MONITORED]
    for k in range(n_steps):
        if cap - n_written < n_mon:
            counters[C_WRITTEN] = n_written
            counters[C_RECORDED] = n_rec
            return k, STATUS_DRAIN  # the spike buffer may overflow: the shell drains it first
        t = t0 + k
        slot = t % dmod
        # --- 1-3: arrivals, integration, threshold and reset: branch-free, vectorizable
        _update(hom, v, ge, gi, state.refrac, buf_e[slot], buf_i[slot], params, ref_steps, sc, flag)
        n_spk = _collect(flag, spiked)
        if has_homeo:
            _homeostasis(h_prm, theta, params, spiked, n_spk)
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
                mon.rec_v[n_rec, q] = v[j]
                mon.rec_ge[n_rec, q] = ge[j]
                mon.rec_gi[n_rec, q] = gi[j]
            n_rec += 1
        # --- 5: recurrent propagation: event-driven push or dense pull
        if has_rec and n_spk > 0:
            if dense_limit >= 0 and n_spk > dense_limit:
                counters[C_DENSE_STEPS] += 1
                _pull_dense(spiked, n_spk, flag, rec, csc, buf_e, buf_i, slot, dmod, inh_sign)
            else:
                counters[C_EVENT_STEPS] += 1
                for q in range(n_spk):
                    scale = 1.0
                    if r_has_stp:
                        scale = stp_scale(spiked[q], 1, t, dt, net.rec_stp)
                    _push_csr(spiked[q], scale, rec, buf_e, buf_i, slot, dmod, inh_sign)
        elif n_spk > 0:
            counters[C_EVENT_STEPS] += 1
        if r_plastic:  # depression on the rows of this step's spikes (after transmission)
            for q in range(n_spk):
                plastic_pre(spiked[q], 1, t, dt, rec, net.rec_plastic)
        if has_proc:
            for q in range(n_spk):
                _push_procedural(spiked[q], 1, 0, proc, buf_e, buf_i, slot, dmod, inh_sign)
        # --- 6: external input spikes of this step
        for q in range(inputs.ptr[k], inputs.ptr[k + 1]):
            _input_event(
                inputs.idx[q],
                inputs.cnt[q],
                t,
                dt,
                net,
                buf_e,
                buf_i,
                slot,
                dmod,
                inh_sign,
                has_ext,
                has_proc,
            )
        # --- 7: Poisson groups: counts drawn from the (seed, group, step, source) stream
        for g in range(pois.first.shape[0]):
            key_t = row_key(pois.keys[g], t)
            for i in range(pois.size[g]):
                j = pois.start[g] + i
                if pois.lam[j] <= 0.0:
                    continue  # silent source: no draw (the stream is keyed by source)
                u = uniform(key_t, i)
                if u > pois.elam[j]:
                    m = poisson_count(pois.lam[j], pois.elam[j], u)
                    _input_event(
                        pois.first[g] + i,
                        m,
                        t,
                        dt,
                        net,
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
                plastic_post(spiked[q], t, dt, csc, rec.weights, net.rec_plastic)
            if x_plastic:
                plastic_post(spiked[q], t, dt, net.ext_csc, net.ext.weights, net.ext_plastic)
        counters[C_SPIKES] += n_spk
    counters[C_WRITTEN] = n_written
    counters[C_RECORDED] = n_rec
    return n_steps, STATUS_DONE


@njit(cache=True, inline="always")
def _pull_dense(spiked, n_spk, flag, rec, csc, buf_e, buf_i, slot, dmod, inh_sign):
    """Dense pull: every target's incoming synapses (the transposed index) in target order,
    delivered where the source spiked; the same sums as the push, in the same order."""
    for q in range(n_spk):
        flag[spiked[q]] = 1
    dconst = rec.flags[CONST_DELAY]
    by_row = rec.flags[ROW_WEIGHTS] == 1 and dconst >= 0  # then csc.pos is not stored
    for j in range(csc.ptr.shape[0] - 1):
        for q in range(csc.ptr[j], csc.ptr[j + 1]):
            s = csc.src[q]
            if flag[s]:
                if by_row:
                    _deliver(buf_e, buf_i, slot, dmod, dconst, j, rec.weights[s], inh_sign)
                else:
                    pos = csc.pos[q]
                    w = rec.weights[s] if rec.flags[ROW_WEIGHTS] == 1 else rec.weights[pos]
                    d = dconst if dconst >= 0 else rec.delays[pos]
                    _deliver(buf_e, buf_i, slot, dmod, d, j, w, inh_sign)
    for q in range(n_spk):
        flag[spiked[q]] = 0


@njit(cache=True, inline="always")
def _no_procedural(src, mult, is_input, proc, buf_e, buf_i, tm, dmod, inh_sign):
    """Stands in for ``_push_procedural`` in kernels of networks without procedural rows."""
    return None


@njit(cache=True, inline="always")
def _no_plastic_pre(s, m, t, dt, syn, side):
    """Stands in for ``plastic_pre`` in kernels of networks without plasticity."""
    return None


@njit(cache=True, inline="always")
def _no_plastic_post(j, t, dt, csc, weights, side):
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


_UPDATES = {MODEL_CUBA: _update_cuba, MODEL_COBA: _update_coba, MODEL_DELTA: _update_delta}
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


def simulate(n_steps, t0, net, state, inputs, mon, counters):
    """Advance ``n_steps`` steps from step ``t0``: :func:`.reference.simulate`, dispatched to
    a kernel compiled for this (model, threads, procedural, plastic) combination only."""
    plastic = net.rec_plastic.rule.shape[0] > 0 or net.ext_plastic.rule.shape[0] > 0
    parallel = bool(counters[C_THREADS] > 1)
    kernel = _get_variant(int(net.model), parallel, net.procedural.ip.shape[0] > 0, plastic)
    return kernel(n_steps, t0, net, state, inputs, mon, counters)
