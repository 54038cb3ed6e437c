"""WKV in torch: a chunked parallel form for training and the one-step form for decoding.

Within a chunk of L steps starting after state S (sums a e^p, b e^p), step t sees three kinds of
terms, each with its log-weight:

    carried:      p - t w              (the state, decayed t more steps)
    earlier j<t:  k_j - (t - 1 - j) w
    current:      u + k_t

They are normalized by their maximum per (t, channel) and summed as an L x L masked matrix,
so the whole chunk is a few batched tensor operations (differentiable). The state after the
chunk carries the same sums to the next chunk. ``wkv_ref`` (numpy) is the spec.

:func:`wkv_numba` runs the same recurrence on CPU tensors by the numba kernel pair
``numba_cpu.wkv4_fwd`` / ``wkv4_bwd`` (sequential in time, exact gradients by the reverse-time
recursion); RWKV-4 uses it by default on the CPU (``RWKVConfig.wkv``), and with it
:func:`shift_mix_numba`, the token shift and mixes in one pass (:func:`shift_mix_torch` the
torch form).
"""

from __future__ import annotations

import numpy as np
import torch

NEG = -1e38


def wkv_init_state(batch: int, channels: int, *, dtype=torch.float32, device=None):
    z = torch.zeros(batch, channels, dtype=dtype, device=device)
    return z, z.clone(), torch.full((batch, channels), NEG, dtype=dtype, device=device)


def wkv_chunked(decay, u, k, v, state=None, chunk: int = 32):
    """wkv (B, T, C) and the final state; ``decay`` = -exp(time_decay) (C,), u (C,)."""
    B, T, C = k.shape
    if state is None:
        state = wkv_init_state(B, C, dtype=k.dtype, device=k.device)
    a, b, p = state
    w = -decay  # > 0
    outs = []
    for s in range(0, T, chunk):
        kc = k[:, s : s + chunk]
        vc = v[:, s : s + chunk]
        L = kc.shape[1]
        t_idx = torch.arange(L, dtype=k.dtype, device=k.device)
        # log-weights: carried (B, L, C); earlier (B, L, L, C) masked; current (B, L, C)
        carried = p[:, None, :] - t_idx[None, :, None] * w
        gap = t_idx[:, None] - 1 - t_idx[None, :]  # t - 1 - j
        mask = t_idx[None, :] < t_idx[:, None]  # j < t
        earlier = kc[:, None, :, :] - gap[None, :, :, None] * w
        earlier = earlier.masked_fill(~mask[None, :, :, None], float("-inf"))
        current = u + kc
        top = torch.maximum(torch.maximum(carried, current), earlier.amax(dim=2))
        e_car = torch.exp(carried - top)
        e_ear = torch.exp(earlier - top[:, :, None, :])
        e_cur = torch.exp(current - top)
        num = e_car * a[:, None, :] + (e_ear * vc[:, None, :, :]).sum(dim=2) + e_cur * vc
        den = e_car * b[:, None, :] + e_ear.sum(dim=2) + e_cur
        outs.append(num / den)
        # the state after the chunk: sum_{j<L} e^{k_j - (L-1-j) w} (v_j, 1) + e^{p - L w} (a, b)
        lw = kc - (L - 1 - t_idx)[None, :, None] * w
        carried_end = p - L * w
        q = torch.maximum(lw.amax(dim=1), carried_end)
        e_j = torch.exp(lw - q[:, None, :])
        e_c = torch.exp(carried_end - q)
        a = e_c * a + (e_j * vc).sum(dim=1)
        b = e_c * b + e_j.sum(dim=1)
        p = q
    return torch.cat(outs, dim=1), (a, b, p)


def wkv_step(decay, u, k, v, state):
    """One token: k, v (B, C); returns (wkv (B, C), new state)."""
    a, b, p = state
    ww = u + k
    q = torch.maximum(p, ww)
    e1 = torch.exp(p - q)
    e2 = torch.exp(ww - q)
    out = (e1 * a + e2 * v) / (e1 * b + e2)
    ww = p + decay
    q = torch.maximum(ww, k)
    e1 = torch.exp(ww - q)
    e2 = torch.exp(k - q)
    return out, (e1 * a + e2 * v, e1 * b + e2, q)


class _NumbaWKV4(torch.autograd.Function):
    """The WKV-4 recurrence by numba kernels: the forward keeps the state after every step, the
    backward recomputes the step's weights from them; checked against the torch forms by
    gradcheck. The final state's gradient is taken through the sums a e^p and b e^p (how the
    next step reads the state), so the gradient arriving at p_T is not needed."""

    @staticmethod
    def forward(ctx, decay, u, k, v, a0, b0, p0):
        from neurofabric.seq.kernels.numba_cpu import wkv4_fwd

        ins = [t.detach().contiguous() for t in (decay, u, k, v, a0, b0, p0)]
        ctx.fast = k.dtype == torch.float32  # the vectorized float32 exp (numba_cpu.exp_row)
        y, sa, sb, sp = (torch.from_numpy(x) for x in wkv4_fwd(*[t.numpy() for t in ins], ctx.fast))
        ctx.save_for_backward(*ins, sa, sb, sp, y)
        return y, sa[:, -1].clone(), sb[:, -1].clone(), sp[:, -1].clone()

    @staticmethod
    def backward(ctx, gy, ga, gb, _gp):
        from neurofabric.seq.kernels.numba_cpu import wkv4_bwd

        saved = [t.numpy() for t in ctx.saved_tensors]
        like = saved[4]  # a0: (B, C)

        def arr(g, shape_of):
            return np.zeros_like(shape_of) if g is None else g.contiguous().numpy()

        grads = wkv4_bwd(*saved, arr(gy, saved[2]), arr(ga, like), arr(gb, like), ctx.fast)
        return tuple(torch.from_numpy(g) for g in grads)


def shift_mix_torch(xx, shift, mixes):
    """RWKV's token shift and mixes (the spec of :func:`shift_mix_numba`): x_{t-1} (``shift``
    before the first token) plus (x_t - x_{t-1}) times each mix, as a tuple. xx (B, T, C),
    shift (B, C), ``mixes`` a sequence of (C,) tensors."""
    shifted = torch.cat([shift[:, None, :], xx[:, :-1]], dim=1)
    diff = xx - shifted
    return tuple(torch.addcmul(shifted, diff, m) for m in mixes)


class _NumbaShiftMix(torch.autograd.Function):
    """:func:`shift_mix_torch` in one pass forward and one backward (``numba_cpu.shift_mix_fwd``
    / ``shift_mix_bwd``): the torch form's concatenation, difference and mixes each read and
    write the (B, T, C) activations, and their backward twice as many passes."""

    @staticmethod
    def forward(ctx, xx, shift, *mixes):
        from neurofabric.seq.kernels.numba_cpu import shift_mix_fwd

        x, sh = xx.detach().contiguous(), shift.detach().contiguous()
        mix = torch.stack([m.detach() for m in mixes]).to(x.dtype)
        outs = tuple(torch.empty_like(x) for _ in mixes)
        shift_mix_fwd(x.numpy(), sh.numpy(), mix.numpy(), tuple(o.numpy() for o in outs))
        ctx.save_for_backward(x, sh, mix)
        return outs

    @staticmethod
    def backward(ctx, *grads):
        from neurofabric.seq.kernels.numba_cpu import shift_mix_bwd

        x, sh, mix = ctx.saved_tensors
        gs = tuple(np.zeros_like(x.numpy()) if g is None else g.contiguous().numpy() for g in grads)
        gx, gshift, gmix = shift_mix_bwd(x.numpy(), sh.numpy(), mix.numpy(), gs)
        gm = torch.from_numpy(gmix)
        return (torch.from_numpy(gx), torch.from_numpy(gshift), *gm.unbind(0))


def shift_mix_numba(xx, shift, mixes):
    """:func:`shift_mix_torch` by numba kernels (CPU tensors, float32 or float64),
    differentiable in ``xx``, ``shift`` and the mixes."""
    return _NumbaShiftMix.apply(xx, shift, *mixes)


class CheckpointedRecurrence(torch.autograd.Function):
    """A recurrence over a numba kernel pair that keeps the state before every block of
    ``every`` steps (RWKV-7's WKV, Mamba-2's SSD): ``fwd(*ins, s0, every)`` returns the output
    (shaped like ``ins[0]``), the final state and the block checkpoints; ``bwd(*ins,
    checkpoints, every, dy, ds_last)`` recomputes one block at a time and returns the gradients
    of ``ins`` and of ``s0``, in that order. Called as ``apply((fwd, bwd), every, s0, *ins)``."""

    @staticmethod
    def forward(ctx, kernels, every, s0, *ins):
        fwd, bwd = kernels
        ins = [t.detach().contiguous() for t in ins]
        y, s_end, starts = fwd(*[t.numpy() for t in ins], s0.detach().contiguous().numpy(), every)
        ctx.save_for_backward(*ins, torch.from_numpy(starts))
        ctx.bwd, ctx.every, ctx.state_shape = bwd, every, tuple(s0.shape)
        return torch.from_numpy(y), torch.from_numpy(s_end)

    @staticmethod
    def backward(ctx, dy, ds_last):
        *ins, starts = ctx.saved_tensors
        args = [t.numpy() for t in ins]
        dtype = args[0].dtype
        dy = np.zeros_like(args[0]) if dy is None else dy.contiguous().numpy()
        if ds_last is None:
            ds = np.zeros(ctx.state_shape, dtype=dtype)
        else:
            ds = ds_last.contiguous().numpy()
        *grads, g_s0 = ctx.bwd(*args, starts.numpy(), ctx.every, dy, ds)
        return (None, None, torch.from_numpy(g_s0), *(torch.from_numpy(g) for g in grads))


def wkv_numba(decay, u, k, v, state=None):
    """:func:`wkv_chunked`'s result through the numba kernels (CPU tensors, float32 or float64),
    differentiable; ``k``, ``v`` (B, T, C), ``state`` (a, b, p) or None."""
    B, T, C = k.shape
    if state is None:
        state = wkv_init_state(B, C, dtype=k.dtype, device=k.device)
    y, a, b, p = _NumbaWKV4.apply(decay, u, k, v, *state)
    return y, (a, b, p)
