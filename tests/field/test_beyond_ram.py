"""A field far larger than memory: resident memory held under the budget the user sets.

The resident set of the shard mappings is measured by the kernel (``/proc/self/smaps``), not
by the store's own count, so a budget that is not enforced (or a trim that loses a dirty page)
fails here.
"""

import sys

import numpy as np
import pytest

from neurofabric.core.errors import ConfigError
from neurofabric.field import DemandPagedField, HashGridSpec, TierConfig
from neurofabric.field.signals import torus_sdf
from neurofabric.store import ShardedPageStore

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc/self/smaps"
)


def mapped_rss(folder) -> int:
    """Resident bytes of this process's mappings of files under ``folder`` (kernel's count)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as fh:
        for line in fh:
            head = line.split()
            if head and "-" in head[0] and ":" not in head[0]:  # a mapping's header line
                inside = len(head) >= 6 and head[-1].startswith(str(folder))
            elif inside and line.startswith("Rss:"):
                total += int(head[1]) * 1024
    return total


def test_without_a_budget_the_mapped_pages_stay_resident(tmp_path):
    """The control: the measurement sees the pages the store touched (otherwise the budget
    test below would pass for nothing)."""
    store = ShardedPageStore.create(tmp_path / "s", logical_bytes=2**36, shard_bytes=2**34)
    pages = np.random.default_rng(0).choice(2**22, 4000, replace=False)
    store.write_pages(pages, np.ones((len(pages), 4096), np.uint8))
    assert mapped_rss(tmp_path) >= 4000 * 4096 * 0.9
    store.close()


@pytest.mark.parametrize("how", ["write", "write_pages", "read_pages"])
def test_the_resident_budget_holds_and_trimming_loses_nothing(tmp_path, how):
    budget = 256 * 4096
    store = ShardedPageStore.create(
        tmp_path / "s", logical_bytes=2**36, shard_bytes=2**34, resident_budget=budget
    )
    rng = np.random.default_rng(1)
    pages = rng.choice(2**22, 3000, replace=False).astype(np.uint64)
    data = rng.integers(0, 256, (len(pages), 4096), dtype=np.uint8)
    peak = 0
    if how == "write":
        for k, p in enumerate(pages.tolist()):
            store.write(p * 4096, data[k])
            if k % 100 == 0:
                peak = max(peak, mapped_rss(tmp_path))
    else:
        for at in range(0, len(pages), 500):
            store.write_pages(pages[at : at + 500], data[at : at + 500])
            peak = max(peak, mapped_rss(tmp_path))
    if how == "read_pages":  # one read of all 3000 pages is done in budget-sized parts
        assert np.array_equal(store.read_pages(pages), data)
    peak = max(peak, mapped_rss(tmp_path))
    assert peak <= budget + 64 * 4096  # fault-around may map a few neighbours
    assert store.stats["trims"] >= 3000 // 256 - 1
    # dirty pages dropped from the resident set are still in the file, after reopening too
    assert np.array_equal(store.read_pages(pages), data)
    store.close()
    again = ShardedPageStore(tmp_path / "s")
    assert np.array_equal(again.read_pages(pages), data)
    again.close()


def test_bad_budgets_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="resident_budget"):
        ShardedPageStore.create(tmp_path / "s", resident_budget=100)
    with pytest.raises(ConfigError, match="mapped_pages"):
        TierConfig(mapped_pages=0)
    with pytest.raises(ConfigError, match="budget_bytes"):
        TierConfig.for_memory(1000)
    tiers = TierConfig.for_memory(64 << 20)
    assert tiers.dram_pages + tiers.mapped_pages == (64 << 20) // 4096
    assert tiers.mapped_pages == (64 << 20) // 4096 // 8


def test_a_field_of_46_gib_learns_within_a_64_mib_budget(tmp_path):
    """A 3-D field with 2^31 rows per hashed level (46 GiB of table, 138 GiB with Adam's
    moments) learns a signed distance function and answers queries: the DRAM pool is the
    budget's, the mapped shard pages stay within theirs (measured), disk follows the pages
    touched, the loss falls and what was learned survives closing and reopening."""
    spec = HashGridSpec(
        n_dims=3,
        n_levels=16,
        n_features=2,
        log2_table=31,
        base_resolution=16,
        per_level_scale=1.38,
    )
    assert spec.n_rows * 8 > 45 * 2**30
    tiers = TierConfig.for_memory(64 << 20)
    f = DemandPagedField.create(tmp_path / "f", spec=spec, hidden=(16,), seed=0, tiers=tiers)
    assert f.pages.pool.nbytes == tiers.dram_pages * 4096
    x, y = torus_sdf(256, seed=0)  # one batch touches more pages than the pool holds
    losses, peak = [], 0
    for _ in range(12):
        losses.append(f.learn(x, y))
        peak = max(peak, mapped_rss(tmp_path))
    assert losses[-1] < 0.5 * losses[0]
    assert peak <= tiers.mapped_pages * 4096 + 64 * 4096
    moves = f.pages.stats()
    assert moves["dram_evictions"] > tiers.dram_pages  # pages moved between the tiers
    assert moves["writebacks"] > 0
    before = f.query(x)
    f.close()
    disk = sum(p.stat().st_blocks * 512 for p in (tmp_path / "f").iterdir())
    assert disk < 1 << 30  # 138 GiB logical, a few hundred MiB touched
    with DemandPagedField.open(tmp_path / "f", tiers=tiers) as again:
        assert np.array_equal(again.query(x), before)


def test_the_budget_holds_when_reads_fault_around(tmp_path):
    """A read fault maps the neighbours already in the page cache too (fault-around, up to 16
    pages): reads of pages whose neighbours were just written must still stay in budget."""
    budget = 512 * 4096
    store = ShardedPageStore.create(
        tmp_path / "s", logical_bytes=2**30, shard_bytes=2**30, resident_budget=budget
    )
    store.write_pages(np.arange(20_000), np.ones((20_000, 4096), np.uint8))  # all cached
    store.trim()
    peak = 0
    for k, p in enumerate(np.random.default_rng(2).permutation(20_000)[:4000].tolist()):
        store.read_pages([p])
        if k % 50 == 0:
            peak = max(peak, mapped_rss(tmp_path))
    assert peak <= budget + 64 * 4096
    store.close()
