"""Mamba-1 in torch: a chunked parallel selective scan for training, a recurrent ``step``.

>>> import torch
>>> from neurofabric.seq.mamba import Mamba, MambaConfig
>>> model = Mamba(MambaConfig(vocab_size=50, n_layer=2, d_model=32), seed=0)
>>> tokens = torch.tensor([[1, 2, 3, 4]])
>>> logits, _ = model(tokens)                    # always (logits, state)
>>> state = model.init_state(1)
>>> for t in range(4):
...     step_logits, state = model.step(tokens[:, t], state)
>>> bool(torch.allclose(step_logits, logits[:, -1], atol=1e-4))
True

Block (Gu & Dao 2023; the layout of state-spaces/mamba and HF transformers): h = x +
out_proj(y), with RMSNorm, in_proj to (u, z), a causal depthwise conv1d and SiLU on u,
input-dependent delta (softplus of dt_proj on a low-rank projection), B and C from x_proj,
A = -exp(A_log), the selective scan h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t,
y_t = C_t h_t + D u_t, gated by SiLU(z). The state per sequence is the conv window
(d_inner x d_conv) and the SSM state (d_inner x d_state) per layer.

The training scan (``MambaConfig.scan``): "auto" (the default) runs the numba kernels on CPU
tensors when numba is installed and the chunked torch scan otherwise (GPUs); "numba" insists on
the numba kernels (CPU tensors only: on another device it raises, never moves them to numpy);
"chunked" always runs the torch scan. :attr:`Mamba.scan_backend` names the one that runs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from neurofabric.core.errors import CheckpointError, ShapeError
from neurofabric.core.rng import seed_to_int
from neurofabric.core.validation import check_choice, check_int, check_positive
from neurofabric.seq import kernels as _kernels
from neurofabric.seq.output import LMOutput

__all__ = [
    "SCANS",
    "Mamba",
    "MambaConfig",
    "resolve_scan",
    "selective_scan",
    "selective_scan_numba",
    "selective_scan_ref",
]

#: the values of ``MambaConfig.scan``
SCANS = ("auto", "numba", "chunked")


@dataclass(frozen=True)
class MambaConfig:
    vocab_size: int = 256
    n_layer: int = 4
    d_model: int = 384
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    chunk: int = 16
    eps: float = 1e-5
    scan: str = "auto"

    def __post_init__(self) -> None:
        for name in ("vocab_size", "n_layer", "d_model", "d_state", "d_conv", "expand", "chunk"):
            check_int(name, getattr(self, name), min_value=1)
        check_positive("eps", self.eps)
        check_choice("scan", self.scan, SCANS)

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model

    @property
    def dt_rank(self) -> int:
        return math.ceil(self.d_model / 16)

    def as_dict(self) -> dict:
        return asdict(self)


def resolve_scan(scan: str, device: torch.device | str = "cpu") -> str:
    """The scan that ``scan`` ("auto", "numba" or "chunked") runs on ``device``: "numba" or
    "chunked" (:func:`neurofabric.seq.kernels.resolve_training_kernel`)."""
    return _kernels.resolve_training_kernel("scan", scan, device, "chunked", "set_scan")


def selective_scan_ref(u, delta, A, B, C, D, h0=None):
    """The sequential spec: u, delta (b, L, d); A (d, n); B, C (b, L, n); D (d).

    Returns y (b, L, d) and the final state (b, d, n)."""
    b, L, d = u.shape
    h = torch.zeros(b, d, A.shape[1], dtype=u.dtype, device=u.device) if h0 is None else h0
    ys = []
    for t in range(L):
        h = (
            torch.exp(delta[:, t, :, None] * A) * h
            + delta[:, t, :, None] * B[:, t, None, :] * u[:, t, :, None]
        )
        ys.append((h * C[:, t, None, :]).sum(-1) + D * u[:, t])
    return torch.stack(ys, dim=1), h


def selective_scan(u, delta, A, B, C, D, h0=None, chunk: int = 16):
    """The same scan, chunk by chunk: within a chunk h_t = sum_s exp(S_t - S_s) b_s + exp(S_t) h0
    with S the cumulative sum of delta A (<= 0, so every factor is <= 1), all t at once."""
    bsz, L, d = u.shape
    n = A.shape[1]
    h = torch.zeros(bsz, d, n, dtype=u.dtype, device=u.device) if h0 is None else h0
    ys = []
    for s in range(0, L, chunk):
        dl = delta[:, s : s + chunk]  # (b, l, d)
        width = dl.shape[1]
        logs = dl[..., None] * A  # (b, l, d, n), <= 0
        S = torch.cumsum(logs, dim=1)
        inc = (
            dl[..., None] * B[:, s : s + chunk, None, :] * u[:, s : s + chunk, :, None]
        )  # (b, l, d, n)
        # pairwise decay exp(S_t - S_j) for j <= t (masked above the diagonal)
        diff = S[:, :, None] - S[:, None, :]  # (b, t, j, d, n)
        mask = torch.ones(width, width, dtype=torch.bool, device=u.device).tril()
        weight = torch.exp(diff.masked_fill(~mask[None, :, :, None, None], float("-inf")))
        hs = (weight * inc[:, None]).sum(dim=2) + torch.exp(S) * h[:, None]  # (b, l, d, n)
        ys.append((hs * C[:, s : s + chunk, None, :]).sum(-1) + D * u[:, s : s + chunk])
        h = hs[:, -1]
    return torch.cat(ys, dim=1), h


class _NumbaScan(torch.autograd.Function):
    """The selective scan on CPU by numba kernels (sequential in time, exact gradients by the
    reverse-time recursion); checked against the torch spec by gradcheck."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, h0):
        from neurofabric.seq.kernels.numba_cpu import selective_scan_fwd

        ins = [t.detach().contiguous() for t in (u, delta, A, B, C, D, h0)]
        ctx.fast = u.dtype == torch.float32  # the vectorized float32 exp (numba_cpu.exp_row)
        y, hs = selective_scan_fwd(*[t.numpy() for t in ins], ctx.fast)
        hs = torch.from_numpy(hs)
        # saved through autograd (not as ctx attributes) so that saved-tensor hooks, and so
        # ``seq.memory.measure_memory``, see what the backward pass keeps alive
        ctx.save_for_backward(*ins, hs)
        # hs is state-major (b, L, n, d): the last state as (b, d, n)
        return torch.from_numpy(y), hs[:, -1].transpose(1, 2).contiguous()

    @staticmethod
    def backward(ctx, dy, dh_last):
        from neurofabric.seq.kernels.numba_cpu import selective_scan_bwd

        *ins, hs = ctx.saved_tensors
        args = [t.numpy() for t in ins]
        hs = hs.numpy()
        dy = np.zeros_like(args[0]) if dy is None else dy.contiguous().numpy()
        dh = np.zeros_like(args[6]) if dh_last is None else dh_last.contiguous().numpy()
        grads = selective_scan_bwd(*args, hs, dy, dh, ctx.fast)
        return tuple(torch.from_numpy(np.ascontiguousarray(g)) for g in grads)


def selective_scan_numba(u, delta, A, B, C, D, h0=None):
    """The same scan through numba kernels (CPU tensors; float32 or float64), differentiable.
    Tensors on another device raise :class:`~neurofabric.core.errors.BackendUnavailableError`."""
    resolve_scan("numba", u.device)
    if h0 is None:
        h0 = torch.zeros(u.shape[0], u.shape[2], A.shape[1], dtype=u.dtype)
    return _NumbaScan.apply(u, delta, A, B, C, D, h0)


class ScanChoice:
    """The training-scan choice of a Mamba model (Mamba-1 and Mamba-2): a ``config`` with a
    ``scan`` field, the embedding ``embeddings`` and ``layers`` whose ``mixer`` reads
    ``mixer.cfg.scan``."""

    @property
    def scan_backend(self) -> str:
        """The training scan that runs for the parameters' device: "numba" or "chunked"."""
        return resolve_scan(self.config.scan, self.embeddings.weight.device)

    def set_scan(self, scan: str) -> None:
        """Choose the training scan ("auto", "numba" or "chunked") of a built model."""
        check_choice("scan", scan, SCANS)
        self.config = replace(self.config, scan=scan)
        for layer in self.layers:
            layer.mixer.cfg = self.config


class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class Mixer(nn.Module):
    def __init__(self, cfg: MambaConfig) -> None:
        super().__init__()
        di, n, r = cfg.d_inner, cfg.d_state, cfg.dt_rank
        self.cfg = cfg
        self.in_proj = nn.Linear(cfg.d_model, 2 * di, bias=False)
        self.conv1d = nn.Conv1d(di, di, cfg.d_conv, groups=di, padding=cfg.d_conv - 1, bias=True)
        self.x_proj = nn.Linear(di, r + 2 * n, bias=False)
        self.dt_proj = nn.Linear(r, di, bias=True)
        self.A_log = nn.Parameter(
            torch.log(torch.arange(1, n + 1, dtype=torch.float32)).repeat(di, 1)
        )
        self.D = nn.Parameter(torch.ones(di))
        self.out_proj = nn.Linear(di, cfg.d_model, bias=False)

    def _ssm_inputs(self, u):
        r, n = self.cfg.dt_rank, self.cfg.d_state
        dbc = self.x_proj(u)
        dt, B, C = torch.split(dbc, [r, n, n], dim=-1)
        return F.softplus(self.dt_proj(dt)), B, C

    def forward(self, x, conv_state, ssm_state):
        u, z = self.in_proj(x).chunk(2, dim=-1)  # (b, L, di)
        # causal conv over the previous window + this chunk
        seq = torch.cat([conv_state[:, :, 1:], u.transpose(1, 2)], dim=2)  # (b, di, K-1+L)
        w = self.conv1d.weight  # (di, 1, K)
        conv = F.conv1d(seq, w, self.conv1d.bias, groups=self.cfg.d_inner)  # (b, di, L)
        new_conv = torch.cat([conv_state, u.transpose(1, 2)], dim=2)[:, :, -self.cfg.d_conv :]
        u = F.silu(conv.transpose(1, 2))
        delta, B, C = self._ssm_inputs(u)
        A = -torch.exp(self.A_log)
        if resolve_scan(self.cfg.scan, u.device) == "numba":
            y, ssm_state = selective_scan_numba(u, delta, A, B, C, self.D, ssm_state)
        else:
            y, ssm_state = selective_scan(
                u, delta, A, B, C, self.D, ssm_state, chunk=self.cfg.chunk
            )
        return self.out_proj(y * F.silu(z)), new_conv, ssm_state

    def step(self, x, conv_state, ssm_state):
        u, z = self.in_proj(x).chunk(2, dim=-1)  # (b, di)
        conv_state = torch.cat([conv_state[:, :, 1:], u[:, :, None]], dim=2)
        u = F.silu((conv_state * self.conv1d.weight[:, 0]).sum(-1) + self.conv1d.bias)
        delta, B, C = self._ssm_inputs(u)
        A = -torch.exp(self.A_log)
        ssm_state = (
            torch.exp(delta[..., None] * A) * ssm_state
            + delta[..., None] * B[:, None, :] * u[..., None]
        )
        y = (ssm_state * C[:, None, :]).sum(-1) + self.D * u
        return self.out_proj(y * F.silu(z)), conv_state, ssm_state


class Layer(nn.Module):
    def __init__(self, cfg: MambaConfig) -> None:
        super().__init__()
        self.norm = RMSNorm(cfg.d_model, cfg.eps)
        self.mixer = Mixer(cfg)


class Mamba(ScanChoice, nn.Module):
    """The language model: ``forward(tokens) -> logits``, ``step(token, state)``."""

    def __init__(self, config: MambaConfig | None = None, *, seed: Any = 0) -> None:
        super().__init__()
        self.config = cfg = config or MambaConfig()
        gen = torch.Generator().manual_seed(seed_to_int(seed))
        self.embeddings = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList([Layer(cfg) for _ in range(cfg.n_layer)])
        self.norm_f = RMSNorm(cfg.d_model, cfg.eps)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("weight") and p.ndim >= 2:
                    fan_in = p.shape[1] * (p.shape[2] if p.ndim == 3 else 1)
                    bound = 1.0 / math.sqrt(fan_in)
                    p.uniform_(-bound, bound, generator=gen)
            for layer in self.layers:  # every parameter from `seed`, none from torch's global RNG
                k = cfg.d_conv
                layer.mixer.conv1d.bias.uniform_(-1 / math.sqrt(k), 1 / math.sqrt(k), generator=gen)
            for layer in self.layers:  # dt bias: softplus^-1 of dt in [1e-3, 1e-1] (log-uniform)
                dt = torch.exp(
                    torch.rand(cfg.d_inner, generator=gen) * (math.log(0.1) - math.log(1e-3))
                    + math.log(1e-3)
                )
                layer.mixer.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))

    def init_state(self, batch: int = 1, *, dtype=None):
        """Zero (conv, ssm) states per layer, on the parameters' device."""
        dtype = dtype or self.embeddings.weight.dtype
        c, dev = self.config, self.embeddings.weight.device
        conv = (batch, c.d_inner, c.d_conv)
        ssm = (batch, c.d_inner, c.d_state)
        return [
            (torch.zeros(conv, dtype=dtype, device=dev), torch.zeros(ssm, dtype=dtype, device=dev))
            for _ in self.layers
        ]

    def _check(self, tokens):
        if tokens.numel() and (tokens.min() < 0 or tokens.max() >= self.config.vocab_size):
            raise ShapeError(f"token ids must lie in [0, {self.config.vocab_size})")

    def forward(self, tokens, state=None) -> LMOutput:
        """``(logits, state)``: logits (B, T, vocab) of every position and the state after the
        last one; with ``state`` it continues a sequence."""
        if tokens.ndim == 1:
            tokens = tokens[None]
        self._check(tokens)
        state = state if state is not None else self.init_state(tokens.shape[0])
        x = self.embeddings(tokens)
        new = []
        for layer, (cs, ss) in zip(self.layers, state, strict=True):
            out, cs, ss = layer.mixer(layer.norm(x), cs, ss)
            x = x + out
            new.append((cs, ss))
        return LMOutput(self.norm_f(x) @ self.embeddings.weight.T, new)

    def step(self, token, state):
        token = torch.as_tensor(token).reshape(-1)
        self._check(token)
        x = self.embeddings(token)
        new = []
        for layer, (cs, ss) in zip(self.layers, state, strict=True):
            out, cs, ss = layer.mixer.step(layer.norm(x), cs, ss)
            x = x + out
            new.append((cs, ss))
        return self.norm_f(x) @ self.embeddings.weight.T, new

    # ------------------------------------------------------------------ checkpoints
    def to_hf_state_dict(self) -> dict[str, torch.Tensor]:
        """Weights under HF transformers' MambaForCausalLM keys."""
        out = {
            "backbone.embeddings.weight": self.embeddings.weight.detach().clone(),
            "backbone.norm_f.weight": self.norm_f.weight.detach().clone(),
            "lm_head.weight": self.embeddings.weight.detach().clone(),
        }
        for k, v in self.layers.state_dict().items():
            out[f"backbone.layers.{k}"] = v.detach().clone()
        return out

    @classmethod
    def from_hf_state_dict(cls, sd: dict[str, Any], *, chunk: int = 16) -> Mamba:
        """HF transformers (``backbone.embeddings``) or state-spaces/mamba
        (``backbone.embedding``) keys; the shapes give the config."""
        sd = {k.replace("backbone.embedding.", "backbone.embeddings."): v for k, v in sd.items()}
        try:
            V, d = sd["backbone.embeddings.weight"].shape
            n_layer = len({int(k.split(".")[2]) for k in sd if k.startswith("backbone.layers.")})
            di, n = sd["backbone.layers.0.mixer.A_log"].shape
            K = sd["backbone.layers.0.mixer.conv1d.weight"].shape[-1]
        except (KeyError, ValueError, AttributeError) as exc:
            raise CheckpointError(f"not a Mamba state dict ({exc})") from None
        if di % d:
            raise CheckpointError(f"d_inner {di} is not a multiple of d_model {d}")
        cfg = MambaConfig(
            vocab_size=V,
            n_layer=n_layer,
            d_model=d,
            d_state=n,
            d_conv=K,
            expand=di // d,
            chunk=chunk,
        )
        model = cls(cfg)
        own = model.state_dict()
        loaded = {}
        for k, ref in own.items():
            src = "backbone." + k if not k.startswith("backbone.") else k
            if k == "embeddings.weight":
                src = "backbone.embeddings.weight"
            elif k == "norm_f.weight":
                src = "backbone.norm_f.weight"
            if src not in sd:
                raise CheckpointError(f"Mamba state dict lacks {src}")
            t = torch.as_tensor(sd[src]).to(ref.dtype)
            if t.shape != ref.shape:
                raise CheckpointError(
                    f"{src}: shape {tuple(t.shape)}, the model needs {tuple(ref.shape)}"
                )
            loaded[k] = t
        model.load_state_dict(loaded)
        return model

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
