"""A small GPT (nanoGPT-style) as the transformer baseline of the sequence models.

Learned positions, pre-LayerNorm blocks of causal self-attention and a GELU MLP, the output
tied to the token embedding, nanoGPT's initialization (N(0, 0.02), residual projections scaled
by 1/sqrt(2 n_layer)). It trains with the same :class:`~neurofabric.seq.train.Trainer` as
RWKV-4 and Mamba and decodes with a KV cache, so the comparison is like for like: its memory
grows by ``2 x n_layer x n_embd`` floats per token (:meth:`GPT.cache_bytes_per_token`) where
the recurrent models carry a constant state. Past ``block_size`` tokens, ``step`` keeps the
last ``block_size`` and recomputes the cache from them at every token (nanoGPT's cropping), so
it can write text of any length, at a cost that grows with ``block_size``.

>>> import torch
>>> m = GPT(GPTConfig(vocab_size=11, n_layer=1, n_embd=8, n_head=2, block_size=16), seed=0)
>>> logits, _ = m(torch.tensor([[1, 2, 3]]))
>>> tuple(logits.shape)
(1, 3, 11)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from neurofabric.core.errors import ConfigError, ShapeError
from neurofabric.core.rng import seed_to_int
from neurofabric.core.validation import check_int
from neurofabric.seq.output import LMOutput, check_tokens

__all__ = ["GPT", "GPTConfig"]


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = 256
    n_layer: int = 4
    n_embd: int = 192
    n_head: int = 4
    block_size: int = 256

    def __post_init__(self) -> None:
        for name in ("vocab_size", "n_layer", "n_embd", "n_head", "block_size"):
            check_int(name, getattr(self, name), min_value=1)
        if self.n_embd % self.n_head:
            raise ConfigError(
                f"`n_embd` ({self.n_embd}) must be a multiple of `n_head` ({self.n_head}); "
                "change one of them"
            )

    def as_dict(self) -> dict:
        return asdict(self)


#: per layer (keys, values), each (batch, heads, tokens so far, head size); then the tokens
GPTState = tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor]


class GPT(nn.Module):
    """``forward(tokens) -> (logits, None)``, ``step(token, state)`` with a KV cache."""

    def __init__(self, config: GPTConfig | None = None, *, seed: Any = 0) -> None:
        super().__init__()
        self.config = cfg = config or GPTConfig()
        C = cfg.n_embd
        self.wte = nn.Embedding(cfg.vocab_size, C)
        self.wpe = nn.Embedding(cfg.block_size, C)
        self.blocks = nn.ModuleList(
            nn.ModuleDict(
                {
                    "ln1": nn.LayerNorm(C),
                    "qkv": nn.Linear(C, 3 * C),
                    "proj": nn.Linear(C, C),
                    "ln2": nn.LayerNorm(C),
                    "fc": nn.Linear(C, 4 * C),
                    "out": nn.Linear(4 * C, C),
                }
            )
            for _ in range(cfg.n_layer)
        )
        self.ln_f = nn.LayerNorm(C)
        gen = torch.Generator().manual_seed(seed_to_int(seed))
        with torch.no_grad():  # nanoGPT's initialization, seeded
            for name, p in self.named_parameters():
                if name.endswith("bias"):
                    p.zero_()
                elif p.ndim >= 2:
                    resid = name.endswith(("proj.weight", "out.weight"))
                    std = 0.02 / math.sqrt(2 * cfg.n_layer) if resid else 0.02
                    p.normal_(0.0, std, generator=gen)

    def _check_tokens(self, tokens: torch.Tensor) -> None:
        check_tokens(tokens, self.config.vocab_size)

    def _attend(self, blk, x, past=None):
        """One block's attention output on ``x`` (B, T, C) after ``past`` (k, v) cached
        positions; returns it with the keys and values of all positions."""
        B, T, C = x.shape
        H = self.config.n_head
        q, k, v = blk["qkv"](blk["ln1"](x)).split(C, dim=2)
        q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v))
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        # causal: query i sees keys up to its own position (the cached ones all precede it)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=past is None)
        return blk["proj"](y.transpose(1, 2).reshape(B, T, C)), (k, v)

    def _run(self, tokens: torch.Tensor, start: int, cache=None):
        B, T = tokens.shape
        if start + T > self.config.block_size:
            raise ShapeError(
                f"the GPT sees at most block_size = {self.config.block_size} tokens, got "
                f"{start + T}; split the sequence (or train with a larger block_size)"
            )
        x = self.wte(tokens) + self.wpe(torch.arange(start, start + T, device=tokens.device))
        new_cache = []
        for i, blk in enumerate(self.blocks):
            a, kv = self._attend(blk, x, None if cache is None else cache[i])
            x = x + a
            x = x + blk["out"](F.gelu(blk["fc"](blk["ln2"](x))))
            new_cache.append(kv)
        return self.ln_f(x) @ self.wte.weight.T, new_cache

    def forward(self, tokens: torch.Tensor, state: None = None) -> LMOutput:
        """``(logits, None)``: logits (B, T, vocab) of every position (T <= block_size)."""
        if state is not None:
            raise ConfigError("a GPT's forward takes no state; use step() to continue a sequence")
        if tokens.ndim == 1:
            tokens = tokens[None]
        self._check_tokens(tokens)
        return LMOutput(self._run(tokens, 0)[0], None)

    # ------------------------------------------------------------------ decoding
    def init_state(self, batch: int = 1) -> GPTState:
        """An empty KV cache."""
        return [], torch.zeros(batch, 0, dtype=torch.long, device=self.wte.weight.device)

    def step(self, token: torch.Tensor, state: GPTState) -> tuple[torch.Tensor, GPTState]:
        """Logits (B, vocab) of one more token per sequence, and the grown cache (inputs
        untouched). Past ``block_size`` tokens the cache is rebuilt from the last ``block_size``
        (the context window slides)."""
        token = torch.as_tensor(token).reshape(-1, 1)
        self._check_tokens(token)
        cache, seen = state
        seen = torch.cat([seen, token.to(seen.device)], dim=1)
        if seen.shape[1] > self.config.block_size:
            seen = seen[:, -self.config.block_size :]
            logits, cache = self._run(seen, 0)
        elif not cache:
            logits, cache = self._run(seen, 0)
        else:
            logits, cache = self._run(token, seen.shape[1] - 1, cache)
        return logits[:, -1], (cache, seen)

    def cache_bytes_per_token(self) -> int:
        """Bytes the KV cache grows by per token (one sequence): keys and values, every layer."""
        c = self.config
        return 2 * c.n_layer * c.n_embd * self.wte.weight.element_size()
