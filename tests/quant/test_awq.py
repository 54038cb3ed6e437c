"""AWQ and RTN group-wise quantization: the quantizer's bound, the layout, the folds, the search."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from neurofabric.core.errors import CheckpointError, ConfigError, ShapeError
from neurofabric.quant.awq import (
    AWQConfig,
    PackedLinear,
    QuantLinear,
    _fold,
    _plan,
    _search_clip,
    from_autoawq_gemm,
    pseudo_quantize,
    quantize_groups,
    quantize_model,
    to_autoawq_gemm,
)
from neurofabric.seq import RWKV4, Mamba, MambaConfig, RWKVConfig


def _rwkv():
    return RWKV4(RWKVConfig(vocab_size=40, n_layer=2, n_embd=64, ffn_mult=2), seed=1)


def _mamba():
    return Mamba(MambaConfig(vocab_size=40, n_layer=2, d_model=64), seed=1)


def _jitter(model, seed=0, scale=0.05):
    """Move every parameter off its initial value (layer norms not all ones)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return model


def _tokens(n=4, t=32, seed=0):
    return torch.randint(0, 40, (n, t), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("bits", [3, 4, 8])
def test_round_to_nearest_is_within_half_a_step(bits):
    w = torch.randn(24, 256, generator=torch.Generator().manual_seed(bits)) * 0.3
    codes, scales, zeros = quantize_groups(w, bits, 64)
    assert codes.dtype == torch.uint8 and int(codes.max()) < 1 << bits
    assert scales.dtype == torch.float16 and scales.shape == (24, 4)
    dq = pseudo_quantize(w, bits, 64)
    step = scales.float().repeat_interleave(64, dim=1)
    assert torch.all((w - dq).abs() <= step / 2 * (1 + 1e-5))
    # zero is on the grid: a zero weight comes back exactly
    w0 = w.clone()
    w0[:, 5] = 0
    assert torch.all(pseudo_quantize(w0, bits, 64)[:, 5] == 0)


def test_packed_layout_and_bits_per_weight():
    w = torch.randn(16, 256, generator=torch.Generator().manual_seed(0))
    p = PackedLinear.from_weight(w, 4, 128)
    assert p.qweight.shape == (16, 128) and p.qweight.dtype == np.uint8
    codes, scales, zeros = quantize_groups(w, 4, 128)
    np.testing.assert_array_equal(p.codes(), codes.numpy())
    np.testing.assert_array_equal(p.zeros(), zeros.numpy())
    # two codes a byte, the even one in the low nibble
    np.testing.assert_array_equal(p.qweight[:, 0] & 15, codes.numpy()[:, 0])
    np.testing.assert_array_equal(p.qweight[:, 0] >> 4, codes.numpy()[:, 1])
    # AutoAWQ's figure: 4 bits + a float16 scale and a 4-bit zero per 128 weights
    assert p.bits_per_weight == pytest.approx(4 + 16 / 128 + 4 / 128)
    p3 = PackedLinear.from_weight(w, 3, 128)
    assert p3.bits_per_weight == pytest.approx(3 + 16 / 128 + 3 / 128)
    np.testing.assert_allclose(p3.dequantize(), pseudo_quantize(w, 3, 128).numpy())
    with pytest.raises(ShapeError, match="qweight"):
        PackedLinear(p.qweight[:, :-1], p.scales, p.qzeros, 4, 128, (16, 256))


def test_autoawq_gemm_layout_round_trips_and_orders_nibbles():
    w = torch.randn(16, 256, generator=torch.Generator().manual_seed(1))
    p = PackedLinear.from_weight(w, 4, 128)
    t = to_autoawq_gemm(p)
    assert t["qweight"].dtype == np.int32 and t["qweight"].shape == (256, 2)
    assert t["qzeros"].shape == (2, 2) and t["scales"].shape == (2, 16)
    back = from_autoawq_gemm(t, 128)
    np.testing.assert_array_equal(back.qweight, p.qweight)
    np.testing.assert_array_equal(back.qzeros, p.qzeros)
    np.testing.assert_array_equal(back.scales, p.scales)
    # the documented order: nibble i of a word holds output column (0, 2, 4, 6, 1, 3, 5, 7)[i]
    codes = np.tile(np.arange(8, dtype=np.uint8), (128, 1)).T  # output o has code o
    one = PackedLinear(
        np.ascontiguousarray((codes[:, 0::2] | codes[:, 1::2] << 4).astype(np.uint8)),
        np.ones((8, 1), np.float16),
        np.zeros(4, np.uint8),
        4,
        128,
        (8, 128),
    )
    word = int(to_autoawq_gemm(one)["qweight"][0, 0].view(np.uint32))
    assert [(word >> (4 * i)) & 15 for i in range(8)] == [0, 2, 4, 6, 1, 3, 5, 7]
    with pytest.raises(ConfigError, match="4-bit"):
        to_autoawq_gemm(PackedLinear.from_weight(w, 3, 128))


@pytest.mark.parametrize("make", [_rwkv, _mamba])
def test_folded_scales_leave_the_float_model_unchanged(make):
    model = _jitter(make())
    x = _tokens()
    with torch.no_grad():
        ref = model(x)[0]
    g = torch.Generator().manual_seed(3)
    for group in _plan(model, AWQConfig()):
        if group.fold is None:
            continue
        width = model.get_submodule(group.linears[0]).in_features
        s = torch.exp(torch.randn(width, generator=g))  # scales over a factor e^3 or so
        with torch.no_grad():
            for n in group.linears:
                model.get_submodule(n).weight.mul_(s)
        _fold(model, group.fold, s)
    with torch.no_grad():
        out = model(x)[0]
    assert float((out - ref).abs().max()) < 1e-4 * float(ref.abs().max())


def test_rwkv_plan_groups_layers_by_their_input():
    plan = _plan(_rwkv(), AWQConfig())
    first = [(g.linears, g.fold) for g in plan[:4]]
    assert first[0] == (
        ["blocks.0.att.key", "blocks.0.att.value", "blocks.0.att.receptance"],
        ("norm", "blocks.0.ln1"),
    )
    assert plan[0].no_clip == ("blocks.0.att.key",)
    assert first[1] == (["blocks.0.att.output"], ("rows", "blocks.0.att.value"))
    assert first[3] == (["blocks.0.ffn.value"], ("rows_sqrt", "blocks.0.ffn.key"))
    assert sum(len(g.linears) for g in plan) == 2 * 7  # the head stays float


class _OneLayer(nn.Module):
    def __init__(self, n_in=256, n_out=64, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.lin = nn.Linear(n_in, n_out, bias=True)

    def forward(self, x):
        return self.lin(x)


def _outlier_inputs(n, n_in=256, seed=0):
    """Activations with a few channels 30x larger than the rest (what AWQ is for)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, n_in, generator=g)
    x[:, :4] *= 30.0
    return x


def test_awq_beats_rtn_where_activations_have_outlier_channels():
    calib, held_out = _outlier_inputs(1024, seed=0), _outlier_inputs(512, seed=1)
    base = _OneLayer()
    with torch.no_grad():
        ref = base(held_out)
    errs = {}
    for method in ("rtn", "awq"):
        m = _OneLayer()
        rep = quantize_model(m, calib, AWQConfig(bits=3, group_size=64, method=method))
        assert isinstance(m.lin, QuantLinear)
        with torch.no_grad():
            errs[method] = float((m(held_out) - ref).pow(2).mean())
        if method == "awq":
            assert rep.layers["lin"]["alpha"] > 0 and rep.layers["lin"]["error_vs_rtn"] < 1
            assert m.lin.packed.in_scale is not None  # nothing to fold into: kept as input scale
    assert errs["awq"] < 0.7 * errs["rtn"], errs


def test_awq_search_is_never_worse_than_rtn_on_the_calibration_data():
    model = _jitter(_rwkv())
    rep = quantize_model(model, _tokens(8), AWQConfig(bits=4, group_size=32, clip=False))
    assert all(v["error_vs_rtn"] <= 1.0 for v in rep.layers.values())
    assert rep.bits_per_weight == pytest.approx(4 + 16 / 32 + 4 / 32)


def test_clipping_search_lowers_the_partial_output_error():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(32, 128, generator=g)
    w[:, 7] *= 8  # one outlier weight per row stretches its group's range
    x = torch.randn(256, 128, generator=g)
    cfg = AWQConfig(bits=3, group_size=64)
    clipped = _search_clip(w, x, cfg)
    assert torch.all(clipped.abs() <= w.abs() + 1e-7)

    def err(v):
        return float((x @ pseudo_quantize(v, 3, 64).T - x @ w.T).pow(2).mean())

    assert err(clipped) < err(w)


@pytest.mark.parametrize("make", [_rwkv, _mamba])
def test_quantized_model_saves_and_loads_exactly(make, tmp_path):
    from neurofabric.seq.io import load_model, save_quantized

    model = _jitter(make())
    rep = quantize_model(model, _tokens(), AWQConfig(bits=4, group_size=32))
    save_quantized(model, tmp_path / "q", quant=rep.config)
    back = load_model(tmp_path / "q")
    x = _tokens(2, 16, seed=5)
    with torch.no_grad():
        assert torch.equal(model(x)[0], back(x)[0])
    assert sum(isinstance(m, QuantLinear) for m in back.modules()) == len(rep.layers)
    # a flipped byte is caught by the checksum
    f = tmp_path / "q" / "model.safetensors"
    raw = bytearray(f.read_bytes())
    raw[-3] ^= 0xFF
    f.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="sha256"):
        load_model(tmp_path / "q")


def test_autoawq_layout_file_reads_back(tmp_path):
    from neurofabric.seq.io import load_model, save_quantized

    model = _jitter(_rwkv())
    quantize_model(model, _tokens(), AWQConfig(bits=4, group_size=32))
    save_quantized(model, tmp_path / "awq", layout="autoawq-gemm")
    from safetensors.numpy import load_file

    raw = load_file(tmp_path / "awq" / "model.safetensors")
    assert raw["blocks.0.att.key.qweight"].dtype == np.int32
    assert raw["blocks.0.att.key.qweight"].shape == (64, 8)
    back = load_model(tmp_path / "awq")
    x = _tokens(2, 16, seed=6)
    with torch.no_grad():
        assert torch.equal(model(x)[0], back(x)[0])
    mamba = _jitter(_mamba())
    quantize_model(mamba, _tokens(), AWQConfig(bits=4, group_size=32))  # x_proj: input scale
    with pytest.raises(ConfigError, match="input scale"):
        save_quantized(mamba, tmp_path / "m", layout="autoawq-gemm")
    assert not (tmp_path / "m").exists()


def test_save_quantized_refuses_a_float_model(tmp_path):
    from neurofabric.seq.io import save_quantized

    with pytest.raises(CheckpointError, match="no quantized layer"):
        save_quantized(_rwkv(), tmp_path / "q")


def test_bad_configs_are_named():
    with pytest.raises(ConfigError, match="bits"):
        AWQConfig(bits=1)
    with pytest.raises(ConfigError, match="multiple of 8"):
        AWQConfig(group_size=12)
    with pytest.raises(ConfigError, match="max_shrink"):
        AWQConfig(max_shrink=1.0)
    with pytest.raises(ConfigError, match="calibration"):
        quantize_model(_rwkv(), None, AWQConfig(group_size=32))
    with pytest.raises(ConfigError, match="group_size"):  # 64 or 128 inputs, groups of 256
        quantize_model(_rwkv(), None, AWQConfig(method="rtn", group_size=256))
    rep = quantize_model(_mamba(), None, AWQConfig(method="rtn", group_size=32))
    assert set(rep.skipped) == {"layers.0.mixer.dt_proj", "layers.1.mixer.dt_proj"}
