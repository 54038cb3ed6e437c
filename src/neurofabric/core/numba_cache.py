"""Numba's on-disk cache, keyed on the source of a whole kernel package.

Numba checks a cached function against the time stamp of its own file only: it does not
notice when a function it calls (in another file, or one compiled into it from the same
file by an older process) changes, and a stale entry can then run with the wrong code or
crash. Each engine's kernel package calls :func:`drop_stale_cache` on import: the package's
cache is emptied whenever the source of any of its compiled files changed.

A first run with an empty cache compiles everything. :func:`compile_ahead` lets a caller
that knows the arguments of a kernel it will call later have it compiled meanwhile in a
forked helper process, which writes it to the disk cache: the caller goes on with its own
compiling (on another core), then :func:`settle` waits for the helper and the kernel loads
from the cache.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import sys
import threading
import types
from pathlib import Path

from neurofabric.core.mpi import launched_by_mpiexec

log = logging.getLogger(__name__)

__all__ = [
    "compile_ahead",
    "drop_stale_cache",
    "in_disk_cache",
    "kernel_digest",
    "rebound",
    "recreated",
    "settle",
]

MARKER = "neurofabric-kernels.stamp"


def kernel_digest(
    folder: Path, not_compiled: frozenset[str] = frozenset(), also: tuple[Path, ...] = ()
) -> str:
    """The hash a package's numba cache is keyed on: the name and source of every ``.py``
    file in ``folder`` that numba may compile (those named in ``not_compiled`` left out),
    and of the files in ``also`` (code from elsewhere compiled into the package's kernels)."""
    digest = hashlib.sha256()
    own = [p for p in sorted(Path(folder).glob("*.py")) if p.name not in not_compiled]
    for path in [*own, *map(Path, also)]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def drop_stale_cache(
    folder: Path, not_compiled: frozenset[str] = frozenset(), also: tuple[Path, ...] = ()
) -> None:
    """Empty ``folder/__pycache__`` of numba's files unless they were made from the current
    source (:func:`kernel_digest`); a read-only install is left alone (numba then compiles
    in memory)."""
    cache = Path(folder) / "__pycache__"
    stamp = kernel_digest(folder, not_compiled, also)
    marker = cache / MARKER
    try:
        if marker.is_file() and marker.read_text() == stamp:
            return
        cache.mkdir(exist_ok=True)
        for pattern in ("*.nbi", "*.nbc"):
            for stale in cache.glob(pattern):
                stale.unlink()
        marker.write_text(stamp)
    except OSError as exc:
        log.debug("cannot manage the numba cache in %s: %s", cache, exc)


def recreated(fn, shared: dict, qualname: str):
    """The plain function ``fn`` recreated over the globals dict ``shared`` (used as it is,
    so names added to it later are seen), named ``qualname``: numba's disk cache keeps the
    compiled copy apart from ``fn`` by that name."""
    copy = types.FunctionType(fn.__code__, shared, fn.__name__, fn.__defaults__)
    copy.__qualname__ = qualname
    return copy


def rebound(fn, bindings: dict, qualname: str):
    """A copy of the plain function ``fn`` whose global names in ``bindings`` are bound to
    other objects (its own module's globals otherwise), named ``qualname``: compiled with
    ``numba.njit``, it is a variant of ``fn`` (another callee inlined, a stand-in for a
    feature)."""
    return recreated(fn, {**fn.__globals__, **bindings}, qualname)


def argument_types(dispatcher, args: tuple) -> tuple:
    """The signature ``dispatcher`` compiles for a call with ``args`` (numba's own typing)."""
    return tuple(dispatcher.typeof_pyval(a) for a in args)


def in_disk_cache(dispatcher, sig: tuple) -> bool | None:
    """Whether ``dispatcher`` is compiled for ``sig`` in this process or in numba's disk
    cache; None when that cannot be told (no disk cache, or numba's cache internals
    changed). Reads the cache index only, not the compiled code."""
    if tuple(sig) in dispatcher.overloads:
        return True
    try:
        cache = dispatcher._cache
        key = cache._index_key(sig, dispatcher.targetctx.codegen())
        return key in cache._cache_file._load_index()
    except Exception as exc:  # NullCache (cache=False) or another numba
        log.debug("cannot read numba's cache index of %s: %s", dispatcher, exc)
        return None


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _compile_and_exit(dispatcher, sig: tuple) -> None:
    try:
        dispatcher.compile(sig)  # writes the disk cache
    except BaseException:  # the caller compiles and reports the error itself
        os._exit(1)


def compile_ahead(dispatcher, args: tuple) -> multiprocessing.process.BaseProcess | None:
    """Compile ``dispatcher`` for a call with ``args`` in a forked helper process that
    writes numba's disk cache, unless it is compiled already; returns the helper (pass it
    to :func:`settle` before the call), or None when nothing was started.

    Nothing is started unless this is Linux (fork), the process may use two or more cores,
    this is its only Python thread (forking a threaded process can deadlock), it is not an
    MPI rank (nor has MPI loaded), and the dispatcher caches on disk and lacks ``args``'
    signature. The helper shares nothing with the caller after the fork: if it fails or is
    killed, the caller compiles as it would have.
    """
    if (
        not sys.platform.startswith("linux")
        or _cores() < 2
        or threading.active_count() > 1
        or "mpi4py.MPI" in sys.modules  # a forked MPI process can break the job's transport
        or launched_by_mpiexec()  # ranks run other kernels, and share the cores already
    ):
        return None
    sig = argument_types(dispatcher, args)
    if in_disk_cache(dispatcher, sig) is not False:
        return None
    from numba.core.compiler_lock import global_compiler_lock

    try:
        with global_compiler_lock:  # no other thread is mid-compile in the copy
            helper = multiprocessing.get_context("fork").Process(
                target=_compile_and_exit,
                args=(dispatcher, sig),
                name=f"neurofabric-compile-{dispatcher.py_func.__qualname__}",
                daemon=True,
            )
            helper.start()
    except (AssertionError, OSError) as exc:  # a daemonic caller, or no fork left
        log.debug("compiling %s ahead failed to start: %s", dispatcher, exc)
        return None
    log.debug("compiling %s in helper process %d", dispatcher.py_func.__qualname__, helper.pid)
    return helper


def settle(helper: multiprocessing.process.BaseProcess, timeout: float = 600.0) -> bool:
    """Wait for a :func:`compile_ahead` helper; True when it finished its compile. A helper
    still running after ``timeout`` seconds is stopped (the caller then compiles)."""
    helper.join(timeout)
    if helper.is_alive():
        helper.terminate()
        helper.join()
        log.warning("the compile helper %s ran over %.0f s and was stopped", helper.name, timeout)
        return False
    if helper.exitcode != 0:
        log.debug("the compile helper %s exited with %s", helper.name, helper.exitcode)
    return helper.exitcode == 0
