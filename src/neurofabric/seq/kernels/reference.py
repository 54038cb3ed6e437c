"""Reference recurrences in plain numpy loops (float64): the spec the fast paths are tested against.

RWKV-4's WKV with the numerically stable running maximum. Per channel, with w = exp(time_decay)
(stored negated: ``decay = -exp(time_decay)``) and the bonus u = time_first, the output at step
t is

    wkv_t = (sum_{i<t} e^{-(t-1-i) w + k_i} v_i + e^{u + k_t} v_t)
          / (sum_{i<t} e^{-(t-1-i) w + k_i}     + e^{u + k_t})

kept as a state (a, b, p) with the sums equal to a e^p and b e^p, p the running maximum
exponent, so no exponential overflows whatever k is.
"""

from __future__ import annotations

import numpy as np


def wkv_ref(decay, u, k, v, state=None):
    """wkv (T, C) for one sequence; ``decay`` = -exp(time_decay) (C,), ``u`` (C,), k, v (T, C).

    ``state`` is (a, b, p) each (C,) or None (empty); returns (wkv, new state).
    """
    T, C = k.shape
    if state is None:
        a = np.zeros(C)
        b = np.zeros(C)
        p = np.full(C, -1e38)
    else:
        a, b, p = (np.array(s, dtype=np.float64) for s in state)
    out = np.empty((T, C))
    for t in range(T):
        kt = k[t].astype(np.float64)
        vt = v[t].astype(np.float64)
        ww = u + kt
        q = np.maximum(p, ww)
        e1 = np.exp(p - q)
        e2 = np.exp(ww - q)
        out[t] = (e1 * a + e2 * vt) / (e1 * b + e2)
        ww = p + decay
        q = np.maximum(ww, kt)
        e1 = np.exp(ww - q)
        e2 = np.exp(kt - q)
        a = e1 * a + e2 * vt
        b = e1 * b + e2
        p = q
    return out, (a, b, p)


def _ln(x, w, b):
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-5) * w + b


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
    """The RWKV-4 recurrent step in plain numpy (see ``numba_cpu.rwkv_step`` for the layout)."""
    x = _ln(emb[tokens], ln0[0], ln0[1])
    for layer in range(att_mix.shape[0]):
        st = state[layer]
        xx = _ln(x, ln[layer, 0, 0], ln[layer, 0, 1])
        mk, mv, mr = att_mix[layer]
        k = (xx * mk + st[0] * (1 - mk)) @ att_w[layer, 0].T
        v = (xx * mv + st[0] * (1 - mv)) @ att_w[layer, 1].T
        r = 1 / (1 + np.exp(-((xx * mr + st[0] * (1 - mr)) @ att_w[layer, 2].T)))
        st[0] = xx
        wkv = np.empty_like(k)
        for i in range(len(k)):  # the WKV of wkv_ref, one step per sequence
            out, (a, b, p) = wkv_ref(
                decay[layer],
                first[layer],
                k[i : i + 1],
                v[i : i + 1],
                (st[1, i], st[2, i], st[3, i]),
            )
            wkv[i] = out[0]
            st[1, i], st[2, i], st[3, i] = a, b, p
        x = x + (r * wkv) @ att_w[layer, 3].T
        xx = _ln(x, ln[layer, 1, 0], ln[layer, 1, 1])
        fk, fr = ffn_mix[layer]
        kf = np.square(np.maximum((xx * fk + st[4] * (1 - fk)) @ ffn_k[layer].T, 0))
        rf = 1 / (1 + np.exp(-((xx * fr + st[4] * (1 - fr)) @ ffn_r[layer].T)))
        st[4] = xx
        x = x + rf * (kf @ ffn_v[layer].T)
    return _ln(x, ln_out[0], ln_out[1]) @ head.T


def q4_dequant(qweight, scales, zs):
    """The float64 weights (out, in) of 4-bit codes (layout of ``numba_cpu.q4_matvec``)."""
    q = np.empty((qweight.shape[0], 2 * qweight.shape[1]))
    q[:, 0::2] = qweight & 15
    q[:, 1::2] = qweight >> 4
    g = q.shape[1] // scales.shape[1]
    s = np.repeat(scales.astype(np.float64), g, axis=1)
    return q * s - np.repeat(zs.astype(np.float64), g, axis=1)


def q4_matvec(x, qweight, scales, zs):
    """``x @ W.T`` with W the dequantized 4-bit weights, in float64."""
    return x.astype(np.float64) @ q4_dequant(qweight, scales, zs).T


def rwkv_step_q4(
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
    """The 4-bit step: :func:`rwkv_step` on the dequantized weights."""

    def stack(t):
        return np.stack([q4_dequant(t[0][i], t[1][i], t[2][i]) for i in range(len(t[0]))])

    att_w = np.stack([stack(t) for t in (att_k, att_v, att_r, att_o)], axis=1)
    args = (ffn_mix, stack(ffn_k), stack(ffn_r), stack(ffn_v), ln_out, head, state)
    return rwkv_step(tokens, emb, ln0, ln, att_mix, decay, first, att_w, *args)


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
    """The Mamba-1 recurrent step in plain numpy (see ``numba_cpu.mamba_step``)."""

    def rms(x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w

    def silu(x):
        return x / (1 + np.exp(-x))

    x = emb[tokens].astype(np.float64)
    r = dt_w.shape[2]
    n = A.shape[2]
    for layer in range(conv_w.shape[0]):
        xz = rms(x, norm[layer]) @ in_proj[layer].T
        di = xz.shape[1] // 2
        u, z = xz[:, :di], xz[:, di:]
        cs = conv_state[layer]
        cs[:, :, :-1] = cs[:, :, 1:]
        cs[:, :, -1] = u
        u = silu((cs * conv_w[layer]).sum(-1) + conv_b[layer])
        dbc = u @ x_proj[layer].T
        delta = np.logaddexp(0, dbc[:, :r] @ dt_w[layer].T + dt_b[layer])
        Bm, Cm = dbc[:, r : r + n], dbc[:, r + n :]
        st = ssm_state[layer]
        st[:] = (
            np.exp(delta[..., None] * A[layer]) * st
            + delta[..., None] * Bm[:, None, :] * u[..., None]
        )
        y = (st * Cm[:, None, :]).sum(-1) + D[layer] * u
        x = x + (y * silu(z)) @ out_proj[layer].T
    return (rms(x, norm_f) @ emb.T).astype(np.float32)


def mamba_step_q4(
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
    """The 4-bit step: :func:`mamba_step` on the dequantized weights, input scales folded in
    (``W (x s) = (W diag(s)) x``)."""

    def stack(t, scale=None):
        w = np.stack([q4_dequant(t[0][i], t[1][i], t[2][i]) for i in range(len(t[0]))])
        return w if scale is None else w * scale[:, None, :]

    return mamba_step(
        tokens,
        emb,
        norm,
        stack(in_proj),
        conv_w,
        conv_b,
        stack(x_proj, x_scale),
        dt_w,
        dt_b,
        A,
        D,
        stack(out_proj, out_scale),
        norm_f,
        conv_state,
        ssm_state,
        eps,
    )


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
    """The Mamba-2 recurrent step in plain numpy (see ``numba_cpu.mamba2_step``)."""

    def rms(x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w

    def silu(x):
        return x / (1 + np.exp(-x))

    x = emb[tokens].astype(np.float64)
    b = len(tokens)
    H, P, N = ssm_state.shape[2], ssm_state.shape[3], ssm_state.shape[4]
    di, gn = H * P, n_groups * N
    for layer in range(conv_w.shape[0]):
        zxbcdt = rms(x, norm[layer]) @ in_proj[layer].T
        z, xbc, dt = zxbcdt[:, :di], zxbcdt[:, di : 2 * di + 2 * gn], zxbcdt[:, 2 * di + 2 * gn :]
        cs = conv_state[layer]
        cs[:, :, :-1] = cs[:, :, 1:]
        cs[:, :, -1] = xbc
        xbc = silu((cs * conv_w[layer]).sum(-1) + conv_b[layer])
        xs = xbc[:, :di].reshape(b, H, P)
        Bh = np.repeat(xbc[:, di : di + gn].reshape(b, n_groups, N), H // n_groups, axis=1)
        Ch = np.repeat(xbc[:, di + gn :].reshape(b, n_groups, N), H // n_groups, axis=1)
        dt = np.logaddexp(0, dt + dt_b[layer])  # (b, H)
        st = ssm_state[layer]
        st[:] = (
            np.exp(dt * A[layer])[:, :, None, None] * st
            + (dt[:, :, None] * xs)[..., None] * Bh[:, :, None, :]
        )
        y = ((st * Ch[:, :, None, :]).sum(-1) + D[layer][:, None] * xs).reshape(b, di)
        g = (y * silu(z)).reshape(b, n_groups, di // n_groups)
        g = (g / np.sqrt((g * g).mean(-1, keepdims=True) + eps)).reshape(b, di) * gnorm[layer]
        x = x + g @ out_proj[layer].T
    return (rms(x, norm_f) @ head.T).astype(np.float32)


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
    """The RWKV-7 recurrent step in plain numpy (see ``numba_cpu.rwkv7_step``); ``emb`` is the
    embedding after ``blocks.0.ln0``; ``shifts`` (L, 2, B, C) and ``S`` (L, B, H, N, N) are
    updated in place."""

    def sigmoid(z):
        return 1 / (1 + np.exp(-z))

    x = emb[tokens].astype(np.float64)
    B, C = x.shape
    H, N = r_k.shape[1:]
    v_first = None
    for layer in range(ln.shape[0]):
        xx = _ln(x, ln[layer, 0, 0], ln[layer, 0, 1])
        d = shifts[layer, 0] - xx
        shifts[layer, 0] = xx
        xr, xw, xk, xv, xa, xg = (xx + d * mix[layer, m] for m in range(6))
        r, k, v = (z @ att_w[layer, m].T for m, z in enumerate((xr, xk, xv)))
        w = np.exp(-np.exp(-0.5) * sigmoid(w0[layer] + np.tanh(xw @ w1[layer]) @ w2[layer]))
        a = sigmoid(a0[layer] + (xa @ a1[layer]) @ a2[layer])
        g = sigmoid(xg @ g1[layer]) @ g2[layer]
        kk = (k * k_k[layer]).reshape(B, H, N)
        kk = (kk / np.maximum(np.linalg.norm(kk, axis=-1, keepdims=True), 1e-12)).reshape(B, C)
        k = k * (1 + (a - 1) * k_a[layer])
        if layer == 0:
            v_first = v
        else:
            v = v + (v_first - v) * sigmoid(v0[layer] + (xv @ v1[layer]) @ v2[layer])
        rh, wh, kh, vh = (z.reshape(B, H, N) for z in (r, w, k, v))
        ah, bh = (-kk).reshape(B, H, N), (kk * a).reshape(B, H, N)
        st = S[layer]
        st[:] = (
            st * wh[:, :, None, :]
            + (st @ ah[..., None]) * bh[:, :, None, :]
            + vh[..., None] * kh[:, :, None, :]
        )
        y = (st @ rh[..., None])[..., 0]  # (B, H, N)
        mu = y.mean(-1, keepdims=True)
        var = ((y - mu) ** 2).mean(-1, keepdims=True)
        y = ((y - mu) / np.sqrt(var + 64e-5)).reshape(B, C) * ln_x[layer, 0] + ln_x[layer, 1]
        y = y + ((rh * kh * r_k[layer]).sum(-1, keepdims=True) * vh).reshape(B, C)
        x = x + (y * g) @ att_w[layer, 3].T
        xx = _ln(x, ln[layer, 1, 0], ln[layer, 1, 1])
        kin = xx + (shifts[layer, 1] - xx) * ffn_x[layer]
        shifts[layer, 1] = xx
        x = x + np.square(np.maximum(kin @ ffn_k[layer].T, 0)) @ ffn_v[layer].T
    return (_ln(x, ln_out[0], ln_out[1]) @ head.T).astype(np.float32)
