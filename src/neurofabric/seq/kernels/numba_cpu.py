"""The fast RWKV-4 decode step: one numba function for the whole network (BLAS for the matrix
products, fused loops for everything else), float32, batch of any size; ``reference`` has the
same step in plain numpy.

Weights come stacked per layer (``RWKVWeights``): the state is one (n_layer, 5, B, C) array
(time-mix shift, WKV a, b, p, channel-mix shift), updated in place.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from neurofabric.core import numba_intrinsics
from neurofabric.core.numba_cache import drop_stale_cache, rebound
from neurofabric.core.numba_intrinsics import prefetch

# numba compiles this file and the shared intrinsics; a change to either drops every cached
# entry of the package
drop_stale_cache(
    Path(__file__).parent,
    frozenset({"__init__.py", "reference.py", "torch_ops.py"}),
    also=(Path(numba_intrinsics.__file__),),
)


@njit(cache=True, inline="always")
def _layer_norm(x, w, b, out):
    B, C = x.shape
    for i in range(B):
        mu = 0.0
        for c in range(C):
            mu += x[i, c]
        mu /= C
        var = 0.0
        for c in range(C):
            d = x[i, c] - mu
            var += d * d
        inv = 1.0 / np.sqrt(var / C + 1e-5)
        for c in range(C):
            out[i, c] = (x[i, c] - mu) * inv * w[c] + b[c]


@njit(cache=True, inline="always")
def _embed(tokens, emb, ln0):
    """The embeddings after ln0, and four (B, C) work buffers."""
    B, C = tokens.shape[0], emb.shape[1]
    x = np.empty((B, C), dtype=np.float32)
    for i in range(B):
        x[i] = emb[tokens[i]]
    xx = np.empty((B, C), dtype=np.float32)
    _layer_norm(x, ln0[0], ln0[1], xx)
    x[:] = xx
    xk = np.empty((B, C), dtype=np.float32)
    return x, xx, xk, np.empty_like(xk), np.empty_like(xk)


@njit(cache=True, inline="always")
def _att_inputs(x, ln_w, ln_b, mix, st, xx, xk, xv, xr):
    """LN1 and the token shift: the inputs of W_k, W_v, W_r; st[0] takes the new shift."""
    _layer_norm(x, ln_w, ln_b, xx)
    B, C = x.shape
    mk, mv, mr = mix[0], mix[1], mix[2]
    for i in range(B):
        for c in range(C):
            s = st[0, i, c]
            a = xx[i, c]
            xk[i, c] = a * mk[c] + s * (1.0 - mk[c])
            xv[i, c] = a * mv[c] + s * (1.0 - mv[c])
            xr[i, c] = a * mr[c] + s * (1.0 - mr[c])
            st[0, i, c] = a


# exp in float32 for numba loops, vectorizable: x = k ln2 + r (Cody-Waite: ln2 in two parts),
# e^r by Cephes' degree-7 polynomial on [-ln2/2, ln2/2], 2^k built in the exponent bits
_EXP_LOG2E = np.float32(1.4426950408889634)
_EXP_C1 = np.float32(0.693359375)
_EXP_C2 = np.float32(-2.12194440e-4)
_EXP_P = (
    np.float32(1.9875691500e-4),
    np.float32(1.3981999507e-3),
    np.float32(8.3334519073e-3),
    np.float32(4.1665795894e-2),
    np.float32(1.6666665459e-1),
    np.float32(5.0000001201e-1),
)
_EXP_LO = np.float32(-87.0)  # e^-87 is still a normal float32
_EXP_HI = np.float32(88.0)
_F32_HALF = np.float32(0.5)
_F32_ONE = np.float32(1.0)


@njit(cache=True, inline="always", fastmath=True)
def exp_row(x, out, bits, fast):
    """``out[j] = exp(x[j])`` over a row. ``fast``: float32 rows by a polynomial the loop
    vectorizes (numba calls libm's scalar exp otherwise: without Intel's SVML it does not
    vectorize exp), relative error under 3e-7 (2.5 float32 ulps) on [-87, 88] (tested), inputs
    clamped to it;
    otherwise ``np.exp`` (float64 rows, exact to libm). ``bits`` (int32, as long) is scratch."""
    n = x.shape[0]
    if not fast:
        for j in range(n):
            out[j] = np.exp(x[j])
        return
    p0, p1, p2, p3, p4, p5 = _EXP_P
    for j in range(n):
        v = min(max(x[j], _EXP_LO), _EXP_HI)
        k = np.floor(v * _EXP_LOG2E + _F32_HALF)
        r = v - k * _EXP_C1 - k * _EXP_C2
        q = ((((p0 * r + p1) * r + p2) * r + p3) * r + p4) * r + p5
        out[j] = q * r * r + r + _F32_ONE
        bits[j] = (np.int32(k) + 127) << 23
    scale = bits.view(np.float32)
    for j in range(n):
        out[j] *= scale[j]


@njit(cache=True, inline="always", fastmath=True)
def _pair_weights(x, y, one):
    """(e^{x - m}, e^{y - m}) for m = max(x, y) with one exp instead of two: the larger side's
    weight is exactly 1 (``one``, in the arrays' dtype), the other's e^{-|x - y|}. The WKV
    kernels are bound by exp (scalar calls: numba has no vector exp here without SVML), so
    this halves their cost."""
    e = np.exp(-abs(y - x))
    if y > x:
        return e, one
    return one, e


@njit(cache=True, inline="always")
def _wkv(k, v, r, st, dec, u):
    """sigmoid(r) * wkv (B, C), and the WKV sums a, b, p of ``st`` advanced one token."""
    B, C = k.shape
    out = np.empty((B, C), dtype=np.float32)
    one = np.float32(1.0)
    for i in range(B):
        for c in range(C):
            aa, bb, pp = st[1, i, c], st[2, i, c], st[3, i, c]
            kk, vv = k[i, c], v[i, c]
            e1, e2 = _pair_weights(pp, u[c] + kk, one)
            rr = 1.0 / (1.0 + np.exp(-r[i, c]))
            out[i, c] = rr * (e1 * aa + e2 * vv) / (e1 * bb + e2)
            ww = pp + dec[c]
            e1, e2 = _pair_weights(ww, kk, one)
            st[1, i, c] = e1 * aa + e2 * vv
            st[2, i, c] = e1 * bb + e2
            st[3, i, c] = max(ww, kk)
    return out


@njit(cache=True, inline="always")
def _ffn_inputs(x, ln_w, ln_b, mix, st, xx, xk, xr):
    """LN2 and the token shift: the inputs of the channel mix's W_k and W_r (st[4] updated)."""
    _layer_norm(x, ln_w, ln_b, xx)
    B, C = x.shape
    fk, fr = mix[0], mix[1]
    for i in range(B):
        for c in range(C):
            s = st[4, i, c]
            a = xx[i, c]
            xk[i, c] = a * fk[c] + s * (1.0 - fk[c])
            xr[i, c] = a * fr[c] + s * (1.0 - fr[c])
            st[4, i, c] = a


@njit(cache=True, inline="always")
def _square_relu(kf):
    for i in range(kf.shape[0]):
        for j in range(kf.shape[1]):
            t = kf[i, j]
            kf[i, j] = t * t if t > 0 else 0.0


@njit(cache=True, inline="always")
def _add_gated(x, kv, rf):
    """x += sigmoid(rf) * kv."""
    for i in range(x.shape[0]):
        for c in range(x.shape[1]):
            x[i, c] += kv[i, c] / (1.0 + np.exp(-rf[i, c]))


@njit(cache=True)
def rwkv_step(
    tokens,
    emb,
    ln0,
    ln,
    att_mix,
    decay,
    first,
    att_w,
    ffn_mix,
    ffn_k,
    ffn_r,
    ffn_v,
    ln_out,
    head,
    state,
):
    """Logits (B, V) for one token per sequence; ``state`` (L, 5, B, C) is updated in place.

    ln0 (2, C); ln (L, 2, 2, C) = (ln1 | ln2) x (weight | bias); att_mix (L, 3, C) = mix k, v, r;
    decay = -exp(time_decay) (L, C); first (L, C); att_w (L, 4, C, C) = W_k, W_v, W_r, W_o;
    ffn_mix (L, 2, C); ffn_k (L, F, C); ffn_r (L, C, C); ffn_v (L, C, F); ln_out (2, C);
    head (V, C).
    """
    L = att_mix.shape[0]
    x, xx, xk, xv, xr = _embed(tokens, emb, ln0)
    for layer in range(L):
        st = state[layer]
        _att_inputs(x, ln[layer, 0, 0], ln[layer, 0, 1], att_mix[layer], st, xx, xk, xv, xr)
        k = np.dot(xk, att_w[layer, 0].T)
        v = np.dot(xv, att_w[layer, 1].T)
        r = np.dot(xr, att_w[layer, 2].T)
        wkv = _wkv(k, v, r, st, decay[layer], first[layer])
        x += np.dot(wkv, att_w[layer, 3].T)
        _ffn_inputs(x, ln[layer, 1, 0], ln[layer, 1, 1], ffn_mix[layer], st, xx, xk, xr)
        kf = np.dot(xk, ffn_k[layer].T)
        _square_relu(kf)
        _add_gated(x, np.dot(kf, ffn_v[layer].T), np.dot(xr, ffn_r[layer].T))
    _layer_norm(x, ln_out[0], ln_out[1], xx)
    return np.dot(xx, head.T)


#: rows of codes requested ahead of the ones a step of either int4 kernel multiplies with
_Q4_AHEAD = 4


@njit(cache=True, fastmath=True)
def _q4_rows(r0, r1, e, d, s0, s1, zs0, zs1, xs, hg):
    """Two outputs of :func:`q4_matvec_fma` (rows ``r0``, ``r1`` share the loads of x)."""
    a0 = np.float32(0.0)
    a1 = np.float32(0.0)
    lo = np.uint8(15)
    for g in range(s0.shape[0]):
        p0 = np.float32(0.0)
        p1 = np.float32(0.0)
        base = g * hg
        for i in range(hg):  # uint8 operands keep this loop in SIMD lanes
            j = base + i
            b0, b1 = r0[j], r1[j]
            dj, ej = d[j], e[j]
            p0 += np.float32(b0) * dj + np.float32(b0 & lo) * ej
            p1 += np.float32(b1) * dj + np.float32(b1 & lo) * ej
        a0 += s0[g] * p0 - zs0[g] * xs[g]
        a1 += s1[g] * p1 - zs1[g] * xs[g]
    return a0, a1


def _q4_matvec_fma(x, qweight, scales, zs):
    """``x @ W.T`` (B, out) for 4-bit codes: ``W[o, i] = s[o, g] (q[o, i] - z[o, g])`` with
    ``zs = z s``; qweight (out, in / 2) uint8, code 2j in the low nibble of byte j, 2j + 1 in
    the high one; scales, zs (out, in / group) float32.

    Per group, ``s sum(q x) - zs sum(x)``. The codes are never shifted out of their byte: with
    ``b = lo + 16 hi``, ``lo x_2j + hi x_2j+1 = b (x_2j+1 / 16) + lo (x_2j - x_2j+1 / 16)``,
    so each byte costs one mask, two conversions and two multiply-adds against two vectors
    made once per call. Sums in float32 (in any order: ``fastmath``); two rows at a time,
    rows in parallel."""
    B = x.shape[0]
    out, half = qweight.shape
    ng = scales.shape[1]
    hg = half // ng  # bytes per group
    d = np.empty((B, half), dtype=np.float32)  # x_2j+1 / 16
    e = np.empty((B, half), dtype=np.float32)  # x_2j - x_2j+1 / 16
    xs = np.zeros((B, ng), dtype=np.float32)  # the sum of x over each group
    for b in range(B):
        for j in range(half):
            d[b, j] = x[b, 2 * j + 1] / np.float32(16.0)
            e[b, j] = x[b, 2 * j] - d[b, j]
            xs[b, j // hg] += x[b, 2 * j] + x[b, 2 * j + 1]
    y = np.empty((B, out), dtype=np.float32)
    for k in prange((out + 1) // 2):
        o0 = 2 * k
        o1 = min(o0 + 1, out - 1)  # an odd last row is computed twice
        # the codes stream from memory: ask for the rows a few steps ahead (the hardware's
        # own prefetch left the decode of a model past the caches at half the hot speed)
        for ahead in range(o0 + _Q4_AHEAD, min(o0 + _Q4_AHEAD + 2, out)):
            for j in range(0, half, 64):
                prefetch(qweight, ahead, j)
        for b in range(B):
            y[b, o0], y[b, o1] = _q4_rows(
                qweight[o0],
                qweight[o1],
                e[b],
                d[b],
                scales[o0],
                scales[o1],
                zs[o0],
                zs[o1],
                xs[b],
                hg,
            )
    return y


_I8, _I32 = ir.IntType(8), ir.IntType(32)
_V64B, _V16I, _V16F = (
    ir.VectorType(_I8, 64),
    ir.VectorType(_I32, 16),
    ir.VectorType(ir.FloatType(), 16),
)


def _splat(vty, value):
    return ir.Constant(vty, [value] * vty.count)


def _c_array(ty, dtype, ndim=1):
    return (
        isinstance(ty, types.Array) and ty.dtype == dtype and ty.ndim == ndim and ty.layout == "C"
    )


@intrinsic
def _q4_row_vnni(typingctx, codes, limbs, corr, scales, x_scale):
    """``sum_g scales[g] x_scale[g] sum_i (q[g, i] - 8) X[g, i]`` of one row (float32), in
    AVX-512 VNNI integer dot products: ``codes`` the row's bytes (64 per group of 128
    codes), ``limbs`` the call's three signed base-256 digits of ``X`` (:func:`_q4_limbs`:
    384 bytes per group, digit k of the even inputs then of the odd ones), ``corr`` 8 times
    the sum of ``X`` over each int32 lane's 8 inputs (16 per group). Per group, six
    ``vpdpbusd`` (unsigned codes times signed digits, four products per int32 lane), the
    digits joined per lane (``65536 S2 + 256 S1 + S0``) minus ``corr``: the codes centred on
    8, so a lane holds ``sum (q - 8) X`` exactly (below 2^29 in size; int32 arithmetic wraps,
    so the larger terms before the subtraction do no harm) and the sums stay near the
    result's size instead of cancelling against the zero points later. One conversion and
    one multiply-add add the group into a float32 vector, summed once per row."""
    if not (
        _c_array(codes, types.uint8)
        and _c_array(limbs, types.int8)
        and _c_array(corr, types.int32)
        and _c_array(scales, types.float32)
        and _c_array(x_scale, types.float32)
    ):
        return None

    def codegen(context, builder, signature, args):
        arrays = [
            context.make_array(t)(context, builder, a)
            for t, a in zip(signature.args, args, strict=True)
        ]
        cptr, lptr, kptr, sptr, eptr = (a.data for a in arrays)
        (ng,) = cgutils.unpack_tuple(builder, arrays[3].shape, 1)
        dot = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_V16I, [_V16I] * 3), "llvm.x86.avx512.vpdpbusd.512"
        )
        acc = cgutils.alloca_once_value(builder, _splat(_V16F, 0.0))
        zero = _splat(_V16I, 0)

        def load(ptr, offset, vty):
            at = builder.gep(ptr, [offset]) if offset is not None else ptr
            return builder.load(builder.bitcast(at, vty.as_pointer()), align=1)

        with cgutils.for_range(builder, ng) as loop:
            g = loop.index
            step = ir.Constant(g.type, 64)
            cv = load(cptr, builder.mul(g, step), _V64B)
            lo = builder.bitcast(builder.and_(cv, _splat(_V64B, 15)), _V16I)  # even inputs
            hi = builder.bitcast(builder.lshr(cv, _splat(_V64B, 4)), _V16I)  # odd inputs
            base = builder.gep(lptr, [builder.mul(g, ir.Constant(g.type, 384))])
            digit = []
            for k in range(3):
                even = load(base, ir.Constant(g.type, 128 * k), _V16I)
                odd = load(base, ir.Constant(g.type, 128 * k + 64), _V16I)
                digit.append(builder.call(dot, [builder.call(dot, [zero, lo, even]), hi, odd]))
            joined = builder.add(
                builder.add(
                    builder.shl(digit[2], _splat(_V16I, 16)),
                    builder.shl(digit[1], _splat(_V16I, 8)),
                ),
                digit[0],
            )
            corr_g = load(kptr, builder.mul(g, ir.Constant(g.type, 16)), _V16I)
            lanes = builder.sitofp(builder.sub(joined, corr_g), _V16F)
            sc = builder.fmul(
                builder.load(builder.gep(sptr, [g])), builder.load(builder.gep(eptr, [g]))
            )
            scv = builder.insert_element(ir.Constant(_V16F, ir.Undefined), sc, ir.Constant(_I32, 0))
            scv = builder.shuffle_vector(scv, scv, _splat(_V16I, 0))
            part = builder.fmul(lanes, scv)
            builder.store(builder.fadd(builder.load(acc), part), acc)
        v = builder.load(acc)
        total = builder.extract_element(v, ir.Constant(_I32, 0))
        for i in range(1, 16):
            total = builder.fadd(total, builder.extract_element(v, ir.Constant(_I32, i)))
        return total

    return types.float32(codes, limbs, corr, scales, x_scale), codegen


_I16 = ir.IntType(16)
_V32B, _V16S, _V8I, _V8F = (
    ir.VectorType(_I8, 32),
    ir.VectorType(_I16, 16),
    ir.VectorType(_I32, 8),
    ir.VectorType(ir.FloatType(), 8),
)


@intrinsic
def _q4_row_avx2(typingctx, codes, limbs, corr, scales, x_scale):
    """:func:`_q4_row_vnni` for CPUs with AVX2 but not AVX-512 VNNI, on the same inputs.
    Per group and digit, four ``vpmaddubsw`` (unsigned codes times signed digits, pairs
    summed into int16: at most 2 x 15 x 128 = 3,840, so the four sums of a group's two
    32-byte halves, even and odd inputs, stay below 2^15 without saturating) and one
    ``vpmaddwd`` by ones into eight int32 lanes. Lane ``l`` then holds the products of
    bytes ``4l .. 4l + 3`` of both halves, so it takes ``corr[l] + corr[l + 8]``; the rest is
    the VNNI kernel's (digits joined per lane, exact in int32, one conversion to float32)."""
    if not (
        _c_array(codes, types.uint8)
        and _c_array(limbs, types.int8)
        and _c_array(corr, types.int32)
        and _c_array(scales, types.float32)
        and _c_array(x_scale, types.float32)
    ):
        return None

    def codegen(context, builder, signature, args):
        arrays = [
            context.make_array(t)(context, builder, a)
            for t, a in zip(signature.args, args, strict=True)
        ]
        cptr, lptr, kptr, sptr, eptr = (a.data for a in arrays)
        (ng,) = cgutils.unpack_tuple(builder, arrays[3].shape, 1)
        maddubs = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_V16S, [_V32B, _V32B]), "llvm.x86.avx2.pmadd.ub.sw"
        )
        maddwd = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_V8I, [_V16S, _V16S]), "llvm.x86.avx2.pmadd.wd"
        )
        acc = cgutils.alloca_once_value(builder, _splat(_V8F, 0.0))
        ones = _splat(_V16S, 1)

        def load(ptr, offset, vty):
            at = builder.gep(ptr, [offset]) if offset is not None else ptr
            return builder.load(builder.bitcast(at, vty.as_pointer()), align=1)

        with cgutils.for_range(builder, ng) as loop:
            g = loop.index

            def at(n):
                return ir.Constant(g.type, n)

            codes_g = builder.gep(cptr, [builder.mul(g, at(64))])
            nibbles = []
            for h in range(2):
                cv = load(codes_g, at(32 * h), _V32B)
                nibbles.append(
                    (builder.and_(cv, _splat(_V32B, 15)), builder.lshr(cv, _splat(_V32B, 4)))
                )
            base = builder.gep(lptr, [builder.mul(g, at(384))])
            digit = []
            for k in range(3):
                s16 = None
                for h in range(2):
                    lo, hi = nibbles[h]
                    even = load(base, at(128 * k + 32 * h), _V32B)
                    odd = load(base, at(128 * k + 64 + 32 * h), _V32B)
                    pair = builder.add(
                        builder.call(maddubs, [lo, even]), builder.call(maddubs, [hi, odd])
                    )
                    s16 = pair if s16 is None else builder.add(s16, pair)
                digit.append(builder.call(maddwd, [s16, ones]))
            joined = builder.add(
                builder.add(
                    builder.shl(digit[2], _splat(_V8I, 16)),
                    builder.shl(digit[1], _splat(_V8I, 8)),
                ),
                digit[0],
            )
            corr_g = builder.gep(kptr, [builder.mul(g, at(16))])
            corr_8 = builder.add(load(corr_g, None, _V8I), load(corr_g, at(8), _V8I))
            lanes = builder.sitofp(builder.sub(joined, corr_8), _V8F)
            sc = builder.fmul(
                builder.load(builder.gep(sptr, [g])), builder.load(builder.gep(eptr, [g]))
            )
            scv = builder.insert_element(ir.Constant(_V8F, ir.Undefined), sc, ir.Constant(_I32, 0))
            scv = builder.shuffle_vector(scv, scv, _splat(_V8I, 0))
            builder.store(builder.fadd(builder.load(acc), builder.fmul(lanes, scv)), acc)
        v = builder.load(acc)
        total = builder.extract_element(v, ir.Constant(_I32, 0))
        for i in range(1, 8):
            total = builder.fadd(total, builder.extract_element(v, ir.Constant(_I32, i)))
        return total

    return types.float32(codes, limbs, corr, scales, x_scale), codegen


#: the largest integer input of the VNNI kernel: three signed base-256 digits, each at most 127
_X_MAX = 127.0 * (65536 + 256 + 1)


@njit(cache=True)  # called, not inlined: the int4 steps call it at seven places
def _q4_limbs(x, ng, limbs, corr, x_scale, xs):
    """The inputs ``x`` (one row) as integers for the integer row kernels (:data:`Q4_ROWS`,
    the same for both): per group of 128, ``X = rint(x t)`` with ``t = X_MAX / max|x|`` (so
    the rounding error is at most 2^-24 of the group's largest ``|x|``, as float32's own),
    ``x_scale = 1 / t``, and the three signed
    base-256 digits of ``X`` (``X_MAX`` is the largest value whose top digit stays in
    [-127, 127]); ``corr`` 8 times the sum of ``X`` over the 8 inputs of each int32 lane of
    :func:`_q4_row_vnni`; ``xs`` the group's sum of ``x``. False if some ``x`` is not finite
    (the caller then takes the float kernel)."""
    gs = x.shape[0] // ng
    # finiteness from the bits: the callers' fastmath lets LLVM assume floats are finite
    # (and numba compiles callees with their caller's flags), so a float test would fold away
    bits = x.view(np.uint32)
    for i in range(x.shape[0]):
        if bits[i] & np.uint32(0x7F800000) == np.uint32(0x7F800000):
            return False
    lane_sums = np.zeros(16, dtype=np.int64)
    for g in range(ng):
        m = 0.0
        total = np.float32(0.0)
        for i in range(gs):
            m = max(m, abs(np.float64(x[g * gs + i])))
            total += x[g * gs + i]
        t = _X_MAX / m if m > 0.0 else 1.0
        x_scale[g] = 1.0 / t
        xs[g] = total
        for j in range(gs // 2):
            for odd in range(2):
                big = np.int64(np.rint(np.float64(x[g * gs + 2 * j + odd]) * t))
                lane_sums[j // 4] += big
                at = g * 384 + odd * 64 + j
                for k in range(2):
                    digit = ((big + 128) & 255) - 128  # in [-128, 127]
                    limbs[at + 128 * k] = digit
                    big = (big - digit) >> 8
                limbs[at + 256] = big
        for lane in range(16):
            corr[g * 16 + lane] = 8 * lane_sums[lane]
            lane_sums[lane] = 0
    return True


def _q4_matvec_int(x, qweight, scales, zs):
    """:func:`_q4_matvec_fma` in integer dot products for groups of 128, a row at a time by
    ``_q4_row``, bound per instruction set (:data:`Q4_ROWS`: :func:`_q4_row_vnni` or
    :func:`_q4_row_avx2`); other group sizes, and inputs that are not finite, take the float
    kernel. The inputs become 24-bit integers per group and the integer sums are exact, so
    the result is the dequantized product within float32 rounding."""
    x = np.ascontiguousarray(x)
    B = x.shape[0]
    out, half = qweight.shape
    ng = scales.shape[1]
    limbs = np.empty((B, ng * 384), dtype=np.int8)
    corr = np.empty((B, ng * 16), dtype=np.int32)
    x_scale = np.empty((B, ng), dtype=np.float32)
    xs = np.empty((B, ng), dtype=np.float32)
    ok = half == 64 * ng
    for b in range(B):
        ok = ok and _q4_limbs(x[b], ng, limbs[b], corr[b], x_scale[b], xs[b])
    if not ok:  # rare (inputs that are not finite, or a direct call with another group)
        return _q4_fma_serial(x, qweight, scales, zs)
    y = np.empty((B, out), dtype=np.float32)
    for o in prange(out):
        if o + _Q4_AHEAD < out:  # the codes stream from memory: ask for them ahead
            for j in range(0, half, 64):
                prefetch(qweight, o + _Q4_AHEAD, j)
        for b in range(B):
            shift = np.float32(0.0)  # sum over groups of (z - 8) s sum(x)
            for g in range(ng):
                shift += (zs[o, g] - np.float32(8.0) * scales[o, g]) * xs[b, g]
            dots = _q4_row(qweight[o], limbs[b], corr[b], scales[o], x_scale[b])
            y[b, o] = dots - shift
    return y


#: the integer row kernels by instruction set, fastest first (both read :func:`_q4_limbs`)
Q4_ROWS = {"vnni": _q4_row_vnni, "avx2": _q4_row_avx2}
_q4_row = _q4_row_vnni  # bound per kernel (see ``_int_kernel``)


def host_q4_kernels() -> tuple[str, ...]:
    """The int4 kernels this CPU runs, fastest first: ``vnni`` (AVX-512 VNNI), ``avx2``
    (AVX2), then ``fma`` (float32, any CPU). Only the float one where numba does not compile
    for this CPU (``NUMBA_CPU_NAME`` set). Numba's disk cache keys its entries on the CPU,
    so a cache never mixes the kernels."""
    from llvmlite import binding
    from numba.core import config

    if config.CPU_NAME:
        return ("fma",)
    features = binding.get_host_cpu_features()
    kernels = []
    if features.get("avx512vnni") and features.get("avx512bw"):
        kernels.append("vnni")
    if features.get("avx2"):
        kernels.append("avx2")
    return (*kernels, "fma")


#: the int4 kernels of this machine (:func:`host_q4_kernels`) and the one it runs:
#: ``vnni`` (AVX-512 VNNI integer dot products), ``avx2`` (AVX2 integer multiply-adds) or
#: ``fma`` (float32 multiply-adds, any CPU; also ``q4_matvec_fma``)
Q4_KERNELS = host_q4_kernels()
Q4_KERNEL = Q4_KERNELS[0]


def _int_kernel(kind, **flags):
    """:func:`_q4_matvec_int` with the row kernel of ``kind`` (a key of :data:`Q4_ROWS`)."""
    body = rebound(_q4_matvec_int, {"_q4_row": Q4_ROWS[kind]}, f"_q4_matvec_{kind}")
    return njit(cache=True, fastmath=True, **flags)(body)


#: the float kernel, called from Python (parallel over rows); on one thread, the integer
#: kernels' fallback (a function of its own, so the steps that inline those kernels do not
#: compile this one inlined too)
q4_matvec_fma = njit(cache=True, parallel=True, fastmath=True)(_q4_matvec_fma)
_q4_fma_serial = njit(cache=True, fastmath=True)(_q4_matvec_fma)
#: the integer kernels, called from Python (compiled on first use: only on a CPU that runs
#: them, see :data:`Q4_KERNELS`)
Q4_INT = {kind: _int_kernel(kind, parallel=True) for kind in Q4_ROWS}
#: inlined into the int4 steps, which are parallel themselves: numba's disk cache cannot hold
#: a function that calls a parallel one (a process that loaded such an entry crashed), but it
#: holds parallel functions. Each step is compiled with one kernel (see ``_q4_step``).
_q4_inline = njit(cache=True, inline="always", fastmath=True)(_q4_matvec_fma)
_Q4_INT_INLINE = {kind: _int_kernel(kind, inline="always") for kind in Q4_ROWS}


def _takes_int(qweight, scales):
    """Whether 4-bit layers of this layout run an integer kernel: on a CPU with one, in groups
    of 128 codes (64 bytes), codes and scales in C order (the kernel reads rows whole);
    trailing axes so that stacked layers (L, out, ...) work too."""
    return (
        Q4_KERNEL != "fma"
        and qweight.shape[-1] == 64 * scales.shape[-1]
        and qweight.flags.c_contiguous
        and scales.flags.c_contiguous
    )


def q4_matvec(x, qweight, scales, zs):
    """``x @ W.T`` (B, out) for 4-bit codes (the layout of :func:`_q4_matvec_fma`): this
    machine's integer kernel (:data:`Q4_KERNEL`) where :func:`_takes_int`, the float one
    otherwise."""
    kernel = Q4_INT[Q4_KERNEL] if _takes_int(qweight, scales) else q4_matvec_fma
    return kernel(x, qweight, scales, zs)


def _rwkv_step_q4(
    tokens,
    emb,
    ln0,
    ln,
    att_mix,
    decay,
    first,
    att_k,
    att_v,
    att_r,
    att_o,
    ffn_mix,
    ffn_k,
    ffn_r,
    ffn_v,
    ln_out,
    head,
    state,
):
    """:func:`rwkv_step` with 4-bit linear layers: each of att_k ... ffn_v is a tuple
    (qweight (L, out, in / 2) uint8, scales (L, out, groups), zs (L, out, groups)) for
    :func:`q4_matvec`; the head stays float32 (V, C)."""
    L = att_mix.shape[0]
    x, xx, xk, xv, xr = _embed(tokens, emb, ln0)
    for layer in range(L):
        st = state[layer]
        _att_inputs(x, ln[layer, 0, 0], ln[layer, 0, 1], att_mix[layer], st, xx, xk, xv, xr)
        k = _q4_inline(xk, att_k[0][layer], att_k[1][layer], att_k[2][layer])
        v = _q4_inline(xv, att_v[0][layer], att_v[1][layer], att_v[2][layer])
        r = _q4_inline(xr, att_r[0][layer], att_r[1][layer], att_r[2][layer])
        wkv = _wkv(k, v, r, st, decay[layer], first[layer])
        x += _q4_inline(wkv, att_o[0][layer], att_o[1][layer], att_o[2][layer])
        _ffn_inputs(x, ln[layer, 1, 0], ln[layer, 1, 1], ffn_mix[layer], st, xx, xk, xr)
        kf = _q4_inline(xk, ffn_k[0][layer], ffn_k[1][layer], ffn_k[2][layer])
        _square_relu(kf)
        kv = _q4_inline(kf, ffn_v[0][layer], ffn_v[1][layer], ffn_v[2][layer])
        _add_gated(x, kv, _q4_inline(xr, ffn_r[0][layer], ffn_r[1][layer], ffn_r[2][layer]))
    _layer_norm(x, ln_out[0], ln_out[1], xx)
    return np.dot(xx, head.T)


@njit(cache=True, inline="always")
def _mamba_inputs(tokens, emb, di):
    """The embeddings (B, d), and work buffers h (B, d), u and y (B, di)."""
    B, d = tokens.shape[0], emb.shape[1]
    x = np.empty((B, d), dtype=np.float32)
    for i in range(B):
        x[i] = emb[tokens[i]]
    h = np.empty((B, d), dtype=np.float32)
    return x, h, np.empty((B, di), dtype=np.float32), np.empty((B, di), dtype=np.float32)


@njit(cache=True, inline="always")
def _rms_norm(x, w, eps, out):
    B, d = x.shape
    for i in range(B):
        ss = 0.0
        for c in range(d):
            ss += x[i, c] * x[i, c]
        inv = 1.0 / np.sqrt(ss / d + eps)
        for c in range(d):
            out[i, c] = x[i, c] * inv * w[c]


@njit(cache=True, inline="always")
def _conv_silu(xz, cs, conv_w, conv_b, u):
    """The causal depthwise conv over the shifted window ``cs`` (updated), then SiLU."""
    Bsz, di = u.shape
    K = conv_w.shape[1]
    for i in range(Bsz):
        for c in range(di):
            acc = conv_b[c]
            for k in range(K - 1):
                cs[i, c, k] = cs[i, c, k + 1]
                acc += cs[i, c, k] * conv_w[c, k]
            cs[i, c, K - 1] = xz[i, c]
            acc += xz[i, c] * conv_w[c, K - 1]
            u[i, c] = acc / (1.0 + np.exp(-acc))


@njit(cache=True, inline="always")
def _ssm_scratch(di, n):
    """Rows for :func:`_ssm`'s decays, one per channel (no two threads share one)."""
    return (
        np.empty((di, n), dtype=np.float32),
        np.empty((di, n), dtype=np.float32),
        np.empty((di, n), dtype=np.int32),
    )


@njit(cache=True, inline="always", fastmath=True)
def _ssm(u, dt, dt_b, A, D, dbc, xz, st, r, y, scratch):
    """The selective state update for one token and the gated output ``y``. A channel's n
    decays e^{delta A} come as one row from :func:`exp_row` (the float32 polynomial: libm's
    scalar exp was a call per state); channels in parallel where the caller is. ``scratch``:
    :func:`_ssm_scratch`, made once per step for every layer."""
    Bsz, di = u.shape
    n = A.shape[1]
    arg, dec, bits = scratch
    for i in range(Bsz):
        for c in prange(di):
            v = dt[i, c] + dt_b[c]
            delta = v if v > 20.0 else np.log1p(np.exp(v))
            du = delta * u[i, c]
            ar, a = arg[c], dec[c]
            for j in range(n):
                ar[j] = delta * A[c, j]
            exp_row(ar, a, bits[c], True)
            acc = 0.0
            for j in range(n):
                s = a[j] * st[i, c, j] + du * dbc[i, r + j]
                st[i, c, j] = s
                acc += s * dbc[i, r + n + j]
            zz = xz[i, di + c]
            y[i, c] = (acc + D[c] * u[i, c]) * (zz / (1.0 + np.exp(-zz)))


@njit(cache=True)
def mamba_step(
    tokens,
    emb,
    norm,
    in_proj,
    conv_w,
    conv_b,
    x_proj,
    dt_w,
    dt_b,
    A,
    D,
    out_proj,
    norm_f,
    conv_state,
    ssm_state,
    eps,
):
    """Logits (B, V) of one Mamba-1 token per sequence; states updated in place.

    norm (L, d); in_proj (L, 2di, d); conv_w (L, di, K); conv_b (L, di); x_proj (L, r+2n, di);
    dt_w (L, di, r); dt_b (L, di); A = -exp(A_log) (L, di, n); D (L, di); out_proj (L, d, di);
    norm_f (d,); conv_state (L, B, di, K); ssm_state (L, B, di, n).
    """
    L, di, _ = conv_w.shape
    r = dt_w.shape[2]
    x, h, u, y = _mamba_inputs(tokens, emb, di)
    scratch = _ssm_scratch(di, A.shape[2])
    for layer in range(L):
        _rms_norm(x, norm[layer], eps, h)
        xz = np.dot(h, in_proj[layer].T)  # (B, 2di)
        _conv_silu(xz, conv_state[layer], conv_w[layer], conv_b[layer], u)
        dbc = np.dot(u, x_proj[layer].T)  # (B, r + 2n)
        dt = np.dot(np.ascontiguousarray(dbc[:, :r]), dt_w[layer].T)  # (B, di)
        _ssm(u, dt, dt_b[layer], A[layer], D[layer], dbc, xz, ssm_state[layer], r, y, scratch)
        x += np.dot(y, out_proj[layer].T)
    _rms_norm(x, norm_f, eps, h)
    return np.dot(h, emb.T)


def _mamba_step_q4(
    tokens,
    emb,
    norm,
    in_proj,
    conv_w,
    conv_b,
    x_proj,
    x_scale,
    dt_w,
    dt_b,
    A,
    D,
    out_proj,
    out_scale,
    norm_f,
    conv_state,
    ssm_state,
    eps,
):
    """:func:`mamba_step` with 4-bit in_proj, x_proj and out_proj (each a tuple for
    :func:`q4_matvec`, stacked per layer); x_scale (L, di) and out_scale (L, di) multiply those
    layers' inputs (AWQ's input scales; ones where none); dt_w stays float32."""
    L, di, _ = conv_w.shape
    r = dt_w.shape[2]
    x, h, u, y = _mamba_inputs(tokens, emb, di)
    scratch = _ssm_scratch(di, A.shape[2])
    us = np.empty_like(u)
    for layer in range(L):
        _rms_norm(x, norm[layer], eps, h)
        xz = _q4_inline(h, in_proj[0][layer], in_proj[1][layer], in_proj[2][layer])
        _conv_silu(xz, conv_state[layer], conv_w[layer], conv_b[layer], u)
        for i in range(u.shape[0]):
            for c in range(di):
                us[i, c] = u[i, c] * x_scale[layer, c]
        dbc = _q4_inline(us, x_proj[0][layer], x_proj[1][layer], x_proj[2][layer])
        dt = np.dot(np.ascontiguousarray(dbc[:, :r]), dt_w[layer].T)
        _ssm(u, dt, dt_b[layer], A[layer], D[layer], dbc, xz, ssm_state[layer], r, y, scratch)
        for i in range(y.shape[0]):
            for c in range(di):
                y[i, c] *= out_scale[layer, c]
        x += _q4_inline(y, out_proj[0][layer], out_proj[1][layer], out_proj[2][layer])
    _rms_norm(x, norm_f, eps, h)
    return np.dot(h, emb.T)


def _q4_step(body, layer_names):
    """The int4 step ``body`` compiled once per kernel, each inlining one (a step inlining
    two compiled 2.5x slower; each compiles on first use), and a function that calls the one
    of this machine's integer kernel (:data:`Q4_KERNEL`) when every 4-bit layer among its
    arguments ``layer_names`` takes it (:func:`_takes_int`), the float one otherwise."""
    name = body.__name__
    steps = {"fma": njit(cache=True, parallel=True)(body)}
    for kind, inline in _Q4_INT_INLINE.items():
        steps[kind] = njit(cache=True, parallel=True)(
            rebound(body, {"_q4_inline": inline}, f"{name}_{kind}")
        )
    at = [i for i, arg in enumerate(inspect.signature(body).parameters) if arg in layer_names]

    def step(*args):
        integer = all(_takes_int(args[i][0], args[i][1]) for i in at)
        return steps[Q4_KERNEL if integer else "fma"](*args)

    step.__name__ = step.__qualname__ = name.lstrip("_")
    step.__doc__ = body.__doc__
    step.variants = steps
    return step


rwkv_step_q4 = _q4_step(
    _rwkv_step_q4, {"att_k", "att_v", "att_r", "att_o", "ffn_k", "ffn_r", "ffn_v"}
)
mamba_step_q4 = _q4_step(_mamba_step_q4, {"in_proj", "x_proj", "out_proj"})


@njit(cache=True, inline="always", fastmath=True)
def _ssd_step(zx, xbc, dt_b, A, D, st, n_groups, y):
    """Mamba-2's state update for one token (scalar decay per head) and its output ``y``
    (before the gate); dt comes from the last H columns of ``zx``."""
    Bsz, H, P, N = st.shape
    di = H * P
    off_dt = zx.shape[1] - H
    gn = n_groups * N
    per_group = H // n_groups
    for i in range(Bsz):
        for hh in range(H):
            v = zx[i, off_dt + hh] + dt_b[hh]
            dt = v if v > 20.0 else np.log1p(np.exp(v))
            a = np.exp(dt * A[hh])
            b0 = di + (hh // per_group) * N
            bv, cv = xbc[i, b0 : b0 + N], xbc[i, b0 + gn : b0 + gn + N]
            sh = st[i, hh]  # contiguous views: the inner loop vectorizes
            for p in range(P):
                row = sh[p]
                xv = xbc[i, hh * P + p]
                dx = dt * xv
                acc = 0.0
                for n in range(N):
                    s = a * row[n] + dx * bv[n]
                    row[n] = s
                    acc += s * cv[n]
                y[i, hh * P + p] = acc + D[hh] * xv


@njit(cache=True, inline="always", fastmath=True)
def _gated_group_norm(y, zx, w, n_groups, eps):
    """y <- RMSNorm(y * SiLU(z)) per group of channels, times ``w``; z is ``zx[:, :di]``."""
    Bsz, di = y.shape
    size = di // n_groups
    for i in range(Bsz):
        for g in range(n_groups):
            ss = 0.0
            for c in range(g * size, (g + 1) * size):
                z = zx[i, c]
                v = y[i, c] * (z / (1.0 + np.exp(-z)))
                y[i, c] = v
                ss += v * v
            inv = 1.0 / np.sqrt(ss / size + eps)
            for c in range(g * size, (g + 1) * size):
                y[i, c] *= inv * w[c]


@njit(cache=True, fastmath=True)
def mamba2_step(
    tokens,
    emb,
    norm,
    in_proj,
    conv_w,
    conv_b,
    dt_b,
    A,
    D,
    gnorm,
    out_proj,
    norm_f,
    head,
    conv_state,
    ssm_state,
    n_groups,
    eps,
):
    """Logits (B, V) of one Mamba-2 token per sequence; states updated in place.

    norm (L, d); in_proj (L, di + cd + H, d) giving (z, xBC, dt); conv_w (L, cd, K);
    conv_b (L, cd); dt_b, A = -exp(A_log), D (L, H); gnorm (L, di); out_proj (L, d, di);
    norm_f (d,); head (V, d); conv_state (L, B, cd, K); ssm_state (L, B, H, P, N).
    """
    L, cd, _ = conv_w.shape
    di = ssm_state.shape[2] * ssm_state.shape[3]
    Bsz, d = tokens.shape[0], emb.shape[1]
    x = np.empty((Bsz, d), dtype=np.float32)
    for i in range(Bsz):
        x[i] = emb[tokens[i]]
    h = np.empty((Bsz, d), dtype=np.float32)
    xbc = np.empty((Bsz, cd), dtype=np.float32)
    y = np.empty((Bsz, di), dtype=np.float32)
    for layer in range(L):
        _rms_norm(x, norm[layer], eps, h)
        zx = np.dot(h, in_proj[layer].T)  # (B, di + cd + H)
        _conv_silu(zx[:, di : di + cd], conv_state[layer], conv_w[layer], conv_b[layer], xbc)
        _ssd_step(zx, xbc, dt_b[layer], A[layer], D[layer], ssm_state[layer], n_groups, y)
        _gated_group_norm(y, zx, gnorm[layer], n_groups, eps)
        x += np.dot(y, out_proj[layer].T)
    _rms_norm(x, norm_f, eps, h)
    return np.dot(h, head.T)


@njit(cache=True, inline="always", fastmath=True)
def _decay_row(dt, aj, arg, a, bits, fast):
    """``a[c] = e^{dt[c] aj[c]}`` over a row of channels (``arg``, ``bits``: scratch)."""
    for c in range(dt.shape[0]):
        arg[c] = dt[c] * aj[c]
    exp_row(arg, a, bits, fast)


@njit(cache=True, parallel=True, fastmath=True)
def selective_scan_fwd(u, delta, A, B, C, D, h0, fast):
    """Mamba's selective scan, sequential in time, parallel over sequences. At each step a
    state index j advances every channel at once: the row of d decays e^{dt_c A_cj} from
    :func:`exp_row` (``fast`` for float32), then ``h_j = a h_j + dt u B_j`` over the row, so
    the loops run the length of the channels (hundreds), not of the states (16).

    Returns y (b, L, d) and every state hs (b, L, n, d), state-major (kept for the backward
    pass; ``hs[:, t].transpose`` is the (d, n) state of step t).
    """
    bsz, L, d = u.shape
    n = A.shape[1]
    At = np.ascontiguousarray(A.T)  # (n, d)
    y = np.empty((bsz, L, d), dtype=u.dtype)
    hs = np.empty((bsz, L, n, d), dtype=u.dtype)
    for b in prange(bsz):
        h = np.empty((n, d), dtype=u.dtype)
        arg, a, du = np.empty(d, dtype=u.dtype), np.empty(d, dtype=u.dtype), np.empty(d, u.dtype)
        bits = np.empty(d, dtype=np.int32)
        for j in range(n):
            for c in range(d):
                h[j, c] = h0[b, c, j]
        for t in range(L):
            dt, ut, yt = delta[b, t], u[b, t], y[b, t]
            for c in range(d):
                du[c] = dt[c] * ut[c]
                yt[c] = D[c] * ut[c]
            for j in range(n):
                aj = At[j]
                _decay_row(dt, aj, arg, a, bits, fast)
                bj, cj = B[b, t, j], C[b, t, j]
                hj, out = h[j], hs[b, t, j]
                for c in range(d):
                    v = a[c] * hj[c] + du[c] * bj
                    hj[c] = v
                    out[c] = v
                    yt[c] += v * cj
    return y, hs


@njit(cache=True, parallel=True, fastmath=True)
def selective_scan_bwd(u, delta, A, B, C, D, h0, hs, dy, dh_last, fast):
    """Gradients of the scan: du, ddelta, dA, dB, dC, dD, dh0 (the reverse-time recursion,
    a state index at a time over the row of channels, as in :func:`selective_scan_fwd`;
    ``hs`` is its (b, L, n, d) output, ``dh_last`` (b, d, n))."""
    bsz, L, d = u.shape
    n = A.shape[1]
    At = np.ascontiguousarray(A.T)  # (n, d)
    du = np.zeros_like(u)
    ddelta = np.zeros_like(delta)
    dB = np.zeros_like(B)
    dC = np.zeros_like(C)
    dh0 = np.zeros_like(h0)
    dA_part = np.zeros((bsz, n, d), dtype=u.dtype)
    dD_part = np.zeros((bsz, d), dtype=u.dtype)
    for b in prange(bsz):
        g = np.empty((n, d), dtype=u.dtype)
        first = np.empty((n, d), dtype=u.dtype)  # the state before step 0
        arg, a = np.empty(d, dtype=u.dtype), np.empty(d, dtype=u.dtype)
        acc_dt, acc_u = np.empty(d, dtype=u.dtype), np.empty(d, dtype=u.dtype)
        bits = np.empty(d, dtype=np.int32)
        for j in range(n):
            for c in range(d):
                g[j, c] = dh_last[b, c, j]
                first[j, c] = h0[b, c, j]
        for t in range(L - 1, -1, -1):
            dyt, dt, ut = dy[b, t], delta[b, t], u[b, t]
            for c in range(d):
                acc_dt[c] = 0.0
                acc_u[c] = 0.0
            for j in range(n):
                aj = At[j]
                _decay_row(dt, aj, arg, a, bits, fast)
                bj, cj = B[b, t, j], C[b, t, j]
                gj_row, here = g[j], hs[b, t, j]
                prev = hs[b, t - 1, j] if t > 0 else first[j]
                da = dA_part[b, j]
                sum_c, sum_b = 0.0, 0.0
                for c in range(d):
                    gj = gj_row[c] + dyt[c] * cj
                    sum_c += dyt[c] * here[c]
                    ga = gj * prev[c] * a[c]  # d/d(dt * A) of a * prev
                    acc_dt[c] += ga * aj[c] + gj * bj * ut[c]
                    da[c] += ga * dt[c]
                    gdu = gj * dt[c] * ut[c]
                    sum_b += gdu
                    acc_u[c] += gj * dt[c] * bj
                    gj_row[c] = gj * a[c]
                dC[b, t, j] += sum_c
                dB[b, t, j] += sum_b
            for c in range(d):
                ddelta[b, t, c] += acc_dt[c]
                du[b, t, c] += acc_u[c]
        for j in range(n):
            for c in range(d):
                dh0[b, c, j] = g[j, c]
        for t in range(L):
            for c in range(d):
                du[b, t, c] += dy[b, t, c] * D[c]
                dD_part[b, c] += dy[b, t, c] * u[b, t, c]
    return du, ddelta, dA_part.sum(axis=0).T.copy(), dB, dC, dD_part.sum(axis=0), dh0


@njit(cache=True, parallel=True, fastmath=True)
def shift_mix_fwd(xx, shift, mixes, outs):
    """RWKV's token shift and mixes in one pass: ``outs[m][b, t] = x_{t-1} + (x_t - x_{t-1})
    mixes[m]`` with x_{-1} = ``shift[b]``; xx (B, T, C), shift (B, C), mixes (M, C), ``outs``
    a tuple of M arrays (B, T, C) to fill."""
    B, T, C = xx.shape
    for bb in prange(B):
        for t in range(T):
            prev = shift[bb] if t == 0 else xx[bb, t - 1]
            cur = xx[bb, t]
            for m in range(mixes.shape[0]):
                o, mm = outs[m][bb, t], mixes[m]
                for c in range(C):
                    s = prev[c]
                    o[c] = s + (cur[c] - s) * mm[c]


@njit(cache=True, parallel=True, fastmath=True)
def shift_mix_bwd(xx, shift, mixes, gs):
    """Gradients of :func:`shift_mix_fwd` for the output gradients ``gs`` (a tuple of M arrays
    (B, T, C)): gx (B, T, C), gshift (B, C) and gmixes (M, C). Output m reads x_t with weight
    m and x_{t-1} with 1 - m; its mix gets the gradient times x_t - x_{t-1}."""
    B, T, C = xx.shape
    M = mixes.shape[0]
    gx, gshift = np.zeros_like(xx), np.zeros_like(shift)
    gm_part = np.zeros((B, M, C), dtype=xx.dtype)
    for bb in prange(B):
        gm = gm_part[bb]
        for t in range(T):
            prev = shift[bb] if t == 0 else xx[bb, t - 1]
            gprev = gshift[bb] if t == 0 else gx[bb, t - 1]
            cur, gcur = xx[bb, t], gx[bb, t]
            for m in range(M):
                g, mm, gmm = gs[m][bb, t], mixes[m], gm[m]
                for c in range(C):
                    gc = g[c]
                    gcur[c] += gc * mm[c]
                    gprev[c] += gc - gc * mm[c]
                    gmm[c] += gc * (cur[c] - prev[c])
    return gx, gshift, gm_part.sum(axis=0)


@njit(cache=True, inline="always", fastmath=True)
def _pair_from(e, x, y, one):
    """:func:`_pair_weights` given ``e`` = e^{-|x - y|}, computed beforehand (by
    :func:`exp_row`, a row at a time)."""
    if y > x:
        return e, one
    return one, e


@njit(cache=True, parallel=True, fastmath=True)
def wkv4_fwd(decay, u, k, v, a0, b0, p0, fast):
    """RWKV-4's WKV (the recurrence of ``reference.wkv_ref``), sequential in time, parallel over
    sequences, the channels of a step in one contiguous loop: decay = -exp(time_decay) and u (C,);
    k, v (B, T, C); the state a0, b0, p0 (B, C). Returns y (B, T, C) and the states after every
    step, sa, sb, sp (B, T, C) each (kept for the backward pass). ``fast``: float32 exps by
    :func:`exp_row`'s polynomial (one row of C per step), else ``np.exp``."""
    B, T, C = k.shape
    y = np.empty_like(k)
    sa, sb, sp = np.empty_like(k), np.empty_like(k), np.empty_like(k)
    one = np.ones_like(u[:1])[0]  # 1 in the arrays' dtype
    for bb in prange(B):
        a, b, p = a0[bb].copy(), b0[bb].copy(), p0[bb].copy()
        x1, x2 = np.empty_like(u), np.empty_like(u)  # the step's exp arguments, then exps
        bits = np.empty(C, dtype=np.int32)
        for t in range(T):
            kt, vt, yt = k[bb, t], v[bb, t], y[bb, t]
            for c in range(C):  # the exps of a step as two rows (vectorized for float32)
                x1[c] = -abs(u[c] + kt[c] - p[c])
                x2[c] = -abs(kt[c] - (p[c] + decay[c]))
            exp_row(x1, x1, bits, fast)
            exp_row(x2, x2, bits, fast)
            for c in range(C):
                kc, vc, pc = kt[c], vt[c], p[c]
                e1, e2 = _pair_from(x1[c], pc, u[c] + kc, one)
                yt[c] = (e1 * a[c] + e2 * vc) / (e1 * b[c] + e2)
                ww = pc + decay[c]
                e1, e2 = _pair_from(x2[c], ww, kc, one)
                a[c] = e1 * a[c] + e2 * vc
                b[c] = e1 * b[c] + e2
                p[c] = max(ww, kc)
            sa[bb, t], sb[bb, t], sp[bb, t] = a, b, p
    return y, sa, sb, sp


@njit(cache=True, parallel=True, fastmath=True)
def wkv4_bwd(decay, u, k, v, a0, b0, p0, sa, sb, sp, y, gy, ga_last, gb_last, fast):
    """Gradients of :func:`wkv4_fwd`: gdecay, gu (C,), gk, gv (B, T, C), ga0, gb0, gp0 (B, C).

    The reverse-time recursion runs on the gradients of the scaled sums, ga_t = dL/dA_t e^{p_t}
    (A_t = a_t e^{p_t}, likewise B), so nothing overflows:
    ga_{t-1} = f1 ga_t + gy_t e1 / den,  gb_{t-1} = f1 gb_t - gy_t y_t e1 / den, with e1, e2, den
    the output's weights and f1, f2 the state update's, all recomputed from the stored states.
    The gradient of the final state is taken through A and B, the only way later steps read it
    (``ga_last``, ``gb_last`` = dL/da_T, dL/db_T at fixed p_T)."""
    B, T, C = k.shape
    gk, gv = np.empty_like(k), np.empty_like(v)
    gd_part = np.zeros((B, C), dtype=k.dtype)
    gu_part = np.zeros((B, C), dtype=k.dtype)
    ga0, gb0, gp0 = np.empty_like(a0), np.empty_like(b0), np.empty_like(p0)
    one = np.ones_like(u[:1])[0]
    for bb in prange(B):
        ga, gb = ga_last[bb].copy(), gb_last[bb].copy()
        gd, gu = gd_part[bb], gu_part[bb]
        x1, x2 = np.empty_like(u), np.empty_like(u)
        bits = np.empty(C, dtype=np.int32)
        for t in range(T - 1, -1, -1):
            if t > 0:
                ap, bp, pp = sa[bb, t - 1], sb[bb, t - 1], sp[bb, t - 1]
            else:
                ap, bp, pp = a0[bb], b0[bb], p0[bb]
            kt, vt, yt, gyt = k[bb, t], v[bb, t], y[bb, t], gy[bb, t]
            gkt, gvt = gk[bb, t], gv[bb, t]
            for c in range(C):
                x1[c] = -abs(u[c] + kt[c] - pp[c])
                x2[c] = -abs(kt[c] - (pp[c] + decay[c]))
            exp_row(x1, x1, bits, fast)
            exp_row(x2, x2, bits, fast)
            for c in range(C):
                kc, vc, pc, g = kt[c], vt[c], pp[c], gyt[c]
                e1, e2 = _pair_from(x1[c], pc, u[c] + kc, one)
                inv = 1.0 / (e1 * bp[c] + e2)
                f1, f2 = _pair_from(x2[c], pc + decay[c], kc, one)
                cur = g * e2 * (vc - yt[c]) * inv
                gvt[c] = g * e2 * inv + ga[c] * f2
                gkt[c] = cur + f2 * (ga[c] * vc + gb[c])
                gu[c] += cur
                gd[c] += f1 * (ga[c] * ap[c] + gb[c] * bp[c])
                ga[c] = f1 * ga[c] + g * e1 * inv
                gb[c] = f1 * gb[c] - g * yt[c] * e1 * inv
        ga0[bb], gb0[bb] = ga, gb
        gp0[bb] = ga * a0[bb] + gb * b0[bb]
    return gd_part.sum(axis=0), gu_part.sum(axis=0), gk, gv, ga0, gb0, gp0


@njit(cache=True, inline="always", fastmath=True)
def _wkv7_advance(S, r, w, k, v, a, b, bb, t, h, sa, yt):
    """Step t of WKV-7 on the state S (N, N) of sequence bb, head h, in place: S_{t-1} a_t into
    ``sa``, y_t = S_t r_t into ``yt``."""
    N = S.shape[0]
    rt, wt, kt, vt, at, bt = (
        r[bb, t, h],
        w[bb, t, h],
        k[bb, t, h],
        v[bb, t, h],
        a[bb, t, h],
        b[bb, t, h],
    )
    for i in range(N):
        acc = 0.0
        for j in range(N):
            acc += S[i, j] * at[j]
        sa[i] = acc
    for i in range(N):
        vi, si = vt[i], sa[i]
        acc = 0.0
        for j in range(N):
            s = S[i, j] * wt[j] + si * bt[j] + vi * kt[j]
            S[i, j] = s
            acc += s * rt[j]
        yt[i] = acc


@njit(cache=True, inline="always", fastmath=True)
def _ssd_advance(S, x, dt, A, B, C, D, bb, t, h, g, y, yb):
    """Step t of Mamba-2's SSD on the state S (P, N) of sequence bb, head h (group g), in
    place: S <- e^{dt A} S + dt x B^T, and y_t = S C + D x into ``y[yb, t, h]``."""
    P, N = S.shape
    d = dt[bb, t, h]
    a = np.exp(d * A[h])
    for p in range(P):
        xp = x[bb, t, h, p]
        u = d * xp
        acc = 0.0
        for n in range(N):
            s = a * S[p, n] + u * B[bb, t, g, n]
            S[p, n] = s
            acc += s * C[bb, t, g, n]
        y[yb, t, h, p] = acc + D[h] * xp


@njit(cache=True, parallel=True, fastmath=True)
def ssd_fwd(x, dt, A, B, C, D, h0, every):
    """Mamba-2's SSD (``mamba2.ssd_ref``), sequential per (sequence, head), parallel over them:
    x (b, L, H, P), dt (b, L, H) after the softplus, A (H,) negative, B, C (b, L, G, N), D (H,),
    h0 (b, H, P, N). Returns y (b, L, H, P), the final state and the state before every block
    of ``every`` steps (b, ceil(L / every), H, P, N), from which the backward pass recomputes
    one block at a time."""
    b, L, H, P = x.shape
    G, N = B.shape[2], B.shape[3]
    nb = (L + every - 1) // every
    y = np.empty_like(x)
    starts = np.empty((b, nb, H, P, N), dtype=x.dtype)
    h_end = np.empty_like(h0)
    for bh in prange(b * H):
        bb, h = bh // H, bh % H
        g = h // (H // G)
        S = h0[bb, h].copy()
        for t in range(L):
            if t % every == 0:
                starts[bb, t // every, h] = S
            _ssd_advance(S, x, dt, A, B, C, D, bb, t, h, g, y, bb)
        h_end[bb, h] = S
    return y, h_end, starts


@njit(cache=True, parallel=True, fastmath=True)
def ssd_bwd(x, dt, A, B, C, D, starts, every, dy, dh_last):
    """Gradients of :func:`ssd_fwd`: dx, ddt, dA, dB, dC, dD, dh0, by the reverse-time recursion
    on G_t = dL/dS_t (G_{t-1} = e^{dt_t A} G_t plus what y_{t-1} adds), block by block from
    the checkpoints. Parallel over sequences: the heads of a group add into the same dB, dC."""
    b, L, H, P = x.shape
    G, N = B.shape[2], B.shape[3]
    k = H // G
    nb = starts.shape[1]
    dx, ddt = np.zeros_like(x), np.zeros_like(dt)
    dB, dC = np.zeros_like(B), np.zeros_like(C)
    dA_part = np.zeros((b, H), dtype=x.dtype)
    dD_part = np.zeros((b, H), dtype=x.dtype)
    dh0 = np.empty((b, H, P, N), dtype=x.dtype)
    for bb in prange(b):
        buf = np.empty((every + 1, P, N), dtype=x.dtype)  # buf[0]: the block's start state
        ys = np.empty((1, L, H, P), dtype=x.dtype)  # the recomputed outputs (unused)
        for h in range(H):
            g = h // k
            Gr = dh_last[bb, h].copy()
            for blk in range(nb - 1, -1, -1):
                t0 = blk * every
                t1 = min(L, t0 + every)
                buf[0] = starts[bb, blk, h]
                for t in range(t0, t1):
                    S = buf[t - t0 + 1]
                    S[:, :] = buf[t - t0]
                    _ssd_advance(S, x, dt, A, B, C, D, bb, t, h, g, ys, 0)
                for t in range(t1 - 1, t0 - 1, -1):
                    i = t - t0
                    d = dt[bb, t, h]
                    a = np.exp(d * A[h])
                    da, dd, dDh = 0.0, 0.0, 0.0
                    for p in range(P):
                        dyp, xp = dy[bb, t, h, p], x[bb, t, h, p]
                        dDh += dyp * xp
                        u = 0.0
                        for n in range(N):
                            gr = Gr[p, n] + dyp * C[bb, t, g, n]  # y_t = S_t C_t
                            Gr[p, n] = gr
                            dC[bb, t, g, n] += buf[i + 1, p, n] * dyp
                            u += gr * B[bb, t, g, n]
                            dB[bb, t, g, n] += gr * (d * xp)
                            da += gr * buf[i, p, n]
                        dx[bb, t, h, p] += D[h] * dyp + d * u
                        dd += xp * u
                    for p in range(P):
                        for n in range(N):
                            Gr[p, n] *= a
                    ddt[bb, t, h] = dd + da * A[h] * a
                    dA_part[bb, h] += da * d * a
                    dD_part[bb, h] += dDh
            dh0[bb, h] = Gr
    return dx, ddt, dA_part.sum(axis=0), dB, dC, dD_part.sum(axis=0), dh0


@njit(cache=True, parallel=True, fastmath=True)
def wkv7_fwd(r, w, k, v, a, b, S0, every):
    """RWKV-7's WKV, sequential per (sequence, head), parallel over them: r, w, k, v, a, b
    (B, T, H, N); S0 (B, H, N, N), value index first. S_t = S_{t-1} (diag(w_t) + a_t b_t^T) +
    v_t k_t^T, y_t = S_t r_t. Returns y (B, T, H, N), the final state (B, H, N, N) and the
    state before every block of ``every`` steps (B, ceil(T / every), H, N, N): checkpoints
    from which the backward pass recomputes the states of one block at a time."""
    B, T, H, N = r.shape
    nb = (T + every - 1) // every
    y = np.empty_like(r)
    starts = np.empty((B, nb, H, N, N), dtype=r.dtype)
    S_end = np.empty_like(S0)
    for bh in prange(B * H):
        bb, h = bh // H, bh % H
        S = S0[bb, h].copy()
        sa = np.empty(N, dtype=r.dtype)
        for t in range(T):
            if t % every == 0:
                starts[bb, t // every, h] = S
            _wkv7_advance(S, r, w, k, v, a, b, bb, t, h, sa, y[bb, t, h])
        S_end[bb, h] = S
    return y, S_end, starts


@njit(cache=True, parallel=True, fastmath=True)
def wkv7_bwd(r, w, k, v, a, b, starts, every, dy, dS_last):
    """Gradients of :func:`wkv7_fwd`: dr, dw, dk, dv, da, db, dS0 (reverse-time recursion on
    G = dL/dS_t, block by block: the states of a block are recomputed from its checkpoint)."""
    B, T, H, N = r.shape
    nb = starts.shape[1]
    dr, dw, dk = np.zeros_like(r), np.zeros_like(w), np.zeros_like(k)
    dv, da, db = np.zeros_like(v), np.zeros_like(a), np.zeros_like(b)
    dS0 = np.empty((B, H, N, N), dtype=r.dtype)
    for bh in prange(B * H):
        bb, h = bh // H, bh % H
        G = dS_last[bb, h].copy()
        dsa = np.empty(N, dtype=r.dtype)
        scratch = np.empty(N, dtype=r.dtype)
        buf = np.empty((every + 1, N, N), dtype=r.dtype)  # buf[0]: the block's start state
        sas = np.empty((every, N), dtype=r.dtype)  # S_{t-1} a_t of the block's steps
        for blk in range(nb - 1, -1, -1):
            t0 = blk * every
            t1 = min(T, t0 + every)
            buf[0] = starts[bb, blk, h]
            for t in range(t0, t1):
                S = buf[t - t0 + 1]
                S[:, :] = buf[t - t0]
                _wkv7_advance(S, r, w, k, v, a, b, bb, t, h, sas[t - t0], scratch)
            for t in range(t1 - 1, t0 - 1, -1):
                St, Sp = buf[t - t0 + 1], buf[t - t0]
                rt, wt, kt, vt = r[bb, t, h], w[bb, t, h], k[bb, t, h], v[bb, t, h]
                at, bt, dyt = a[bb, t, h], b[bb, t, h], dy[bb, t, h]
                drt, dwt, dkt = dr[bb, t, h], dw[bb, t, h], dk[bb, t, h]
                dvt, dat, dbt = dv[bb, t, h], da[bb, t, h], db[bb, t, h]
                for i in range(N):  # y_t = S_t r_t
                    dyi = dyt[i]
                    for j in range(N):
                        G[i, j] += dyi * rt[j]
                        drt[j] += St[i, j] * dyi
                sa = sas[t - t0]
                for i in range(N):  # S_t = S_{t-1} diag(w) + sa b^T + v k^T
                    vi, si = vt[i], sa[i]
                    acc_v, acc_sa = 0.0, 0.0
                    for j in range(N):
                        g = G[i, j]
                        acc_v += g * kt[j]
                        acc_sa += g * bt[j]
                        dkt[j] += g * vi
                        dbt[j] += g * si
                        dwt[j] += g * Sp[i, j]
                    dvt[i] = acc_v
                    dsa[i] = acc_sa
                for i in range(N):  # sa = S_{t-1} a, and G <- dL/dS_{t-1}
                    di = dsa[i]
                    for j in range(N):
                        dat[j] += di * Sp[i, j]
                        G[i, j] = G[i, j] * wt[j] + di * at[j]
        dS0[bb, h] = G
    return dr, dw, dk, dv, da, db, dS0


@njit(cache=True, fastmath=True)
def rwkv7_step(
    tokens,
    emb,
    ln,
    mix,
    w0,
    a0,
    v0,
    k_k,
    k_a,
    r_k,
    w1,
    w2,
    a1,
    a2,
    v1,
    v2,
    g1,
    g2,
    att_w,
    ln_x,
    ffn_x,
    ffn_k,
    ffn_v,
    ln_out,
    head,
    shifts,
    S,
):
    """Logits (B, V) of one RWKV-7 token per sequence; states updated in place.

    emb (V, C) after ``blocks.0.ln0``; ln (L, 2 norms, weight / bias, C); mix (L, 6, C) for
    r, w, k, v, a, g; w0, a0, v0, k_k, k_a (L, C); r_k (L, H, N); the LoRA pairs w1 (L, C, D),
    w2 (L, D, C) and likewise a, v (zeros at layer 0), g; att_w (L, 4, C, C) receptance, key,
    value, output; ln_x (L, 2, C); ffn_x (L, C); ffn_k (L, F, C); ffn_v (L, C, F); ln_out
    (2, C); head (V, C); shifts (L, 2, B, C); S (L, B, H, N, N).
    """
    L = ln.shape[0]
    Bsz, C = tokens.shape[0], emb.shape[1]
    H, N = r_k.shape[1], r_k.shape[2]
    scale = np.exp(-0.5)
    x = np.empty((Bsz, C), dtype=np.float32)
    for i in range(Bsz):
        x[i] = emb[tokens[i]]
    xx = np.empty((Bsz, C), dtype=np.float32)
    ins = np.empty((6, Bsz, C), dtype=np.float32)
    v_first = np.empty((Bsz, C), dtype=np.float32)
    y = np.empty((Bsz, C), dtype=np.float32)
    sa = np.empty(N, dtype=np.float32)
    for layer in range(L):
        _layer_norm(x, ln[layer, 0, 0], ln[layer, 0, 1], xx)
        for i in range(Bsz):
            for c in range(C):
                d = shifts[layer, 0, i, c] - xx[i, c]
                for m in range(6):
                    ins[m, i, c] = xx[i, c] + d * mix[layer, m, c]
                shifts[layer, 0, i, c] = xx[i, c]
        r = np.dot(ins[0], att_w[layer, 0].T)
        k = np.dot(ins[2], att_w[layer, 1].T)
        v = np.dot(ins[3], att_w[layer, 2].T)
        wl = np.dot(np.tanh(np.dot(ins[1], w1[layer])), w2[layer])
        al = np.dot(np.dot(ins[4], a1[layer]), a2[layer])
        gh = np.dot(ins[5], g1[layer])
        gh = 1.0 / (1.0 + np.exp(-gh))
        g = np.dot(gh.astype(np.float32), g2[layer])
        vl = np.dot(np.dot(ins[3], v1[layer]), v2[layer])
        st = S[layer]
        for i in range(Bsz):
            for h in range(H):
                o = h * N
                nrm = 0.0
                for n in range(N):
                    q = k[i, o + n] * k_k[layer, o + n]
                    nrm += q * q
                nrm = max(np.sqrt(nrm), 1e-12)
                bonus = 0.0
                for n in range(N):
                    c = o + n
                    a = 1.0 / (1.0 + np.exp(-(a0[layer, c] + al[i, c])))
                    kk = k[i, c] * k_k[layer, c] / nrm
                    k[i, c] = k[i, c] * (1.0 + (a - 1.0) * k_a[layer, c])
                    if layer == 0:
                        v_first[i, c] = v[i, c]
                    else:
                        mixv = 1.0 / (1.0 + np.exp(-(v0[layer, c] + vl[i, c])))
                        v[i, c] = v[i, c] + (v_first[i, c] - v[i, c]) * mixv
                    wl[i, c] = np.exp(-scale / (1.0 + np.exp(-(w0[layer, c] + wl[i, c]))))
                    al[i, c] = kk * a  # b = kappa * a
                    ins[0, i, c] = -kk  # a = -kappa (the input row is no longer needed)
                    bonus += r[i, c] * k[i, c] * r_k[layer, h, n]
                # contiguous views of this head's state and vectors (the loops vectorize)
                sh = st[i, h]
                av, wv, bv = ins[0, i, o : o + N], wl[i, o : o + N], al[i, o : o + N]
                kv, rv = k[i, o : o + N], r[i, o : o + N]
                for p in range(N):  # sa = S a
                    row = sh[p]
                    acc = 0.0
                    for n in range(N):
                        acc += row[n] * av[n]
                    sa[p] = acc
                mean = 0.0
                for p in range(N):
                    row = sh[p]
                    vp, sp = v[i, o + p], sa[p]
                    acc = 0.0
                    for n in range(N):
                        s = row[n] * wv[n] + sp * bv[n] + vp * kv[n]
                        row[n] = s
                        acc += s * rv[n]
                    y[i, o + p] = acc
                    mean += acc
                mean /= N
                var = 0.0
                for p in range(N):
                    dd = y[i, o + p] - mean
                    var += dd * dd
                inv = 1.0 / np.sqrt(var / N + 64e-5)
                for p in range(N):
                    c = o + p
                    yn = (y[i, c] - mean) * inv * ln_x[layer, 0, c] + ln_x[layer, 1, c]
                    y[i, c] = (yn + bonus * v[i, c]) * g[i, c]
        x += np.dot(y, att_w[layer, 3].T)
        _layer_norm(x, ln[layer, 1, 0], ln[layer, 1, 1], xx)
        for i in range(Bsz):
            for c in range(C):
                ins[1, i, c] = xx[i, c] + (shifts[layer, 1, i, c] - xx[i, c]) * ffn_x[layer, c]
                shifts[layer, 1, i, c] = xx[i, c]
        kf = np.dot(ins[1], ffn_k[layer].T)
        for i in range(Bsz):
            for f in range(kf.shape[1]):
                z = kf[i, f] if kf[i, f] > 0 else 0.0
                kf[i, f] = z * z
        x += np.dot(kf, ffn_v[layer].T)
    _layer_norm(x, ln_out[0], ln_out[1], xx)
    return np.dot(xx, head.T)
