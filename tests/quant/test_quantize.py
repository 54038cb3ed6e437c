"""Quantization: exact packing, error bounds, exact sizes, unbiased stochastic rounding."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from neurofabric.core.errors import ConfigError, ShapeError
from neurofabric.quant import (
    QuantizedTensor,
    QuantSpec,
    fake_quantize,
    pack_bits,
    packed_nbytes,
    quantize,
    unpack_bits,
)


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 8])
@settings(max_examples=30, deadline=None)
@given(n=st.integers(0, 300), seed=st.integers(0, 2**32 - 1))
def test_pack_unpack_round_trip_is_exact(bits, n, seed):
    codes = np.random.default_rng(seed).integers(0, 1 << bits, n).astype(np.uint8)
    packed = pack_bits(codes, bits)
    assert packed.dtype == np.uint8 and packed.size == -(-n * bits // 8)
    np.testing.assert_array_equal(unpack_bits(packed, bits, n), codes)


def test_packing_layout_is_low_bits_first():
    assert pack_bits(np.array([1, 2]), 4).tolist() == [0x21]
    assert pack_bits(np.array([1, 2, 3, 0]), 2).tolist() == [0b00111001]
    assert pack_bits(np.array([3]), 2).tolist() == [3]
    # 3 bits: a little-endian bit stream, the third code straddles the first two bytes
    assert pack_bits(np.array([5, 3, 7]), 3).tolist() == [0b11011101, 0b1]


SPECS = [
    QuantSpec(bits=b, scheme=s, granularity=g, group_size=16, axis=1)
    for b in (8, 4, 2)
    for s in ("symmetric", "affine")
    for g in ("tensor", "channel", "group")
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.bits}-{s.scheme}-{s.granularity}")
def test_error_within_half_a_step_and_sizes_exact(spec):
    w = np.random.default_rng(1).normal(size=(12, 48)).astype(np.float32) * 0.3
    q = quantize(w, spec)
    deq = q.dequantize(np.float64)
    blocks = {"tensor": 1, "channel": w.shape[1], "group": w.size // 16}[spec.granularity]
    assert q.scales.shape == (blocks,)
    if spec.granularity == "channel":  # axis=1: one scale per column
        step = np.broadcast_to(q.scales.astype(np.float64)[None, :], w.shape)
    elif spec.granularity == "group":
        step = np.repeat(q.scales.astype(np.float64), 16).reshape(w.shape)
    else:
        step = np.full(w.shape, float(q.scales[0]))
    err = np.abs(deq - w)  # (ternary too: levels {-s, 0, s} with s = max|w|)
    assert np.all(err <= step / 2 * (1 + 1e-6) + 1e-12)
    # exact byte accounting: codes + float32 scales + uint8 zero points (affine only)
    zp = blocks if spec.scheme == "affine" else 0
    assert q.nbytes == packed_nbytes(w.size, spec.bits) + 4 * blocks + zp
    assert q.compression_ratio == pytest.approx(4 * w.size / q.nbytes)


def test_int4_halves_the_bytes_of_int8():
    w = np.random.default_rng(2).normal(size=(64, 64)).astype(np.float32)
    q8 = quantize(w, QuantSpec(bits=8))
    q4 = quantize(w, QuantSpec(bits=4))
    q2 = quantize(w, QuantSpec(bits=2))
    assert q8.packed.nbytes == 4096 and q4.packed.nbytes == 2048 and q2.packed.nbytes == 1024
    assert set(np.unique(q2.codes())) <= {-1, 0, 1}  # ternary


def test_stochastic_rounding_is_unbiased_and_seeded():
    w = np.full(20000, 0.3, np.float32)
    w[0] = 1.0  # fixes the scale to 1/7 (int4 symmetric), so 0.3 = 2.1 steps
    spec = QuantSpec(bits=4, rounding="stochastic")
    deq = quantize(w, spec, seed=5).dequantize(np.float64)
    assert set(np.unique(np.round(deq[1:] * 7))) == {2.0, 3.0}
    assert deq[1:].mean() == pytest.approx(0.3, abs=0.005)
    np.testing.assert_array_equal(deq, quantize(w, spec, seed=5).dequantize(np.float64))
    nearest = quantize(w, QuantSpec(bits=4)).dequantize(np.float64)
    assert abs(nearest[1:].mean() - 0.3) > 0.01  # nearest rounding is biased here


def test_fake_quantize_keeps_dtype_and_is_idempotent():
    w = np.random.default_rng(3).normal(size=(8, 32)).astype(np.float32)
    spec = QuantSpec(bits=4, scheme="affine", granularity="group", group_size=8)
    f = fake_quantize(w, spec)
    assert f.dtype == np.float32 and f.shape == w.shape
    assert len(np.unique(f[0, :8])) <= 16
    np.testing.assert_allclose(fake_quantize(f, spec), f, rtol=0, atol=1e-6)


def test_serialization_round_trip(tmp_path):
    from neurofabric.core.checkpoint import load_checkpoint, save_checkpoint

    w = np.random.default_rng(4).normal(size=(10, 20)).astype(np.float32)
    q = quantize(w, QuantSpec(bits=4, scheme="affine", granularity="channel", axis=0))
    save_checkpoint(tmp_path / "q", engine="quant", params=q.spec_json(), arrays=q.to_arrays())
    ck = load_checkpoint(tmp_path / "q")
    back = QuantizedTensor.from_arrays(ck.arrays, ck.params)
    np.testing.assert_array_equal(back.dequantize(), q.dequantize())


@settings(max_examples=40, deadline=None)
@given(
    w=arrays(
        np.float32, st.integers(1, 64), elements=st.floats(-1e3, 1e3, width=32, allow_nan=False)
    ),
    bits=st.sampled_from([2, 4, 8]),
    scheme=st.sampled_from(["symmetric", "affine"]),
)
def test_property_error_bound(w, bits, scheme):
    q = quantize(w, QuantSpec(bits=bits, scheme=scheme))
    err = np.abs(q.dequantize(np.float64) - w.astype(np.float64))
    assert np.all(err <= float(q.scales[0]) / 2 * (1 + 1e-5) + 1e-9)


def test_bad_input():
    with pytest.raises(ConfigError, match="bits"):
        QuantSpec(bits=3)
    with pytest.raises(ShapeError, match="group_size"):
        quantize(np.zeros((4, 10), np.float32), QuantSpec(granularity="group", group_size=4))
    with pytest.raises(ConfigError, match="float"):
        quantize(np.arange(4))
    with pytest.raises(ConfigError, match="finite"):
        quantize(np.array([np.nan], np.float32))
    with pytest.raises(ConfigError, match=r"\[0, 16\)"):
        pack_bits(np.array([16]), 4)
    with pytest.raises(
        ConfigError, match=r"`bits` must be one of \(1, 2, 3, 4, 5, 6, 7, 8\), got 9"
    ):
        pack_bits(np.array([1]), 9)
    with pytest.raises(ConfigError, match="`axis` must be an integer"):
        QuantSpec(granularity="channel", axis=0.5)
    with pytest.raises(ConfigError, match="`n` must be >= 0"):
        unpack_bits(np.zeros(1, np.uint8), 4, -1)
    with pytest.raises(ConfigError, match="`w` must contain only finite values"):
        quantize(np.array([1.0, np.inf]))


def test_module_example_is_true():
    import doctest

    import neurofabric.quant

    result = doctest.testmod(neurofabric.quant)
    assert result.attempted >= 3 and result.failed == 0
