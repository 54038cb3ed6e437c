"""A logical 64-bit page space on sparse shard files, memory-mapped on demand.

>>> import tempfile, numpy as np
>>> from neurofabric.store import ShardedPageStore
>>> folder = tempfile.mkdtemp()
>>> store = ShardedPageStore.create(folder + "/pages", logical_bytes=2**50)  # 1 PiB, instantly
>>> store.write(2**49, np.arange(4, dtype=np.uint8))
>>> store.read(2**49, 4).tolist(), store.read(123, 2).tolist()
([0, 1, 2, 3], [0, 0])
>>> store.pages_on_disk()
1
>>> store.close()

Layout of a store directory::

    manifest.json        format, format_version, page_size, shard_bytes, logical_bytes
                         (written atomically by core.checkpoint.write_json)
    shard-000000123.bin  shard 123: bytes [123 * shard_bytes, 124 * shard_bytes), sparse

A shard file is created (sparse, by ``ftruncate``) on the first write that lands in it, so a
store of 1 PiB costs one small manifest until it is used, and disk usage follows the pages
written. A read of a page that was never written returns zeros without allocating anything.
Open mappings are kept in an LRU (``max_open``) and advised ``MADV_RANDOM`` (no read-around:
each fault reads one page); ``prefetch(pages)`` sends batched ``MADV_WILLNEED`` hints.
Writes land in the page cache; ``flush()`` syncs them (``msync``), never the query path.

**Resident memory.** Pages read or written through a mapping stay in this process's resident
set (``RssFile``) until the kernel reclaims them. With ``resident_budget`` (bytes), the store
counts the pages it touches (a page read as ``FAULT_AROUND`` pages: a read fault also maps
the neighbours in the page cache) and, past the budget, drops all its mappings' pages from the
resident set (``MADV_DONTNEED``: on a shared file mapping the data stays in the page cache and
the file, dirty pages included, and the next access maps it again), so a store far larger than
RAM is worked through with bounded RSS.
"""

from __future__ import annotations

import errno
import logging
import mmap
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from neurofabric.core.checkpoint import read_manifest, write_json
from neurofabric.core.errors import CheckpointError, ConfigError, StorageError
from neurofabric.core.validation import check_int

log = logging.getLogger(__name__)

__all__ = ["ShardedPageStore", "read_store_manifest"]

FORMAT = "neurofabric-pages"
VERSION = 1
EXT4_MAX_FILE = 16 * 2**40
#: pages a read fault may map at once (Linux maps the page cache's neighbours of a faulting
#: page: ``fault_around_bytes``, 64 KiB by default); the resident budget counts reads so
FAULT_AROUND = 16


def _shard_name(k: int) -> str:
    return f"shard-{k:09d}.bin"


def read_store_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``manifest.json`` of a store, checked by :func:`core.checkpoint.read_manifest`
    (format name and ``format_version``; a foreign, garbled or newer file is a
    :class:`CheckpointError` naming it). Stores written before the manifest carried
    ``format_version`` (they have only ``version``) are read too."""
    try:
        return read_manifest(path, format_name=FORMAT, version=VERSION)
    except CheckpointError as exc:
        try:  # version=None: any format_version; a legacy manifest has none, only "version"
            legacy = read_manifest(path, format_name=FORMAT, version=None)
        except CheckpointError:
            raise exc from None
        if "format_version" in legacy:
            raise exc from None
        if legacy.get("version") == VERSION:
            return legacy
        raise CheckpointError(
            f"{Path(path) / 'manifest.json'}: version {legacy.get('version')!r} is not supported "
            f"by this neurofabric (reads version {VERSION}); upgrade neurofabric"
        ) from None


class ShardedPageStore:
    """Pages of ``page_size`` bytes at logical byte offsets 0 .. ``logical_bytes``."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        readonly: bool = False,
        max_open: int = 64,
        resident_budget: int | None = None,
    ):
        self.path = Path(path)
        manifest = self.path / "manifest.json"
        meta = read_store_manifest(self.path)
        try:
            self.page_size = int(meta["page_size"])
            self.shard_bytes = int(meta["shard_bytes"])
            self.logical_bytes = int(meta["logical_bytes"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{manifest}: incomplete ({exc})") from exc
        self.meta = meta
        self.readonly = readonly
        self.max_open = check_int("max_open", max_open, min_value=1)
        self._maps: OrderedDict[int, tuple[int, mmap.mmap]] = OrderedDict()
        self._dirty: set[int] = set()
        self._lock = threading.RLock()
        self.stats = {"opens": 0, "closes": 0, "willneed_calls": 0, "trims": 0, "hole_pages": 0}
        self._touched = 0  # pages touched through the mappings since the last trim
        self.resident_budget = resident_budget
        self._check_shards()

    @property
    def resident_budget(self) -> int | None:
        """Most bytes of mapped shard pages kept resident (None: the kernel decides)."""
        return self._budget_pages * self.page_size if self._budget_pages else None

    @resident_budget.setter
    def resident_budget(self, value: int | None) -> None:
        if value is None:
            self._budget_pages = 0
            return
        check_int("resident_budget", value, min_value=self.page_size)
        self._budget_pages = value // self.page_size

    def _touch(self, n_pages: int, *, read: bool = False) -> None:
        """Count pages touched through the mappings; past the budget, trim the resident set.
        A read fault also maps the neighbours the page cache holds (fault-around: up to
        ``FAULT_AROUND`` pages), so a page read counts as that many."""
        if not self._budget_pages:
            return
        if read:
            n_pages *= FAULT_AROUND
        if self._touched + n_pages > self._budget_pages:
            self.trim()
        self._touched += n_pages

    def _span(self, offset: int, n: int) -> int:
        """Pages that bytes [offset, offset + n) touch."""
        return (offset + n - 1) // self.page_size - offset // self.page_size + 1 if n else 0

    def trim(self) -> None:
        """Drop every mapped page from this process's resident set (``MADV_DONTNEED``). The
        data stays in the page cache and the files; nothing is lost or written."""
        with self._lock:
            for _, mm in self._maps.values():
                if hasattr(mm, "madvise"):
                    mm.madvise(mmap.MADV_DONTNEED)
            self._touched = 0
            self.stats["trims"] += 1

    # ------------------------------------------------------------------ creation
    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        *,
        logical_bytes: int = 2**50,
        page_size: int = 4096,
        shard_bytes: int = 2**40,
        max_open: int = 64,
        meta: dict | None = None,
        resident_budget: int | None = None,
    ) -> ShardedPageStore:
        """A new, empty store (an error if ``path`` already holds one)."""
        path = Path(path)
        page_size = check_int("page_size", page_size)
        if page_size < mmap.PAGESIZE or page_size & (page_size - 1):
            raise ConfigError(
                f"`page_size` must be a power of two >= {mmap.PAGESIZE}, got {page_size!r}"
            )
        shard_bytes = check_int("shard_bytes", shard_bytes)
        if shard_bytes % page_size or not page_size <= shard_bytes < EXT4_MAX_FILE:
            raise ConfigError(
                f"`shard_bytes` must be a multiple of page_size below ext4's 16 TiB file limit, "
                f"got {shard_bytes!r}"
            )
        logical_bytes = check_int("logical_bytes", logical_bytes, min_value=1, max_value=2**64)
        if (path / "manifest.json").exists():
            raise StorageError(f"{path} already holds a page store; open it instead")
        path.mkdir(parents=True, exist_ok=True)
        manifest = {
            "format": FORMAT,
            "format_version": VERSION,
            "version": VERSION,  # what neurofabric before format_version read
            "page_size": page_size,
            "shard_bytes": shard_bytes,
            "logical_bytes": logical_bytes,
            **({"meta": meta} if meta else {}),
        }
        write_json(path / "manifest.json", manifest)
        return cls(path, max_open=max_open, resident_budget=resident_budget)

    def _check_shards(self) -> None:
        for f in self.path.glob("shard-*.bin"):
            size = f.stat().st_size
            if size != self.shard_bytes:
                raise CheckpointError(
                    f"{f}: {size} bytes, a shard of this store has {self.shard_bytes}; the file is "
                    "truncated or foreign (restore it from a backup or remove it to lose its pages)"
                )

    # ------------------------------------------------------------------ mappings
    @property
    def n_shards(self) -> int:
        return -(-self.logical_bytes // self.shard_bytes)

    def _mapping(self, shard: int, *, create: bool) -> mmap.mmap | None:
        with self._lock:
            hit = self._maps.get(shard)
            if hit is not None:
                self._maps.move_to_end(shard)
                return hit[1]
            fpath = self.path / _shard_name(shard)
            if not fpath.exists():
                if not create:
                    return None
                fd = os.open(fpath, os.O_RDWR | os.O_CREAT, 0o644)
                os.ftruncate(fd, self.shard_bytes)  # sparse: no block is allocated
            else:
                fd = os.open(fpath, os.O_RDONLY if self.readonly else os.O_RDWR)
                if os.fstat(fd).st_size != self.shard_bytes:
                    os.close(fd)
                    raise CheckpointError(
                        f"{fpath}: truncated shard (expected {self.shard_bytes} bytes)"
                    )
            access = mmap.ACCESS_READ if self.readonly else mmap.ACCESS_WRITE
            mm = mmap.mmap(fd, self.shard_bytes, access=access)
            if hasattr(mm, "madvise"):
                mm.madvise(mmap.MADV_RANDOM)
            self._maps[shard] = (fd, mm)
            self.stats["opens"] += 1
            while len(self._maps) > self.max_open:
                self._close_one(next(iter(self._maps)))
            return mm

    def _close_one(self, shard: int) -> None:
        fd, mm = self._maps.pop(shard)
        if shard in self._dirty:
            mm.flush()
            self._dirty.discard(shard)
        mm.close()
        os.close(fd)
        self.stats["closes"] += 1

    def _check_range(self, offset: int, n: int) -> None:
        if offset < 0 or n < 0 or offset + n > self.logical_bytes:
            raise ConfigError(
                f"bytes [{offset}, {offset + n}) lie outside the store's [0, {self.logical_bytes})"
            )

    def _pieces(self, offset: int, n: int):
        """(shard, offset in shard, position in the buffer, length) of a byte range."""
        pos = 0
        while pos < n:
            shard, inner = divmod(offset + pos, self.shard_bytes)
            take = min(n - pos, self.shard_bytes - inner)
            yield shard, inner, pos, take
            pos += take

    # ------------------------------------------------------------------ I/O
    def read(self, offset: int, n: int, *, out: np.ndarray | None = None) -> np.ndarray:
        """``n`` bytes at logical ``offset`` (zeros where nothing was written)."""
        self._check_range(offset, n)
        buf = np.empty(n, dtype=np.uint8) if out is None else out.view(np.uint8).reshape(-1)
        self._touch(self._span(offset, n), read=True)
        for shard, inner, pos, take in self._pieces(offset, n):
            mm = self._mapping(shard, create=False)
            if mm is None:
                buf[pos : pos + take] = 0
            else:
                buf[pos : pos + take] = np.frombuffer(mm, np.uint8, take, inner)
        return buf

    def read_pages(self, pages: Any, out: np.ndarray | None = None) -> np.ndarray:
        """Whole pages (n, page_size) by page number, one vectorized copy per shard."""
        pages = np.asarray(pages, dtype=np.uint64).reshape(-1)
        ps = self.page_size
        if len(pages) and int(pages.max()) * ps + ps > self.logical_bytes:
            raise ConfigError(f"page {int(pages.max())} lies outside the store")
        buf = np.empty((len(pages), ps), dtype=np.uint8) if out is None else out
        step = max(1, self._budget_pages // FAULT_AROUND)
        if self._budget_pages and len(pages) > step:  # in parts, so RSS stays within budget
            for at in range(0, len(pages), step):
                self.read_pages(pages[at : at + step], out=buf[at : at + step])
            return buf
        self._touch(len(pages), read=True)
        per_shard = self.shard_bytes // ps
        shard_of = pages // np.uint64(per_shard)
        for shard in np.unique(shard_of).tolist():
            sel = np.nonzero(shard_of == shard)[0]
            mm = self._mapping(int(shard), create=False)
            if mm is None:
                buf[sel] = 0
                continue
            local = (pages[sel] - np.uint64(shard * per_shard)).astype(np.int64)
            # pages in a hole of the sparse file (never written) read as zeros: no page-cache
            # pages are made for them (a fresh field's first batch is mostly such pages)
            hole = _in_holes(self._maps[shard][0], local * ps, ps)
            if hole.any():
                buf[sel[hole]] = 0
                sel, local = sel[~hole], local[~hole]
                self.stats["hole_pages"] += int(hole.sum())
            buf[sel] = np.frombuffer(mm, np.uint8).reshape(per_shard, ps)[local]
        return buf

    def view(self, offset: int, n: int) -> np.ndarray | None:
        """A zero-copy view of bytes inside one shard, or None when the shard does not exist."""
        self._check_range(offset, n)
        shard, inner = divmod(offset, self.shard_bytes)
        if inner + n > self.shard_bytes:
            raise ConfigError("view() cannot span two shards; use read()")
        mm = self._mapping(shard, create=False)
        return None if mm is None else np.frombuffer(mm, np.uint8, n, inner)

    def write(self, offset: int, data: Any) -> None:
        """Write bytes (any array, taken as raw bytes) at logical ``offset``."""
        if self.readonly:
            raise StorageError(f"{self.path} is open read-only")
        data = np.ascontiguousarray(data).view(np.uint8).reshape(-1)
        self._check_range(offset, len(data))
        self._touch(self._span(offset, len(data)))
        for shard, inner, pos, take in self._pieces(offset, len(data)):
            mm = self._mapping(shard, create=True)
            np.frombuffer(mm, np.uint8, take, inner)[:] = data[pos : pos + take]
            self._dirty.add(shard)

    def write_pages(self, pages: Any, data: Any) -> None:
        """Write whole pages (n, page_size) by page number, one vectorized copy per shard (a
        repeated page keeps one of its copies)."""
        if self.readonly:
            raise StorageError(f"{self.path} is open read-only")
        pages = np.asarray(pages, dtype=np.uint64).reshape(-1)
        ps = self.page_size
        data = np.ascontiguousarray(data).view(np.uint8).reshape(len(pages), ps)
        if len(pages) and int(pages.max()) * ps + ps > self.logical_bytes:
            raise ConfigError(f"page {int(pages.max())} lies outside the store")
        step = self._budget_pages
        if step and len(pages) > step:  # in parts, so the resident set stays within budget
            for at in range(0, len(pages), step):
                self.write_pages(pages[at : at + step], data[at : at + step])
            return
        self._touch(len(pages))
        per_shard = self.shard_bytes // ps
        shard_of = pages // np.uint64(per_shard)
        for shard in np.unique(shard_of).tolist():
            sel = np.nonzero(shard_of == shard)[0]
            mm = self._mapping(int(shard), create=True)
            local = (pages[sel] - np.uint64(shard * per_shard)).astype(np.int64)
            np.frombuffer(mm, np.uint8).reshape(per_shard, ps)[local] = data[sel]
            self._dirty.add(int(shard))

    def discard(self, offset: int, n: int) -> None:
        """Release the disk blocks of whole pages in [offset, offset + n): they read as zeros
        again (``fallocate(PUNCH_HOLE)``; where the system lacks it, zeros are written)."""
        if self.readonly:
            raise StorageError(f"{self.path} is open read-only")
        if offset % self.page_size or n % self.page_size:
            raise ConfigError(
                "discard() takes whole pages (offset and length multiples of page_size)"
            )
        self._check_range(offset, n)
        for shard, inner, _, take in self._pieces(offset, n):
            mm = self._mapping(shard, create=False)
            if mm is None:
                continue
            fd = self._maps[shard][0]
            if not _punch_hole(fd, inner, take):
                np.frombuffer(mm, np.uint8, take, inner)[:] = 0

    def prefetch(self, pages: Any) -> int:
        """Batched ``MADV_WILLNEED`` hints for page numbers (runs of pages merged); returns
        the number of hints sent. Pages of shards that do not exist are skipped."""
        pages = np.unique(np.asarray(pages, dtype=np.uint64))
        if not len(pages):
            return 0
        ps = self.page_size
        per_shard = self.shard_bytes // ps
        breaks = np.nonzero((np.diff(pages) != 1) | (np.diff(pages // per_shard) != 0))[0] + 1
        starts = np.concatenate([[0], breaks])
        firsts = pages[starts]
        lengths = np.diff(np.concatenate([starts, [len(pages)]])) * ps
        shard_of = firsts // np.uint64(per_shard)
        inners = (firsts - shard_of * np.uint64(per_shard)) * np.uint64(ps)
        hints = 0
        for shard in np.unique(shard_of).tolist():  # one mapping lookup per shard
            mm = self._mapping(int(shard), create=False)
            if mm is None or not hasattr(mm, "madvise"):
                continue
            sel = shard_of == shard
            # no hint for a run in a hole (never written): reading it makes nothing to wait for
            hole = _in_holes(self._maps[int(shard)][0], inners[sel].astype(np.int64), lengths[sel])
            sel[np.nonzero(sel)[0][hole]] = False
            advise, will = mm.madvise, mmap.MADV_WILLNEED
            for inner, length in zip(inners[sel].tolist(), lengths[sel].tolist(), strict=True):
                advise(will, inner, length)
            hints += int(sel.sum())
        self.stats["willneed_calls"] += hints
        return hints

    def flush(self) -> None:
        """Write dirty pages back (msync); the manifest is already on disk."""
        with self._lock:
            for shard in list(self._dirty):
                if shard in self._maps:
                    self._maps[shard][1].flush()
            self._dirty.clear()

    def close(self) -> None:
        with self._lock:
            self.flush()
            for shard in list(self._maps):
                self._close_one(shard)

    def __enter__(self) -> ShardedPageStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ accounting
    def disk_bytes(self) -> int:
        """Bytes actually allocated on disk (st_blocks), manifest included."""
        return sum(f.stat().st_blocks * 512 for f in self.path.iterdir() if f.is_file())

    def pages_on_disk(self) -> int:
        """Allocated pages over all shards (SEEK_DATA / SEEK_HOLE where supported)."""
        total = 0
        for f in sorted(self.path.glob("shard-*.bin")):
            total += _allocated_bytes(f) // self.page_size
        return total


_FALLOC_FL_KEEP_SIZE, _FALLOC_FL_PUNCH_HOLE = 0x01, 0x02


def _punch_hole(fd: int, offset: int, length: int) -> bool:
    """Deallocate a byte range of a file, keeping its size (Linux); False if unsupported."""
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fallocate = libc.fallocate
        fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
        mode = _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE
        return fallocate(fd, mode, offset, length) == 0
    except (OSError, AttributeError):
        return False


#: far beyond any shard: "no data after this offset"
_NO_DATA = 1 << 62


def _in_holes(fd: int, starts: np.ndarray, lengths: Any) -> np.ndarray:
    """Whether each byte range [start, start + length) of a file lies wholly in a hole: a range
    that has never held data, which reads as zeros (``SEEK_DATA``: data written through a
    mapping and not yet flushed counts as data). All False where the system cannot tell. One
    pair of ``lseek`` calls per data extent the ranges meet, in order of start."""
    starts = np.asarray(starts, dtype=np.int64).reshape(-1)
    out = np.zeros(len(starts), dtype=bool)
    if not len(starts) or not hasattr(os, "SEEK_DATA"):
        return out
    ends = starts + np.broadcast_to(np.asarray(lengths, dtype=np.int64), starts.shape)
    order = np.argsort(starts, kind="stable")
    d0 = d1 = -1  # the data extent [d0, d1) found by the last query, at a position <= start
    for i, s, e in zip(order.tolist(), starts[order].tolist(), ends[order].tolist(), strict=True):
        if d1 < 0 or d0 != _NO_DATA and s >= d1:
            try:
                d0 = os.lseek(fd, s, os.SEEK_DATA)
                d1 = os.lseek(fd, d0, os.SEEK_HOLE)
            except OSError as exc:
                if exc.errno != errno.ENXIO:  # no sparse-file support here: cannot tell
                    return np.zeros(len(starts), dtype=bool)
                d0 = d1 = _NO_DATA  # nothing but holes from s to the end of the file
        out[i] = e <= d0
    return out


def _allocated_bytes(path: Path) -> int:
    """Bytes of data extents in a sparse file (falls back to st_blocks)."""
    if not hasattr(os, "SEEK_DATA"):
        return path.stat().st_blocks * 512
    size = path.stat().st_size
    total = 0
    with open(path, "rb") as fh:
        fd = fh.fileno()
        pos = 0
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break
            end = os.lseek(fd, start, os.SEEK_HOLE)
            total += end - start
            pos = end
    return total
