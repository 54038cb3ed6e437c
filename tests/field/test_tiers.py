"""Tiered pages: whole-page moves, write-back, CXL and slow tiers, and what each read hit."""

import numpy as np
import pytest

from neurofabric.core.errors import ConfigError
from neurofabric.field import TierConfig, TieredPages
from neurofabric.field.kernels import numba_cpu, reference
from neurofabric.store import ShardedPageStore

PAGE = 4096
ROW = 8  # bytes per row: 512 rows per page


def _store(tmp_path, name="s"):
    return ShardedPageStore.create(tmp_path / name, logical_bytes=1 << 26, shard_bytes=1 << 22)


def _payload(rows):
    return np.stack([np.full(ROW, r % 251, np.uint8) for r in rows])


def test_rows_round_trip_through_eviction_and_reopening(tmp_path):
    store = _store(tmp_path)
    tiers = TieredPages(store, TierConfig(dram_pages=4), row_bytes=ROW)
    rows = np.arange(0, 512 * 20, 97, dtype=np.uint64)  # 20 pages through a 4-page DRAM
    for chunk in np.array_split(rows, 10):
        tiers.write_rows(chunk, _payload(chunk.tolist()))
    assert tiers.moves["dram_evictions"] > 0 and tiers.moves["writebacks"] > 0
    for chunk in np.array_split(rows, 10):  # at most 4 pages per read: the DRAM tier's size
        np.testing.assert_array_equal(tiers.read_rows(chunk), _payload(chunk.tolist()))
    tiers.flush()
    store.close()
    again = TieredPages(
        ShardedPageStore(tmp_path / "s", readonly=True), TierConfig(dram_pages=64), row_bytes=ROW
    )
    np.testing.assert_array_equal(again.read_rows(rows), _payload(rows.tolist()))
    assert again.counts["ssd"] == len(rows) and again.counts["dram"] == 0
    again.read_rows(rows)
    assert again.counts["dram"] == len(rows)  # now every page is resident


def test_cxl_tier_catches_dram_evictions(tmp_path):
    tiers = TieredPages(_store(tmp_path), TierConfig(dram_pages=2, cxl_pages=8), row_bytes=ROW)
    for page in range(6):
        tiers.read_rows(np.array([page * 512], np.uint64))
    before = tiers.counts["cxl"]
    tiers.read_rows(np.array([0], np.uint64))  # evicted from DRAM into CXL, not to SSD
    assert tiers.counts["cxl"] == before + 1
    assert tiers.stats()["cxl_emulated"] is True


def test_slow_tier_takes_the_coldest_pages_and_gives_them_back(tmp_path):
    store = _store(tmp_path)
    cfg = TierConfig(dram_pages=2, ssd_pages=4, slow_url=str(tmp_path / "slow"))
    tiers = TieredPages(store, cfg, row_bytes=ROW)
    for page in range(10):
        tiers.write_rows(np.array([page * 512], np.uint64), _payload([page]))
    tiers.flush()
    assert tiers.moves["demotions_to_slow"] > 0
    assert len(list((tmp_path / "slow").iterdir())) == len(tiers.slow_pages) > 0
    assert store.pages_on_disk() <= 10 - len(tiers.slow_pages) + 2
    cold = min(tiers.slow_pages)
    np.testing.assert_array_equal(
        tiers.read_rows(np.array([cold * 512], np.uint64)), _payload([cold])
    )
    assert tiers.counts["slow"] == 1 and cold not in tiers.slow_pages


@pytest.mark.parametrize("row", [ROW, 2])  # 32-bit words and the byte-wise copy
def test_numba_gather_equals_reference(row):
    rng = np.random.default_rng(0)
    pool = rng.integers(0, 255, size=(6, PAGE), dtype=np.uint8)
    resident = np.array([3, 9, 10, 40], np.uint64)
    slots = np.array([5, 0, 2, 1], np.int64)
    rows = rng.integers(0, PAGE // row * 50, size=300).astype(np.uint64)
    # the direct map covers pages [0, 12): pages 3, 9, 10 are found there, page 40 by search
    page_slot = np.full(12, -1, np.int64)
    page_slot[[3, 9, 10]] = [5, 0, 2]
    outs = []
    for k in (numba_cpu, reference):
        for direct in (page_slot, np.zeros(0, np.int64)):
            out = np.zeros((300, row), np.uint8)
            ticks = np.zeros(6, np.int64)
            missing = k.gather_rows(rows, row, PAGE, resident, slots, direct, pool, ticks, 7, out)
            outs.append((missing, out * ~missing[:, None], ticks))
    for other in outs[1:]:
        for a, b in zip(outs[0], other, strict=True):
            np.testing.assert_array_equal(a, b)
    assert 0 < outs[0][0].sum() < 300
    pages = rows * np.uint64(row) // np.uint64(PAGE)
    assert np.isin(pages[~outs[0][0]], [3, 9, 10, 40]).all() and (pages[~outs[0][0]] == 40).any()


@pytest.mark.parametrize("k", [numba_cpu, reference])
def test_gather_from_an_empty_pool_finds_nothing(k):
    """A fresh field's first read: no page resident (the reference indexed resident[-1])."""
    out = np.zeros((4, ROW), np.uint8)
    ticks = np.zeros(2, np.int64)
    rows = np.array([0, 5, 700, 3], np.uint64)
    empty = (
        np.zeros(0, np.uint64),
        np.zeros(0, np.int64),
        np.full(4, -1, np.int64),
        np.zeros((2, PAGE), np.uint8),
    )
    missing = k.gather_rows(rows, ROW, PAGE, *empty, ticks, 1, out)
    assert missing.tolist() == [True] * 4
    assert not ticks.any() and not out.any()


def test_batches_larger_than_dram_are_served_in_parts(tmp_path):
    tiers = TieredPages(_store(tmp_path), TierConfig(dram_pages=2), row_bytes=ROW)
    rows = np.arange(0, 512 * 9, 37, dtype=np.uint64)[::-1].copy()  # 9 pages, 2 slots
    tiers.write_rows(rows, _payload(rows.tolist()))
    np.testing.assert_array_equal(tiers.read_rows(rows), _payload(rows.tolist()))


def test_limits_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="slow tier"):
        TierConfig(ssd_pages=10)
    with pytest.raises(ConfigError, match="row_bytes"):
        TieredPages(_store(tmp_path, "t"), row_bytes=3000)
