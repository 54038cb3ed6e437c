"""The hash encoding against hand-computed golden values, the numpy reference, and calculus."""

import numpy as np
import pytest

from neurofabric.core.errors import ConfigError, ShapeError
from neurofabric.field import HashGrid, HashGridSpec
from neurofabric.field.kernels import reference as ref


def test_level_tables_follow_tiny_cuda_nn():
    spec = HashGridSpec(
        n_dims=3, n_levels=5, n_features=2, log2_table=19, base_resolution=16, per_level_scale=2.0
    )
    # base_resolution counts vertices: scale 15 -> 16 vertices, then 31 -> 32, ...
    assert spec.resolutions().tolist() == [16, 32, 64, 128, 256]
    assert spec.level_sizes().tolist() == [4096, 32768, 262144, 524288, 524288]
    assert spec.is_hashed().tolist() == [False, False, False, True, True]
    assert spec.offsets().tolist() == [0, 4096, 36864, 299008, 823296, 1347584]
    # a dense level is padded to a multiple of 8 rows
    assert HashGridSpec(n_dims=2, n_levels=1, base_resolution=3).level_sizes().tolist() == [16]


def test_coherent_prime_hash_golden_rows():
    cells = np.array([[5, 3]], dtype=np.uint64)
    # 5 * 1 xor 3 * 2654435761: 3668339990 in uint32, 7963307286 in uint64
    assert ref._corner_rows(cells, 0, 1 << 20, 3000, True, 32).tolist() == [2990]
    assert ref._corner_rows(cells, 0, 1 << 20, 3000, True, 64).tolist() == [2286]
    # corner 3 adds one to both: 4 * 2654435761 = 2027808452 (uint32), xor 6 = 2027808450
    assert ref._corner_rows(cells, 3, 1 << 20, 2**31, True, 32).tolist() == [2027808450]
    # dense levels index x + y * resolution
    assert ref._corner_rows(cells, 2, 7, 64, False, 32).tolist() == [5 + 4 * 7]


def test_d_linear_weights_and_rows_golden():
    """2-D level 0 with 4 vertices per axis: x = (0.5, 0.25) -> p = 3x + 0.5 = (2.0, 1.25)."""
    grid = HashGrid(HashGridSpec(n_dims=2, n_levels=1, n_features=1, base_resolution=4))
    rows, weights = grid.corners([[0.5, 0.25]])
    assert rows[0, 0].tolist() == [2 + 1 * 4, 3 + 1 * 4, 2 + 2 * 4, 3 + 2 * 4]
    np.testing.assert_allclose(weights[0, 0], [0.75, 0.0, 0.25, 0.0], atol=1e-7)
    table = np.arange(16, dtype=np.float32)[:, None]
    assert grid.encode([[0.5, 0.25]], table)[0, 0] == pytest.approx(0.75 * 6 + 0.25 * 10)


SPECS = [
    HashGridSpec(n_dims=1, n_levels=4, n_features=2, log2_table=5, base_resolution=4),
    HashGridSpec(
        n_dims=2, n_levels=6, n_features=2, log2_table=8, base_resolution=4, per_level_scale=1.7
    ),
    HashGridSpec(
        n_dims=3, n_levels=5, n_features=4, log2_table=10, base_resolution=8, hash_bits=64
    ),
    HashGridSpec(
        n_dims=4, n_levels=3, n_features=1, log2_table=10, base_resolution=2, per_level_scale=3.0
    ),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.n_dims}d-{s.hash_bits}")
def test_numba_equals_reference_bit_for_bit(spec):
    rng = np.random.default_rng(spec.n_dims)
    x = rng.random((200, spec.n_dims)).astype(np.float32)
    x[0], x[1] = 0.0, 1.0
    fast, slow = HashGrid(spec), HashGrid(spec, backend="reference")
    table = fast.init_table(seed=1, scale=1.0)
    for a, b in zip(fast.corners(x), slow.corners(x), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(fast.encode(x, table), slow.encode(x, table))
    g = rng.normal(size=(200, spec.n_outputs)).astype(np.float32)
    for a, b in zip(fast.backward(x, g), slow.backward(x, g), strict=True):
        np.testing.assert_array_equal(a, b)
    rows, weights = fast.corners(x)
    assert rows.max() < spec.n_rows
    np.testing.assert_allclose(weights.sum(axis=2), 1.0, rtol=1e-5)  # a partition of unity


def test_gradient_matches_finite_differences():
    spec = SPECS[1]
    grid = HashGrid(spec)
    rng = np.random.default_rng(3)
    x = rng.random((20, 2)).astype(np.float32)
    c = rng.normal(size=(20, spec.n_outputs))
    table = grid.init_table(seed=0, scale=1.0).astype(np.float64)
    dense = grid.dense_gradient(x, c)

    def loss(t):
        return float(np.sum(c * grid.encode(x, t.astype(np.float32))))

    for r, f in zip(rng.integers(0, spec.n_rows, 30), rng.integers(0, 2, 30), strict=True):
        t = table.copy()
        t[r, f] += 0.5
        fd = (loss(t) - loss(table)) / 0.5  # the encoding is linear in the table
        assert fd == pytest.approx(dense[r, f], abs=2e-3)


def test_bad_input_is_refused():
    grid = HashGrid(SPECS[1])
    with pytest.raises(ShapeError, match=r"\(n, 2\)"):
        grid.corners(np.zeros((3, 3)))
    with pytest.raises(ShapeError, match=r"\[0, 1\]"):
        grid.corners([[0.5, 1.5]])
    with pytest.raises(ShapeError, match="table must have shape"):
        grid.encode([[0.1, 0.2]], np.zeros((5, 2), np.float32))
    with pytest.raises(ConfigError, match="n_dims"):
        HashGridSpec(n_dims=5)
    with pytest.raises(ConfigError, match="log2_table"):
        HashGridSpec(log2_table=40)  # the 32-bit mode stops at 2**31 rows per level
    assert HashGridSpec(log2_table=40, hash_bits=64).level_sizes()[-1] == 2**40
