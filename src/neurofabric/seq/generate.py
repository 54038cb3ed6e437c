"""Sampling text from a sequence model with its recurrent state (O(1) memory per token).

>>> from neurofabric.seq import RWKV4, RWKVConfig
>>> from neurofabric.seq.generate import generate
>>> from neurofabric.seq.tokenizers import CharTokenizer
>>> tok = CharTokenizer.from_text("abc ")
>>> model = RWKV4(RWKVConfig(vocab_size=tok.vocab_size, n_layer=1, n_embd=8), seed=0)
>>> text = "".join(generate(model, tok, "ab", max_new_tokens=5, seed=1))
>>> len(text) <= 5
True
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from neurofabric.core.errors import ConfigError, ShapeError
from neurofabric.core.rng import make_rng
from neurofabric.core.validation import (
    check_choice,
    check_int,
    check_nonnegative,
    check_positive,
    check_probability,
)

__all__ = ["GENERATE_BACKENDS", "generate", "sample_token"]

#: the values of ``generate``'s ``backend``
GENERATE_BACKENDS = ("auto", "numba", "reference", "torch")


def sample_token(
    logits: np.ndarray,
    rng: np.random.Generator,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> int:
    """One token id from logits: temperature 0 is greedy; top-k, then nucleus (top-p)."""
    logits = np.asarray(logits, dtype=np.float64).reshape(-1)
    if temperature == 0:
        return int(np.argmax(logits))
    z = logits / temperature
    if top_k is not None and top_k < len(z):
        kth = np.partition(z, -top_k)[-top_k]
        z = np.where(z >= kth, z, -np.inf)
    p = np.exp(z - z.max())
    p /= p.sum()
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-p)
        cum = np.cumsum(p[order])
        keep = order[: int(np.searchsorted(cum, top_p) + 1)]
        q = np.zeros_like(p)
        q[keep] = p[keep]
        p = q / q.sum()
    return int(rng.choice(len(p), p=p))


def _check(temperature, top_k, top_p, max_new_tokens):
    check_nonnegative("temperature", temperature)
    if top_k is not None:
        check_int("top_k", top_k, min_value=1)
    if top_p is not None:  # in (0, 1]
        check_positive("top_p", check_probability("top_p", top_p))
    check_int("max_new_tokens", max_new_tokens, min_value=0)


def generate(
    model: Any,
    tokenizer: Any,
    prompt: str,
    *,
    max_new_tokens: int = 200,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: Any = 0,
    stop: tuple[str, ...] = (),
    backend: str = "auto",
) -> Iterator[str]:
    """Yield the text of each new token (streaming). The prompt is run through the recurrent
    step: ``backend`` "auto" (the default) runs the fused decoder of
    :mod:`neurofabric.seq.decode` (numba where installed) when the model has one and the
    model's torch ``step`` otherwise; "numba" or "reference" insist on that decoder backend;
    "torch" always runs the model's own ``step`` (any device). Stops at ``max_new_tokens``
    or after any string in ``stop`` appears in the generated text."""
    _check(temperature, top_k, top_p, max_new_tokens)
    check_choice("backend", backend, GENERATE_BACKENDS)
    strict = getattr(tokenizer, "kind", "") == "char"
    ids = tokenizer.encode(prompt, strict=True) if strict else tokenizer.encode(prompt)
    if not ids:
        raise ShapeError("the prompt encodes to no tokens; give at least one character")
    vocab = model.config.vocab_size
    if max(ids) >= vocab:
        raise ShapeError(
            f"the prompt has token ids up to {max(ids)}, the model's vocabulary is {vocab}"
        )
    rng = make_rng(seed)
    step = _stepper(model, backend)
    logits = None
    for t in ids:
        logits = step(t)
    text = ""
    for _ in range(max_new_tokens):
        tok = sample_token(logits, rng, temperature=temperature, top_k=top_k, top_p=top_p)
        piece = tokenizer.decode([tok])
        text += piece
        yield piece
        if any(s and s in text for s in stop):
            return
        logits = step(tok)


def _stepper(model: Any, backend: str):
    from neurofabric.seq.mamba import Mamba
    from neurofabric.seq.mamba2 import Mamba2
    from neurofabric.seq.rwkv import RWKV4
    from neurofabric.seq.rwkv7 import RWKV7

    if backend != "torch":
        from neurofabric.quant.awq import QuantLinear
        from neurofabric.seq.decode import (
            Mamba2Decoder,
            MambaDecoder,
            RWKV7Decoder,
            RWKVDecoder,
            q4_ready,
        )

        quantized = any(isinstance(m, QuantLinear) for m in model.modules())
        kinds = (
            (RWKV4, RWKVDecoder),
            (RWKV7, RWKV7Decoder),
            (Mamba, MambaDecoder),
            (Mamba2, Mamba2Decoder),
        )
        float_only = (RWKV7Decoder, Mamba2Decoder)
        fused = next((d for c, d in kinds if isinstance(model, c)), None)
        dec = None
        if fused is not None and (not quantized or (fused not in float_only and q4_ready(model))):
            dec = fused.from_model(model, backend=backend)
        elif backend != "auto":
            raise ConfigError(
                f"`backend` {backend!r} runs the fused decoders of RWKV4 and Mamba (float, or "
                f"quantized to 4 bits), RWKV7 and Mamba2 (float), but the model is a "
                f"{'quantized ' if quantized else ''}{type(model).__name__}; use "
                f"backend='torch' or 'auto'"
            )
        if dec is not None:
            state = dec.init_state(1)
            return lambda t: dec.step_(np.array([t]), state)[0]
    import torch

    holder = [model.init_state(1)]

    def torch_step(t):
        with torch.no_grad():
            out, holder[0] = model.step(torch.tensor([t]), holder[0])
        return out[0].float().numpy()

    return torch_step
