"""Numba's on-disk cache, keyed on the source of a whole kernel package.

Numba checks a cached function against the time stamp of its own file only: it does not
notice when a function it calls (in another file, or one compiled into it from the same
file by an older process) changes, and a stale entry can then run with the wrong code or
crash. Each engine's kernel package calls :func:`drop_stale_cache` on import: the package's
cache is emptied whenever the source of any of its compiled files changed.
"""

from __future__ import annotations

import hashlib
import logging
import types
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = ["drop_stale_cache", "kernel_digest", "rebound", "recreated"]

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
