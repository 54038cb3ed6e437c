"""RWKV-4 in torch: a chunked parallel ``forward`` for training, a recurrent ``step`` for decoding.

>>> import torch
>>> from neurofabric.seq import RWKV4, RWKVConfig
>>> model = RWKV4(RWKVConfig(vocab_size=50, n_layer=2, n_embd=32), seed=0)
>>> tokens = torch.tensor([[1, 2, 3, 4]])
>>> logits, _ = model(tokens)                    # (1, 4, 50); always (logits, state)
>>> state = model.init_state(1)
>>> for t in range(4):
...     step_logits, state = model.step(tokens[:, t], state)
>>> bool(torch.allclose(step_logits, logits[:, -1], atol=1e-4))
True

Block (Peng et al. 2023; the layout of RWKV-LM v4 and the ``rwkv`` package):

* time mixing: xx = LN1(x); token shift mixes xx with the previous token's xx by
  ``time_mix_{k,v,r}``; r = sigmoid(W_r xr), k = W_k xk, v = W_v xv; wkv as in
  ``kernels.reference.wkv_ref`` with decay = -exp(time_decay) and bonus time_first;
  x += W_o (r * wkv);
* channel mixing: xx = LN2(x); shifted mixes; x += sigmoid(W_r xr) * W_v relu(W_k xk)^2.

Embeddings pass ``blocks.0.ln0`` first; the head reads ``ln_out``. The state per sequence is
5 vectors of n_embd per layer (two shifted inputs, the WKV sums a, b and the exponent p),
whatever the sequence length.

The training WKV (``RWKVConfig.wkv``): "auto" (the default) runs the numba kernel pair on CPU
tensors when numba is installed (``torch_ops.wkv_numba``) and the chunked torch form otherwise
(GPUs); "numba" insists on the kernels (a clear error where they cannot run); "chunked" always
runs the torch form. :attr:`RWKV4.wkv_backend` names the one that runs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from neurofabric.core.errors import CheckpointError
from neurofabric.core.rng import seed_to_int
from neurofabric.core.validation import check_choice, check_int
from neurofabric.seq import kernels as _kernels
from neurofabric.seq.kernels.torch_ops import (
    shift_mix_numba,
    shift_mix_torch,
    wkv_chunked,
    wkv_init_state,
    wkv_numba,
    wkv_step,
)
from neurofabric.seq.output import LMOutput, check_tokens

__all__ = ["WKVS", "RWKV4", "RWKVConfig", "RWKVState", "resolve_wkv"]

#: the values of ``RWKVConfig.wkv`` (and ``RWKV7Config.wkv``)
WKVS = ("auto", "numba", "chunked")


def resolve_wkv(wkv: str, device: torch.device | str = "cpu") -> str:
    """The training kernel ``wkv`` ("auto", "numba" or "chunked") runs on ``device``: "numba"
    or "chunked" (:func:`neurofabric.seq.kernels.resolve_training_kernel`)."""
    return _kernels.resolve_training_kernel("wkv", wkv, device, "chunked", "set_wkv")


class WKVChoice:
    """The training-WKV choice of an RWKV model (RWKV-4 and RWKV-7): a ``config`` with a ``wkv``
    field, the embedding ``emb`` and ``blocks`` whose ``att`` reads ``att.cfg.wkv`` (and whose
    ``ffn`` reads ``ffn.cfg.wkv`` where it has a ``cfg``: RWKV-4's token shift goes with it)."""

    @property
    def wkv_backend(self) -> str:
        """The training WKV that runs for the parameters' device: "numba" or "chunked"."""
        return resolve_wkv(self.config.wkv, self.emb.weight.device)

    def set_wkv(self, wkv: str) -> None:
        """Choose the training WKV ("auto", "numba" or "chunked") of a built model."""
        check_choice("wkv", wkv, WKVS)
        self.config = replace(self.config, wkv=wkv)
        for blk in self.blocks:
            blk.att.cfg = self.config
            if hasattr(blk.ffn, "cfg"):
                blk.ffn.cfg = self.config


def token_mix(xx, shift, mixes, wkv: str = "auto"):
    """Each mix of RWKV-4's token shift, ``x_{t-1} + (x_t - x_{t-1}) m``: for sequences xx
    (B, T, C), x_{-1} = ``shift`` (B, C), by the fused numba kernel where the training WKV
    ``wkv`` resolves to numba (:func:`shift_mix_numba`), else by torch; for one token xx (B, C),
    against ``shift``."""
    if xx.ndim == 2:
        diff = xx - shift
        return tuple(torch.addcmul(shift, diff, m) for m in mixes)
    if resolve_wkv(wkv, xx.device) == "numba":
        return shift_mix_numba(xx, shift, mixes)
    return shift_mix_torch(xx, shift, mixes)


@dataclass(frozen=True)
class RWKVConfig:
    vocab_size: int = 256
    n_layer: int = 4
    n_embd: int = 384
    ffn_mult: int = 4
    tie_head: bool = False
    chunk: int = 32
    wkv: str = "auto"

    def __post_init__(self) -> None:
        for name in ("vocab_size", "n_layer", "n_embd", "ffn_mult", "chunk"):
            check_int(name, getattr(self, name), min_value=1)
        check_choice("wkv", self.wkv, WKVS)

    @property
    def ffn_dim(self) -> int:
        return self.ffn_mult * self.n_embd

    def as_dict(self) -> dict:
        return asdict(self)


#: per layer: time-mix shift, WKV (a, b, p), channel-mix shift; each (batch, n_embd)
RWKVState = list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]


class TimeMix(nn.Module):
    def __init__(self, cfg: RWKVConfig, layer: int) -> None:
        super().__init__()
        C = cfg.n_embd
        r01 = layer / max(cfg.n_layer - 1, 1)
        r10 = 1.0 - layer / cfg.n_layer
        h = torch.arange(C, dtype=torch.float32)
        x = h / C
        # RWKV-LM v4's initialization: decay speeds from -5 to 3, zigzag bonus, mixes by depth
        self.time_decay = nn.Parameter(-5 + 8 * (h / max(C - 1, 1)) ** (0.7 + 1.3 * r01))
        zigzag = ((torch.arange(C) + 1) % 3 - 1).float() * 0.5
        self.time_first = nn.Parameter(torch.full((C,), math.log(0.3)) + zigzag)
        self.time_mix_k = nn.Parameter(x**r10)
        self.time_mix_v = nn.Parameter(x**r10 + 0.3 * r01)
        self.time_mix_r = nn.Parameter(x ** (0.5 * r10))
        self.key = nn.Linear(C, C, bias=False)
        self.value = nn.Linear(C, C, bias=False)
        self.receptance = nn.Linear(C, C, bias=False)
        self.output = nn.Linear(C, C, bias=False)
        self.cfg = cfg

    def _mix(self, xx, shift):
        mixes = (self.time_mix_k, self.time_mix_v, self.time_mix_r)
        xk, xv, xr = token_mix(xx, shift, mixes, self.cfg.wkv)
        return self.key(xk), self.value(xv), torch.sigmoid(self.receptance(xr))

    def forward(self, xx, shift, wkv_state):
        k, v, r = self._mix(xx, shift)
        decay = -torch.exp(self.time_decay)
        if resolve_wkv(self.cfg.wkv, xx.device) == "numba":
            wkv, wkv_state = wkv_numba(decay, self.time_first, k, v, wkv_state)
        else:
            wkv, wkv_state = wkv_chunked(
                decay, self.time_first, k, v, wkv_state, chunk=self.cfg.chunk
            )
        return self.output(r * wkv), xx[:, -1], wkv_state

    def step(self, xx, shift, wkv_state):
        k, v, r = self._mix(xx, shift)
        decay = -torch.exp(self.time_decay)
        wkv, wkv_state = wkv_step(decay, self.time_first, k, v, wkv_state)
        return self.output(r * wkv), xx, wkv_state


class ChannelMix(nn.Module):
    def __init__(self, cfg: RWKVConfig, layer: int) -> None:
        super().__init__()
        C = cfg.n_embd
        r10 = 1.0 - layer / cfg.n_layer
        x = torch.arange(C, dtype=torch.float32) / C
        self.time_mix_k = nn.Parameter(x**r10)
        self.time_mix_r = nn.Parameter(x**r10)
        self.key = nn.Linear(C, cfg.ffn_dim, bias=False)
        self.receptance = nn.Linear(C, C, bias=False)
        self.value = nn.Linear(cfg.ffn_dim, C, bias=False)
        self.cfg = cfg

    def forward(self, xx, shift):
        """xx (B, T, C) after ``shift`` (B, C), or one token xx (B, C) after ``shift``."""
        mixes = (self.time_mix_k, self.time_mix_r)
        xk, xr = token_mix(xx, shift, mixes, self.cfg.wkv)
        r = torch.sigmoid(self.receptance(xr))
        return r * self.value(torch.square(torch.relu(self.key(xk))))


class Block(nn.Module):
    def __init__(self, cfg: RWKVConfig, layer: int) -> None:
        super().__init__()
        C = cfg.n_embd
        if layer == 0:
            self.ln0 = nn.LayerNorm(C)
        self.ln1 = nn.LayerNorm(C)
        self.ln2 = nn.LayerNorm(C)
        self.att = TimeMix(cfg, layer)
        self.ffn = ChannelMix(cfg, layer)


class RWKV4(WKVChoice, nn.Module):
    """The language model: ``forward(tokens) -> logits``, ``step(token, state)``."""

    def __init__(self, config: RWKVConfig | None = None, *, seed: Any = 0) -> None:
        super().__init__()
        self.config = cfg = config or RWKVConfig()
        gen = torch.Generator().manual_seed(seed_to_int(seed))
        self.emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.blocks = nn.ModuleList([Block(cfg, i) for i in range(cfg.n_layer)])
        self.ln_out = nn.LayerNorm(cfg.n_embd)
        self.head = None if cfg.tie_head else nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        with torch.no_grad():  # seeded init, small embeddings as RWKV-LM does
            for name, p in self.named_parameters():
                if name.endswith("weight") and p.ndim == 2:
                    if name == "emb.weight":
                        p.uniform_(-1e-4, 1e-4, generator=gen)
                    else:
                        bound = 1.0 / math.sqrt(p.shape[1])
                        p.uniform_(-bound, bound, generator=gen)

    # ------------------------------------------------------------------ state
    def init_state(self, batch: int = 1, *, dtype=None) -> RWKVState:
        """The state before any token, per layer, on the parameters' device."""
        dtype = dtype or self.emb.weight.dtype
        C, dev = self.config.n_embd, self.emb.weight.device
        out = []
        for _ in self.blocks:
            a, b, p = wkv_init_state(batch, C, dtype=dtype, device=dev)
            z = torch.zeros(batch, C, dtype=dtype, device=dev)
            out.append((z, a, b, p, z.clone()))
        return out

    def _logits(self, x):
        x = self.ln_out(x)
        return x @ self.emb.weight.T if self.head is None else self.head(x)

    def _check_tokens(self, tokens: torch.Tensor) -> None:
        check_tokens(tokens, self.config.vocab_size)

    # ------------------------------------------------------------------ parallel
    def forward(self, tokens: torch.Tensor, state: RWKVState | None = None) -> LMOutput:
        """``(logits, state)``: logits (B, T, vocab) of every position and the state after the
        last one; with ``state`` it continues a sequence."""
        if tokens.ndim == 1:
            tokens = tokens[None]
        self._check_tokens(tokens)
        B = tokens.shape[0]
        state = state if state is not None else self.init_state(B)
        x = self.emb(tokens)
        new_state = []
        for i, blk in enumerate(self.blocks):
            if i == 0:
                x = blk.ln0(x)
            att_shift, a, b, p, ffn_shift = state[i]
            xx = blk.ln1(x)
            out, att_shift, (a, b, p) = blk.att(xx, att_shift, (a, b, p))
            x = x + out
            xx = blk.ln2(x)
            x = x + blk.ffn(xx, ffn_shift)
            new_state.append((att_shift, a, b, p, xx[:, -1]))
        return LMOutput(self._logits(x), new_state)

    # ------------------------------------------------------------------ recurrent
    def step(self, token: torch.Tensor, state: RWKVState) -> tuple[torch.Tensor, RWKVState]:
        """Logits (B, vocab) of one token per sequence, and the next state (inputs untouched)."""
        token = torch.as_tensor(token).reshape(-1)
        self._check_tokens(token)
        x = self.emb(token)
        new_state = []
        for i, blk in enumerate(self.blocks):
            if i == 0:
                x = blk.ln0(x)
            att_shift, a, b, p, ffn_shift = state[i]
            xx = blk.ln1(x)
            out, att_shift, (a, b, p) = blk.att.step(xx, att_shift, (a, b, p))
            x = x + out
            xx = blk.ln2(x)
            x = x + blk.ffn(xx, ffn_shift)
            new_state.append((att_shift, a, b, p, xx))
        return self._logits(x), new_state

    # ------------------------------------------------------------------ checkpoints
    def to_rwkv_state_dict(self) -> dict[str, torch.Tensor]:
        """Weights under RWKV-LM's keys (time_decay raw, mixes shaped (1, 1, C))."""
        out = {"emb.weight": self.emb.weight.detach().clone()}
        for name, t in self.state_dict().items():
            if name.startswith("emb."):
                continue
            t = t.detach().clone()
            if ".time_mix_" in name:
                t = t.reshape(1, 1, -1)
            out[name] = t
        if self.head is None:
            out["head.weight"] = self.emb.weight.detach().clone()
        return out

    @classmethod
    def from_rwkv_state_dict(cls, sd: dict[str, Any], *, chunk: int = 32) -> RWKV4:
        """A model from RWKV-LM / ``rwkv``-package keys (``emb.weight``,
        ``blocks.N.att.time_decay``, ..., ``head.weight``); shapes give the config."""
        try:
            V, C = sd["emb.weight"].shape
            layers = {int(k.split(".")[1]) for k in sd if k.startswith("blocks.")}
            ffn = sd["blocks.0.ffn.key.weight"].shape[0]
        except (KeyError, AttributeError, ValueError) as exc:
            raise CheckpointError(f"not an RWKV-4 state dict ({exc})") from None
        if ffn % C:
            raise CheckpointError(f"ffn width {ffn} is not a multiple of n_embd {C}")
        cfg = RWKVConfig(
            vocab_size=V, n_layer=len(layers), n_embd=C, ffn_mult=ffn // C, chunk=chunk
        )
        model = cls(cfg)
        own = model.state_dict()
        missing = [k for k in own if k not in sd]
        if missing:
            raise CheckpointError(
                f"RWKV-4 state dict lacks {missing[:5]}{'...' if len(missing) > 5 else ''}"
            )
        loaded = {}
        for k, ref in own.items():
            t = torch.as_tensor(np.asarray(sd[k]) if not isinstance(sd[k], torch.Tensor) else sd[k])
            t = t.to(ref.dtype).reshape(ref.shape) if t.numel() == ref.numel() else t
            if t.shape != ref.shape:
                raise CheckpointError(
                    f"{k}: shape {tuple(t.shape)}, the model needs {tuple(ref.shape)}"
                )
            loaded[k] = t
        model.load_state_dict(loaded)
        return model

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
