"""RWKV-7 ("Goose") in torch: a chunked parallel ``forward`` for training, a recurrent ``step``.

>>> import torch
>>> from neurofabric.seq.rwkv7 import RWKV7, RWKV7Config
>>> model = RWKV7(RWKV7Config(vocab_size=50, n_layer=2, n_embd=32, head_size=16), seed=0)
>>> tokens = torch.tensor([[1, 2, 3, 4]])
>>> logits, _ = model(tokens)                    # always (logits, state)
>>> state = model.init_state(1)
>>> for t in range(4):
...     step_logits, state = model.step(tokens[:, t], state)
>>> bool(torch.allclose(step_logits, logits[:, -1], atol=1e-4))
True

Block (Peng et al. 2025; the layout of BlinkDL's RWKV-LM ``RWKV-v7`` and the ``rwkv`` package's
``RWKV_x070``). Time mixing, per head of N channels, with a state S (N x N: value by key):

* token shift: x_* = x + (x_prev - x) * mu_* for r, w, k, v, a, g;
* r, k, v by linear layers; low-rank (LoRA) paths give the decay
  w = exp(-e^{-1/2} sigmoid(w0 + tanh(x_w W1) W2)) in (0.545, 1), the in-context learning rate
  a = sigmoid(a0 + x_a A1 A2), the gate g = sigmoid(x_g G1) G2 and, from the second layer on,
  the value residual v <- v + (v_first - v) sigmoid(v0 + x_v V1 V2) towards layer 0's value;
* kappa = normalize(k * k_k) per head, k <- k (1 + (a - 1) k_a);
* the generalized delta rule: S_t = S_{t-1} (diag(w_t) - kappa_t (kappa_t a_t)^T) + v_t k_t^T,
  y_t = S_t r_t, then a GroupNorm per head, plus the bonus (sum(r k r_k) per head) v, times g,
  and the output layer.

Channel mixing: x += W_v relu(W_k x_k)^2 with its own token shift. Embeddings pass
``blocks.0.ln0``; the head reads ``ln_out``. The state per sequence is, per layer, two shifted
inputs (n_embd each) and S (heads x N x N), whatever the sequence length.

The training form (:func:`wkv7_chunked`): inside a chunk the rank-one corrections u_t = S_{t-1}
a_t obey a unit lower-triangular linear system, solved at once; with them the chunk is a masked
"attention" over pairwise per-channel decays (every factor <= 1), and the state passes between
chunks. :func:`wkv7_ref` is the step-by-step spec. On CPU tensors the default runs a numba
kernel pair (forward, and backward by the reverse-time recursion; :attr:`RWKV7.wkv_backend`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from neurofabric.core.errors import CheckpointError, ConfigError
from neurofabric.core.rng import seed_to_int
from neurofabric.core.validation import check_choice, check_int
from neurofabric.seq.kernels.torch_ops import CheckpointedRecurrence
from neurofabric.seq.output import LMOutput, check_tokens
from neurofabric.seq.rwkv import WKVS, WKVChoice, resolve_wkv, token_mix

__all__ = ["WKVS", "RWKV7", "RWKV7Config", "wkv7_chunked", "wkv7_numba", "wkv7_ref"]

#: exp(-1/2): the decay is exp(-DECAY_SCALE * sigmoid(.)), so w lies in (exp(-0.607), 1)
DECAY_SCALE = math.exp(-0.5)


def _lora(c: int, mult: float) -> int:
    """RWKV-LM's suggested LoRA width: mult sqrt(C), rounded to a multiple of 32, at least 32."""
    return max(32, int(round(mult * math.sqrt(c) / 32) * 32))


@dataclass(frozen=True)
class RWKV7Config:
    """``head_size`` divides ``n_embd`` into heads; the LoRA widths (decay, in-context rate,
    value residual, gate) default to RWKV-LM's suggestions for ``n_embd`` (0: that default);
    ``chunk`` is the training form's block length."""

    vocab_size: int = 256
    n_layer: int = 4
    n_embd: int = 256
    head_size: int = 64
    ffn_mult: int = 4
    d_decay: int = 0
    d_aaa: int = 0
    d_mv: int = 0
    d_gate: int = 0
    chunk: int = 16
    wkv: str = "auto"

    def __post_init__(self) -> None:
        for name in ("vocab_size", "n_layer", "n_embd", "head_size", "ffn_mult", "chunk"):
            check_int(name, getattr(self, name), min_value=1)
        for name in ("d_decay", "d_aaa", "d_mv", "d_gate"):
            check_int(name, getattr(self, name), min_value=0)
        check_choice("wkv", self.wkv, WKVS)
        if self.n_embd % self.head_size:
            raise ConfigError(
                f"`head_size` must divide n_embd = {self.n_embd}, got {self.head_size}; RWKV-7 "
                f"models use 64 (choose n_embd a multiple of it)"
            )
        defaults = {"d_decay": 2.5, "d_aaa": 2.5, "d_mv": 1.7, "d_gate": 5.0}
        for name, mult in defaults.items():
            if getattr(self, name) == 0:
                object.__setattr__(self, name, _lora(self.n_embd, mult))

    @property
    def n_head(self) -> int:
        return self.n_embd // self.head_size

    @property
    def ffn_dim(self) -> int:
        return self.ffn_mult * self.n_embd

    def as_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------- the WKV-7 operator
def wkv7_ref(r, w, k, v, a, b, S0=None):
    """The sequential spec. r, w, k, v, a, b: (B, T, H, N), w the per-step decay in (0, 1);
    S0 (B, H, N, N) (value index first) or None. S_t = S_{t-1} (diag(w_t) + a_t b_t^T) +
    v_t k_t^T, y_t = S_t r_t. Returns y (B, T, H, N) and the final state."""
    B, T, H, N = r.shape
    S = torch.zeros(B, H, N, N, dtype=r.dtype, device=r.device) if S0 is None else S0
    ys = []
    for t in range(T):
        sa = S @ a[:, t, :, :, None]  # (B, H, N, 1)
        S = (
            S * w[:, t, :, None, :]
            + sa * b[:, t, :, None, :]
            + v[:, t, :, :, None] * k[:, t, :, None, :]
        )
        ys.append((S @ r[:, t, :, :, None])[..., 0])
    return torch.stack(ys, dim=1), S


def wkv7_chunked(r, w, k, v, a, b, S0=None, chunk: int = 16):
    """:func:`wkv7_ref` in blocks of ``chunk`` steps (differentiable tensor operations; runs on
    any device). With c the running sum of log w inside a block (c_t through step t, e_t up to
    step t - 1), u_t = S_{t-1} a_t solves

        u_t - sum_{j<t} (b_j . e^{e_t - c_j} a_t) u_j = S_0 (e^{e_t} a_t) + sum_{j<t} (k_j . e^{e_t - c_j} a_t) v_j,

    a unit lower-triangular system; then y_t = S_0 (e^{c_t} r_t) + sum_{j<=t} (b_j . e^{c_t - c_j}
    r_t) u_j + (k_j . e^{c_t - c_j} r_t) v_j, and the state likewise at the block's end."""
    B, T, H, N = r.shape
    S = torch.zeros(B, H, N, N, dtype=r.dtype, device=r.device) if S0 is None else S0
    # (B, H, T, N): heads first, so a block is (B, H, Q, N)
    r, k, v, a, b = (t.transpose(1, 2) for t in (r, k, v, a, b))
    logw = torch.log(w).transpose(1, 2)
    ys = []
    for s0 in range(0, T, chunk):
        sl = slice(s0, s0 + chunk)
        rc, kc, vc, ac, bc, lw = (
            r[:, :, sl],
            k[:, :, sl],
            v[:, :, sl],
            a[:, :, sl],
            b[:, :, sl],
            logw[:, :, sl],
        )
        Q = rc.shape[2]
        c = torch.cumsum(lw, dim=2)  # (B, H, Q, N), through step t
        e = c - lw  # up to step t - 1
        strict = torch.ones(Q, Q, dtype=torch.bool, device=r.device).tril(-1)
        incl = torch.ones(Q, Q, dtype=torch.bool, device=r.device).tril()
        # pairwise decays (B, H, t, j, N), masked before exp so nothing overflows
        d_e = torch.exp(
            (e[:, :, :, None] - c[:, :, None]).masked_fill(~strict[..., None], -math.inf)
        )
        d_c = torch.exp((c[:, :, :, None] - c[:, :, None]).masked_fill(~incl[..., None], -math.inf))
        at = ac[:, :, :, None] * d_e  # a_t e^{e_t - c_j}
        Lb = (at * bc[:, :, None]).sum(-1)  # (B, H, t, j)
        Lk = (at * kc[:, :, None]).sum(-1)
        x0 = (ac * torch.exp(e)) @ S.transpose(-1, -2)  # (B, H, Q, N): rows S_0 (e^{e_t} a_t)
        eye = torch.eye(Q, dtype=r.dtype, device=r.device)
        u = torch.linalg.solve_triangular(eye - Lb, x0 + Lk @ vc, upper=False, unitriangular=True)
        rt = rc[:, :, :, None] * d_c
        Mb = (rt * bc[:, :, None]).sum(-1)  # (B, H, t, j)
        Mk = (rt * kc[:, :, None]).sum(-1)
        y = (rc * torch.exp(c)) @ S.transpose(-1, -2) + Mb @ u + Mk @ vc
        ys.append(y)
        to_end = torch.exp(c[:, :, -1:] - c)  # (B, H, Q, N)
        S = (
            S * torch.exp(c[:, :, -1])[:, :, None, :]
            + u.transpose(-1, -2) @ (bc * to_end)
            + vc.transpose(-1, -2) @ (kc * to_end)
        )
    return torch.cat(ys, dim=2).transpose(1, 2), S


#: the numba WKV-7 keeps the state before every block of this many steps; the backward pass
#: recomputes a block's states from it (memory / this of storing every state)
WKV7_CHECKPOINT_EVERY = 16


def wkv7_numba(r, w, k, v, a, b, S0=None):
    """:func:`wkv7_ref` through numba kernels (CPU tensors, float32 or float64), differentiable:
    the forward keeps the state before every block of :data:`WKV7_CHECKPOINT_EVERY` steps, the
    backward recomputes a block's states from it and runs the exact reverse-time recursion
    (``numba_cpu.wkv7_fwd`` / ``wkv7_bwd``; checked against the torch spec by gradcheck)."""
    from neurofabric.seq.kernels.numba_cpu import wkv7_bwd, wkv7_fwd

    resolve_wkv("numba", r.device)
    if S0 is None:
        B, _, H, N = r.shape
        S0 = torch.zeros(B, H, N, N, dtype=r.dtype)
    kernels = (wkv7_fwd, wkv7_bwd)
    return CheckpointedRecurrence.apply(kernels, WKV7_CHECKPOINT_EVERY, S0, r, w, k, v, a, b)


# ---------------------------------------------------------------------- the model
def _ortho(rows: int, cols: int, scale: float, gen: torch.Generator) -> torch.Tensor:
    """A seeded (semi-)orthogonal matrix times ``scale``."""
    q, rr = torch.linalg.qr(torch.randn(max(rows, cols), min(rows, cols), generator=gen))
    q = q * torch.sign(torch.diagonal(rr))
    q = q if rows >= cols else q.T
    return scale * q[:rows, :cols]


class TimeMix7(nn.Module):
    def __init__(self, cfg: RWKV7Config, layer: int, gen: torch.Generator) -> None:
        super().__init__()
        C, H, N = cfg.n_embd, cfg.n_head, cfg.head_size
        self.cfg, self.layer = cfg, layer
        r01 = layer / max(cfg.n_layer - 1, 1)
        r1_0 = 1.0 - layer / cfg.n_layer
        ramp = torch.arange(C, dtype=torch.float32) / C
        # RWKV-LM v7's initialization, in spirit: shifts by depth, decay speeds spread over the
        # channels with a zigzag within each head, small orthogonal LoRA outputs
        for name, power in (
            ("x_r", 0.2),
            ("x_w", 0.9),
            ("x_k", 0.7),
            ("x_v", 0.7),
            ("x_a", 0.9),
            ("x_g", 0.2),
        ):
            setattr(self, name, nn.Parameter(1.0 - ramp ** (power * r1_0)))
        n = torch.arange(C, dtype=torch.float32)
        linear = n / max(C - 1, 1) - 0.5
        zig = ((n % N) - (N - 1) / 2) / max((N - 1) / 2, 1)
        zig = zig * zig.abs()
        speed = -6 + 6 * (n / max(C - 1, 1)) ** (1 + r01**0.3)
        self.w0 = nn.Parameter(speed + 0.5 + 2.5 * zig)
        self.w1 = nn.Parameter(torch.zeros(C, cfg.d_decay))
        self.w2 = nn.Parameter(_ortho(cfg.d_decay, C, 0.1, gen))
        self.a0 = nn.Parameter(-0.19 + 0.3 * zig + 0.4 * linear)
        self.a1 = nn.Parameter(torch.zeros(C, cfg.d_aaa))
        self.a2 = nn.Parameter(_ortho(cfg.d_aaa, C, 0.1, gen))
        if layer > 0:
            self.v0 = nn.Parameter(0.73 - 0.4 * linear)
            self.v1 = nn.Parameter(torch.zeros(C, cfg.d_mv))
            self.v2 = nn.Parameter(_ortho(cfg.d_mv, C, 0.1, gen))
        self.g1 = nn.Parameter(torch.zeros(C, cfg.d_gate))
        self.g2 = nn.Parameter(_ortho(cfg.d_gate, C, 0.1, gen))
        self.k_k = nn.Parameter(0.71 - 0.1 * linear)
        self.k_a = nn.Parameter(torch.full((C,), 1.02))
        self.r_k = nn.Parameter(torch.full((H, N), -0.04))
        self.receptance = nn.Linear(C, C, bias=False)
        self.key = nn.Linear(C, C, bias=False)
        self.value = nn.Linear(C, C, bias=False)
        self.output = nn.Linear(C, C, bias=False)
        self.ln_x = nn.GroupNorm(H, C, eps=64e-5)
        with torch.no_grad():
            bound = 0.5 / math.sqrt(C)
            self.receptance.weight.uniform_(-bound, bound, generator=gen)
            self.key.weight.uniform_(-0.1 * bound, 0.1 * bound, generator=gen)
            self.value.weight.uniform_(-bound, bound, generator=gen)
            self.output.weight.zero_()

    def _inputs(self, x, shift, v_first):
        """Everything the WKV needs from the normed input x, a sequence (B, T, C) after the
        token ``shift`` (B, C) or one token (B, C) after it."""
        H, N = self.cfg.n_head, self.cfg.head_size
        # x + (x_prev - x) m is RWKV-4's shift form x_prev + (x - x_prev) (1 - m): one fused
        # pass where the WKV is numba
        mixes = (self.x_r, self.x_w, self.x_k, self.x_v, self.x_a, self.x_g)
        xr, xw, xk, xv, xa, xg = token_mix(x, shift, [1 - m for m in mixes], self.cfg.wkv)
        r = self.receptance(xr)
        k = self.key(xk)
        v = self.value(xv)
        w = torch.exp(-DECAY_SCALE * torch.sigmoid(self.w0 + torch.tanh(xw @ self.w1) @ self.w2))
        a = torch.sigmoid(self.a0 + (xa @ self.a1) @ self.a2)
        g = torch.sigmoid(xg @ self.g1) @ self.g2
        lead = x.shape[:-1]
        kk = F.normalize((k * self.k_k).reshape(*lead, H, N), dim=-1, p=2.0).reshape(*lead, H * N)
        k = k * (1 + (a - 1) * self.k_a)
        if self.layer == 0:
            v_first = v
        else:
            v = v + (v_first - v) * torch.sigmoid(self.v0 + (xv @ self.v1) @ self.v2)
        heads = [t.reshape(*lead, H, N) for t in (r, w, k, v, -kk, kk * a)]
        return heads, g, v_first

    def _out(self, y, r, k, v, g):
        """GroupNorm per head, the bonus term, the gate and the output layer."""
        C = self.cfg.n_embd
        lead = y.shape[:-2]
        y = self.ln_x(y.reshape(-1, C)).reshape(*lead, C)
        bonus = ((r * k * self.r_k).sum(-1, keepdim=True) * v).reshape(*lead, C)
        return self.output((y + bonus) * g)

    def forward(self, x, shift, S, v_first):
        (r, w, k, v, a, b), g, v_first = self._inputs(x, shift, v_first)
        if resolve_wkv(self.cfg.wkv, x.device) == "numba":
            y, S = wkv7_numba(r, w, k, v, a, b, S)
        else:
            y, S = wkv7_chunked(r, w, k, v, a, b, S, chunk=self.cfg.chunk)
        return self._out(y, r, k, v, g), x[:, -1], S, v_first

    def step(self, x, shift, S, v_first):
        (r, w, k, v, a, b), g, v_first = self._inputs(x, shift, v_first)
        S = (
            S * w[:, :, None, :]
            + (S @ a[..., None]) * b[:, :, None, :]
            + v[..., None] * k[:, :, None, :]
        )
        y = (S @ r[..., None])[..., 0]
        return self._out(y, r, k, v, g), x, S, v_first


class ChannelMix7(nn.Module):
    def __init__(self, cfg: RWKV7Config, layer: int, gen: torch.Generator) -> None:
        super().__init__()
        C = cfg.n_embd
        r1_0 = 1.0 - layer / cfg.n_layer
        self.x_k = nn.Parameter(1.0 - (torch.arange(C, dtype=torch.float32) / C) ** (r1_0**4))
        self.key = nn.Linear(C, cfg.ffn_dim, bias=False)
        self.value = nn.Linear(cfg.ffn_dim, C, bias=False)
        self.cfg = cfg
        with torch.no_grad():
            bound = 0.5 / math.sqrt(C)
            self.key.weight.uniform_(-bound, bound, generator=gen)
            self.value.weight.zero_()

    def forward(self, x, shift):
        """x (B, T, C) after the token ``shift`` (B, C), or one token x (B, C) after it."""
        (k,) = token_mix(x, shift, (1 - self.x_k,), self.cfg.wkv)
        return self.value(torch.square(torch.relu(self.key(k))))


class Block7(nn.Module):
    def __init__(self, cfg: RWKV7Config, layer: int, gen: torch.Generator) -> None:
        super().__init__()
        C = cfg.n_embd
        if layer == 0:
            self.ln0 = nn.LayerNorm(C)
        self.ln1 = nn.LayerNorm(C)
        self.ln2 = nn.LayerNorm(C)
        self.att = TimeMix7(cfg, layer, gen)
        self.ffn = ChannelMix7(cfg, layer, gen)


#: parameters stored as (1, 1, C) in RWKV-LM's checkpoints (ours are (C,))
_ROW_PARAMS = ("x_r", "x_w", "x_k", "x_v", "x_a", "x_g", "w0", "a0", "v0", "k_k", "k_a")


class RWKV7(WKVChoice, nn.Module):
    """The language model: ``forward(tokens) -> (logits, state)``, ``step(token, state)``."""

    def __init__(self, config: RWKV7Config | None = None, *, seed: Any = 0) -> None:
        super().__init__()
        self.config = cfg = config or RWKV7Config()
        gen = torch.Generator().manual_seed(seed_to_int(seed))
        self.emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.blocks = nn.ModuleList([Block7(cfg, i, gen) for i in range(cfg.n_layer)])
        self.ln_out = nn.LayerNorm(cfg.n_embd)
        self.head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        with torch.no_grad():  # every parameter from `seed`, none from torch's global RNG
            self.emb.weight.uniform_(-1e-4, 1e-4, generator=gen)
            bound = 0.5 / math.sqrt(cfg.n_embd)
            self.head.weight.uniform_(-bound, bound, generator=gen)

    def init_state(self, batch: int = 1, *, dtype=None):
        """Per layer: the time-mix shift (B, C), S (B, H, N, N) and the channel-mix shift."""
        dtype = dtype or self.emb.weight.dtype
        c, dev = self.config, self.emb.weight.device
        z = {"dtype": dtype, "device": dev}
        return [
            (
                torch.zeros(batch, c.n_embd, **z),
                torch.zeros(batch, c.n_head, c.head_size, c.head_size, **z),
                torch.zeros(batch, c.n_embd, **z),
            )
            for _ in self.blocks
        ]

    def forward(self, tokens, state=None) -> LMOutput:
        """``(logits, state)``: logits (B, T, vocab) of every position and the state after the
        last one; with ``state`` it continues a sequence."""
        if tokens.ndim == 1:
            tokens = tokens[None]
        check_tokens(tokens, self.config.vocab_size)
        state = state if state is not None else self.init_state(tokens.shape[0])
        x = self.emb(tokens)
        v_first, new = None, []
        for i, (blk, (att_shift, S, ffn_shift)) in enumerate(zip(self.blocks, state, strict=True)):
            if i == 0:
                x = blk.ln0(x)
            xx = blk.ln1(x)
            out, att_shift, S, v_first = blk.att(xx, att_shift, S, v_first)
            x = x + out
            xx = blk.ln2(x)
            x = x + blk.ffn(xx, ffn_shift)
            new.append((att_shift, S, xx[:, -1]))
        return LMOutput(self.head(self.ln_out(x)), new)

    def step(self, token, state):
        """Logits (B, vocab) of one token per sequence, and the new state (inputs untouched)."""
        token = torch.as_tensor(token).reshape(-1)
        check_tokens(token, self.config.vocab_size)
        x = self.emb(token)
        v_first, new = None, []
        for i, (blk, (att_shift, S, ffn_shift)) in enumerate(zip(self.blocks, state, strict=True)):
            if i == 0:
                x = blk.ln0(x)
            xx = blk.ln1(x)
            out, att_shift, S, v_first = blk.att.step(xx, att_shift, S, v_first)
            x = x + out
            xx = blk.ln2(x)
            x = x + blk.ffn(xx, ffn_shift)
            new.append((att_shift, S, xx))
        return self.head(self.ln_out(x)), new

    # ------------------------------------------------------------------ checkpoints
    def to_rwkv_state_dict(self) -> dict[str, torch.Tensor]:
        """Weights under RWKV-LM v7's keys and shapes (what the ``rwkv`` package loads from a
        .pth with ``RWKV_V7_ON=1``): token-shift and bias vectors as (1, 1, C)."""
        out = {}
        for name, t in self.state_dict().items():
            t = t.detach().clone()
            if name.split(".")[-1] in _ROW_PARAMS and ".att." in name or name.endswith("ffn.x_k"):
                t = t.reshape(1, 1, -1)
            out[name] = t
        return out

    @classmethod
    def from_rwkv_state_dict(cls, sd: dict[str, Any], *, chunk: int = 16) -> RWKV7:
        """A model from RWKV-LM v7 / ``rwkv``-package keys (``emb.weight``,
        ``blocks.N.att.r_k``, ..., ``head.weight``); the shapes give the config. Layer 0's
        value-residual weights, which the model never uses, are ignored if present."""
        try:
            V, C = sd["emb.weight"].shape
            H, N = sd["blocks.0.att.r_k"].shape
            n_layer = len({int(k.split(".")[1]) for k in sd if k.startswith("blocks.")})
            ffn = sd["blocks.0.ffn.key.weight"].shape[0]
            lora = {
                name: sd[f"blocks.0.att.{key}"].shape[1]
                for name, key in (("d_decay", "w1"), ("d_aaa", "a1"), ("d_gate", "g1"))
            }
            lora["d_mv"] = sd["blocks.1.att.v1"].shape[1] if n_layer > 1 else 0
        except (KeyError, AttributeError, ValueError, IndexError) as exc:
            raise CheckpointError(f"not an RWKV-7 state dict ({exc!r})") from None
        if H * N != C or ffn % C:
            raise CheckpointError(
                f"inconsistent RWKV-7 sizes: n_embd {C}, r_k {H} x {N}, ffn width {ffn}"
            )
        cfg = RWKV7Config(
            vocab_size=V,
            n_layer=n_layer,
            n_embd=C,
            head_size=N,
            ffn_mult=ffn // C,
            chunk=chunk,
            **lora,
        )
        model = cls(cfg)
        loaded = {}
        for name, ref in model.state_dict().items():
            if name not in sd:
                raise CheckpointError(f"RWKV-7 state dict lacks {name}")
            t = torch.as_tensor(sd[name]).to(ref.dtype)
            if t.numel() == ref.numel():
                t = t.reshape(ref.shape)
            if t.shape != ref.shape:
                raise CheckpointError(
                    f"{name}: shape {tuple(t.shape)}, the model needs {tuple(ref.shape)}"
                )
            loaded[name] = t
        model.load_state_dict(loaded)
        return model

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
