"""Thread-local settings with defaults from ``NEUROFABRIC_*`` environment variables.

>>> from neurofabric.core.config import config_context, get_config
>>> with config_context(backend="reference"):
...     get_config().backend
'reference'
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from pathlib import Path

from neurofabric.core.errors import ConfigError

_BACKENDS = ("auto", "reference", "numba", "torch")


@dataclass(frozen=True)
class Settings:
    """Process settings. ``data_dir`` is where dataset loaders look for local copies.
    ``compile_ahead``: a kernel missing from numba's disk cache may be compiled in a forked
    helper process while this one goes on (``NEUROFABRIC_COMPILE_AHEAD=0`` turns it off)."""

    data_dir: Path | None = None
    backend: str = "auto"
    threads: int | None = None
    progress: bool = True
    compile_ahead: bool = True


def _from_environment() -> Settings:
    env = os.environ
    data = env.get("NEUROFABRIC_DATA")
    backend = env.get("NEUROFABRIC_BACKEND", "auto")
    threads = env.get("NEUROFABRIC_THREADS")
    if backend not in _BACKENDS:
        raise ConfigError(
            f"NEUROFABRIC_BACKEND must be one of {_BACKENDS}, got {backend!r}; "
            "unset it or pick one of those"
        )
    n_threads = None
    if threads:
        try:
            n_threads = int(threads)
        except ValueError:
            n_threads = 0
        if n_threads < 1:
            raise ConfigError(f"NEUROFABRIC_THREADS must be a positive integer, got {threads!r}")
    progress = env.get("NEUROFABRIC_PROGRESS", "1") not in ("0", "false", "no")
    ahead = env.get("NEUROFABRIC_COMPILE_AHEAD", "1") not in ("0", "false", "no")
    return Settings(
        data_dir=Path(data) if data else None,
        backend=backend,
        threads=n_threads,
        progress=progress,
        compile_ahead=ahead,
    )


_local = threading.local()


def get_config() -> Settings:
    """The settings in force in this thread."""
    stack = getattr(_local, "stack", None)
    if not stack:
        _local.stack = [_from_environment()]
    return _local.stack[-1]


@contextmanager
def config_context(**changes: object) -> Iterator[Settings]:
    """Temporarily change settings in this thread; unknown names raise ``ConfigError``."""
    names = {f.name for f in fields(Settings)}
    unknown = sorted(set(changes) - names)
    if unknown:
        raise ConfigError(f"unknown setting(s) {unknown}; known settings are {sorted(names)}")
    if "backend" in changes and changes["backend"] not in _BACKENDS:
        raise ConfigError(f"`backend` must be one of {_BACKENDS}, got {changes['backend']!r}")
    if changes.get("data_dir") is not None:
        changes["data_dir"] = Path(changes["data_dir"])  # type: ignore[arg-type]
    current = get_config()
    new = replace(current, **changes)  # type: ignore[arg-type]
    _local.stack.append(new)
    try:
        yield new
    finally:
        _local.stack.pop()
