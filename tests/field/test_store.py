"""The sharded sparse page store: sparse allocation, zeros for holes, limits, bad files."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from neurofabric.core.errors import CheckpointError, ConfigError, StorageError
from neurofabric.store import ShardedPageStore

KIB = 1024


def _digest(folder):
    h = hashlib.sha256()
    for f in sorted(folder.iterdir()):
        h.update(f.name.encode() + f.read_bytes())
        h.update(str(f.stat().st_mtime_ns).encode())
    return h.hexdigest()


def test_a_petabyte_store_costs_only_the_pages_written(tmp_path):
    store = ShardedPageStore.create(tmp_path / "s", logical_bytes=2**50)
    assert store.n_shards == 1024 and not list((tmp_path / "s").glob("shard-*"))
    offsets = [0, 2**45 + 123, 2**50 - 4096]
    for k, off in enumerate(offsets):
        store.write(off, np.full(16, k + 1, np.uint8))
    assert store.pages_on_disk() == 3
    assert store.disk_bytes() < 64 * KIB
    for k, off in enumerate(offsets):
        assert store.read(off, 16).tolist() == [k + 1] * 16
    assert store.read(2**47, 8).tolist() == [0] * 8  # a hole in an unwritten shard
    assert len(list((tmp_path / "s").glob("shard-*"))) == 3
    store.close()


def test_writes_span_shards_and_survive_reopening(tmp_path):
    store = ShardedPageStore.create(
        tmp_path / "s", logical_bytes=1 << 20, shard_bytes=64 * KIB, max_open=2
    )
    data = np.arange(3 * 64 * KIB // 4, dtype=np.uint32)  # three shards' worth
    store.write(32 * KIB, data)
    assert store.stats["closes"] >= 2  # the LRU kept at most two mappings open
    store.close()
    again = ShardedPageStore(tmp_path / "s", readonly=True)
    np.testing.assert_array_equal(again.read(32 * KIB, data.nbytes).view(np.uint32), data)
    assert again.prefetch([9, 10, 11, 13, 14]) == 2  # two runs of pages
    assert again.prefetch([1, 2, 3, 9, 10]) == 1  # pages 1-3 were never written: no hint
    again.close()


def test_pages_never_written_read_as_zeros_without_io_and_written_ones_as_data(tmp_path):
    """read_pages skips the holes of a shard (SEEK_DATA), and a page written through the
    mapping, not yet flushed, is data: read back, also after reopening."""
    store = ShardedPageStore.create(tmp_path / "s", logical_bytes=1 << 24, shard_bytes=1 << 20)
    page = np.arange(4096, dtype=np.uint8).reshape(1, -1)
    store.write_pages(np.array([5, 300], np.uint64), np.repeat(page, 2, axis=0))
    wanted = np.array([300, 4, 5, 6, 299, 7, 256 + 1], np.uint64)  # any order, two shards
    got = store.read_pages(wanted)
    for k, pg in enumerate(wanted.tolist()):
        expect = page[0] if pg in (5, 300) else np.zeros(4096, np.uint8)
        np.testing.assert_array_equal(got[k], expect, err_msg=f"page {pg}")
    if store.pages_on_disk() == 2:  # a file system with holes: the five others skipped
        assert store.stats["hole_pages"] == 5
    store.close()
    again = ShardedPageStore(tmp_path / "s", readonly=True)
    np.testing.assert_array_equal(again.read_pages(np.array([5], np.uint64))[0], page[0])
    again.close()


def test_bad_parameters_and_ranges(tmp_path):
    with pytest.raises(ConfigError, match="page_size"):
        ShardedPageStore.create(tmp_path / "a", page_size=3000)
    with pytest.raises(ConfigError, match="16 TiB"):
        ShardedPageStore.create(tmp_path / "b", shard_bytes=2**44)
    store = ShardedPageStore.create(tmp_path / "c", logical_bytes=1 << 20, shard_bytes=64 * KIB)
    with pytest.raises(ConfigError, match="outside"):
        store.read((1 << 20) - 2, 4)
    with pytest.raises(StorageError, match="already holds"):
        ShardedPageStore.create(tmp_path / "c")
    store.close()


def test_truncated_foreign_and_missing_files_are_named(tmp_path):
    store = ShardedPageStore.create(tmp_path / "s", logical_bytes=1 << 20, shard_bytes=64 * KIB)
    store.write(0, np.ones(8, np.uint8))
    store.close()
    shard = tmp_path / "s" / "shard-000000000.bin"
    os.truncate(shard, 1000)
    with pytest.raises(CheckpointError, match="truncated or foreign"):
        ShardedPageStore(tmp_path / "s")
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "manifest.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(CheckpointError, match="manifest.json: not a neurofabric-pages manifest"):
        ShardedPageStore(tmp_path / "f")
    with pytest.raises(CheckpointError, match="no manifest"):
        ShardedPageStore(tmp_path / "nothing")


def test_read_only_opening_never_modifies_files(tmp_path):
    store = ShardedPageStore.create(tmp_path / "s", logical_bytes=1 << 20, shard_bytes=64 * KIB)
    store.write(100, np.arange(50, dtype=np.uint8))
    store.close()
    before = _digest(tmp_path / "s")
    ro = ShardedPageStore(tmp_path / "s", readonly=True)
    ro.read(0, 4096)
    ro.read(200 * KIB, 10)  # a shard that does not exist is not created
    ro.prefetch([0, 1])
    with pytest.raises(StorageError, match="read-only"):
        ro.write(0, np.zeros(1, np.uint8))
    ro.close()
    assert _digest(tmp_path / "s") == before


def test_sigkill_during_writes_leaves_a_store_that_reopens(tmp_path):
    """Kill a writer mid-stream: the manifest (replaced atomically) stays valid and every
    page the writer finished before its last progress mark reads back."""
    folder = tmp_path / "s"
    ShardedPageStore.create(folder, logical_bytes=1 << 30, shard_bytes=1 << 24).close()
    script = textwrap.dedent(f"""
        import json, os, numpy as np
        from neurofabric.store import ShardedPageStore
        s = ShardedPageStore({str(folder)!r}, max_open=4)
        k = 0
        while True:
            s.write(k * 4096, np.full(4096, k % 251, np.uint8))
            if k % 64 == 0:
                tmp = {str(folder / "progress.json")!r} + ".tmp"
                with open(tmp, "w") as fh:
                    json.dump({{"done": k}}, fh)
                os.replace(tmp, {str(folder / "progress.json")!r})
            k += 1
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 30
    while not (folder / "progress.json").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    store = ShardedPageStore(folder, readonly=True)
    done = json.loads((folder / "progress.json").read_text())["done"]
    assert done > 0
    for k in range(0, done, max(1, done // 50)):
        assert store.read(k * 4096, 4096).tolist() == [k % 251] * 4096
    store.close()
