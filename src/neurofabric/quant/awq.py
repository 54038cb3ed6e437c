r"""Activation-aware weight quantization (AWQ) and round-to-nearest (RTN) of a torch model's
linear layers: group-wise asymmetric INT-b codes, really packed.

>>> import torch
>>> from neurofabric.quant.awq import AWQConfig, quantize_model
>>> from neurofabric.seq import RWKV4, RWKVConfig
>>> model = RWKV4(RWKVConfig(vocab_size=50, n_layer=2, n_embd=64, ffn_mult=2), seed=0)
>>> calib = torch.randint(0, 50, (8, 32), generator=torch.Generator().manual_seed(0))
>>> report = quantize_model(model, calib, AWQConfig(bits=4, group_size=32))
>>> round(report.bits_per_weight, 3)          # 4-bit codes + fp16 scale + 4-bit zero per 32
4.625
>>> type(model.blocks[0].att.key).__name__
'QuantLinear'

**Quantizer** (per row ``o`` of a weight ``W`` (out, in) and group ``g`` of ``group_size``
consecutive inputs): the group's range ``[min(w, 0), max(w, 0)]`` gives the scale
``s = (hi - lo) / (2^b - 1)`` (stored as float16, rounded up) and the zero point ``z = round(-lo / s)``
(stored in ``b`` bits); ``q = clip(round(w / s) + z, 0, 2^b - 1)`` and ``w ~ s (q - z)``.

**AWQ** (Lin et al. 2024; the search of ``llm-awq``'s ``auto_scale.py`` and ``auto_clip.py``):

1. Calibration: the inputs of every quantized linear layer, recorded with forward hooks while
   the float model reads ``calib`` (a random subset of ``max_rows`` token positions is kept).
2. Scales, per group of layers sharing an input: with ``a`` the mean ``|x|`` of each input
   channel, ``s = a^alpha`` normalised by ``sqrt(max(s) min(s))``, for ``alpha`` in
   ``0, 1/n_grid, ..., (n_grid - 1)/n_grid``; the layers' weights become ``Q(W diag(s))`` on the
   input ``x / s``, and the ``alpha`` with the lowest mean squared error of the group's outputs
   (against the float outputs) wins. ``alpha = 0`` is RTN, so the search never does worse on the
   calibration data.
3. ``1 / s`` is folded into the operation before the group where one is linear in its output
   (a layer norm's weight and bias, RMSNorm's weight, the rows of a preceding linear layer,
   ``sqrt(s)`` through RWKV's squared ReLU), so the float model computes the same function;
   elsewhere the layer keeps ``1 / s`` as an input scale (float16, multiplied into ``x``).
4. Clipping, per layer and per (row, group): the range ``[-m, m]`` with ``m`` the largest
   ``|w|`` shrunk by ``i / n_grid`` for ``i < max_shrink n_grid``, the one with the lowest
   squared error of the group's partial outputs on ``clip_tokens`` calibration rows. Layers
   whose output goes through ``exp`` (RWKV's key) are not clipped, as ``llm-awq`` skips the
   query and key projections.
5. The final weights are quantized and packed (:class:`PackedLinear`), and each layer is
   replaced by a :class:`QuantLinear`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from neurofabric.core.errors import ConfigError, ShapeError
from neurofabric.core.validation import check_choice, check_int, check_positive
from neurofabric.quant.packing import pack_bits, packed_nbytes, unpack_bits

__all__ = [
    "AWQConfig",
    "PackedLinear",
    "QuantLinear",
    "QuantReport",
    "from_autoawq_gemm",
    "pseudo_quantize",
    "quantize_groups",
    "quantize_model",
    "to_autoawq_gemm",
]

log = logging.getLogger(__name__)

#: AutoAWQ's GEMM layout: nibble i of an int32 holds output column AWQ_ORDER[i]
AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)


@dataclass(frozen=True)
class AWQConfig:
    """How to quantize: ``method`` "awq" (search scales and clipping on calibration data) or
    "rtn" (round to nearest, no data); ``bits`` per weight, ``group_size`` inputs per scale."""

    bits: int = 4
    group_size: int = 128
    method: str = "awq"
    n_grid: int = 20
    max_shrink: float = 0.5
    clip_tokens: int = 512
    max_rows: int = 4096
    clip: bool = True
    quantize_head: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        check_choice("bits", self.bits, (2, 3, 4, 5, 6, 7, 8))
        check_int("group_size", self.group_size, min_value=8)
        if self.group_size % 8:
            raise ConfigError(
                f"`group_size` must be a multiple of 8 (rows stay byte-aligned), got "
                f"{self.group_size}; use 32, 64 or 128"
            )
        check_choice("method", self.method, ("awq", "rtn"))
        check_int("n_grid", self.n_grid, min_value=1)
        check_positive("max_shrink", self.max_shrink)
        if self.max_shrink >= 1:
            raise ConfigError(f"`max_shrink` must be < 1, got {self.max_shrink}")
        check_int("clip_tokens", self.clip_tokens, min_value=1)
        check_int("max_rows", self.max_rows, min_value=1)

    def as_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- the quantizer
def quantize_groups(w: torch.Tensor, bits: int, group_size: int):
    """``(codes, scales, zeros)`` of ``w`` (out, in): codes uint8 (out, in), scales float16 and
    zero points uint8, both (out, in / group_size)."""
    out, inp = w.shape
    if inp % group_size:
        raise ShapeError(
            f"{inp} inputs are not a multiple of `group_size` {group_size}; pick a divisor"
        )
    g = w.detach().to(torch.float32).reshape(out, inp // group_size, group_size)
    qmax = (1 << bits) - 1
    lo = g.amin(-1).clamp(max=0.0)
    hi = g.amax(-1).clamp(min=0.0)
    exact = ((hi - lo) / qmax).clamp(min=1e-5)
    half = exact.to(torch.float16)  # stored in float16, rounded up so the range still fits
    half = torch.where(
        half.float() < exact, torch.nextafter(half, torch.tensor(65504.0).half()), half
    )
    scales = half.to(torch.float32)
    zeros = torch.round(-lo / scales).clamp(0, qmax)
    codes = torch.clamp(torch.round(g / scales[..., None]) + zeros[..., None], 0, qmax)
    return (
        codes.reshape(out, inp).to(torch.uint8),
        scales.to(torch.float16),
        zeros.to(torch.uint8),
    )


def _dequant(codes, scales, zeros, group_size: int) -> torch.Tensor:
    out, inp = codes.shape
    c = codes.to(torch.float32).reshape(out, inp // group_size, group_size)
    w = (c - zeros.to(torch.float32)[..., None]) * scales.to(torch.float32)[..., None]
    return w.reshape(out, inp)


def pseudo_quantize(w: torch.Tensor, bits: int, group_size: int) -> torch.Tensor:
    """``w`` rounded to its grid, as float32 (what the packed layer computes with)."""
    return _dequant(*quantize_groups(w, bits, group_size), group_size)


@dataclass
class PackedLinear:
    """A quantized linear layer as stored: ``qweight`` the codes packed row by row (uint8,
    (out, in bits / 8)), ``scales`` float16 (out, groups), ``qzeros`` the zero points packed
    (uint8, flat), ``in_scale`` (float16 (in,) or None): the layer computes
    ``x -> dequant(W) (x * in_scale) + bias``."""

    qweight: np.ndarray
    scales: np.ndarray
    qzeros: np.ndarray
    bits: int
    group_size: int
    shape: tuple[int, int]
    in_scale: np.ndarray | None = None
    bias: np.ndarray | None = None

    @classmethod
    def from_weight(
        cls, w: torch.Tensor, bits: int, group_size: int, *, in_scale=None, bias=None
    ) -> PackedLinear:
        codes, scales, zeros = quantize_groups(w, bits, group_size)
        return cls(
            pack_bits(codes.numpy(), bits).reshape(w.shape[0], -1),
            scales.numpy(),
            pack_bits(zeros.numpy(), bits),
            bits,
            group_size,
            (int(w.shape[0]), int(w.shape[1])),
            None if in_scale is None else np.asarray(in_scale, np.float16),
            None if bias is None else np.asarray(bias, np.float32),
        )

    def __post_init__(self) -> None:
        out, inp = self.shape
        if inp % self.group_size or (inp * self.bits) % 8:
            raise ShapeError(f"{self.shape}: inputs must be a multiple of group_size and of 8")
        ng = inp // self.group_size
        want = {
            "qweight": ((out, inp * self.bits // 8), np.uint8),
            "scales": ((out, ng), np.float16),
            "qzeros": ((packed_nbytes(out * ng, self.bits),), np.uint8),
        }
        for name, (shape, dtype) in want.items():
            arr = getattr(self, name)
            if arr.shape != shape or arr.dtype != dtype:
                raise ShapeError(
                    f"`{name}` of a {self.shape} {self.bits}-bit layer must be {dtype.__name__} "
                    f"{shape}, got {arr.dtype} {arr.shape}"
                )
        if self.in_scale is not None and self.in_scale.shape != (inp,):
            raise ShapeError(f"`in_scale` must have shape ({inp},), got {self.in_scale.shape}")
        if self.bias is not None and self.bias.shape != (out,):
            raise ShapeError(f"`bias` must have shape ({out},), got {self.bias.shape}")

    @property
    def n_groups(self) -> int:
        return self.shape[1] // self.group_size

    def codes(self) -> np.ndarray:
        out, inp = self.shape
        return unpack_bits(self.qweight, self.bits, out * inp).reshape(out, inp)

    def zeros(self) -> np.ndarray:
        out = self.shape[0]
        return unpack_bits(self.qzeros, self.bits, out * self.n_groups).reshape(out, -1)

    def dequantize(self) -> np.ndarray:
        """The float32 weight (out, in) the codes stand for (``in_scale`` not applied)."""
        w = _dequant(
            torch.from_numpy(self.codes()),
            torch.from_numpy(self.scales),
            torch.from_numpy(self.zeros()),
            self.group_size,
        )
        return w.numpy()

    @property
    def nbytes(self) -> int:
        """Bytes stored for the weight: codes, scales, zero points and the input scale."""
        extra = 0 if self.in_scale is None else self.in_scale.nbytes
        return int(self.qweight.nbytes + self.scales.nbytes + self.qzeros.nbytes + extra)

    @property
    def bits_per_weight(self) -> float:
        return 8.0 * self.nbytes / (self.shape[0] * self.shape[1])

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        out = {f"{prefix}.qweight": self.qweight, f"{prefix}.scales": self.scales}
        out[f"{prefix}.qzeros"] = self.qzeros
        if self.in_scale is not None:
            out[f"{prefix}.in_scale"] = self.in_scale
        if self.bias is not None:
            out[f"{prefix}.bias"] = self.bias
        return out

    def meta(self) -> dict:
        return {"bits": self.bits, "group_size": self.group_size, "shape": list(self.shape)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str, meta: dict) -> PackedLinear:
        try:
            return cls(
                np.asarray(arrays[f"{prefix}.qweight"]),
                np.asarray(arrays[f"{prefix}.scales"]),
                np.asarray(arrays[f"{prefix}.qzeros"]),
                int(meta["bits"]),
                int(meta["group_size"]),
                tuple(int(v) for v in meta["shape"]),
                arrays.get(f"{prefix}.in_scale"),
                arrays.get(f"{prefix}.bias"),
            )
        except KeyError as exc:
            raise ShapeError(f"quantized layer {prefix!r} lacks {exc}") from None


class QuantLinear(nn.Module):
    """A drop-in for ``nn.Linear`` over a :class:`PackedLinear`: the weight is unpacked at each
    call (nothing float is kept), so the module holds ~bits/32 of the float layer's bytes."""

    def __init__(self, packed: PackedLinear) -> None:
        super().__init__()
        self.packed = packed
        self.out_features, self.in_features = packed.shape
        self._in_scale = (
            None
            if packed.in_scale is None
            else torch.from_numpy(packed.in_scale.astype(np.float32))
        )
        self._bias = None if packed.bias is None else torch.from_numpy(packed.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.from_numpy(self.packed.dequantize()).to(x.dtype)
        if self._in_scale is not None:
            x = x * self._in_scale.to(x.dtype)
        return nn.functional.linear(x, w, None if self._bias is None else self._bias.to(x.dtype))

    def extra_repr(self) -> str:
        p = self.packed
        return (
            f"in={self.in_features}, out={self.out_features}, bits={p.bits}, group={p.group_size}"
        )


# --------------------------------------------------------------------------- AutoAWQ layout
def to_autoawq_gemm(p: PackedLinear) -> dict[str, np.ndarray]:
    """AutoAWQ's ``WQLinear_GEMM`` tensors of a 4-bit layer: ``qweight`` int32 (in, out / 8)
    and ``qzeros`` int32 (groups, out / 8), eight codes per int32 in the order
    (0, 2, 4, 6, 1, 3, 5, 7); ``scales`` float16 (groups, out)."""
    if p.bits != 4 or p.shape[0] % 8 or p.in_scale is not None:
        raise ConfigError(
            "AutoAWQ's GEMM layout holds 4-bit layers with out_features a multiple of 8 and no "
            f"input scale; this layer has bits={p.bits}, shape={p.shape}, "
            f"input scale={'yes' if p.in_scale is not None else 'no'}"
        )

    def pack(cols: np.ndarray) -> np.ndarray:  # (rows, out) codes -> (rows, out / 8) int32
        r, o = cols.shape
        c = cols.astype(np.uint32).reshape(r, o // 8, 8)[:, :, list(AWQ_ORDER)]
        word = np.zeros((r, o // 8), np.uint32)
        for i in range(8):
            word |= c[:, :, i] << np.uint32(4 * i)
        return word.view(np.int32)

    return {
        "qweight": pack(p.codes().T),
        "qzeros": pack(p.zeros().T),
        "scales": np.ascontiguousarray(p.scales.T),
    }


def from_autoawq_gemm(
    tensors: dict[str, np.ndarray], group_size: int, *, bias=None
) -> PackedLinear:
    """The :class:`PackedLinear` of AutoAWQ ``WQLinear_GEMM`` tensors (4-bit)."""

    def unpack(words: np.ndarray) -> np.ndarray:
        w = np.asarray(words).view(np.uint32)
        r, o8 = w.shape
        c = np.empty((r, o8, 8), np.uint8)
        for i in range(8):
            c[:, :, AWQ_ORDER[i]] = (w >> np.uint32(4 * i)) & 15
        return c.reshape(r, o8 * 8)

    codes = unpack(tensors["qweight"]).T  # (out, in)
    zeros = unpack(tensors["qzeros"]).T  # (out, groups)
    scales = np.ascontiguousarray(np.asarray(tensors["scales"], np.float16).T)
    out, inp = codes.shape
    if scales.shape != (out, inp // group_size):
        raise ShapeError(
            f"scales {scales.shape} do not match {out} outputs in groups of {group_size} "
            f"over {inp} inputs; check `group_size`"
        )
    return PackedLinear(
        pack_bits(codes, 4).reshape(out, -1),
        scales,
        pack_bits(zeros, 4),
        4,
        group_size,
        (out, inp),
        None,
        bias,
    )


# --------------------------------------------------------------------------- the plan
@dataclass
class Group:
    """Linear layers that read the same input, and where their input scale goes: ``fold`` is
    ("norm", module) (weight, and bias if any, divided by s), ("rows", linear[, start, stop])
    (those output rows divided by s), ("rows_sqrt", linear) (rows divided by sqrt(s), for a
    squared ReLU between) or None (the layers keep ``1 / s`` as an input scale)."""

    linears: list[str]
    fold: tuple | None = None
    no_clip: tuple[str, ...] = ()


def _plan(model: nn.Module, cfg: AWQConfig) -> list[Group]:
    from neurofabric.seq.mamba import Mamba
    from neurofabric.seq.rwkv import RWKV4

    groups: list[Group] = []
    if isinstance(model, RWKV4):
        for i in range(model.config.n_layer):
            p = f"blocks.{i}."
            groups += [
                Group(
                    [p + "att.key", p + "att.value", p + "att.receptance"],
                    ("norm", p + "ln1"),
                    no_clip=(p + "att.key",),
                ),
                Group([p + "att.output"], ("rows", p + "att.value")),
                Group([p + "ffn.key", p + "ffn.receptance"], ("norm", p + "ln2")),
                Group([p + "ffn.value"], ("rows_sqrt", p + "ffn.key")),
            ]
        if cfg.quantize_head and model.head is not None:
            groups.append(Group(["head"], ("norm", "ln_out")))
    elif isinstance(model, Mamba):
        r = model.config.dt_rank
        for i in range(model.config.n_layer):
            p = f"layers.{i}."
            groups += [
                Group([p + "mixer.in_proj"], ("norm", p + "norm")),
                Group([p + "mixer.x_proj"]),
                Group([p + "mixer.dt_proj"], ("rows", p + "mixer.x_proj", 0, r)),
                Group([p + "mixer.out_proj"]),
            ]
    covered = {n for g in groups for n in g.linears}
    head_names = {"head", "lm_head"}
    for name, mod in model.named_modules():  # any other model: every linear on its own
        if isinstance(mod, nn.Linear) and name not in covered:
            if name.split(".")[-1] in head_names and not cfg.quantize_head:
                continue
            groups.append(Group([name]))
    return groups


def _module(model: nn.Module, name: str) -> nn.Module:
    return model.get_submodule(name)


# --------------------------------------------------------------------------- calibration
def _collect_inputs(model, names: list[str], calib, cfg: AWQConfig) -> dict[str, torch.Tensor]:
    """Inputs of the named linears over ``calib`` (a (n, T) token tensor, or an iterable of
    them; any input the model takes, one row per position), at ``max_rows`` random positions
    shared by all layers."""
    batches = [calib] if isinstance(calib, torch.Tensor) else list(calib)
    if not batches:
        raise ConfigError("AWQ needs calibration data: `calib` is empty")
    # positions per batch: every token of an id tensor, every row of a float input
    sizes = [b.numel() if not b.is_floating_point() else b.numel() // b.shape[-1] for b in batches]
    total = sum(sizes)
    gen = torch.Generator().manual_seed(int(cfg.seed))
    keep = torch.randperm(total, generator=gen)[: cfg.max_rows].sort().values
    store: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    current = {"rows": None}

    def hook(name):
        def fn(_mod, inputs, _out):
            x = inputs[0].detach().reshape(-1, inputs[0].shape[-1])
            store[name].append(x[current["rows"]].to(torch.float32))

        return fn

    handles = [_module(model, n).register_forward_hook(hook(n)) for n in names]
    try:
        start = 0
        with torch.no_grad():
            for b, size in zip(batches, sizes, strict=True):
                sel = keep[(keep >= start) & (keep < start + size)] - start
                current["rows"] = sel
                if len(sel):
                    model(b)
                start += size
    finally:
        for h in handles:
            h.remove()
    return {n: torch.cat(v) for n, v in store.items()}


# --------------------------------------------------------------------------- the search
def _search_scale(
    ws: list[torch.Tensor], x: torch.Tensor, cfg: AWQConfig
) -> tuple[torch.Tensor, float, float]:
    """The best input scale of a group (weights ``ws``, inputs ``x``), its ratio alpha and the
    error reduction against RTN."""
    act = x.abs().mean(0)
    target = [x @ w.T for w in ws]
    numel = sum(t.numel() for t in target)
    best = (float("inf"), None, 0.0)
    err0 = None
    for k in range(cfg.n_grid):
        alpha = k / cfg.n_grid
        s = act.pow(alpha).clamp(min=1e-4)
        s = s / (s.max() * s.min()).sqrt()
        s = 1.0 / (1.0 / s).to(torch.float16).to(torch.float32)  # 1 / s is stored as float16
        xs = x / s
        err = 0.0
        for w, t in zip(ws, target, strict=True):
            wq = pseudo_quantize(w * s, cfg.bits, cfg.group_size)
            err += float(((xs @ wq.T) - t).pow(2).sum())
        err /= numel
        if k == 0:
            err0 = err
        if err < best[0]:
            best = (err, s, alpha)
    return best[1], best[2], (best[0] / err0 if err0 else 1.0)


def _search_clip(w: torch.Tensor, x: torch.Tensor, cfg: AWQConfig) -> torch.Tensor:
    """``w`` clipped per (row, group) to the range with the lowest partial-output error."""
    out, inp = w.shape
    G, ng = cfg.group_size, inp // cfg.group_size
    if x.shape[0] > cfg.clip_tokens:
        step = x.shape[0] // cfg.clip_tokens
        x = x[::step][: cfg.clip_tokens]
    xg = x.reshape(-1, ng, G).permute(1, 0, 2)  # (ng, n, G)
    wg = w.reshape(out, ng, G).permute(1, 2, 0)  # (ng, G, out)
    org = torch.bmm(xg, wg)  # (ng, n, out)
    amax = w.abs().reshape(out, ng, G).amax(-1)  # (out, ng)
    best_err = torch.full((out, ng), float("inf"))
    best_max = amax.clone()
    for i in range(int(cfg.max_shrink * cfg.n_grid)):
        m = amax * (1 - i / cfg.n_grid)
        cw = torch.maximum(torch.minimum(w.reshape(out, ng, G), m[..., None]), -m[..., None])
        qw = pseudo_quantize(cw.reshape(out, inp), cfg.bits, G).reshape(out, ng, G)
        cur = torch.bmm(xg, qw.permute(1, 2, 0))
        err = (cur - org).pow(2).mean(1).T  # (out, ng)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_max = torch.where(better, m, best_max)
    m = best_max[..., None]
    return torch.maximum(torch.minimum(w.reshape(out, ng, G), m), -m).reshape(out, inp)


def _fold(model: nn.Module, fold: tuple, s: torch.Tensor) -> None:
    kind, name = fold[0], fold[1]
    mod = _module(model, name)
    with torch.no_grad():
        if kind == "norm":
            mod.weight.div_(s)
            if getattr(mod, "bias", None) is not None:
                mod.bias.div_(s)
        elif kind == "rows":
            lo, hi = (fold[2], fold[3]) if len(fold) > 2 else (0, mod.weight.shape[0])
            mod.weight[lo:hi].div_(s[:, None])
            if mod.bias is not None:
                mod.bias[lo:hi].div_(s)
        elif kind == "rows_sqrt":
            mod.weight.div_(s.sqrt()[:, None])
        else:  # pragma: no cover - the plan only makes the kinds above
            raise ConfigError(f"unknown fold {kind!r}")


@dataclass
class QuantReport:
    """What :func:`quantize_model` did: per layer its shape, bits per weight, the AWQ ratio
    alpha and the calibration error against RTN's (1 = no gain); layers left in float."""

    config: dict
    layers: dict[str, dict] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def bits_per_weight(self) -> float:
        """Over the quantized layers: stored bits / weights."""
        n = sum(v["shape"][0] * v["shape"][1] for v in self.layers.values())
        b = sum(v["bits_per_weight"] * v["shape"][0] * v["shape"][1] for v in self.layers.values())
        return b / n if n else 0.0


def quantize_model(
    model: nn.Module, calib: Any = None, config: AWQConfig | None = None
) -> QuantReport:
    """Quantize ``model``'s linear layers in place (each becomes a :class:`QuantLinear`).

    ``calib``: token ids (a (n, T) tensor or an iterable of them) the model reads to record
    its activations; needed for ``method="awq"``. Layers whose input width is not a multiple
    of ``group_size`` stay float (listed in ``report.skipped``)."""
    cfg = config or AWQConfig()
    groups = _plan(model, cfg)
    report = QuantReport(cfg.as_dict())
    usable = []
    for g in groups:
        keep = []
        for n in g.linears:
            lin = _module(model, n)
            if not isinstance(lin, nn.Linear):
                report.skipped[n] = f"{type(lin).__name__} is not nn.Linear"
            elif lin.in_features % cfg.group_size:
                report.skipped[n] = (
                    f"{lin.in_features} inputs are not a multiple of group_size {cfg.group_size}"
                )
            else:
                keep.append(n)
        if keep:
            usable.append(Group(keep, g.fold, g.no_clip))
    names = [n for g in usable for n in g.linears]
    if not names:
        raise ConfigError(
            f"no linear layer of this model can be quantized with group_size {cfg.group_size}: "
            f"{report.skipped}; use a smaller group_size"
        )
    in_div: dict[str, torch.Tensor] = {}
    inputs: dict[str, torch.Tensor] = {}
    if cfg.method == "awq":
        if calib is None:
            raise ConfigError("method 'awq' needs calibration tokens (`calib`); or use 'rtn'")
        model.eval()
        inputs = _collect_inputs(model, names, calib, cfg)
        for g in usable:
            ws = [_module(model, n).weight.detach().to(torch.float32) for n in g.linears]
            x = inputs[g.linears[0]]
            s, alpha, gain = _search_scale(ws, x, cfg)
            with torch.no_grad():
                for n in g.linears:
                    _module(model, n).weight.mul_(s)
            if g.fold is not None:
                _fold(model, g.fold, s)
            for n in g.linears:
                in_div[n] = s
                report.layers[n] = {"alpha": alpha, "error_vs_rtn": gain}
        if cfg.clip:
            for g in usable:
                for n in g.linears:
                    if n in g.no_clip:
                        continue
                    lin = _module(model, n)
                    with torch.no_grad():
                        lin.weight.copy_(
                            _search_clip(lin.weight.detach().float(), inputs[n] / in_div[n], cfg)
                        )
    for g in usable:
        for n in g.linears:
            lin = _module(model, n)
            in_scale = None
            if n in in_div and g.fold is None:
                in_scale = (1.0 / in_div[n]).numpy()
            packed = PackedLinear.from_weight(
                lin.weight.detach(),
                cfg.bits,
                cfg.group_size,
                in_scale=in_scale,
                bias=None if lin.bias is None else lin.bias.detach().numpy(),
            )
            parent_name, _, attr = n.rpartition(".")
            setattr(
                model.get_submodule(parent_name) if parent_name else model,
                attr,
                QuantLinear(packed),
            )
            entry = report.layers.setdefault(n, {})
            entry.update(shape=list(packed.shape), bits_per_weight=packed.bits_per_weight)
    log.info(
        "quantized %d layers (%s, %d bits, group %d): %.3f bits per weight",
        len(report.layers),
        cfg.method,
        cfg.bits,
        cfg.group_size,
        report.bits_per_weight,
    )
    return report


def quantized_layers(model: nn.Module) -> Iterable[tuple[str, QuantLinear]]:
    return ((n, m) for n, m in model.named_modules() if isinstance(m, QuantLinear))
