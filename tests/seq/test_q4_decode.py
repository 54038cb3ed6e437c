"""The int4 decode path: ``q4_matvec`` and ``rwkv_step_q4`` against the dequantized reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurofabric.core.errors import ConfigError
from neurofabric.quant.awq import AWQConfig, PackedLinear, quantize_model
from neurofabric.seq import RWKV4, RWKVConfig
from neurofabric.seq.decode import RWKVDecoder, q4_arrays
from neurofabric.seq.generate import generate
from neurofabric.seq.kernels import reference as ref

nb = pytest.importorskip("neurofabric.seq.kernels.numba_cpu")


#: the integer kernels this machine runs (AVX-512 VNNI, AVX2), fastest first
INT_KERNELS = [k for k in nb.Q4_KERNELS if k != "fma"]


@pytest.mark.parametrize("kernel", ["fma", *INT_KERNELS])
@pytest.mark.parametrize(
    ("out", "inp", "group", "batch"),
    [(48, 256, 128, 1), (40, 192, 32, 3), (37, 384, 128, 2), (8, 128, 128, 1)],
)
def test_q4_matvec_matches_the_dequantized_reference(out, inp, group, batch, kernel):
    g = torch.Generator().manual_seed(out)
    packed = PackedLinear.from_weight(torch.randn(out, inp, generator=g), 4, group)
    q, s, zs = q4_arrays(packed)
    x = np.random.default_rng(batch).standard_normal((batch, inp)).astype(np.float32)
    x[0, :128] *= 1e-3  # groups of inputs on different scales
    want = ref.q4_matvec(x, q, s, zs)
    got = (nb.q4_matvec_fma if kernel == "fma" else nb.Q4_INT[kernel])(x, q, s, zs)
    assert got.dtype == np.float32 and got.shape == (batch, out)
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()
    # and the reference is the layer's own dequantized weight
    np.testing.assert_allclose(
        want, x @ packed.dequantize().T.astype(np.float64), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("kernel", INT_KERNELS)
def test_integer_kernels_stay_exact_where_codes_and_zero_points_cancel(kernel):
    """Inputs all of one sign (after a squared ReLU, say) make sum(q x) and z sum(x) large and
    nearly equal; the integer kernels centre the codes on 8 in their integer sums, so they
    stay within float32 rounding of the result (the float kernel: 4e-6 here)."""
    g = torch.Generator().manual_seed(0)
    packed = PackedLinear.from_weight(torch.randn(256, 1536, generator=g) * 0.02, 4, 128)
    q, s, zs = q4_arrays(packed)
    x = np.random.default_rng(1).standard_normal((1, 1536)).astype(np.float32) + 3.0
    want = ref.q4_matvec(x, q, s, zs)
    got = nb.Q4_INT[kernel](x, q, s, zs)
    assert np.abs(got - want).max() <= 2e-6 * np.abs(want).max()


@pytest.mark.parametrize("kernel", INT_KERNELS)
def test_integer_kernels_sum_extreme_codes_and_digits_exactly(kernel):
    """Codes of 0 and 15 against inputs at the top of their range: a row of codes 15
    against inputs all 1 (each digit 127) brings the AVX2 kernel's int16 sums to 15,240 of
    their 32,767, and any saturation or lost lane shows as an error far above float32
    rounding."""
    rng = np.random.default_rng(7)
    out, inp = 24, 512
    q = rng.choice(np.array([0x00, 0xFF, 0x0F, 0xF0], np.uint8), (out, inp // 2))
    q[0] = 0xFF
    s = rng.uniform(0.5, 2.0, (out, inp // 128)).astype(np.float32)
    zs = (rng.integers(0, 16, (out, inp // 128)) * s).astype(np.float32)
    x = rng.choice(np.array([-1.0, 1.0, 0.999, -0.5], np.float32), (2, inp))
    x[0] = 1.0
    want = ref.q4_matvec(x, q, s, zs)
    got = nb.Q4_INT[kernel](x, q, s, zs)
    assert np.abs(got - want).max() <= 2e-6 * np.abs(want).max()


def test_q4_matvec_takes_the_float_kernel_for_inputs_that_are_not_finite():
    packed = PackedLinear.from_weight(torch.randn(16, 256), 4, 128)
    q, s, zs = q4_arrays(packed)
    x = np.ones((2, 256), dtype=np.float32)
    for bad in (np.inf, np.nan):
        x[1, 5] = bad
        got = nb.q4_matvec(x, q, s, zs)
        np.testing.assert_array_equal(got, nb.q4_matvec_fma(x, q, s, zs))
        assert np.isfinite(got[0]).all() and not np.isfinite(got[1]).any()
    strided = np.repeat(x[:1], 2, axis=1)[:, ::2]  # not contiguous: copied first
    np.testing.assert_array_equal(nb.q4_matvec(strided, q, s, zs), nb.q4_matvec(x[:1], q, s, zs))
    # codes in Fortran order: the float kernel (the integer ones read whole C rows)
    fortran = nb.q4_matvec(x[:1], np.asfortranarray(q), s, zs)
    np.testing.assert_array_equal(fortran, nb.q4_matvec_fma(x[:1], np.asfortranarray(q), s, zs))


def test_q4_limbs_are_the_inputs_in_three_signed_digits():
    """The integer kernels' inputs: per group of 128, three base-256 digits in
    [-127, 127] whose value is x t rounded, t the largest integer input over the group's
    largest |x|, and 8 times the inputs' sums per int32 lane."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal(384).astype(np.float32)
    x[128:256] *= 1e-4
    x[256:] = 0.0
    limbs, corr = np.empty(3 * 384, np.int8), np.empty(3 * 16, np.int32)
    x_scale, xs = np.empty(3, np.float32), np.empty(3, np.float32)
    assert nb._q4_limbs(x, 3, limbs, corr, x_scale, xs)
    d = limbs.reshape(3, 3, 2, 64).astype(np.int64)  # group, digit, even/odd, pair
    assert np.abs(d).max() <= 128 and np.abs(d[:, 2]).max() <= 127
    big = d[:, 0] + 256 * d[:, 1] + 65536 * d[:, 2]
    # 8 times the inputs' sum over the 4 pairs of each of the 16 int32 lanes
    lanes = big.sum(1).reshape(3, 16, 4).sum(-1)
    np.testing.assert_array_equal(corr.reshape(3, 16), 8 * lanes)
    value = np.stack([big[:, 0], big[:, 1]], -1).reshape(3, 128)  # x order
    for g in range(3):
        xg = x[128 * g : 128 * (g + 1)].astype(np.float64)
        m = np.abs(xg).max()
        t = 127.0 * (65536 + 256 + 1) / m if m > 0 else 1.0
        assert x_scale[g] == np.float32(1.0 / t)
        np.testing.assert_array_equal(value[g], np.rint(xg * t))
        assert np.abs(value[g] / t - xg).max() <= 0.5 / t  # half a unit: 2^-24 of the largest
        assert xs[g] == pytest.approx(xg.sum(), rel=1e-5, abs=1e-9)


def _quantized_rwkv(bits=4, width=64, group=32):
    model = RWKV4(RWKVConfig(vocab_size=30, n_layer=2, n_embd=width, ffn_mult=2), seed=2)
    calib = torch.randint(0, 30, (4, 32), generator=torch.Generator().manual_seed(0))
    quantize_model(model, calib, AWQConfig(bits=bits, group_size=group))
    return model


@pytest.mark.parametrize(("width", "group"), [(64, 32), (128, 128)])  # 128: the integer kernels
def test_int4_decoder_follows_the_quantized_model(width, group):
    model = _quantized_rwkv(width=width, group=group)
    tokens = [3, 17, 5, 29, 0, 11]
    with torch.no_grad():
        want = model(torch.tensor([tokens]))[0][0].numpy()
    for backend in ("reference", "numba"):
        dec = RWKVDecoder.from_model(model, backend=backend)
        assert dec.quantized
        state = dec.init_state(1)
        for t, tok in enumerate(tokens):
            logits = dec.step_(np.array([tok]), state)
            np.testing.assert_allclose(logits[0], want[t], atol=2e-4, err_msg=backend)
    if group == 128:  # the step that inlines this machine's integer kernel ran
        assert nb.rwkv_step_q4.variants[nb.Q4_KERNEL].signatures
    # the decoder keeps the codes packed: half a byte a weight, plus a float32 scale and
    # zero-times-scale per group (float32 holds 4 bytes a weight)
    float_dec = RWKVDecoder.from_model(
        RWKV4(RWKVConfig(vocab_size=30, n_layer=2, n_embd=width, ffn_mult=2), seed=2)
    )
    linear = sum(sum(a.nbytes for a in v) for v in dec.w.values() if isinstance(v, tuple))
    float_linear = sum(float_dec.w[k].nbytes for k in ("att_w", "ffn_k", "ffn_r", "ffn_v"))
    n_weights = float_linear // 4
    assert linear == n_weights // 2 + 8 * n_weights // group


@pytest.mark.parametrize(("width", "group"), [(64, 32), (128, 128)])  # 128: the integer kernels
def test_int4_mamba_decoder_follows_the_quantized_model(width, group):
    from neurofabric.seq import Mamba, MambaConfig
    from neurofabric.seq.decode import MambaDecoder

    model = Mamba(MambaConfig(vocab_size=30, n_layer=2, d_model=width), seed=3)
    calib = torch.randint(0, 30, (4, 32), generator=torch.Generator().manual_seed(1))
    rep = quantize_model(model, calib, AWQConfig(bits=4, group_size=group))
    assert model.layers[0].mixer.x_proj.packed.in_scale is not None  # AWQ's runtime scales
    assert "layers.0.mixer.dt_proj" in rep.skipped  # 4 inputs: stays float
    tokens = [3, 17, 5, 29, 0, 11]
    with torch.no_grad():
        want = model(torch.tensor([tokens]))[0][0].numpy()
    for backend in ("reference", "numba"):
        dec = MambaDecoder.from_model(model, backend=backend)
        assert dec.quantized
        state = dec.init_state(1)
        for t, tok in enumerate(tokens):
            logits = dec.step_(np.array([tok]), state)
            np.testing.assert_allclose(logits[0], want[t], atol=2e-4, err_msg=backend)
    if group == 128:
        assert nb.mamba_step_q4.variants[nb.Q4_KERNEL].signatures


def test_generate_runs_quantized_models():
    model = _quantized_rwkv()
    tok = _Chars()
    fused = "".join(generate(model, tok, "ab", max_new_tokens=8, seed=1))
    eager = "".join(generate(model, tok, "ab", max_new_tokens=8, seed=1, backend="torch"))
    assert fused == eager  # the same samples through the int4 decoder and torch
    three = _quantized_rwkv(bits=3)
    assert len("".join(generate(three, tok, "ab", max_new_tokens=4, seed=1))) > 0  # via torch
    with pytest.raises(ConfigError, match="quantized RWKV4"):
        "".join(generate(three, tok, "ab", max_new_tokens=4, backend="numba"))
    with pytest.raises(ConfigError, match="4-bit"):
        q4_arrays(three.blocks[0].att.key.packed)


class _Chars:
    """30 ids as letters."""

    vocab_size = 30

    def encode(self, text):
        return [ord(c) - 97 for c in text]

    def decode(self, ids):
        return "".join(chr(97 + i) if i < 26 else "?" for i in ids)
