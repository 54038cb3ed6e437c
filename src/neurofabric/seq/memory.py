"""How much memory a model needs: parameters, training state, the recurrent state per sequence
and the activations a training step keeps for its backward pass, estimated from the config
alone and measured on a real step.

>>> from neurofabric.seq import RWKVConfig
>>> from neurofabric.seq.memory import estimate_memory
>>> est = estimate_memory(RWKVConfig(vocab_size=66, n_layer=4, n_embd=256), batch_size=16,
...                       seq_len=128)
>>> round(est.parameters / 2**20, 1), est.state_per_sequence      # MiB, bytes
(13.2, 20480)

``estimate_memory`` counts, term by term, the tensors that autograd saves during
``model(x)`` followed by the cross-entropy loss (the step of ``seq.train.Trainer``);
``measure_memory`` runs that step on a copy of the model with saved-tensor hooks and sums the
distinct storages that are not parameters. The test suite holds the two within 2 % of each
other on several shapes; ``benchmarks/seq_memory.py`` compares them at full size, with the
process's peak RSS as a third, coarser witness.

Where the activations go (elements; N = batch x seq_len tokens; float unless noted):

* RWKV-4, per layer: 15 N C for the per-token tensors of both mixes (layer norms, the token
  shift's difference, k, v, r), 2 N F for the channel mix's hidden layer, and the WKV: with the
  numba kernels (the default on CPU), 4 N C (the state after every step and the output, for
  the exact reverse-time gradient) plus 3 B C for the initial state, and the fused token
  shifts keep their input in place of the difference, plus 2 B C for the shifts and 5 C for
  the mixes; with the chunked torch form, 10 N C
  for the chunk slices and, per chunk of length L, 2 B L^2 C for the pairwise weights (the
  masked log-weights and their exponentials), 5 B C for the carried state and L^2 for the
  mask.
* Mamba-1, per layer: 2 N d_inner for in_proj's output, 8 N d_inner for the conv, gates, delta
  and the scan's inputs, 3 N d_model, (dt_rank + 2 d_state) N for x_proj's output,
  B d_inner (seq_len + d_conv - 1) for the conv window. The scan itself costs, with the numba
  kernel, N d_inner d_state (every hidden state, for the exact reverse-time gradient) plus
  2 N d_state; with the chunked torch scan, 4 N d_inner d_state plus the pairwise decays,
  B L^2 d_inner d_state per chunk of length L, which dominate everything else.
* RWKV-7 (numba WKV, the default on CPU), per layer: 29 N C for the per-token tensors (the
  layer norms, the token shift, r, k, v and their inputs, the decay, the in-context rate,
  k's normalisation, the WKV's inputs r, k, v, a, b and output, the group norm, the bonus, the
  gate), 2 N F for the channel mix, N (d_decay + d_aaa + d_gate) for the LoRAs' hidden
  layers, 5 N H for the per-head norms and the bonus sums, 4 N for the layer-norm
  statistics, and the state at the start of every block of ``WKV7_CHECKPOINT_EVERY`` steps,
  B ceil(T / 16) H N^2 (the backward pass recomputes the states inside a block), and the
  fused token shifts' 2 B C shifts and 7 C mixes; layers after the first add the value
  residual, 2 N C + N d_mv, the first the extra layer norm, N C + 2 N.
  The chunked torch form has no count (measure it).
* Mamba-2, per layer (d_inner = D, conv_dim = D + 2 G S, H heads of P channels, G groups of S
  states, blocks of q = min(chunk, T) steps, n = ceil(T / q) of them, T_p = n q): the norm
  and in_proj's input, 3 N d + N; the conv window and both sides of its SiLU, B conv_dim
  (T + d_conv - 1) + 2 N conv_dim; dt before and after the softplus, 2 N H; the SSD inside
  the blocks, 2 B n q^2 H + B n q^2 G for the masked decays, the scores and C.B, and
  4 B T_p H P + 2 B T_p H + 4 B T_p G S for the padded inputs and the copies the einsums make;
  across blocks, 2 B n H P S + 2 B (n + 1) n H + B (n + 1) H + B H P S; the gated norm and
  out_proj, N (D + conv_dim + H) + 5 N D + N G. With a single block (n = 1) some einsums
  read views instead of copies: B T_p H P + 2 B H less, and with one group also
  4 B T_p G S less and B H P S more.
* All: the logits N V, the final norm, and the int64 inputs and targets.

The counts belong to this code and torch 2.13's autograd (what each operator saves); the test
fails if either changes them.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from typing import Any

import torch

from neurofabric.core.errors import ConfigError
from neurofabric.core.validation import check_int

__all__ = ["MemoryEstimate", "estimate_memory", "measure_memory", "relative_errors"]


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes, for one training step of ``batch_size`` sequences of ``seq_len`` tokens."""

    arch: str
    batch_size: int
    seq_len: int
    parameters: int
    gradients: int
    optimizer: int  # AdamW: two moments per parameter and a step counter per tensor
    state_per_sequence: int  # the recurrent state carried between tokens when decoding
    activations: int  # saved for the backward pass of one step

    @property
    def training(self) -> int:
        """Parameters, gradients, optimizer state and activations together."""
        return self.parameters + self.gradients + self.optimizer + self.activations

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "training": self.training}


def _chunks(seq_len: int, chunk: int) -> list[int]:
    return [min(chunk, seq_len - s) for s in range(0, seq_len, chunk)]


def _config_of(model_or_config: Any):
    from neurofabric.seq.mamba import MambaConfig
    from neurofabric.seq.mamba2 import Mamba2Config
    from neurofabric.seq.rwkv import RWKVConfig
    from neurofabric.seq.rwkv7 import RWKV7Config

    cfg = getattr(model_or_config, "config", model_or_config)
    for cls, name in (
        (RWKVConfig, "rwkv"),
        (MambaConfig, "mamba"),
        (RWKV7Config, "rwkv7"),
        (Mamba2Config, "mamba2"),
    ):
        if isinstance(cfg, cls):
            return name, cfg
    raise ConfigError(
        f"estimate_memory takes the config of an RWKV-4, RWKV-7, Mamba-1 or Mamba-2 model "
        f"(RWKVConfig, RWKV7Config, MambaConfig, Mamba2Config) or a model built from one, got "
        f"{type(model_or_config).__name__}"
    )


def _measured_arch(model: Any, *, strict: bool = True) -> str | None:
    """The arch name of a model ``measure_memory`` can measure: RWKV-4, RWKV-7, Mamba-1 or
    Mamba-2 (models with a fixed-size recurrent state); None (or a ConfigError if ``strict``)
    otherwise."""
    from neurofabric.seq.mamba import Mamba
    from neurofabric.seq.mamba2 import Mamba2
    from neurofabric.seq.rwkv import RWKV4
    from neurofabric.seq.rwkv7 import RWKV7

    for cls, name in ((RWKV4, "rwkv"), (Mamba, "mamba"), (RWKV7, "rwkv7"), (Mamba2, "mamba2")):
        if isinstance(model, cls):
            return name
    if strict:
        raise ConfigError(
            f"measure_memory takes an RWKV-4, RWKV-7, Mamba-1 or Mamba-2 model, got "
            f"{type(model).__name__} (a transformer's decoding state is its KV cache, which "
            f"grows with the context: see GPT.cache_bytes_per_token)"
        )
    return None


def _kernel_of(model_or_config: Any, field: str, weight_attr: str) -> str:
    """The training kernel (Mamba's ``scan``, RWKV-4's ``wkv``) a model trains with: the
    config's, "auto" resolved for the model's device (the CPU for a config)."""
    from neurofabric.seq.kernels import resolve_training_kernel

    cfg = getattr(model_or_config, "config", model_or_config)
    value = getattr(cfg, field)
    if value != "auto":
        return value
    weight = getattr(model_or_config, weight_attr, None)
    device = weight.weight.device if weight is not None else "cpu"
    return resolve_training_kernel(field, "auto", device, "chunked", f"set_{field}")


def _rwkv_counts(c, B: int, T: int, wkv: str) -> tuple[int, int, int, int]:
    """(parameters, parameter tensors, state elements per sequence, activation bytes / size)."""
    C, F, V, nl = c.n_embd, c.ffn_dim, c.vocab_size, c.n_layer
    per_layer = 4 * C + 5 * C + 4 * C * C + 2 * C + F * C + C * C + C * F
    params = V * C + nl * per_layer + 2 * C + 2 * C + (0 if c.tie_head else V * C)
    tensors = 1 + nl * 18 + 2 + 2 + (0 if c.tie_head else 1)
    N = B * T
    float_per_layer = sum(
        (
            15 * N * C + 2 * N * F,  # per-token tensors of the two mixes, the FFN hidden layer
            4 * N + C,  # layer-norm statistics, exp(time_decay)
        )
    )
    other = 0
    if wkv == "numba":
        # the state after every step and the output; the initial state; the decay it reads;
        # the fused token shifts' (B, C) shifts and stacked mixes (3 + 2 of them)
        float_per_layer += 4 * N * C + 3 * B * C + C + 2 * B * C + 5 * C
    else:
        Ls = _chunks(T, c.chunk)
        sq = sum(L * L for L in Ls)
        float_per_layer += sum(
            (
                10 * N * C,  # the chunk slices
                2 * B * C * sq + sq,  # pairwise WKV weights and the float mask, per chunk
                5 * B * C * len(Ls) + 2 * T,  # carried state per chunk, position ramps
            )
        )
        other += nl * sq  # bool masks (1 byte)
    floats = nl * float_per_layer + 3 * N * C + 4 * N + N * V + 1
    other += 2 * N * 8  # int64 inputs and targets
    return params, tensors, nl * 5 * C, (floats, other)


def _mamba_counts(c, B: int, T: int, scan: str) -> tuple[int, int, int, int]:
    d, di, n, K, r, V, nl = (
        c.d_model,
        c.d_inner,
        c.d_state,
        c.d_conv,
        c.dt_rank,
        c.vocab_size,
        c.n_layer,
    )
    per_layer = d + 2 * di * d + di * K + di + (r + 2 * n) * di + r * di + di + di * n + di + d * di
    params = V * d + nl * per_layer + d
    tensors = 1 + nl * 10 + 1
    N = B * T
    float_per_layer = sum(
        (
            2 * N * di + 8 * N * di + 3 * N * d,  # in_proj output; conv, gates, delta, scan inputs
            (r + 2 * n) * N + N,  # x_proj output; RMSNorm statistic
            B * di * (T + K - 1) + 2 * di * n,  # conv window; A
        )
    )
    other = 0
    if scan == "numba":
        float_per_layer += N * di * n + B * di * n + 2 * N * n  # all hidden states; h0; B, C
    else:
        Ls = _chunks(T, c.chunk)
        sq = sum(L * L for L in Ls)
        float_per_layer += B * di * n * sq + 4 * N * di * n + B * di * n
        other += nl * sq  # bool masks
    floats = nl * float_per_layer + 3 * N * d + N + N * V + 1
    other += 2 * N * 8
    return params, tensors, nl * di * (K + n), (floats, other)


def _rwkv7_counts(c, B: int, T: int, wkv: str) -> tuple[int, int, int, int]:
    from neurofabric.seq.rwkv7 import WKV7_CHECKPOINT_EVERY

    if wkv != "numba":
        raise ConfigError(
            "estimate_memory counts RWKV-7 with the numba WKV (the CPU default); the chunked "
            "form's per-block tensors have no count: measure one training step with "
            "measure_memory(model, ...) (CLI: neurofabric seq memory --measure), or set wkv='numba'"
        )
    C, F, V, nl, H, hs = c.n_embd, c.ffn_dim, c.vocab_size, c.n_layer, c.n_head, c.head_size
    loras = c.d_decay + c.d_aaa + c.d_gate
    # per layer: ln1, ln2 (4C), six shift mixes, w0, a0, k_k, k_a, r_k, ln_x, the FFN's mix;
    # the LoRAs, the four C x C layers and the FFN; the first layer's ln0, the others' v LoRA
    per_layer = 18 * C + 2 * C * loras + 4 * C * C + 2 * F * C
    params = V * C + nl * per_layer + 2 * C + (nl - 1) * (C + 2 * C * c.d_mv) + 2 * C + V * C
    tensors = 1 + nl * 30 + 2 + 3 * (nl - 1) + 2 + 1
    N = B * T
    blocks = -(-T // WKV7_CHECKPOINT_EVERY)
    float_per_layer = sum(
        (
            29 * N * C + 2 * N * F + N * loras,  # per-token tensors, FFN hidden, LoRA hidden
            5 * N * H + 4 * N,  # per-head norms and bonus sums; layer-norm statistics
            B * blocks * H * hs * hs,  # the WKV state at the start of every block
            2 * B * C + 7 * C,  # the fused token shifts' shifts and their 6 + 1 mixes
        )
    )
    extra = (nl - 1) * (2 * N * C + N * c.d_mv)  # the value residual of layers after the first
    floats = nl * float_per_layer + extra + 3 * N * C + 4 * N + N * V + 1
    return params, tensors, nl * (2 * C + C * hs), (floats, 2 * N * 8)


def _mamba2_counts(c, B: int, T: int, scan: str) -> tuple[int, int, int, int]:
    from neurofabric.seq.mamba2 import SSD_CHECKPOINT_EVERY

    d, D, H, P, G, S = c.d_model, c.d_inner, c.n_heads, c.head_dim, c.n_groups, c.d_state
    K, V, nl = c.d_conv, c.vocab_size, c.n_layer
    cd = D + 2 * G * S
    per_layer = d + d * (D + cd + H) + cd * K + cd + 3 * H + D + D * d
    params = V * d + nl * per_layer + d + (0 if c.tie_embeddings else V * d)
    tensors = 1 + nl * 9 + 1 + (0 if c.tie_embeddings else 1)
    N = B * T
    around = sum(  # what the layer keeps outside the SSD, either way
        (
            3 * N * d + N,  # the norm (input, statistic, output) and in_proj's input
            B * cd * (T + K - 1) + 2 * N * cd,  # the conv window, the SiLU's input and output
            2 * N * H + 2 * H,  # dt before and after the softplus; exp(A_log) and -A
            N * (D + cd + H) + 5 * N * D + N * G,  # in_proj's output, the gated norm, out_proj
        )
    )
    bools = 0
    if scan == "numba":
        # x, B and C copied out of the SiLU's output (as much as the output) in its place;
        # the state before every block of SSD_CHECKPOINT_EVERY steps
        blocks = -(-T // SSD_CHECKPOINT_EVERY)
        float_per_layer = around + B * blocks * H * P * S
    else:
        q = min(c.chunk, T)
        n = -(-T // q)
        Tp = n * q
        inside = sum(
            (
                2 * B * n * q * q * H + B * n * q * q * G,  # masked decays, scores, C.B
                4 * B * Tp * H * P + 2 * B * Tp * H + 4 * B * Tp * G * S,  # padded inputs, copies
                2 * B * n * H * P * S + 2 * B * (n + 1) * n * H + B * (n + 1) * H,
                B * H * P * S,  # the initial state
            )
        )
        if n == 1:  # one block: some einsums read views instead of copies
            inside -= B * Tp * H * P + 2 * B * H
            if G == 1:  # and those of B and C (one batch dimension, not two)
                inside += B * H * P * S - 4 * B * Tp * G * S
        float_per_layer = around + inside
        bools = nl * (q * q + (n + 1) * n)  # the causal mask and the block mask
    floats = nl * float_per_layer + 3 * N * d + N + N * V + 1
    return params, tensors, nl * (cd * K + H * P * S), (floats, bools + 2 * N * 8)


def estimate_memory(
    model_or_config: Any,
    *,
    batch_size: int = 16,
    seq_len: int = 128,
    dtype: torch.dtype | None = None,
) -> MemoryEstimate:
    """The memory of a training step and of decoding, from the config alone (no model built).

    ``dtype``: of the parameters and activations; default the model's, or float32 for a
    config."""
    arch, cfg = _config_of(model_or_config)
    B = check_int("batch_size", batch_size, min_value=1)
    T = check_int("seq_len", seq_len, min_value=1)
    if dtype is None:
        params = getattr(model_or_config, "parameters", None)
        dtype = next(params()).dtype if callable(params) else torch.float32
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ConfigError(f"`dtype` must be a torch floating dtype, got {dtype!r}")
    size = torch.empty((), dtype=dtype).element_size()
    if arch == "rwkv":
        counts = _rwkv_counts(cfg, B, T, _kernel_of(model_or_config, "wkv", "emb"))
    elif arch == "rwkv7":
        counts = _rwkv7_counts(cfg, B, T, _kernel_of(model_or_config, "wkv", "emb"))
    elif arch == "mamba2":
        counts = _mamba2_counts(cfg, B, T, _kernel_of(model_or_config, "scan", "embeddings"))
    else:
        counts = _mamba_counts(cfg, B, T, _kernel_of(model_or_config, "scan", "embeddings"))
    params, tensors, state, (floats, other) = counts
    return MemoryEstimate(
        arch=arch,
        batch_size=B,
        seq_len=T,
        parameters=params * size,
        gradients=params * size,
        optimizer=2 * params * size + 4 * tensors,
        state_per_sequence=state * size,
        activations=floats * size + other,
    )


def _storage_bytes(tensors) -> int:
    seen: dict[int, int] = {}
    for t in tensors:
        s = t.untyped_storage()
        seen[s.data_ptr()] = s.nbytes()
    return sum(seen.values())


def measure_memory(
    model: torch.nn.Module, *, batch_size: int = 16, seq_len: int = 128, seed: int = 0
) -> MemoryEstimate:
    """The same quantities measured on one real training step (on a copy of ``model``).

    Activations are the distinct storages that autograd saves during the forward pass and the
    loss, parameters excluded; the optimizer state is AdamW's after one step; the state per
    sequence is the state ``forward`` returns for one sequence."""
    arch = _measured_arch(model)
    B = check_int("batch_size", batch_size, min_value=1)
    T = check_int("seq_len", seq_len, min_value=1)
    model = copy.deepcopy(model)
    model.train()
    params = list(model.parameters())
    param_ptrs = {p.untyped_storage().data_ptr() for p in params}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        if s.data_ptr() not in param_ptrs:
            saved[s.data_ptr()] = s.nbytes()
        return t

    gen = torch.Generator().manual_seed(int(seed))
    V = model.config.vocab_size
    x = torch.randint(0, V, (B, T), generator=gen)
    y = torch.randint(0, V, (B, T), generator=gen)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logits, _ = model(x)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
    activations = sum(saved.values())
    loss.backward()
    opt = torch.optim.AdamW(params, lr=1e-4)
    opt.step()
    with torch.no_grad():
        _, state = model(x[:1, :1])
    flat = [t for layer in state for t in layer]
    return MemoryEstimate(
        arch=arch,
        batch_size=B,
        seq_len=T,
        parameters=_storage_bytes(params),
        gradients=_storage_bytes(p.grad for p in params if p.grad is not None),
        optimizer=sum(
            v.untyped_storage().nbytes()
            for st in opt.state.values()
            for v in st.values()
            if isinstance(v, torch.Tensor)
        ),
        state_per_sequence=sum(t.numel() * t.element_size() for t in flat),
        activations=activations,
    )


def relative_errors(estimate: MemoryEstimate, measured: MemoryEstimate) -> dict[str, float]:
    """|estimate - measured| / measured for each quantity."""
    out = {}
    for k in (
        "parameters",
        "gradients",
        "optimizer",
        "state_per_sequence",
        "activations",
        "training",
    ):
        m = getattr(measured, k)
        out[k] = abs(getattr(estimate, k) - m) / m if m else math.inf
    return out
