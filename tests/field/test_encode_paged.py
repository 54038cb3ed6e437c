"""The fused query kernel reads the DRAM pool directly: the same bits as the dense encoding,
whatever is resident, and the numba kernel equals the numpy reference."""

import numpy as np
import pytest

from neurofabric.field import DemandPagedField, HashGrid, HashGridSpec, TierConfig
from neurofabric.field.kernels import numba_cpu, reference

SPEC = HashGridSpec(
    n_dims=2, n_levels=5, n_features=2, log2_table=10, base_resolution=4, per_level_scale=1.7
)


@pytest.fixture
def field_and_table(tmp_path):
    field = DemandPagedField.create(
        tmp_path / "f", spec=SPEC, hidden=(4,), logical_bytes=1 << 24, shard_bytes=1 << 24
    )
    table = np.random.default_rng(0).normal(size=(SPEC.n_rows, 2)).astype(np.float32)
    field.pages.write_rows(np.arange(SPEC.n_rows, dtype=np.uint64), table.view(np.uint8))
    field.close()
    return tmp_path / "f", table


@pytest.mark.parametrize("dram_pages", [4, 64])
def test_encode_equals_the_dense_encoding_bit_for_bit(field_and_table, dram_pages):
    """With 4 DRAM pages most points miss and take the slow path; with 64 all hit."""
    path, table = field_and_table
    x = np.random.default_rng(1).random((200, 2)).astype(np.float32)
    dense = HashGrid(SPEC).encode(x, table)
    with DemandPagedField.open(path, tiers=TierConfig(dram_pages=dram_pages)) as field:
        for _ in range(2):  # cold, then with whatever stayed resident
            np.testing.assert_array_equal(field.encode(x[:3]), dense[:3])
            np.testing.assert_array_equal(field.encode(x), dense)
        assert field.pages.counts["dram"] > 0


def test_fused_kernel_numba_equals_reference(field_and_table):
    path, table = field_and_table
    with DemandPagedField.open(path, tiers=TierConfig(dram_pages=3)) as field:
        assert SPEC.n_rows * field.row_bytes > 3 * field.store.page_size  # not all fit
        x = np.random.default_rng(2).random((300, 2)).astype(np.float32)
        field.encode(x[:2])  # bring some pages in
        p = field.pages
        results = []
        for fn in (numba_cpu.encode_paged, numba_cpu.encode_paged_serial, reference.encode_paged):
            ticks = p.slot_tick.copy()
            args = (0, field.row_bytes, p.page_size, p.resident, p.resident_slots, p.page_slot)
            feats, missing = fn(x, *field.grid.args, *args, p.pool_f32, ticks, 99)
            results.append((feats, missing, ticks))
        for other in results[1:]:
            for a, b in zip(results[0], other, strict=True):
                np.testing.assert_array_equal(a, b)
        feats, missing, _ = results[0]
        assert 0 < missing.sum() < len(x)  # both paths exercised
        dense = HashGrid(SPEC).encode(x, table)
        np.testing.assert_array_equal(feats[~missing], dense[~missing])
        assert not feats[missing].any()
