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

import abc
from typing import Any

import numpy as np

from neurofabric.core.backend import resolve
from neurofabric.core.errors import ConfigError, ShapeError
from neurofabric.core.validation import check_positive
from neurofabric.seq import kernels as _kernels  # noqa: F401  (registers the "seq" backends)

__all__ = ["Mamba2Decoder", "MambaDecoder", "RWKV7Decoder", "RWKVDecoder"]


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


def q4_arrays(packed: Any, *, in_scale: bool = False):
    """``(qweight, scales, zs)`` of a 4-bit :class:`~neurofabric.quant.awq.PackedLinear` for
    ``q4_matvec``: the packed codes as they are, float32 scales and ``zero * scale``; with
    ``in_scale=True`` also the layer's input scale (float32, ones where it has none)."""
    if (
        packed.bits != 4
        or packed.bias is not None
        or (packed.in_scale is not None and not in_scale)
    ):
        raise ConfigError(
            f"the int4 decoder takes 4-bit layers without bias (and, here, without input "
            f"scale); this one has {packed.bits} bits, input scale "
            f"{packed.in_scale is not None}, bias {packed.bias is not None}. Quantize with "
            f"bits=4 (3-bit models evaluate through torch: model(tokens))"
        )
    scales = packed.scales.astype(np.float32)
    arrays = (packed.qweight, scales, packed.zeros().astype(np.float32) * scales)
    if not in_scale:
        return arrays
    s = packed.in_scale
    return arrays, np.ones(packed.shape[1], np.float32) if s is None else s.astype(np.float32)


def _int4(module: Any, *, in_scale: bool = False) -> bool:
    from neurofabric.quant.awq import QuantLinear

    if not isinstance(module, QuantLinear):
        return False
    p = module.packed
    return p.bits == 4 and p.bias is None and (in_scale or p.in_scale is None)


def q4_ready(model: Any) -> bool:
    """True when ``model`` is quantized as its int4 decoder runs it: every linear layer of an
    RWKV4's blocks, and a Mamba's in_proj, x_proj and out_proj, 4-bit without bias (input
    scales only on Mamba's x_proj and out_proj, where nothing can take them)."""
    from neurofabric.seq.mamba import Mamba

    if isinstance(model, Mamba):
        return all(
            _int4(layer.mixer.in_proj)
            and _int4(layer.mixer.x_proj, in_scale=True)
            and _int4(layer.mixer.out_proj, in_scale=True)
            for layer in model.layers
        )
    return all(_int4(b.get_submodule(n)) for b in model.blocks for n in Q4_LAYERS.values())


class _Decoder:
    """Weights as float32 arrays, or tuples of packed 4-bit arrays (:attr:`quantized`)."""

    def __init__(self, weights: dict[str, Any], backend: str) -> None:
        self.backend, self._kernels = resolve("seq", backend)
        self.quantized = any(isinstance(v, tuple) for v in weights.values())
        self.w = {
            k: tuple(np.ascontiguousarray(a) for a in v)
            if isinstance(v, tuple)
            else np.ascontiguousarray(v, dtype=np.float32)
            for k, v in weights.items()
        }

    @property
    def nbytes(self) -> int:
        """Bytes of the weights the decoder holds."""
        return sum(
            sum(a.nbytes for a in v) if isinstance(v, tuple) else v.nbytes for v in self.w.values()
        )


class RWKVDecoder(_Decoder):
    """The weights of an :class:`~neurofabric.seq.RWKV4`, stacked per layer for ``rwkv_step``
    (or, for a model quantized to 4 bits by :mod:`neurofabric.quant.awq`, ``rwkv_step_q4``:
    the linear layers stay packed, two codes a byte, and ``q4_matvec`` multiplies with them).

    ``backend``: "auto" (numba when installed, else the numpy reference), "numba" or
    "reference" (:func:`neurofabric.core.backend.resolve`, engine "seq"); :attr:`backend` is
    the one resolved."""

    def __init__(self, weights: dict[str, Any], *, backend: str = "auto") -> None:
        super().__init__(weights, backend)
        self.n_layer, _, self.n_embd = self.w["att_mix"].shape
        self.vocab_size = self.w["head"].shape[0]

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
            if not q4_ready(model):
                raise ConfigError(
                    "the int4 decoder needs every linear layer of the blocks in 4 bits without "
                    "input scale or bias; decode this model with its torch step"
                )
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

    #: the weights of ``rwkv_step`` / ``rwkv_step_q4``, in their argument order
    _FLOAT_ARGS = ("emb", "ln0", "ln", "att_mix", "decay", "first", "att_w", "ffn_mix")
    _FLOAT_ARGS += ("ffn_k", "ffn_r", "ffn_v", "ln_out", "head")
    _Q4_ARGS = _FLOAT_ARGS[:6] + ("att_k", "att_v", "att_r", "att_o") + _FLOAT_ARGS[7:]

    def _args(self, tokens, state):
        keys = self._Q4_ARGS if self.quantized else self._FLOAT_ARGS
        return (tokens, *(self.w[k] for k in keys), state)

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


class MambaDecoder(_Decoder):
    """The weights of a :class:`~neurofabric.seq.Mamba`, stacked per layer for ``mamba_step``
    (4-bit in_proj, x_proj and out_proj: ``mamba_step_q4``); ``backend`` as for
    :class:`RWKVDecoder`."""

    def __init__(
        self, weights: dict[str, Any], *, eps: float = 1e-5, backend: str = "auto"
    ) -> None:
        super().__init__(weights, backend)
        self.eps = check_positive("eps", eps)
        self.n_layer, self.d_inner, self.d_conv = self.w["conv_w"].shape
        self.d_state = self.w["A"].shape[2]
        self.vocab_size = self.w["emb"].shape[0]

    @classmethod
    def from_model(cls, model: Any, *, backend: str = "auto") -> MambaDecoder:
        import torch

        from neurofabric.quant.awq import QuantLinear

        sd = {k: v.detach().to(torch.float32).numpy() for k, v in model.state_dict().items()}
        L = model.config.n_layer

        def stack(fmt):
            return np.stack([sd[fmt.format(i)] for i in range(L)])

        mixers = [layer.mixer for layer in model.layers]
        if isinstance(mixers[0].in_proj, QuantLinear):
            if not q4_ready(model):
                raise ConfigError(
                    "the int4 decoder needs in_proj, x_proj and out_proj in 4 bits without bias "
                    "(and in_proj without input scale); decode this model with its torch step"
                )
            q4 = {}
            for name in ("in_proj", "x_proj", "out_proj"):
                per = [q4_arrays(getattr(m, name).packed, in_scale=True) for m in mixers]
                q4[name] = tuple(np.stack([p[0][j] for p in per]) for j in range(3))
                q4[name + "_scale"] = np.stack([p[1] for p in per])
            dt = [m.dt_proj for m in mixers]  # float, or dequantized for the decoder
            dt_w = [d.packed.dequantize() if isinstance(d, QuantLinear) else None for d in dt]
            w = {
                "emb": sd["embeddings.weight"],
                "norm": stack("layers.{}.norm.weight"),
                "conv_w": stack("layers.{}.mixer.conv1d.weight")[:, :, 0, :],
                "conv_b": stack("layers.{}.mixer.conv1d.bias"),
                "dt_w": np.stack(
                    [
                        dw if dw is not None else sd[f"layers.{i}.mixer.dt_proj.weight"]
                        for i, dw in enumerate(dt_w)
                    ]
                ),
                "dt_b": np.stack(
                    [
                        d.packed.bias
                        if isinstance(d, QuantLinear)
                        else sd[f"layers.{i}.mixer.dt_proj.bias"]
                        for i, d in enumerate(dt)
                    ]
                ),
                "A": -np.exp(stack("layers.{}.mixer.A_log").astype(np.float64)),
                "D": stack("layers.{}.mixer.D"),
                "norm_f": sd["norm_f.weight"],
                **q4,
            }
            return cls(w, eps=model.config.eps, backend=backend)
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

    #: the weights of ``mamba_step`` / ``mamba_step_q4``, in their argument order
    _FLOAT_ARGS = ("emb", "norm", "in_proj", "conv_w", "conv_b", "x_proj", "dt_w", "dt_b")
    _FLOAT_ARGS += ("A", "D", "out_proj", "norm_f")
    _Q4_ARGS = _FLOAT_ARGS[:6] + ("x_proj_scale",) + _FLOAT_ARGS[6:11] + ("out_proj_scale",)
    _Q4_ARGS += ("norm_f",)

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
        if self.quantized:
            step, keys = self._kernels.mamba_step_q4, self._Q4_ARGS
        else:
            step, keys = self._kernels.mamba_step, self._FLOAT_ARGS
        return step(tokens, *(self.w[k] for k in keys), conv, ssm, self.eps)

    def step(self, tokens: Any, state: tuple[np.ndarray, np.ndarray]):
        """Logits and a new state; the given state is left as it was."""
        new = (state[0].copy(), state[1].copy())
        return self.step_(tokens, new), new


class _PairStateDecoder(_Decoder, abc.ABC):
    """A decoder whose state is two float32 arrays (:meth:`_state_shapes`): zero state, the
    checks of ``step_`` (without allocating per token) and the copying ``step``."""

    @abc.abstractmethod
    def _state_shapes(self, batch: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The shapes of the two state arrays for ``batch`` sequences."""

    def init_state(self, batch: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Zero state arrays for ``batch`` sequences."""
        return tuple(np.zeros(shape, np.float32) for shape in self._state_shapes(batch))

    def _checked(self, tokens: Any, state: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        tokens = np.ascontiguousarray(tokens, dtype=np.int64).reshape(-1)
        want = self._state_shapes(len(tokens))
        got = tuple(a.shape for a in state)
        if got != want:
            raise ShapeError(
                f"state must be arrays of shapes {want[0]} and {want[1]} for {len(tokens)} "
                f"tokens, got {got[0]} and {got[1]}"
            )
        if len(tokens) and (tokens.min() < 0 or tokens.max() >= self.vocab_size):
            raise ShapeError(f"token ids must lie in [0, {self.vocab_size})")
        return tokens

    def step(self, tokens: Any, state: tuple[np.ndarray, np.ndarray]):
        """Logits and a new state; the given state is left as it was."""
        new = (state[0].copy(), state[1].copy())
        return self.step_(tokens, new), new


class Mamba2Decoder(_PairStateDecoder):
    """The weights of a :class:`~neurofabric.seq.mamba2.Mamba2`, stacked per layer for
    ``mamba2_step`` (float32); ``backend`` as for :class:`RWKVDecoder`."""

    def __init__(
        self,
        weights: dict[str, Any],
        *,
        n_groups: int = 1,
        head_dim: int,
        eps: float = 1e-5,
        backend: str = "auto",
    ) -> None:
        super().__init__(weights, backend)
        if self.quantized:
            raise ConfigError("the Mamba-2 decoder runs float32 weights only")
        self.eps = check_positive("eps", eps)
        self.n_groups, self.head_dim = int(n_groups), int(head_dim)
        self.n_layer, self.conv_dim, self.d_conv = self.w["conv_w"].shape
        self.n_heads = self.w["A"].shape[1]
        d_inner = self.n_heads * self.head_dim
        self.d_state = (self.conv_dim - d_inner) // (2 * self.n_groups)
        self.vocab_size = self.w["head"].shape[0]

    @classmethod
    def from_model(cls, model: Any, *, backend: str = "auto") -> Mamba2Decoder:
        import torch

        sd = {k: v.detach().to(torch.float32).numpy() for k, v in model.state_dict().items()}
        c = model.config

        def stack(fmt):
            return np.stack([sd[fmt.format(i)] for i in range(c.n_layer)])

        w = {
            "emb": sd["embeddings.weight"],
            "norm": stack("layers.{}.norm.weight"),
            "in_proj": stack("layers.{}.mixer.in_proj.weight"),
            "conv_w": stack("layers.{}.mixer.conv1d.weight")[:, :, 0, :],
            "conv_b": stack("layers.{}.mixer.conv1d.bias"),
            "dt_b": stack("layers.{}.mixer.dt_bias"),
            "A": -np.exp(stack("layers.{}.mixer.A_log").astype(np.float64)),
            "D": stack("layers.{}.mixer.D"),
            "gnorm": stack("layers.{}.mixer.norm.weight"),
            "out_proj": stack("layers.{}.mixer.out_proj.weight"),
            "norm_f": sd["norm_f.weight"],
            "head": sd["embeddings.weight" if c.tie_embeddings else "lm_head.weight"],
        }
        return cls(w, n_groups=c.n_groups, head_dim=c.head_dim, eps=c.eps, backend=backend)

    #: the weights of ``mamba2_step``, in their argument order
    _ARGS = ("emb", "norm", "in_proj", "conv_w", "conv_b", "dt_b", "A", "D", "gnorm")
    _ARGS += ("out_proj", "norm_f", "head")

    def _state_shapes(self, batch: int):
        """conv (L, B, conv_dim, d_conv), ssm (L, B, H, head_dim, d_state)."""
        L = self.n_layer
        return (
            (L, batch, self.conv_dim, self.d_conv),
            (L, batch, self.n_heads, self.head_dim, self.d_state),
        )

    def step_(self, tokens: Any, state: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """Logits (B, vocab); the (conv, ssm) state arrays are advanced in place."""
        tokens = self._checked(tokens, state)
        args = (self.w[k] for k in self._ARGS)
        return self._kernels.mamba2_step(tokens, *args, *state, self.n_groups, self.eps)


class RWKV7Decoder(_PairStateDecoder):
    """The weights of an :class:`~neurofabric.seq.rwkv7.RWKV7`, stacked per layer for
    ``rwkv7_step`` (float32; the embedding stored after ``ln0``, as the ``rwkv`` package does);
    ``backend`` as for :class:`RWKVDecoder`."""

    def __init__(self, weights: dict[str, Any], *, backend: str = "auto") -> None:
        super().__init__(weights, backend)
        if self.quantized:
            raise ConfigError("the RWKV-7 decoder runs float32 weights only")
        self.n_layer, self.n_head, self.head_size = self.w["r_k"].shape
        self.n_embd = self.w["emb"].shape[1]
        self.vocab_size = self.w["head"].shape[0]

    @classmethod
    def from_model(cls, model: Any, *, backend: str = "auto") -> RWKV7Decoder:
        import torch
        from torch.nn import functional as F

        c = model.config
        with torch.no_grad():
            blk0 = model.blocks[0]
            emb = F.layer_norm(model.emb.weight, (c.n_embd,), blk0.ln0.weight, blk0.ln0.bias, 1e-5)
        sd = {k: v.detach().to(torch.float32).numpy() for k, v in model.state_dict().items()}
        L = c.n_layer

        def stack(fmt, zeros_at_0=None):
            return np.stack(
                [
                    np.zeros(zeros_at_0, np.float32)
                    if i == 0 and zeros_at_0 is not None
                    else sd[fmt.format(i)]
                    for i in range(L)
                ]
            )

        att = "blocks.{}.att."
        C = c.n_embd
        w = {
            "emb": emb.to(torch.float32).numpy(),
            "ln": np.stack(
                [
                    [[sd[f"blocks.{i}.ln{j}.{p}"] for p in ("weight", "bias")] for j in (1, 2)]
                    for i in range(L)
                ]
            ),
            "mix": np.stack(
                [stack(att + m) for m in ("x_r", "x_w", "x_k", "x_v", "x_a", "x_g")], 1
            ),
            "w0": stack(att + "w0"),
            "a0": stack(att + "a0"),
            "v0": stack(att + "v0", (C,)),
            "k_k": stack(att + "k_k"),
            "k_a": stack(att + "k_a"),
            "r_k": stack(att + "r_k"),
            "w1": stack(att + "w1"),
            "w2": stack(att + "w2"),
            "a1": stack(att + "a1"),
            "a2": stack(att + "a2"),
            "v1": stack(att + "v1", (C, c.d_mv)),
            "v2": stack(att + "v2", (c.d_mv, C)),
            "g1": stack(att + "g1"),
            "g2": stack(att + "g2"),
            "att_w": np.stack(
                [stack(att + n + ".weight") for n in ("receptance", "key", "value", "output")], 1
            ),
            "ln_x": np.stack([stack(att + "ln_x.weight"), stack(att + "ln_x.bias")], 1),
            "ffn_x": stack("blocks.{}.ffn.x_k"),
            "ffn_k": stack("blocks.{}.ffn.key.weight"),
            "ffn_v": stack("blocks.{}.ffn.value.weight"),
            "ln_out": np.stack([sd["ln_out.weight"], sd["ln_out.bias"]]),
            "head": sd["head.weight"],
        }
        return cls(w, backend=backend)

    #: the weights of ``rwkv7_step``, in their argument order
    _ARGS = ("emb", "ln", "mix", "w0", "a0", "v0", "k_k", "k_a", "r_k", "w1", "w2", "a1", "a2")
    _ARGS += ("v1", "v2", "g1", "g2", "att_w", "ln_x", "ffn_x", "ffn_k", "ffn_v", "ln_out", "head")

    def _state_shapes(self, batch: int):
        """shifts (L, 2, B, C), S (L, B, H, N, N)."""
        L, H, N = self.n_layer, self.n_head, self.head_size
        return (L, 2, batch, self.n_embd), (L, batch, H, N, N)

    def step_(self, tokens: Any, state: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """Logits (B, vocab); the (shifts, S) state arrays are advanced in place."""
        tokens = self._checked(tokens, state)
        return self._kernels.rwkv7_step(tokens, *(self.w[k] for k in self._ARGS), *state)
