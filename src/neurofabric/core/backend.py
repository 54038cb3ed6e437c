"""The kernel backend registry.

Each engine registers its kernel modules by backend name (``reference`` is the readable numpy
spec, ``numba`` the compiled CPU path, ``torch`` for GPUs). ``backend="auto"`` takes the
fastest available one and logs the choice once; an explicitly requested backend that is not
installed raises :class:`BackendUnavailableError` with the install hint. Never a silent swap.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from neurofabric.core.config import get_config
from neurofabric.core.errors import BackendUnavailableError, ConfigError

log = logging.getLogger(__name__)

_HINTS = {
    "numba": "pip install numba",
    "torch": "pip install torch==2.13.0",
}
_PRIORITY = ("numba", "torch", "reference")


@dataclass(frozen=True)
class _Entry:
    module: str
    requires: str | None


_registry: dict[str, dict[str, _Entry]] = {}
_logged: set[str] = set()
_found: dict[str, bool] = {}


def register(engine: str, name: str, module: str, requires: str | None = None) -> None:
    """Declare that ``module`` implements ``engine``'s kernels for backend ``name``."""
    _registry.setdefault(engine, {})[name] = _Entry(module, requires)


def _importable(requires: str | None) -> bool:
    """Whether the package ``requires`` is installed: found, not imported (importing torch to
    learn that it exists cost every ``backend="auto"`` 1.5 s). Once imported it is found in
    ``sys.modules``; otherwise an answer is kept for the process (a search of ``sys.path``
    cost 60 us, most of the time it takes to load a small model)."""
    if requires is None:
        return True
    if requires in sys.modules:  # imported (or blocked with None, as tests do)
        return sys.modules[requires] is not None
    if requires not in _found:
        try:
            _found[requires] = importlib.util.find_spec(requires) is not None
        except (ImportError, ValueError):
            _found[requires] = False
    return _found[requires]


def available(engine: str) -> list[str]:
    """Backends of ``engine`` that can be used here, fastest first."""
    entries = _registry.get(engine, {})
    names = [n for n in _PRIORITY if n in entries] + [n for n in entries if n not in _PRIORITY]
    return [n for n in names if _importable(entries[n].requires)]


def resolve(engine: str, backend: str | None = None) -> tuple[str, ModuleType]:
    """The (name, kernel module) for ``backend`` (``None`` means the configured default)."""
    name = choose(engine, backend)
    return name, importlib.import_module(_registry[engine][name].module)


def choose(engine: str, backend: str | None = None) -> str:
    """The backend :func:`resolve` would use, checked (a typo or a missing package fails
    here), without importing its kernels: parameter records validate with this, so that
    building or loading a model does not pay for importing numba until a kernel runs."""
    entries = _registry.get(engine)
    if not entries:
        raise ConfigError(f"no kernels are registered for engine {engine!r}")
    name = backend or get_config().backend
    if name == "auto":
        usable = [n for n in available(engine) if n != "torch"] or available(engine)
        name = usable[0]
        if engine not in _logged:
            log.info(
                "%s: backend 'auto' chose %r (available: %s)",
                engine,
                name,
                ", ".join(available(engine)),
            )
            _logged.add(engine)
    if name not in entries:
        raise ConfigError(
            f"`backend` must be one of {['auto', *entries]} for {engine}, got {name!r}"
        )
    entry = entries[name]
    if not _importable(entry.requires):
        raise BackendUnavailableError(
            f"backend {name!r} for {engine} needs {entry.requires!r}, which is not installed; "
            f"install it with `{_HINTS.get(name, 'pip install ' + str(entry.requires))}` "
            "or choose backend='reference'"
        )
    return name


def torch_device(device: str | None) -> Any:
    """The ``torch.device`` for ``device`` ("cpu", "cuda" or "cuda:N"; None means "cpu"), for
    the engines' torch backends. A device torch cannot use here is a
    :class:`BackendUnavailableError` that says what is missing."""
    try:
        import torch
    except ImportError as exc:
        raise BackendUnavailableError(
            f"`device` needs torch, which is not installed; install it with `{_HINTS['torch']}`"
        ) from exc
    name = "cpu" if device is None else device
    if not isinstance(name, str) or not (
        name == "cpu" or name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit())
    ):
        raise ConfigError(f"`device` must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise BackendUnavailableError(
                f"`device` {name!r} needs a CUDA GPU, and torch sees none here (torch "
                f"{torch.__version__}); use device='cpu'"
            )
        index = int(name[5:]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise BackendUnavailableError(
                f"`device` {name!r}: torch sees {torch.cuda.device_count()} CUDA device(s); "
                f"use an index below that"
            )
    return torch.device(name)
