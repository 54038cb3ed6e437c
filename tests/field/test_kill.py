"""SIGKILL a process that is learning into a field: every flushed write reads back bit for bit.

The child learns a fixed stream of batches with a 2-page DRAM tier (so dirty pages are
written home by eviction between flushes), flushes every ``EVERY`` steps and, only after
``flush()`` returns, appends the step number to a log (written and fsynced). The parent
replays the same stream in-process (the arithmetic is deterministic) and keeps the image of
every page after each step. After the kill each page on disk must equal its image at the
last logged flush, or at a later step the child may have reached (a write that had not been
flushed yet: the old or the new page, whole, never anything else).

A kill ends the process, not the machine: the page cache survives it, so these tests cannot
tell whether ``flush()`` syncs to the device (that needs a power cut); they check that what
``flush()`` reports done is in the files, and that no page is ever written in part.
"""

import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from neurofabric.field import DemandPagedField, HashGridSpec
from neurofabric.store import ShardedPageStore

SPEC = HashGridSpec(
    n_dims=2, n_levels=6, n_features=2, log2_table=9, base_resolution=4, per_level_scale=1.6
)
EVERY = 5  # steps between flushes
SIZES = {"logical_bytes": 1 << 22, "shard_bytes": 1 << 22}

# the child: learn the stream, flush every EVERY steps and log each flush once it returned;
# with kill_at > 0 it SIGKILLs itself at its kill_at-th page-store write after flush number
# kill_after (kill_at = 1: before anything more reaches the files)
CHILD = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    from neurofabric.field import DemandPagedField, TierConfig
    from neurofabric.store import ShardedPageStore

    path, log_path, every, kill_after, kill_at = sys.argv[1:]
    every, kill_after, kill_at = int(every), int(kill_after), int(kill_at)
    writes = [None]  # None: not armed; else the writes counted since flush kill_after
    plain_write, plain_write_pages = ShardedPageStore.write, ShardedPageStore.write_pages

    def count():
        if writes[0] is not None:
            writes[0] += 1
            if writes[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

    def counted_write(self, offset, data):
        count()
        return plain_write(self, offset, data)

    def counted_write_pages(self, pages, data):
        count()
        return plain_write_pages(self, pages, data)

    ShardedPageStore.write = counted_write
    ShardedPageStore.write_pages = counted_write_pages
    field = DemandPagedField.open(path, tiers=TierConfig(dram_pages=2))
    rng = np.random.default_rng(0)
    log = open(log_path, "a")
    step = flushes = 0
    while True:
        x = rng.random((16, 2))
        field.learn(x, np.sin(6 * x[:, :1]) * np.cos(4 * x[:, 1:2]), lr=0.1)
        step += 1
        if step % every == 0:
            field.flush()
            log.write(f"{step}\\n")
            log.flush()
            os.fsync(log.fileno())
            flushes += 1
            if flushes == kill_after and kill_at > 0:
                writes[0] = 0
""")


def _batches():
    rng = np.random.default_rng(0)  # the child's stream, batch for batch
    while True:
        x = rng.random((16, 2))
        yield x, np.sin(6 * x[:, :1]) * np.cos(4 * x[:, 1:2])


def _field_bytes(field) -> int:
    off, n_in, n_out = field.layers[-1]
    page = field.store.page_size
    return -(-(off + (n_in + 1) * n_out * 4) // page) * page


def _create(path):
    DemandPagedField.create(path, spec=SPEC, hidden=(16,), seed=0, **SIZES).close()


def _image(field, n: int) -> np.ndarray:
    """The field's parameters as the page images [0, n) should hold them, from its read path
    (table rows through the tiers, the decoder from its layer cache), not from ``flush``."""
    rows = np.arange(n // field.row_bytes, dtype=np.uint64)
    img = field.pages.read_rows(rows).reshape(-1).copy()
    for (off, _, _), (W, b) in zip(field.layers, field.decoder(), strict=True):
        flat = np.concatenate([W.reshape(-1), b]).astype(np.float32).view(np.uint8)
        img[off : off + len(flat)] = flat
    return img.reshape(-1, field.store.page_size)


def _replay(path, last: int, keep_from: int) -> dict[int, np.ndarray]:
    """Page images (pages, page_size) after each step keep_from..last of the child's stream."""
    _create(path)
    images = {}
    field = DemandPagedField.open(path)  # a DRAM tier that holds everything
    n = _field_bytes(field)
    for step, (x, y) in zip(range(1, last + 1), _batches(), strict=False):
        field.learn(x, y, lr=0.1)
        if step >= keep_from:
            images[step] = _image(field, n)
    field.store.close()  # not field.close(): the replay writes nothing to its files
    return images


def _run_child(path, log, *, kill_after=0, kill_at=0, kill_when_logged=None):
    args = [str(path), str(log), str(EVERY), str(kill_after), str(kill_at)]
    proc = subprocess.Popen([sys.executable, "-c", CHILD, *args])
    try:
        if kill_when_logged is not None:  # the parent kills, at a moment it does not choose
            deadline = time.time() + 120
            while time.time() < deadline and proc.poll() is None:
                if log.exists() and len(log.read_text().splitlines()) >= kill_when_logged:
                    break
                time.sleep(0.01)
            time.sleep(float(np.random.default_rng(kill_when_logged).uniform(0, 0.05)))
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the child ended with {proc.returncode}"


def _flushed_step(log) -> int:
    text = log.read_text()
    complete = text[: text.rfind("\n") + 1].split()  # a line only counts once it is whole
    assert complete, "the child was killed before its first flush: nothing to check"
    return int(complete[-1])


def _check_pages(path, tmp_path, flushed: int, last: int) -> dict[str, int]:
    """Every page on disk equals its image after the flushed step or after a step up to
    ``last``; the decoder's pages (written by flush only) after ``flushed`` or ``last``."""
    images = _replay(tmp_path / "replay", last, flushed)
    store = ShardedPageStore(path, readonly=True)
    n_pages = images[flushed].shape[0]
    disk = store.read(0, n_pages * store.page_size).reshape(n_pages, -1)
    store.close()
    with DemandPagedField.open(path, readonly=True) as field:
        first_decoder_page = field.layers[0][0] // field.store.page_size
    seen = {"exact": 0, "old_or_new": 0}
    for p in range(n_pages):
        steps = range(flushed, last + 1)
        if p >= first_decoder_page:
            steps = sorted({flushed, last})
        allowed = {images[j][p].tobytes() for j in steps}
        got = disk[p].tobytes()
        assert got in allowed, (
            f"page {p} after the kill matches no state of it from step {flushed} (flushed) to "
            f"{last}: {np.count_nonzero(disk[p] != images[flushed][p])} bytes differ from the "
            "flushed page"
        )
        seen["exact" if len(allowed) == 1 else "old_or_new"] += 1
    # the check has teeth: every page (table and decoder) has changed since the creation
    _create(tmp_path / "initial")
    with DemandPagedField.open(tmp_path / "initial", readonly=True) as field:
        initial = field.store.read(0, _field_bytes(field)).reshape(n_pages, -1)
    assert all(not np.array_equal(disk[p], initial[p]) for p in range(n_pages))
    return seen


@pytest.mark.parametrize("kill_at", [1, 2, 3, 15, 16])
def test_sigkill_at_a_page_write_keeps_every_flushed_write(tmp_path, kill_at):
    """Killed at its kill_at-th page write after the second flush: kill_at 1 leaves exactly
    the flushed state (every page bit for bit), 2-3 land among evictions, 15-16 in or near
    the next flush; the pairs of neighbours catch a page written in two pieces."""
    path, log = tmp_path / "f", tmp_path / "flushed.log"
    _create(path)
    _run_child(path, log, kill_after=2, kill_at=kill_at)
    flushed = _flushed_step(log)
    assert flushed == 2 * EVERY
    last = flushed if kill_at == 1 else flushed + EVERY
    seen = _check_pages(path, tmp_path, flushed, last)
    if kill_at == 1:
        assert seen["old_or_new"] == 0  # nothing written after the flush: all exact
    with DemandPagedField.open(path) as field:  # and the field reopens and answers
        assert np.all(np.isfinite(field.query(np.random.default_rng(1).random((10, 2)))))


def test_sigkill_at_a_random_moment_keeps_every_flushed_write(tmp_path):
    path, log = tmp_path / "f", tmp_path / "flushed.log"
    _create(path)
    _run_child(path, log, kill_when_logged=4)
    flushed = _flushed_step(log)
    assert flushed >= 4 * EVERY
    _check_pages(path, tmp_path, flushed, flushed + EVERY)
    with DemandPagedField.open(path) as field:
        assert np.all(np.isfinite(field.query(np.random.default_rng(1).random((10, 2)))))


def test_the_replay_is_the_childs_stream(tmp_path):
    """The parent's replay is bit-identical to a child that learns and closes normally."""
    path, log = tmp_path / "f", tmp_path / "flushed.log"
    _create(path)
    script = CHILD.replace("while True:", "for _ in range(12):") + "\nfield.close()\n"
    subprocess.run(
        [sys.executable, "-c", script, str(path), str(log), str(EVERY), "0", "0"],
        check=True,
        timeout=120,
    )
    images = _replay(tmp_path / "replay", 12, 12)
    with DemandPagedField.open(path, readonly=True) as field:
        disk = field.store.read(0, _field_bytes(field)).reshape(images[12].shape)
    np.testing.assert_array_equal(disk, images[12])
