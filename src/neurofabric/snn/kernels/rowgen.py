"""Connectivity row generators: the synapses of one source, regenerated from (seed, source).

This module is the spec of every topology. Both storage modes call it: materialized CSR runs
it once per source at build time, procedural mode runs it again whenever the source spikes.
It is plain Python on integers and floats: the ``reference`` backend runs it as it is and
``numba_cpu`` compiles the very same functions with ``numba.njit``, so the two agree exactly.

Random numbers come from a counter-based stream: ``uniform(key, i)`` is a hash of the row key
and the draw counter ``i``; the row key is a hash of the projection key and the source index.
All integer arithmetic stays below 2**63, so it is identical in Python and in numba's int64.

Row parameters (``ip`` int64, ``fp`` float64), shared by all kinds:

====  ===================================  ====  =====================================
ip    meaning                              fp    meaning
====  ===================================  ====  =====================================
0     kind (see ``KIND_*``)                0     p (connection probability, peak p)
1,2   source range [src0, src1)            1     beta (small-world rewiring)
3,4   target range [tgt0, tgt1)            2     sigma (distance-dependent, lattice units)
5     k (degree / neighbours / total)      3,4   weight mean, std (excitatory sources)
6     lattice dims (1 or 2)                5,6   weight mean, std (inhibitory sources)
7     allow self connections (0/1)
8     Dale split: sources >= it inhibitory, -1 = no Dale (signed weights as drawn)
9,10  delay range [lo, hi] in steps        7,8   normal delays: mean, sd in steps
      (inclusive)                                (sd 0: uniform integers in [lo, hi])
====  ===================================  ====  =====================================
"""

import math

KIND_RANDOM = 0
KIND_OUT_DEGREE = 1
KIND_SMALL_WORLD = 2
KIND_DISTANCE = 3
KIND_ALL_TO_ALL = 4
KIND_IN_DEGREE = 5  # generated per target; materialized CSR only
KIND_ONE_TO_ONE = 6
KIND_FIXED_TOTAL = 7  # n synapses over the whole projection; materialized CSR only

M32 = 4294967295


def hash32(x):
    """A 32-bit integer mixer (xorshift-multiply, two rounds). Input and output in [0, 2**32)."""
    x = x & M32
    x = ((x ^ (x >> 16)) * 73244475) & M32
    x = ((x ^ (x >> 16)) * 73244475) & M32
    return x ^ (x >> 16)


def row_key(key, index):
    """The stream key of row ``index`` under projection key ``key``."""
    return hash32(hash32(key ^ (index & M32)) + 2654435769 * ((index >> 32) + 1))


def uniform(key, i):
    """The ``i``-th uniform draw of stream ``key``, in the open interval (0, 1)."""
    h = hash32(hash32((key + 2654435769 * (i + 1)) & M32) ^ key)
    return (h + 0.5) / 4294967296.0


def normal(key, i):
    """A standard normal from draws ``i`` and ``i + 1`` (Box-Muller, cosine branch)."""
    u1 = uniform(key, i)
    u2 = uniform(key, i + 1)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(6.283185307179586 * u2)


def synapse_weight(fp, dale, src, key, i):
    """Weight of a synapse from ``src`` (uses draws ``i``, ``i + 1``)."""
    if dale >= 0 and src >= dale:
        w = fp[5] + fp[6] * normal(key, i) if fp[6] > 0.0 else fp[5]
        return -abs(w)
    w = fp[3] + fp[4] * normal(key, i) if fp[4] > 0.0 else fp[3]
    return abs(w) if dale >= 0 else w


def synapse_delay(ip, key, i):
    """Delay in steps of a synapse (uses draw ``i`` when the range is not a single value)."""
    lo = ip[9]
    hi = ip[10]
    if hi <= lo:
        return lo
    return lo + min(int(uniform(key, i) * (hi - lo + 1)), hi - lo)


def synapse_delay_of(ip, fp, key, a):
    """Delay in steps of synapse ``a`` of a row (stream ``key``). Uniform over [lo, hi]
    (draw ``3a + 2``) when ``fp[8]`` is 0; else normal with mean ``fp[7]`` and sd ``fp[8]``
    steps, redrawn outside [lo - 1/2, hi + 1/2) and rounded to the nearest step (NEST's
    ``redraw`` of a normal delay, then its rounding to the resolution: with lo = 1 the
    shortest delay is one step). Redraws come from streams keyed by the attempt."""
    if fp[8] <= 0.0:
        return synapse_delay(ip, key, 3 * a + 2)
    lo = ip[9] - 0.5
    hi = ip[10] + 0.5
    dk = hash32(key ^ 2654435761)
    attempt = 0
    while True:
        x = fp[7] + fp[8] * normal(hash32((dk + 2654435769 * attempt) & M32), 2 * a)
        if lo <= x < hi:
            d = int(math.floor(x + 0.5))
            return max(ip[9], min(d, ip[10]))
        attempt += 1
        if attempt > 10000:  # [lo, hi] holds (nearly) no mass: the nearer bound
            return ip[9] if x < lo else ip[10]


def _sample_distinct(key, n, k, exclude, out_t):
    """Floyd's algorithm: ``k`` distinct sorted values from [0, n) without ``exclude``."""
    m = n - 1 if exclude >= 0 else n
    count = 0
    for j in range(m - k, m):
        r = int(uniform(key, 1000003 + j) * (j + 1))
        if r > j:
            r = j
        found = False
        for q in range(count):
            if out_t[q] == r:
                found = True
                break
        out_t[count] = j if found else r
        count += 1
    _sort_prefix(out_t, count)  # rows are kept in target order, as CSR rows are
    if exclude >= 0:
        for a in range(count):
            if out_t[a] >= exclude:
                out_t[a] += 1
    return count


def _lattice_side(n, dims):
    if dims == 1:
        return n
    side = int(math.sqrt(n))
    while side * side > n:
        side -= 1
    while (side + 1) * (side + 1) <= n:
        side += 1
    return side


def _sort_prefix(out_t, count):
    """Insertion sort of ``out_t[:count]`` (rows are short and nearly sorted)."""
    for a in range(1, count):
        v = out_t[a]
        b = a - 1
        while b >= 0 and out_t[b] > v:
            out_t[b + 1] = out_t[b]
            b -= 1
        out_t[b + 1] = v


def _shift(out_t, count, tgt0):
    for a in range(count):
        out_t[a] += tgt0
    return count


def _all_targets(n_t, tgt0, self_t, out_t):
    count = 0
    for t in range(n_t):
        if t != self_t:
            out_t[count] = tgt0 + t
            count += 1
    return count


# Each topology kind has one generator with the same signature, so a compiled variant for
# one kind can bind the others to ``_no_targets`` and compile only what it uses.
# ``rk`` is the row key, ``n_t``/``tgt0`` the target range, ``self_t`` the excluded target
# (relative, -1 for none); the targets written are absolute. ``ip[7]``: 0 excludes the
# neuron itself, 1 allows it, 2 excludes the partner (same offset in source and target range).


def _targets_random(ip, fp, rk, src, n_t, tgt0, self_t, out_t):
    """Each target independently with probability p, by geometric skips."""
    p = fp[0]
    if p <= 0.0:
        return 0
    if p >= 1.0:
        return _all_targets(n_t, tgt0, self_t, out_t)
    log_q = math.log1p(-p)
    if log_q == 0.0:  # p below double resolution: no synapse in any realistic network
        return 0
    count = 0
    t = -1
    i = 0
    while True:
        # geometric skip to the next connected target (compared as float: no overflow)
        gap = math.log(uniform(rk, i)) / log_q
        i += 1
        if gap >= n_t - t - 1:
            break
        t += 1 + int(gap)
        if t != self_t:
            out_t[count] = tgt0 + t
            count += 1
    return count


def _targets_out_degree(ip, fp, rk, src, n_t, tgt0, self_t, out_t):
    """Exactly k distinct targets."""
    return _shift(out_t, _sample_distinct(rk, n_t, ip[5], self_t, out_t), tgt0)


def _targets_all(ip, fp, rk, src, n_t, tgt0, self_t, out_t):
    return _all_targets(n_t, tgt0, self_t, out_t)


def _targets_one_to_one(ip, fp, rk, src, n_t, tgt0, self_t, out_t):
    s = src - ip[1]
    if s < n_t:
        out_t[0] = tgt0 + s
        return 1
    return 0


def _targets_small_world(ip, fp, rk, src, n_t, tgt0, self_t, out_t):
    """Ring lattice (k/2 neighbours per side), each synapse rewired with probability beta."""
    s = src - ip[1]
    half = ip[5] // 2
    beta = fp[1]
    count = 0
    for j in range(1, half + 1):
        for side in range(2):
            t = (s + j) % n_t if side == 0 else (s - j) % n_t
            draw = 2 * (2 * j + side)
            if beta > 0.0 and uniform(rk, draw) < beta:
                # rewire to a uniform target that is not the source and not already taken
                attempt = 0
                while True:
                    cand = int(uniform(rk, 4 * n_t + 97 * draw + attempt) * n_t)
                    attempt += 1
                    if cand >= n_t:
                        cand = n_t - 1
                    dup = cand == s
                    for q in range(count):
                        if out_t[q] == cand:
                            dup = True
                            break
                    if not dup or attempt > 64:
                        break
                if dup:
                    cand = t
                t = cand
            out_t[count] = t
            count += 1
    # sort and drop duplicates left by rewiring collisions
    _sort_prefix(out_t, count)
    m = 0
    for a in range(count):
        if m == 0 or out_t[a] != out_t[m - 1]:
            out_t[m] = out_t[a]
            m += 1
    return _shift(out_t, m, tgt0)


def _targets_distance(ip, fp, rk, src, n_t, tgt0, self_t, out_t):
    """Gaussian profile on a periodic 1-D ring or 2-D square lattice, cut at 4 sigma."""
    dims = ip[6]
    sigma = fp[2]
    p0 = fp[0]
    n_s = ip[2] - ip[1]
    reach = int(math.ceil(4.0 * sigma))
    s = src - ip[1]
    count = 0
    if dims == 1:
        cx = (s * n_t) // n_s if n_s != n_t else s
        lo = -min(reach, (n_t - 1) // 2)
        hi = min(reach, n_t // 2)
        for off in range(lo, hi + 1):
            t = (cx + off) % n_t
            d2 = float(off * off)
            if t != self_t and uniform(rk, off - lo) < p0 * math.exp(-d2 / (2.0 * sigma * sigma)):
                out_t[count] = t
                count += 1
    else:
        side_t = _lattice_side(n_t, dims)
        side_s = _lattice_side(n_s, dims)
        sx = s % side_s
        sy = s // side_s
        cx = (sx * side_t) // side_s
        cy = (sy * side_t) // side_s
        lo = -min(reach, (side_t - 1) // 2)
        hi = min(reach, side_t // 2)
        width = hi - lo + 1
        for oy in range(lo, hi + 1):
            for ox in range(lo, hi + 1):
                t = ((cy + oy) % side_t) * side_t + (cx + ox) % side_t
                d2 = float(ox * ox + oy * oy)
                draw = (oy - lo) * width + (ox - lo)
                if t != self_t and uniform(rk, draw) < p0 * math.exp(-d2 / (2.0 * sigma * sigma)):
                    out_t[count] = t
                    count += 1
    _sort_prefix(out_t, count)  # windows wrap around the ring/torus
    return _shift(out_t, count, tgt0)


def _no_targets(ip, fp, rk, src, n_t, tgt0, self_t, out_t):
    """Stands in for the kinds a compiled variant leaves out."""
    return -1


def gen_targets(ip, fp, key, src, out_t):
    """Fill ``out_t`` with the targets of ``src`` (absolute indices, ascending); return count."""
    kind = ip[0]
    tgt0 = ip[3]
    n_t = ip[4] - tgt0
    rk = row_key(key, src)
    if ip[7] == 2:  # skip the partner: source i of the range -> target i of the range
        self_t = src - ip[1] if src - ip[1] < n_t else -1
    else:
        self_t = src - tgt0 if (ip[7] == 0 and 0 <= src - tgt0 < n_t) else -1
    if kind == KIND_RANDOM:
        return _targets_random(ip, fp, rk, src, n_t, tgt0, self_t, out_t)
    if kind == KIND_OUT_DEGREE:
        return _targets_out_degree(ip, fp, rk, src, n_t, tgt0, self_t, out_t)
    if kind == KIND_SMALL_WORLD:
        return _targets_small_world(ip, fp, rk, src, n_t, tgt0, self_t, out_t)
    if kind == KIND_DISTANCE:
        return _targets_distance(ip, fp, rk, src, n_t, tgt0, self_t, out_t)
    if kind == KIND_ALL_TO_ALL:
        return _targets_all(ip, fp, rk, src, n_t, tgt0, self_t, out_t)
    if kind == KIND_ONE_TO_ONE:
        return _targets_one_to_one(ip, fp, rk, src, n_t, tgt0, self_t, out_t)
    return -1


KIND_GENERATORS = {
    KIND_RANDOM: "_targets_random",
    KIND_OUT_DEGREE: "_targets_out_degree",
    KIND_SMALL_WORLD: "_targets_small_world",
    KIND_DISTANCE: "_targets_distance",
    KIND_ALL_TO_ALL: "_targets_all",
    KIND_ONE_TO_ONE: "_targets_one_to_one",
}


def gen_row(ip, fp, key, src, out_t, out_w, out_d):
    """Targets, weights and delays (steps) of source ``src``; returns the synapse count."""
    count = gen_targets(ip, fp, key, src, out_t)
    wk = hash32(row_key(key, src) ^ 1431655765)
    for a in range(count):
        out_w[a] = synapse_weight(fp, ip[8], src, wk, 3 * a)
        out_d[a] = synapse_delay_of(ip, fp, wk, a)
    return count


def gen_in_degree_sources(ip, fp, key, tgt, out_s, out_w, out_d):
    """Fixed in-degree: ``k`` distinct sources of target ``tgt`` (absolute, ascending), with
    the weight and delay of each synapse; returns the count."""
    src0 = ip[1]
    n_s = ip[2] - src0
    self_s = tgt - src0 if (ip[7] == 0 and 0 <= tgt - src0 < n_s) else -1
    rk = row_key(key ^ 2863311530, tgt)
    count = _sample_distinct(rk, n_s, ip[5], self_s, out_s)
    wk = hash32(rk ^ 1431655765)
    for a in range(count):
        out_s[a] += src0
        out_w[a] = synapse_weight(fp, ip[8], out_s[a], wk, 3 * a)
        out_d[a] = synapse_delay_of(ip, fp, wk, a)
    return count


def gen_fixed_total(ip, fp, key, first, n, out_s, out_t, out_w, out_d):
    """Synapses ``first .. first + n - 1`` of a fixed-total-number projection (NEST's
    ``fixed_total_number``): each has a source and a target drawn independently and uniformly
    from their ranges, so a pair may repeat (multapses). Without self connections
    (``ip[7]`` 0, or 2: the partner) a synapse that lands on one redraws its target from a
    second stream. Synapse ``a`` depends only on (key, a): any split into chunks gives the
    same synapses."""
    src0 = ip[1]
    n_s = ip[2] - src0
    tgt0 = ip[3]
    n_t = ip[4] - tgt0
    sk = hash32(key ^ 2246822507)
    wk = hash32(key ^ 1431655765)
    for j in range(n):
        a = first + j
        s = min(int(uniform(sk, 2 * a) * n_s), n_s - 1)
        t = min(int(uniform(sk, 2 * a + 1) * n_t), n_t - 1)
        if ip[7] != 1:
            bad = s + src0 - tgt0 if ip[7] == 0 else s  # the target this source may not reach
            attempt = 0
            while t == bad and n_t > 1:
                rk = row_key(sk ^ 3266489917, a)
                t = min(int(uniform(rk, attempt) * n_t), n_t - 1)
                attempt += 1
        out_s[j] = src0 + s
        out_t[j] = tgt0 + t
        out_w[j] = synapse_weight(fp, ip[8], src0 + s, wk, 3 * a)
        out_d[j] = synapse_delay_of(ip, fp, wk, a)
    return n


def poisson_count(lam, elam, u):
    """Poisson(lam) by inversion of one uniform ``u`` (``elam`` = exp(-lam), from the shell).

    ``p_k = p_{k-1} lam / k``, stop when the cumulative probability reaches ``u``; a count of
    zero exactly when ``u <= exp(-lam)``.
    """
    k = 0
    p = elam
    c = elam
    while u > c and k < 100000:
        k += 1
        p = p * lam / k
        c = c + p
        if p == 0.0:  # the tail is below double precision
            break
    return k
