"""Tiered page storage: DRAM, an emulated CXL pool, local SSD (sharded mmap files), a slow tier.

Pages move whole. A read looks in DRAM (a pool of page slots with a sorted page index, read by
a numba kernel), then in the CXL tier, then on SSD (the home of every page), or in the slow
tier for pages demoted there; the page is promoted into DRAM. DRAM evicts its least recently
used pages into the CXL tier (when it has capacity), the CXL tier evicts into SSD; a dirty
page is written back on eviction or by ``flush()``. With ``ssd_pages`` set, SSD keeps at most
that many pages touched in this session: the coldest are copied to the slow tier, the copy is
recorded (atomically) and then the SSD blocks are released (hole punching).

**The CXL tier is emulated**: a second in-process memory pool with ``cxl_delay_s`` of busy
waiting per page moved through it. The slow tier is any fsspec filesystem (a local folder in
tests), one object per page, with ``slow_delay_s`` of injected latency (HDD-like: ~5 ms).
"""

from __future__ import annotations

import io
import logging
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

import neurofabric.field.kernels  # noqa: F401  (registers the "field" backends)
from neurofabric.core import backend as backends
from neurofabric.core.checkpoint import atomic_write
from neurofabric.core.errors import CheckpointError, ConfigError, StorageError
from neurofabric.core.validation import check_int, check_nonnegative
from neurofabric.store.sharded import ShardedPageStore

log = logging.getLogger(__name__)

__all__ = ["TierConfig", "TieredPages"]

TIERS = ("dram", "cxl", "ssd", "slow", "zero")
_EMPTY = np.iinfo(np.int64).min


@dataclass(frozen=True)
class TierConfig:
    """Capacities in pages; delays in seconds per page."""

    dram_pages: int = 4096
    cxl_pages: int = 0
    cxl_delay_s: float = 5e-7
    ssd_pages: int | None = None
    slow_url: str | None = None
    slow_delay_s: float = 0.0
    #: most shard-file pages this process keeps mapped resident (``RssFile``); None: the
    #: kernel decides (a field larger than RAM then fills the resident set with file pages)
    mapped_pages: int | None = None

    def __post_init__(self) -> None:
        check_int("dram_pages", self.dram_pages, min_value=1)
        check_int("cxl_pages", self.cxl_pages, min_value=0)
        check_nonnegative("cxl_delay_s", self.cxl_delay_s, "seconds")
        check_nonnegative("slow_delay_s", self.slow_delay_s, "seconds")
        if self.mapped_pages is not None:
            check_int("mapped_pages", self.mapped_pages, min_value=1)
        if self.ssd_pages is not None:
            check_int("ssd_pages", self.ssd_pages, min_value=1)
            if self.slow_url is None:
                raise ConfigError("`ssd_pages` needs a slow tier to demote into: set `slow_url`")

    @classmethod
    def for_memory(cls, budget_bytes: int, *, page_size: int = 4096, **kw: Any) -> TierConfig:
        """Tiers whose pages hold at most ``budget_bytes`` in this process: 7/8 for the DRAM
        pool, 1/8 for mapped shard pages (``kw``: the other fields). The decoder's layer cache
        (``layer_budget``), the direct page map and the interpreter come on top."""
        check_int("budget_bytes", budget_bytes, min_value=16 * page_size)
        pages = budget_bytes // page_size
        return cls(dram_pages=pages - pages // 8, mapped_pages=pages // 8, **kw)

    def as_dict(self) -> dict:
        return asdict(self)


def _spin(seconds: float) -> None:
    if seconds <= 0:
        return
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


class _SlowTier:
    """One object per page on an fsspec filesystem, with injected latency."""

    def __init__(self, url: str, delay_s: float, page_size: int) -> None:
        import fsspec

        self.fs, self.root = fsspec.core.url_to_fs(url)
        self.fs.makedirs(self.root, exist_ok=True)
        self.delay_s = delay_s
        self.page_size = page_size

    def _key(self, page: int) -> str:
        return f"{self.root}/{page:016x}.page"

    def get(self, page: int) -> np.ndarray:
        time.sleep(self.delay_s) if self.delay_s >= 1e-4 else _spin(self.delay_s)
        data = self.fs.cat_file(self._key(page))
        if len(data) != self.page_size:
            raise StorageError(
                f"slow tier object {self._key(page)} has {len(data)} bytes, not a page"
            )
        return np.frombuffer(data, dtype=np.uint8).copy()

    def put(self, page: int, data: np.ndarray) -> None:
        time.sleep(self.delay_s) if self.delay_s >= 1e-4 else _spin(self.delay_s)
        self.fs.pipe_file(self._key(page), data.tobytes())

    def remove(self, page: int) -> None:
        self.fs.rm_file(self._key(page))


class TieredPages:
    """Row-granular reads and writes over tiered pages of a :class:`ShardedPageStore`."""

    def __init__(
        self,
        store: ShardedPageStore,
        config: TierConfig | None = None,
        *,
        row_bytes: int,
        backend: str = "auto",
        direct_pages: int = 0,
    ) -> None:
        self.store = store
        self.config = config or TierConfig()
        self.page_size = store.page_size
        check_int("row_bytes", row_bytes, min_value=1)
        if self.page_size % row_bytes:
            raise ConfigError(
                f"`row_bytes` must divide the page size {self.page_size}, got {row_bytes}"
            )
        self.row_bytes = row_bytes
        if self.config.mapped_pages is not None:
            store.resident_budget = self.config.mapped_pages * self.page_size
        #: the backend of the DRAM tier's row gather ("auto" resolved)
        self.backend, self._k = backends.resolve("field", backend)
        n = self.config.dram_pages
        self.pool = np.zeros((n, self.page_size), dtype=np.uint8)
        #: the same memory as float32 words, for kernels that read table rows directly
        self.pool_f32 = self.pool.view(np.float32)
        self.slot_page = np.full(n, _EMPTY, dtype=np.int64)
        self.slot_tick = np.zeros(n, dtype=np.int64)
        self.slot_dirty = np.zeros(n, dtype=bool)
        self.resident = np.zeros(0, dtype=np.uint64)
        self.resident_slots = np.zeros(0, dtype=np.int64)
        #: pages [0, direct_pages) find their DRAM slot in this map (-1: not in DRAM) instead of
        #: a binary search of ``resident`` (the hot table pages: 8 bytes of map per 4 KiB page)
        check_int("direct_pages", direct_pages, min_value=0)
        self.page_slot = np.full(direct_pages, -1, dtype=np.int64)
        self.free = list(range(n - 1, -1, -1))
        self.tick = 0
        self.cxl: OrderedDict[int, tuple[np.ndarray, bool]] = OrderedDict()
        self.slow = None
        self.slow_pages: set[int] = set()
        self.ssd_lru: OrderedDict[int, None] = OrderedDict()
        if self.config.slow_url is not None:
            self.slow = _SlowTier(self.config.slow_url, self.config.slow_delay_s, self.page_size)
            self.slow_pages = self._load_slow_index()
        self.counts = dict.fromkeys(TIERS, 0)  # row reads served by each tier
        self.on_miss = None  # called with the missing pages of a read (prefetchers train on misses)
        self.moves = {
            "promotions": 0,
            "dram_evictions": 0,
            "cxl_evictions": 0,
            "writebacks": 0,
            "demotions_to_slow": 0,
            "bytes_read_ssd": 0,
            "bytes_read_slow": 0,
            "bytes_written": 0,
        }

    # ------------------------------------------------------------------ slow-tier index
    def _index_path(self) -> Path:
        return self.store.path / "slow_pages.npy"

    def _load_slow_index(self) -> set[int]:
        """The pages demoted to the slow tier (a .npy of page numbers); a file that is not one
        is a :class:`CheckpointError` naming it."""
        p = self._index_path()
        if not p.is_file():
            return set()
        try:
            pages = np.load(p, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise CheckpointError(
                f"{p}: the slow-tier index is not a .npy array of page numbers ({exc}); restore "
                "it from a backup"
            ) from exc
        if pages.ndim != 1 or pages.dtype.kind not in "iu":
            raise CheckpointError(
                f"{p}: the slow-tier index must be a 1-D integer array, got {pages.dtype} of "
                f"shape {pages.shape}; restore it from a backup"
            )
        return set(pages.astype(np.uint64).tolist())

    def _save_slow_index(self) -> None:
        buf = io.BytesIO()
        np.save(buf, np.array(sorted(self.slow_pages), dtype=np.uint64), allow_pickle=False)
        atomic_write(self._index_path(), buf.getvalue())

    # ------------------------------------------------------------------ reads
    def _split(self, rows: np.ndarray):
        """Row index groups whose pages fit in half the DRAM tier (None: one group is enough)."""
        pages = (rows * np.uint64(self.row_bytes)) // np.uint64(self.page_size)
        upages = np.unique(pages)
        cap = max(1, self.config.dram_pages // 2)
        if len(upages) <= self.config.dram_pages:
            return None
        group = np.searchsorted(upages, pages) // cap
        order = np.argsort(group, kind="stable")
        bounds = np.searchsorted(group[order], np.arange(1, group.max() + 1))
        return np.split(order, bounds)

    def read_rows(self, rows: np.ndarray) -> np.ndarray:
        """Bytes of each row (n, row_bytes), fetching missing pages through the tiers; rows
        whose pages are missing and touch more pages than DRAM holds are served in
        page-grouped parts."""
        rows = np.ascontiguousarray(rows, dtype=np.uint64).reshape(-1)
        out = np.empty((len(rows), self.row_bytes), dtype=np.uint8)
        self.tick += 1
        missing = self._gather(rows, out)
        n_miss = int(missing.sum())
        self.counts["dram"] += len(rows) - n_miss
        if n_miss:
            idx = np.nonzero(missing)[0]
            miss_rows = rows[idx]
            parts = self._split(miss_rows)
            for part in [None] if parts is None else parts:
                sel = idx if part is None else idx[part]
                out[sel] = self._read_missing(rows[sel])
        return out

    def _gather(self, rows: np.ndarray, out: np.ndarray) -> np.ndarray:
        return self._k.gather_rows(
            rows,
            self.row_bytes,
            self.page_size,
            self.resident,
            self.resident_slots,
            self.page_slot,
            self.pool,
            self.slot_tick,
            self.tick,
            out,
        )

    def _read_missing(self, miss_rows: np.ndarray) -> np.ndarray:
        """Rows whose pages were not in DRAM (their pages fit in DRAM): bring them in, copy."""
        page_of = (miss_rows * np.uint64(self.row_bytes)) // np.uint64(self.page_size)
        pages = np.unique(page_of)
        pages = pages[~self.is_resident(pages)]  # an earlier part may have brought some in
        if len(pages):
            if self.on_miss is not None:
                self.on_miss(pages)
            tiers = self._bring_in(pages)
            fetched = np.isin(page_of, pages)
            per_page = np.bincount(np.searchsorted(pages, page_of[fetched]), minlength=len(pages))
            per_tier = np.bincount(tiers, weights=per_page, minlength=len(TIERS))
            for k, tier in enumerate(TIERS):
                self.counts[tier] += int(per_tier[k])
            self.counts["dram"] += int(len(miss_rows) - fetched.sum())
        else:
            self.counts["dram"] += len(miss_rows)
        sub = np.empty((len(miss_rows), self.row_bytes), dtype=np.uint8)
        if self._gather(miss_rows, sub).any():  # more pages than DRAM slots in one batch
            raise ConfigError(
                f"one batch touches more pages than the DRAM tier holds ({self.config.dram_pages}); "
                "raise `dram_pages` or query smaller batches"
            )
        return sub

    def is_resident(self, pages: np.ndarray) -> np.ndarray:
        pages = np.asarray(pages, dtype=np.uint64)
        pos = np.searchsorted(self.resident, pages)
        ok = pos < len(self.resident)
        ok[ok] = self.resident[pos[ok]] == pages[ok]
        return ok

    def _fetch(self, page: int) -> tuple[np.ndarray, bool, str]:
        """(bytes, dirty, tier) of a page not in DRAM."""
        hit = self.cxl.pop(page, None)
        if hit is not None:
            _spin(self.config.cxl_delay_s)
            return hit[0], hit[1], "cxl"
        if page in self.slow_pages:
            data = self.slow.get(page)
            self.moves["bytes_read_slow"] += self.page_size
            if self.store.readonly:
                return data, False, "slow"
            # back home: onto SSD first, then forget the slow copy (index saved before removal)
            self.store.write(page * self.page_size, data)
            self._touch_ssd(page)
            self.slow_pages.discard(page)
            self._save_slow_index()
            self.slow.remove(page)
            return data, False, "slow"
        data = self.store.read(page * self.page_size, self.page_size)
        self.moves["bytes_read_ssd"] += self.page_size
        self._touch_ssd(page)
        empty = not data.any()
        return data, False, "zero" if empty else "ssd"

    def _take_slots(self, n: int) -> np.ndarray:
        """``n`` free DRAM slots (the most recently freed first)."""
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        slots = np.array(self.free[-n:][::-1], dtype=np.int64)
        del self.free[-n:]
        return slots

    def _bring_in(self, pages: np.ndarray, protect: np.ndarray | None = None) -> np.ndarray:
        """Fetch ``pages`` into DRAM; ``protect``: resident pages the caller still needs.
        Returns the tier each page came from (indices into ``TIERS``)."""
        if len(pages) > self.config.dram_pages:
            raise ConfigError(
                f"one batch touches {len(pages)} pages, more than the DRAM tier holds "
                f"({self.config.dram_pages}); raise `dram_pages` or query smaller batches"
            )
        need = len(pages) - len(self.free)
        if need > 0:
            # evict a batch (1/64 of the pool at least): the LRU scan is O(pool), so a run of
            # small misses (single-point queries on a full pool) shares one scan
            need = min(max(need, self.config.dram_pages // 64), self.config.dram_pages)
            self._evict(need, protect=pages if protect is None else np.union1d(pages, protect))
        slots = self._take_slots(len(pages))
        tiers = np.full(len(pages), TIERS.index("ssd"), dtype=np.int64)
        dirty = np.zeros(len(pages), dtype=bool)
        if self.cxl or self.slow_pages:  # page by page: some live above or below SSD
            from_ssd = []
            for i, page in enumerate(pages.tolist()):
                if page in self.cxl or page in self.slow_pages:
                    data, dirty[i], tier = self._fetch(page)
                    tiers[i] = TIERS.index(tier)
                    self.pool[slots[i]] = data
                else:
                    from_ssd.append(i)
            idx = np.array(from_ssd, dtype=np.int64)
        else:
            idx = np.arange(len(pages))
        if len(idx):
            ssd_pages = pages[idx]
            # one batch of WILLNEED hints, so the device reads the pages concurrently, then
            # one vectorized copy per shard
            if len(idx) > 1:
                self.store.prefetch(ssd_pages)
            data = self.store.read_pages(ssd_pages)
            self.pool[slots[idx]] = data
            self.moves["bytes_read_ssd"] += len(idx) * self.page_size
            empty = ~data.view(np.uint64).any(axis=1)  # page_size is a multiple of 8
            tiers[idx[empty]] = TIERS.index("zero")
            if self.config.ssd_pages is not None:
                for page in ssd_pages.tolist():
                    self._touch_ssd(page)
        self.slot_page[slots] = pages.astype(np.int64)
        direct = pages < np.uint64(len(self.page_slot))
        self.page_slot[pages[direct].astype(np.int64)] = slots[direct]
        self.slot_dirty[slots] = dirty
        self.slot_tick[slots] = self.tick
        self.moves["promotions"] += len(pages)
        # insert into the sorted page index (a memmove, no re-sort of the pool)
        order = np.argsort(pages, kind="stable")
        new_pages = pages.astype(np.uint64)[order]
        pos = np.searchsorted(self.resident, new_pages)
        self.resident = np.insert(self.resident, pos, new_pages)
        self.resident_slots = np.insert(self.resident_slots, pos, slots[order])
        return tiers

    def _evict(self, n: int, *, protect: np.ndarray | None = None) -> None:
        held = np.nonzero(self.slot_page != _EMPTY)[0]
        ticks = self.slot_tick[held]
        if protect is not None and len(protect):
            # protected pages (still needed by this batch) look most recent: never chosen
            prot = np.asarray(protect, dtype=np.uint64)
            pos = np.searchsorted(self.resident, prot)
            ok = pos < len(self.resident)
            ok[ok] = self.resident[pos[ok]] == prot[ok]
            shield = np.zeros(len(self.slot_page), dtype=bool)
            shield[self.resident_slots[pos[ok]]] = True
            keep = ~shield[held]
            held, ticks = held[keep], ticks[keep]
        n = min(n, len(held))
        if n <= 0:
            return
        if n < len(held):  # the n least recently used, in O(pool)
            victims = held[np.argpartition(ticks, n - 1)[:n]]
        else:
            victims = held
        if self.config.cxl_pages > 0:
            for slot in victims.tolist():
                page, dirty = int(self.slot_page[slot]), bool(self.slot_dirty[slot])
                _spin(self.config.cxl_delay_s)
                self.cxl[page] = (self.pool[slot].copy(), dirty)
                while len(self.cxl) > self.config.cxl_pages:
                    old, (odata, odirty) = self.cxl.popitem(last=False)
                    self.moves["cxl_evictions"] += 1
                    if odirty:
                        self._write_home(old, odata)
        else:  # no CXL tier: dirty victims go home in one vectorized write, clean ones drop
            dirty = victims[self.slot_dirty[victims]]
            if len(dirty):
                self._write_home_many(self.slot_page[dirty].astype(np.uint64), self.pool[dirty])
        self.slot_dirty[victims] = False
        self.free.extend(victims.tolist())
        self.moves["dram_evictions"] += len(victims)
        gone = np.sort(self.slot_page[victims].astype(np.uint64))
        self.page_slot[gone[gone < np.uint64(len(self.page_slot))].astype(np.int64)] = -1
        self.slot_page[victims] = _EMPTY
        at = np.searchsorted(self.resident, gone)
        self.resident = np.delete(self.resident, at)
        self.resident_slots = np.delete(self.resident_slots, at)

    # ------------------------------------------------------------------ SSD and slow tier
    def _write_home(self, page: int, data: np.ndarray) -> None:
        self.store.write(page * self.page_size, data)
        self.moves["writebacks"] += 1
        self.moves["bytes_written"] += self.page_size
        self._touch_ssd(page)

    def _write_home_many(self, pages: np.ndarray, data: np.ndarray) -> None:
        """:meth:`_write_home` of many pages at once (one vectorized copy per shard)."""
        self.store.write_pages(pages, data)
        self.moves["writebacks"] += len(pages)
        self.moves["bytes_written"] += len(pages) * self.page_size
        if self.config.ssd_pages is not None:
            for page in pages.tolist():
                self._touch_ssd(page)

    def _touch_ssd(self, page: int) -> None:
        if self.store.readonly or self.config.ssd_pages is None:
            return  # without a capacity there is nothing to demote: no bookkeeping
        lru = self.ssd_lru
        lru[page] = None
        lru.move_to_end(page)
        cap = self.config.ssd_pages
        if cap is not None and len(lru) > cap:
            batch = max(1, cap // 20)  # demote 5 % at a time: one index write per batch
            victims = []
            for _ in range(min(batch, len(lru) - 1)):
                victims.append(lru.popitem(last=False)[0])
            self._demote(victims)

    def _demote(self, pages: list[int]) -> None:
        resident = set(self.slot_page[self.slot_page != _EMPTY].tolist()) | set(self.cxl)
        moved = []
        for page in pages:
            if page in resident:  # an upper tier still holds it; SSD keeps its copy
                continue
            data = self.store.read(page * self.page_size, self.page_size)
            self.slow.put(page, data)
            moved.append(page)
        if not moved:
            return
        self.slow_pages.update(moved)
        self._save_slow_index()  # recorded before the SSD copy goes: a crash loses nothing
        for page in moved:
            self.store.discard(page * self.page_size, self.page_size)
        self.moves["demotions_to_slow"] += len(moved)

    # ------------------------------------------------------------------ writes
    def write_rows(self, rows: np.ndarray, data: np.ndarray) -> None:
        """Write bytes (n, row_bytes) to rows; pages come into DRAM and become dirty. Rows are
        written in order (a repeated row keeps its last value)."""
        rows = np.ascontiguousarray(rows, dtype=np.uint64).reshape(-1)
        data = np.ascontiguousarray(data).view(np.uint8).reshape(len(rows), self.row_bytes)
        # all the copies of a row share a page, so they land in one group below: a repeated
        # row keeps its last value
        absent = np.nonzero(self._scatter(rows, data) < 0)[0]
        if len(absent):
            parts = self._split(rows[absent])
            for part in [None] if parts is None else parts:
                sel = absent if part is None else absent[part]
                pages = np.unique(
                    (rows[sel] * np.uint64(self.row_bytes)) // np.uint64(self.page_size)
                )
                pages = pages[~self.is_resident(pages)]
                if len(pages):
                    self._bring_in(pages)
                if (self._scatter(rows[sel], data[sel]) < 0).any():
                    raise ConfigError(
                        f"one write touches more pages than the DRAM tier holds "
                        f"({self.config.dram_pages}); raise `dram_pages` or write smaller batches"
                    )

    def _scatter(self, rows: np.ndarray, data: np.ndarray) -> np.ndarray:
        slots = self._k.scatter_rows(
            rows,
            self.row_bytes,
            self.page_size,
            self.resident,
            self.resident_slots,
            self.page_slot,
            self.pool,
            data,
        )
        hit = slots[slots >= 0]
        self.slot_dirty[hit] = True
        self.slot_tick[hit] = self.tick
        return slots

    def flush(self) -> None:
        """Write every dirty page (DRAM and CXL) back to SSD and sync it."""
        dirty = np.nonzero(self.slot_dirty)[0]
        if len(dirty):
            self._write_home_many(self.slot_page[dirty].astype(np.uint64), self.pool[dirty])
            self.slot_dirty[dirty] = False
        for page, (data, dirty) in list(self.cxl.items()):
            if dirty:
                self._write_home(page, data)
                self.cxl[page] = (data, False)
        self.store.flush()

    def hit_rates(self) -> dict[str, float]:
        total = sum(self.counts.values())
        return {t: (c / total if total else 0.0) for t, c in self.counts.items()}

    def stats(self) -> dict[str, Any]:
        return {
            "row_reads": dict(self.counts),
            "hit_rate": self.hit_rates(),
            **self.moves,
            "dram_pages_used": int(np.count_nonzero(self.slot_page != _EMPTY)),
            "cxl_pages_used": len(self.cxl),
            "slow_pages": len(self.slow_pages),
            "cxl_emulated": True,
        }
