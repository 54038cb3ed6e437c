"""Mamba-2 in torch: the SSD layer (state-space duality) as a chunked parallel form for
training and a recurrent ``step``.

>>> import torch
>>> from neurofabric.seq.mamba2 import Mamba2, Mamba2Config
>>> model = Mamba2(Mamba2Config(vocab_size=50, n_layer=2, d_model=32, head_dim=16), seed=0)
>>> tokens = torch.tensor([[1, 2, 3, 4]])
>>> logits, _ = model(tokens)                    # always (logits, state)
>>> state = model.init_state(1)
>>> for t in range(4):
...     step_logits, state = model.step(tokens[:, t], state)
>>> bool(torch.allclose(step_logits, logits[:, -1], atol=1e-4))
True

Block (Dao & Gu 2024; the layout of state-spaces/mamba's ``Mamba2`` and HF transformers'
``Mamba2ForCausalLM``): h = x + out_proj(y) after an RMSNorm. One input projection gives the
gate z (d_inner), xBC (d_inner + 2 G N) and dt (H heads); a causal depthwise conv1d and SiLU run
over xBC, which splits into x (H heads of P = head_dim channels), B and C (G groups of N; head
h reads group h // (H / G)). Per head the decay is a *scalar*: dt = softplus(dt + dt_bias),
A = -exp(A_log), and the state (P x N) evolves as

    h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T,        y_t = h_t C_t + D x_t,

then y is gated and normalized per group, ``RMSNorm(y * SiLU(z))``, and projected back. Because
the decay is one number per head and step, a chunk of Q steps is a masked matrix product (the
"dual" attention-like form): with s_t the running sum of dt A inside the chunk,

    y_t = sum_{j <= t} exp(s_t - s_j) (C_t . B_j) dt_j x_j  +  exp(s_t) C_t h_0  +  D x_t,

and the chunk's final state passes to the next chunk. :func:`ssd_ref` is the step-by-step spec,
:func:`ssd_chunked` the parallel form (checked against it to 1e-11 in float64).
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
from neurofabric.core.validation import check_choice, check_int, check_positive
from neurofabric.seq.kernels.torch_ops import CheckpointedRecurrence
from neurofabric.seq.mamba import SCANS, RMSNorm, ScanChoice, resolve_scan
from neurofabric.seq.output import LMOutput, check_tokens

__all__ = ["Mamba2", "Mamba2Config", "ssd_chunked", "ssd_numba", "ssd_ref"]


@dataclass(frozen=True)
class Mamba2Config:
    """``d_inner = expand * d_model`` splits into ``d_inner / head_dim`` heads; B and C come in
    ``n_groups`` groups of ``d_state`` (``n_groups`` must divide the heads); ``chunk`` is the
    length of the training form's blocks; ``tie_embeddings`` reads the logits off the input
    embedding (HF's default is a separate ``lm_head``)."""

    vocab_size: int = 256
    n_layer: int = 4
    d_model: int = 256
    d_state: int = 64
    d_conv: int = 4
    expand: int = 2
    head_dim: int = 32
    n_groups: int = 1
    chunk: int = 32
    eps: float = 1e-5
    tie_embeddings: bool = True
    scan: str = "auto"

    def __post_init__(self) -> None:
        for name in (
            "vocab_size",
            "n_layer",
            "d_model",
            "d_state",
            "d_conv",
            "expand",
            "head_dim",
            "n_groups",
            "chunk",
        ):
            check_int(name, getattr(self, name), min_value=1)
        check_positive("eps", self.eps)
        check_choice("scan", self.scan, SCANS)
        if self.d_inner % self.head_dim:
            raise ConfigError(
                f"`head_dim` must divide d_inner = expand * d_model = {self.d_inner}, got "
                f"{self.head_dim}; choose a head_dim such as "
                f"{math.gcd(self.d_inner, 64)}"
            )
        if self.n_heads % self.n_groups:
            raise ConfigError(
                f"`n_groups` must divide the number of heads ({self.n_heads} = d_inner / "
                f"head_dim), got {self.n_groups}; use 1 (every head shares B and C) or a divisor"
            )

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model

    @property
    def n_heads(self) -> int:
        return self.d_inner // self.head_dim

    @property
    def conv_dim(self) -> int:
        """Channels of the convolution: x, B and C."""
        return self.d_inner + 2 * self.n_groups * self.d_state

    def as_dict(self) -> dict:
        return asdict(self)


def _heads(t: torch.Tensor, n_heads: int) -> torch.Tensor:
    """B or C (..., G, N) -> (..., H, N): head h reads group h // (H / G)."""
    return t.repeat_interleave(n_heads // t.shape[-2], dim=-2)


def ssd_ref(x, dt, A, B, C, D, h0=None):
    """The sequential spec: x (b, L, H, P); dt (b, L, H) (after softplus); A (H,) (negative);
    B, C (b, L, G, N); D (H,); h0 (b, H, P, N) or None (zeros).

    Returns y (b, L, H, P) and the final state (b, H, P, N)."""
    b, L, H, P = x.shape
    B, C = _heads(B, H), _heads(C, H)
    N = B.shape[-1]
    h = torch.zeros(b, H, P, N, dtype=x.dtype, device=x.device) if h0 is None else h0
    ys = []
    for t in range(L):
        decay = torch.exp(dt[:, t] * A)[:, :, None, None]  # (b, H, 1, 1)
        h = decay * h + (dt[:, t, :, None] * x[:, t])[..., None] * B[:, t, :, None, :]
        ys.append((h * C[:, t, :, None, :]).sum(-1) + D[:, None] * x[:, t])
    return torch.stack(ys, dim=1), h


def ssd_chunked(x, dt, A, B, C, D, h0=None, chunk: int = 32):
    """:func:`ssd_ref` in blocks of ``chunk`` steps, every block at once: inside a block, the
    masked "attention" matrix exp(s_t - s_j) (C_t . B_j) for j <= t (every factor <= 1, since
    dt A <= 0) applied to dt x; across blocks, the state entering each block as a masked sum
    of the earlier blocks' contributions, decayed block to block the same way. No loop in
    Python, no slices (whose gradients would each be a full-size tensor of zeros); products
    with B and C run per group, not per head; a ragged last block is padded with dt = 0
    steps, which neither decay nor add anything."""
    b, L, H, P = x.shape
    G, N = B.shape[-2], B.shape[-1]
    k = H // G  # heads per group: head h reads group h // k
    h = torch.zeros(b, H, P, N, dtype=x.dtype, device=x.device) if h0 is None else h0
    q = min(chunk, L)
    n = -(-L // q)
    pad = n * q - L
    xdt = x * dt[..., None]  # (b, L, H, P)
    a = dt * A  # (b, L, H), <= 0
    if pad:
        xdt, a, B, C = (F.pad(t, (0, 0) * (t.ndim - 2) + (0, pad)) for t in (xdt, a, B, C))
    xdt = xdt.reshape(b, n, q, H, P)
    B, C = B.reshape(b, n, q, G, N), C.reshape(b, n, q, G, N)
    s = torch.cumsum(a.reshape(b, n, q, H), dim=2)  # (b, n, q, H)
    tril = torch.ones(q, q, dtype=torch.bool, device=x.device).tril()
    diff = s[:, :, :, None, :] - s[:, :, None, :, :]  # (b, n, t, j, H)
    decay = torch.exp(diff.masked_fill(~tril[None, None, :, :, None], float("-inf")))
    cb = torch.einsum("bctgn,bcjgn->bctjg", C, B)  # once per group
    scores = (decay.reshape(b, n, q, q, G, k) * cb[..., None]).reshape(b, n, q, q, H)
    y = torch.einsum("bctjh,bcjhp->bcthp", scores, xdt)
    # each block's own contribution to the state at its end
    to_end = torch.exp(s[:, :, -1:] - s)  # (b, n, q, H)
    weighted = (xdt * to_end[..., None]).reshape(b, n, q, G, k * P)
    own = torch.einsum("bcjgm,bcjgn->bcgmn", weighted, B).reshape(b, n, H, P, N)
    # the state entering block k (k = n: the final state): h0 decayed by blocks < k, plus block
    # c < k's contribution decayed by blocks c+1 .. k-1
    cs = torch.cumsum(s[:, :, -1], dim=1)  # (b, n, H): log-decay through block c
    into = F.pad(cs, (0, 0, 1, 0))  # (b, n + 1, H): log-decay before block k
    before = torch.ones(n + 1, n, dtype=torch.bool, device=x.device).tril(-1)  # c < k
    gaps = (into[:, :, None, :] - cs[:, None, :, :]).masked_fill(
        ~before[None, :, :, None], float("-inf")
    )
    states = torch.einsum("bkch,bchpn->bkhpn", torch.exp(gaps), own)
    states = states + torch.exp(into)[..., None, None] * h[:, None]  # (b, n + 1, H, P, N)
    entering = states[:, :n].reshape(b, n, G, k * P, N)
    y_in = torch.einsum("bctgn,bcgmn->bctgm", C, entering).reshape(b, n, q, H, P)
    y = y + y_in * torch.exp(s)[..., None]
    y = y.reshape(b, n * q, H, P)[:, :L]
    return y + D[:, None] * x, states[:, n]


#: the numba SSD keeps the state before every block of this many steps for its backward pass
SSD_CHECKPOINT_EVERY = 16


def ssd_numba(x, dt, A, B, C, D, h0=None):
    """:func:`ssd_ref` through numba kernels (CPU tensors, float32 or float64), differentiable in
    every input: sequential in time, parallel over sequences and heads; the forward keeps the
    state before every block of :data:`SSD_CHECKPOINT_EVERY` steps, the backward recomputes a
    block's states from it (``numba_cpu.ssd_fwd`` / ``ssd_bwd``; checked against the spec by
    gradcheck)."""
    from neurofabric.seq.kernels.numba_cpu import ssd_bwd, ssd_fwd

    resolve_scan("numba", x.device)
    if h0 is None:
        b, _, H, P = x.shape
        h0 = torch.zeros(b, H, P, B.shape[-1], dtype=x.dtype)
    kernels = (ssd_fwd, ssd_bwd)
    return CheckpointedRecurrence.apply(kernels, SSD_CHECKPOINT_EVERY, h0, x, dt, A, B, C, D)


class GatedRMSNorm(nn.Module):
    """RMSNorm(y * SiLU(z)) over groups of ``d / n_groups`` channels (the gate first, as in
    Mamba-2's ``norm_before_gate=False``)."""

    def __init__(self, d: int, n_groups: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.n_groups, self.eps = n_groups, eps

    def forward(self, y, z):
        g = y * F.silu(z)
        shape = g.shape
        g = g.reshape(*shape[:-1], self.n_groups, shape[-1] // self.n_groups)
        g = g * torch.rsqrt(g.pow(2).mean(-1, keepdim=True) + self.eps)
        return g.reshape(shape) * self.weight


class Mixer2(nn.Module):
    def __init__(self, cfg: Mamba2Config) -> None:
        super().__init__()
        self.cfg = cfg
        di, H = cfg.d_inner, cfg.n_heads
        self.in_proj = nn.Linear(cfg.d_model, di + cfg.conv_dim + H, bias=False)
        self.conv1d = nn.Conv1d(
            cfg.conv_dim, cfg.conv_dim, cfg.d_conv, groups=cfg.conv_dim, bias=True
        )
        self.dt_bias = nn.Parameter(torch.zeros(H))
        self.A_log = nn.Parameter(torch.zeros(H))
        self.D = nn.Parameter(torch.ones(H))
        self.norm = GatedRMSNorm(di, cfg.n_groups, cfg.eps)
        self.out_proj = nn.Linear(di, cfg.d_model, bias=False)

    def _split(self, zxbcdt):
        c = self.cfg
        return torch.split(zxbcdt, [c.d_inner, c.conv_dim, c.n_heads], dim=-1)

    def _ssm_inputs(self, xbc, dt):
        c = self.cfg
        x, B, C = torch.split(xbc, [c.d_inner, c.n_groups * c.d_state, c.n_groups * c.d_state], -1)
        lead = x.shape[:-1]
        return (
            x.reshape(*lead, c.n_heads, c.head_dim),
            F.softplus(dt + self.dt_bias),
            -torch.exp(self.A_log),
            B.reshape(*lead, c.n_groups, c.d_state),
            C.reshape(*lead, c.n_groups, c.d_state),
        )

    def forward(self, u, conv_state, ssm_state):
        c = self.cfg
        z, xbc, dt = self._split(self.in_proj(u))  # (b, L, .)
        seq = torch.cat([conv_state[:, :, 1:], xbc.transpose(1, 2)], dim=2)  # (b, cd, K-1+L)
        new_conv = torch.cat([conv_state, xbc.transpose(1, 2)], dim=2)[:, :, -c.d_conv :]
        xbc = F.silu(
            F.conv1d(seq, self.conv1d.weight, self.conv1d.bias, groups=c.conv_dim).transpose(1, 2)
        )
        x, dt, A, B, C = self._ssm_inputs(xbc, dt)
        if resolve_scan(c.scan, u.device) == "numba":
            y, ssm_state = ssd_numba(x, dt, A, B, C, self.D, ssm_state)
        else:
            y, ssm_state = ssd_chunked(x, dt, A, B, C, self.D, ssm_state, chunk=c.chunk)
        y = self.norm(y.reshape(*y.shape[:2], c.d_inner), z)
        return self.out_proj(y), new_conv, ssm_state

    def step(self, u, conv_state, ssm_state):
        c = self.cfg
        z, xbc, dt = self._split(self.in_proj(u))  # (b, .)
        conv_state = torch.cat([conv_state[:, :, 1:], xbc[:, :, None]], dim=2)
        xbc = F.silu((conv_state * self.conv1d.weight[:, 0]).sum(-1) + self.conv1d.bias)
        x, dt, A, B, C = self._ssm_inputs(xbc, dt)  # x (b, H, P), dt (b, H), B, C (b, G, N)
        B, C = _heads(B, c.n_heads), _heads(C, c.n_heads)
        ssm_state = (
            torch.exp(dt * A)[:, :, None, None] * ssm_state
            + (dt[..., None] * x)[..., None] * B[:, :, None, :]
        )
        y = (ssm_state * C[:, :, None, :]).sum(-1) + self.D[:, None] * x
        y = self.norm(y.reshape(y.shape[0], c.d_inner), z)
        return self.out_proj(y), conv_state, ssm_state


class Layer(nn.Module):
    def __init__(self, cfg: Mamba2Config) -> None:
        super().__init__()
        self.norm = RMSNorm(cfg.d_model, cfg.eps)
        self.mixer = Mixer2(cfg)


class Mamba2(ScanChoice, nn.Module):
    """The language model: ``forward(tokens) -> (logits, state)``, ``step(token, state)``."""

    def __init__(self, config: Mamba2Config | None = None, *, seed: Any = 0) -> None:
        super().__init__()
        self.config = cfg = config or Mamba2Config()
        gen = torch.Generator().manual_seed(seed_to_int(seed))
        self.embeddings = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList([Layer(cfg) for _ in range(cfg.n_layer)])
        self.norm_f = RMSNorm(cfg.d_model, cfg.eps)
        self.lm_head = (
            None if cfg.tie_embeddings else nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        )
        with torch.no_grad():  # every parameter from `seed`, none from torch's global RNG
            for p in self.parameters():
                if p.ndim >= 2:
                    fan_in = p.shape[1] * (p.shape[2] if p.ndim == 3 else 1)
                    bound = 1.0 / math.sqrt(fan_in)
                    p.uniform_(-bound, bound, generator=gen)
            H, k = cfg.n_heads, cfg.d_conv
            for layer in self.layers:
                m = layer.mixer
                m.conv1d.bias.uniform_(-1 / math.sqrt(k), 1 / math.sqrt(k), generator=gen)
                # dt: log-uniform in [1e-3, 1e-1], stored as softplus^-1; A uniform in [1, 16]
                dt = torch.exp(
                    torch.rand(H, generator=gen) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3)
                )
                m.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))
                m.A_log.copy_(torch.log(1 + 15 * torch.rand(H, generator=gen)))

    def init_state(self, batch: int = 1, *, dtype=None):
        """Zero (conv (B, conv_dim, d_conv), ssm (B, H, head_dim, d_state)) states per layer."""
        dtype = dtype or self.embeddings.weight.dtype
        c, dev = self.config, self.embeddings.weight.device
        conv = (batch, c.conv_dim, c.d_conv)
        ssm = (batch, c.n_heads, c.head_dim, c.d_state)
        return [
            (torch.zeros(conv, dtype=dtype, device=dev), torch.zeros(ssm, dtype=dtype, device=dev))
            for _ in self.layers
        ]

    def _logits(self, x):
        x = self.norm_f(x)
        return x @ self.embeddings.weight.T if self.lm_head is None else self.lm_head(x)

    def forward(self, tokens, state=None) -> LMOutput:
        """``(logits, state)``: logits (B, T, vocab) of every position and the state after the
        last one; with ``state`` it continues a sequence."""
        if tokens.ndim == 1:
            tokens = tokens[None]
        check_tokens(tokens, self.config.vocab_size)
        state = state if state is not None else self.init_state(tokens.shape[0])
        x = self.embeddings(tokens)
        new = []
        for layer, (cs, ss) in zip(self.layers, state, strict=True):
            out, cs, ss = layer.mixer(layer.norm(x), cs, ss)
            x = x + out
            new.append((cs, ss))
        return LMOutput(self._logits(x), new)

    def step(self, token, state):
        """Logits (B, vocab) of one token per sequence, and the new state."""
        token = torch.as_tensor(token).reshape(-1)
        check_tokens(token, self.config.vocab_size)
        x = self.embeddings(token)
        new = []
        for layer, (cs, ss) in zip(self.layers, state, strict=True):
            out, cs, ss = layer.mixer.step(layer.norm(x), cs, ss)
            x = x + out
            new.append((cs, ss))
        return self._logits(x), new

    # ------------------------------------------------------------------ checkpoints
    def to_hf_state_dict(self) -> dict[str, torch.Tensor]:
        """Weights under HF transformers' ``Mamba2ForCausalLM`` keys (``lm_head.weight`` is the
        embedding when tied)."""
        head = self.embeddings.weight if self.lm_head is None else self.lm_head.weight
        out = {
            "backbone.embeddings.weight": self.embeddings.weight.detach().clone(),
            "backbone.norm_f.weight": self.norm_f.weight.detach().clone(),
            "lm_head.weight": head.detach().clone(),
        }
        for k, v in self.layers.state_dict().items():
            out[f"backbone.layers.{k}"] = v.detach().clone()
        return out

    def hf_config(self) -> dict:
        """The ``config.json`` fields of HF's ``Mamba2Config`` for these weights."""
        c = self.config
        return {
            "model_type": "mamba2",
            "vocab_size": c.vocab_size,
            "hidden_size": c.d_model,
            "state_size": c.d_state,
            "num_hidden_layers": c.n_layer,
            "num_heads": c.n_heads,
            "head_dim": c.head_dim,
            "n_groups": c.n_groups,
            "expand": c.expand,
            "conv_kernel": c.d_conv,
            "layer_norm_epsilon": c.eps,
            "use_bias": False,
            "use_conv_bias": True,
            "chunk_size": c.chunk,
            "tie_word_embeddings": c.tie_embeddings,
        }

    @classmethod
    def from_hf_state_dict(
        cls,
        sd: dict[str, Any],
        *,
        n_groups: int = 1,
        eps: float = 1e-5,
        chunk: int = 32,
        tie_embeddings: bool | None = None,
    ) -> Mamba2:
        """HF transformers (``backbone.embeddings``) or state-spaces/mamba
        (``backbone.embedding``) keys. The shapes give every size but the split of B and C into
        groups: pass ``n_groups`` (HF's ``config.json`` has it; :meth:`from_hf_config` reads
        both). ``tie_embeddings`` None: tied when ``lm_head.weight`` is absent or equal to the
        embedding."""
        sd = {k.replace("backbone.embedding.", "backbone.embeddings."): v for k, v in sd.items()}
        try:
            V, d = sd["backbone.embeddings.weight"].shape
            n_layer = len({int(k.split(".")[2]) for k in sd if k.startswith("backbone.layers.")})
            (H,) = sd["backbone.layers.0.mixer.A_log"].shape
            (di,) = sd["backbone.layers.0.mixer.norm.weight"].shape
            conv_dim, _, K = sd["backbone.layers.0.mixer.conv1d.weight"].shape
            proj = sd["backbone.layers.0.mixer.in_proj.weight"].shape[0]
        except (KeyError, ValueError, AttributeError) as exc:
            raise CheckpointError(f"not a Mamba-2 state dict ({exc})") from None
        gn2 = conv_dim - di
        if proj != di + conv_dim + H:
            raise CheckpointError(
                f"in_proj has {proj} outputs, Mamba-2 without the extra MLP needs "
                f"d_inner + conv_dim + heads = {di + conv_dim + H} (checkpoints with d_mlp > 0 "
                f"are not supported)"
            )
        if di % d or di % H or gn2 <= 0 or gn2 % (2 * n_groups):
            raise CheckpointError(
                f"inconsistent Mamba-2 sizes: d_model {d}, d_inner {di}, {H} heads, conv "
                f"channels {conv_dim}, n_groups {n_groups}; check `n_groups` against the "
                f"checkpoint's config.json"
            )
        head = sd.get("lm_head.weight")
        if tie_embeddings is None:
            tie_embeddings = head is None or torch.equal(
                torch.as_tensor(head), torch.as_tensor(sd["backbone.embeddings.weight"])
            )
        cfg = Mamba2Config(
            vocab_size=V,
            n_layer=n_layer,
            d_model=d,
            d_state=gn2 // (2 * n_groups),
            d_conv=K,
            expand=di // d,
            head_dim=di // H,
            n_groups=n_groups,
            chunk=chunk,
            eps=eps,
            tie_embeddings=tie_embeddings,
        )
        model = cls(cfg)
        loaded = {}
        for k, ref in model.state_dict().items():
            src = {
                "embeddings.weight": "backbone.embeddings.weight",
                "norm_f.weight": "backbone.norm_f.weight",
                "lm_head.weight": "lm_head.weight",
            }.get(k, "backbone." + k)
            if src not in sd:
                raise CheckpointError(f"Mamba-2 state dict lacks {src}")
            t = torch.as_tensor(sd[src]).to(ref.dtype)
            if t.shape != ref.shape:
                raise CheckpointError(
                    f"{src}: shape {tuple(t.shape)}, the model needs {tuple(ref.shape)}"
                )
            loaded[k] = t
        model.load_state_dict(loaded)
        return model

    @classmethod
    def from_hf_config(cls, config: dict, sd: dict[str, Any], *, chunk: int = 32) -> Mamba2:
        """Weights in HF's layout with the ``config.json`` that came with them (its
        ``n_groups``, ``layer_norm_epsilon``, ``tie_word_embeddings``); settings this model
        does not implement raise :class:`CheckpointError` instead of loading wrongly."""
        unsupported = {
            "use_bias": (config.get("use_bias", False), False),
            "use_conv_bias": (config.get("use_conv_bias", True), True),
            "hidden_act": (config.get("hidden_act", "silu"), "silu"),
            "time_step_limit": (
                tuple(config.get("time_step_limit", (0.0, math.inf))),
                (0.0, math.inf),
            ),
        }
        for name, (got, need) in unsupported.items():
            if got != need:
                raise CheckpointError(f"config {name}={got!r} is not supported (only {need!r})")
        model = cls.from_hf_state_dict(
            sd,
            n_groups=int(config.get("n_groups", 1)),
            eps=float(config.get("layer_norm_epsilon", 1e-5)),
            chunk=chunk,
            tie_embeddings=bool(config.get("tie_word_embeddings", False)),
        )
        for key, want in (
            ("hidden_size", model.config.d_model),
            ("state_size", model.config.d_state),
            ("num_heads", model.config.n_heads),
            ("head_dim", model.config.head_dim),
        ):
            if key in config and int(config[key]) != want:
                raise CheckpointError(f"config {key}={config[key]} but the weights give {want}")
        return model

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
