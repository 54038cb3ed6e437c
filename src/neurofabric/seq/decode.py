"""Fast recurrent decoding on CPU: RWKV-4 as one numba step over float32 numpy weights.

>>> import numpy as np, torch
>>> from neurofabric.seq import RWKV4, RWKVConfig
>>> from neurofabric.seq.decode import RWKVDecoder
>>> model = RWKV4(RWKVConfig(vocab_size=50, n_layer=2, n_embd=32), seed=0)
>>> dec = RWKVDecoder.from_model(model)
>>> logits, state = dec.step(np.array([3]), dec.init_state(1))
>>> ref, _ = model.step(torch.tensor([3]), model.init_state(1))
>>> bool(np.allclose(logits, ref.detach().numpy(), atol=1e-4))
True
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neurofabric.core.backend import resolve
from neurofabric.core.errors import ConfigError, ShapeError
from neurofabric.core.validation import check_positive
from neurofabric.seq import kernels as _kernels  # noqa: F401  (registers the "seq" backends)

__all__ = ["MambaDecoder", "RWKVDecoder"]


#: the 4-bit decoder's linear layers: its argument name -> the module under ``blocks.N.``
Q4_LAYERS = {
    "att_k": "att.key",
    "att_v": "att.value",
    "att_r": "att.receptance",
    "att_o": "att.output",
    "ffn_k": "ffn.key",
    "ffn_r": "ffn.receptance",
    "ffn_v": "ffn.value",
}


def q4_arrays(packed: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(qweight, scales, zs)`` of a 4-bit :class:`~neurofabric.quant.awq.PackedLinear` for
    ``q4_matvec``: the packed codes as they are, float32 scales and ``zero * scale``."""
    if packed.bits != 4 or packed.in_scale is not None or packed.bias is not None:
        raise ConfigError(
            f"the int4 decoder takes 4-bit layers without input scale or bias; this one has "
            f"{packed.bits} bits, input scale {packed.in_scale is not None}, bias "
            f"{packed.bias is not None}. Quantize with bits=4 (3-bit models evaluate through "
            f"torch: model(tokens))"
        )
    scales = packed.scales.astype(np.float32)
    return packed.qweight, scales, packed.zeros().astype(np.float32) * scales


def q4_ready(model: Any) -> bool:
    """True when every linear layer of ``model``'s blocks is 4-bit, without input scale or
    bias (what ``rwkv_step_q4`` runs)."""
    from neurofabric.quant.awq import QuantLinear

    for i in range(len(model.blocks)):
        for name in Q4_LAYERS.values():
            mod = model.blocks[i].get_submodule(name)
            p = getattr(mod, "packed", None)
            if not isinstance(mod, QuantLinear) or p.bits != 4 or p.in_scale is not None:
                return False
    return True


class RWKVDecoder:
    """The weights of an :class:`~neurofabric.seq.RWKV4`, stacked per layer for ``rwkv_step``
    (or, for a model quantized to 4 bits by :mod:`neurofabric.quant.awq`, ``rwkv_step_q4``:
    the linear layers stay packed, two codes a byte, and ``q4_matvec`` multiplies with them).

    ``backend``: "auto" (numba when installed, else the numpy reference), "numba" or
    "reference" (:func:`neurofabric.core.backend.resolve`, engine "seq"); :attr:`backend` is
    the one resolved."""

    def __init__(self, weights: dict[str, Any], *, backend: str = "auto") -> None:
        self.backend, self._kernels = resolve("seq", backend)
        self.quantized = any(isinstance(v, tuple) for v in weights.values())
        self.w = {
            k: tuple(np.ascontiguousarray(a) for a in v)
            if isinstance(v, tuple)
            else np.ascontiguousarray(v, dtype=np.float32)
            for k, v in weights.items()
        }
        self.n_layer, _, self.n_embd = self.w["att_mix"].shape
        self.vocab_size = self.w["head"].shape[0]

    @property
    def nbytes(self) -> int:
        """Bytes of the weights the decoder holds."""
        return sum(
            sum(a.nbytes for a in v) if isinstance(v, tuple) else v.nbytes for v in self.w.values()
        )

    @classmethod
    def from_model(cls, model: Any, *, backend: str = "auto") -> RWKVDecoder:
        import torch

        from neurofabric.quant.awq import QuantLinear

        sd = {k: v.detach().to(torch.float32).numpy() for k, v in model.state_dict().items()}
        L = model.config.n_layer

        def stack(fmt):
            return np.stack([sd[fmt.format(i)] for i in range(L)])

        if model.head is None:
            head = sd["emb.weight"]
        elif isinstance(model.head, QuantLinear):  # the decoder's head is float32
            head = model.head.packed.dequantize()
        else:
            head = sd["head.weight"]
        common = {
            "emb": sd["emb.weight"],
            "ln0": np.stack([sd["blocks.0.ln0.weight"], sd["blocks.0.ln0.bias"]]),
            "ln": np.array(  # (L, 2 norms, weight / bias, C)
                [
                    [[sd[f"blocks.{i}.ln{j}.{p}"] for p in ("weight", "bias")] for j in (1, 2)]
                    for i in range(L)
                ]
            ),
            "att_mix": np.stack([stack("blocks.{}.att.time_mix_" + m) for m in "kvr"], axis=1),
            "decay": -np.exp(stack("blocks.{}.att.time_decay").astype(np.float64)),
            "first": stack("blocks.{}.att.time_first"),
            "ffn_mix": np.stack([stack("blocks.{}.ffn.time_mix_" + m) for m in "kr"], axis=1),
            "ln_out": np.stack([sd["ln_out.weight"], sd["ln_out.bias"]]),
            "head": head,
        }
        blocks = model.blocks
        if isinstance(blocks[0].att.key, QuantLinear):
            q4 = {}
            for arg, name in Q4_LAYERS.items():
                per = [q4_arrays(blocks[i].get_submodule(name).packed) for i in range(L)]
                q4[arg] = tuple(np.stack([p[j] for p in per]) for j in range(3))
            return cls({**common, **q4}, backend=backend)
        w = {
            **common,
            "att_w": np.stack(
                [
                    stack("blocks.{}.att." + n + ".weight")
                    for n in ("key", "value", "receptance", "output")
                ],
                axis=1,
            ),
            "ffn_k": stack("blocks.{}.ffn.key.weight"),
            "ffn_r": stack("blocks.{}.ffn.receptance.weight"),
            "ffn_v": stack("blocks.{}.ffn.value.weight"),
        }
        return cls(w, backend=backend)

    def init_state(self, batch: int = 1) -> np.ndarray:
        """(n_layer, 5, batch, n_embd): shifts and WKV sums zero, exponents -1e38."""
        st = np.zeros((self.n_layer, 5, batch, self.n_embd), dtype=np.float32)
        st[:, 3] = -1e38
        return st

    def _args(self, tokens, state):
        w = self.w
        if self.quantized:
            return (
                tokens,
                w["emb"],
                w["ln0"],
                w["ln"],
                w["att_mix"],
                w["decay"],
                w["first"],
                *(w[k] for k in ("att_k", "att_v", "att_r", "att_o")),
                w["ffn_mix"],
                *(w[k] for k in ("ffn_k", "ffn_r", "ffn_v")),
                w["ln_out"],
                w["head"],
                state,
            )
        return (
            tokens,
            w["emb"],
            w["ln0"],
            w["ln"],
            w["att_mix"],
            w["decay"],
            w["first"],
            w["att_w"],
            w["ffn_mix"],
            w["ffn_k"],
            w["ffn_r"],
            w["ffn_v"],
            w["ln_out"],
            w["head"],
            state,
        )

    def step_(self, tokens: Any, state: np.ndarray) -> np.ndarray:
        """Logits (B, vocab); ``state`` is advanced in place (the allocation-free loop)."""
        tokens = np.ascontiguousarray(tokens, dtype=np.int64).reshape(-1)
        if state.shape != (self.n_layer, 5, len(tokens), self.n_embd):
            raise ShapeError(
                f"state must have shape {(self.n_layer, 5, len(tokens), self.n_embd)}, got {state.shape}"
            )
        if len(tokens) and (tokens.min() < 0 or tokens.max() >= self.vocab_size):
            raise ShapeError(f"token ids must lie in [0, {self.vocab_size})")
        step = self._kernels.rwkv_step_q4 if self.quantized else self._kernels.rwkv_step
        return step(*self._args(tokens, state))

    def step(self, tokens: Any, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Logits and a new state; the given state is left as it was."""
        new = state.copy()
        return self.step_(tokens, new), new


class MambaDecoder:
    """The weights of a :class:`~neurofabric.seq.Mamba`, stacked per layer for ``mamba_step``;
    ``backend`` as for :class:`RWKVDecoder`."""

    def __init__(
        self, weights: dict[str, np.ndarray], *, eps: float = 1e-5, backend: str = "auto"
    ) -> None:
        self.backend, self._kernels = resolve("seq", backend)
        self.w = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in weights.items()}
        self.eps = check_positive("eps", eps)
        self.n_layer, self.d_inner, self.d_conv = self.w["conv_w"].shape
        self.d_state = self.w["A"].shape[2]
        self.vocab_size = self.w["emb"].shape[0]

    @classmethod
    def from_model(cls, model: Any, *, backend: str = "auto") -> MambaDecoder:
        import torch

        sd = {k: v.detach().to(torch.float32).numpy() for k, v in model.state_dict().items()}
        L = model.config.n_layer

        def stack(fmt):
            return np.stack([sd[fmt.format(i)] for i in range(L)])

        w = {
            "emb": sd["embeddings.weight"],
            "norm": stack("layers.{}.norm.weight"),
            "in_proj": stack("layers.{}.mixer.in_proj.weight"),
            "conv_w": stack("layers.{}.mixer.conv1d.weight")[:, :, 0, :],
            "conv_b": stack("layers.{}.mixer.conv1d.bias"),
            "x_proj": stack("layers.{}.mixer.x_proj.weight"),
            "dt_w": stack("layers.{}.mixer.dt_proj.weight"),
            "dt_b": stack("layers.{}.mixer.dt_proj.bias"),
            "A": -np.exp(stack("layers.{}.mixer.A_log").astype(np.float64)),
            "D": stack("layers.{}.mixer.D"),
            "out_proj": stack("layers.{}.mixer.out_proj.weight"),
            "norm_f": sd["norm_f.weight"],
        }
        return cls(w, eps=model.config.eps, backend=backend)

    def init_state(self, batch: int = 1) -> tuple[np.ndarray, np.ndarray]:
        L, di = self.n_layer, self.d_inner
        return (
            np.zeros((L, batch, di, self.d_conv), np.float32),
            np.zeros((L, batch, di, self.d_state), np.float32),
        )

    def step_(self, tokens: Any, state: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """Logits (B, vocab); the (conv, ssm) state arrays are advanced in place."""
        tokens = np.ascontiguousarray(tokens, dtype=np.int64).reshape(-1)
        conv, ssm = state
        if conv.shape[1] != len(tokens) or ssm.shape[1] != len(tokens):
            raise ShapeError(f"state is for {conv.shape[1]} sequences, got {len(tokens)} tokens")
        if len(tokens) and (tokens.min() < 0 or tokens.max() >= self.vocab_size):
            raise ShapeError(f"token ids must lie in [0, {self.vocab_size})")
        w = self.w
        return self._kernels.mamba_step(
            tokens,
            w["emb"],
            w["norm"],
            w["in_proj"],
            w["conv_w"],
            w["conv_b"],
            w["x_proj"],
            w["dt_w"],
            w["dt_b"],
            w["A"],
            w["D"],
            w["out_proj"],
            w["norm_f"],
            conv,
            ssm,
            self.eps,
        )

    def step(self, tokens: Any, state: tuple[np.ndarray, np.ndarray]):
        """Logits and a new state; the given state is left as it was."""
        new = (state[0].copy(), state[1].copy())
        return self.step_(tokens, new), new
