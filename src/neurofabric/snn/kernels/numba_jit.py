"""How the numba backend compiles: the disk cache, compiled copies of the pure-Python spec
(:mod:`.rowgen`, :mod:`.formulas`), and variants of a kernel with some of its callees
swapped (a network compiles only the code paths it runs).

Numba compiles a function with the globals it was defined over; :func:`clone` recreates a
function over another globals dict, which is how a spec function gets compiled callees and
how a variant of the step loop gets, say, the COBA neuron update or no-op plasticity.
"""

import hashlib
import logging
import types
from pathlib import Path

from numba import njit

from neurofabric.snn.kernels import formulas, rowgen

log = logging.getLogger(__name__)


#: kernel files numba never compiles: editing them leaves the cache alone
_NOT_COMPILED = frozenset({"torch_step.py"})


def kernel_digest(folder: Path) -> str:
    """The hash the numba cache of ``folder``'s kernels is keyed on: the name and source of
    every ``.py`` file numba may compile (``_NOT_COMPILED`` left out)."""
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.py")):
        if path.name in _NOT_COMPILED:
            continue
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _drop_stale_cache() -> None:
    """Numba's on-disk cache does not notice when a *called* function (or a constant) in
    another file changes; key the whole cache of this package on the source of every
    kernel file (:func:`kernel_digest`)."""
    here = Path(__file__).parent
    cache = here / "__pycache__"
    stamp = kernel_digest(here)
    marker = cache / "neurofabric-kernels.stamp"
    try:
        if marker.is_file() and marker.read_text() == stamp:
            return
        cache.mkdir(exist_ok=True)
        for pattern in ("*.nbi", "*.nbc"):
            for stale in cache.glob(pattern):
                stale.unlink()
        marker.write_text(stamp)
    except OSError as exc:  # a read-only install: numba then compiles in memory
        log.debug("cannot manage the numba cache in %s: %s", cache, exc)


_drop_stale_cache()


def clone(fn, shared, qualname=None, **options):
    """``fn`` recreated over the globals ``shared`` and compiled (``options`` go to
    ``njit``, with ``cache=True`` by default); ``qualname`` keeps a variant's entry in
    numba's disk cache apart from the others."""
    copy = types.FunctionType(fn.__code__, shared, fn.__name__, fn.__defaults__)
    copy.__qualname__ = qualname or fn.__qualname__
    options.setdefault("cache", True)
    return njit(**options)(copy)


def variant(fn, bindings, qualname, **options):
    """``fn`` compiled with the global names in ``bindings`` bound to other functions (its
    own module's globals otherwise)."""
    shared = dict(fn.__globals__)
    shared.update(bindings)
    return clone(fn, shared, qualname, **options)


def _compile_module(module, names, bindings=None, **options):
    """Compile the plain-Python functions ``names`` of ``module`` over one globals dict in
    which every one of them is bound to its compiled version (callees listed first), and
    the names in ``bindings`` to other objects."""
    shared = dict(vars(module))
    shared.update(bindings or {})
    for name in names:
        shared[name] = clone(getattr(module, name), shared, **options)
    return shared


_SPEC_NAMES = [
    "hash32",
    "row_key",
    "uniform",
    "normal",
    "synapse_weight",
    "synapse_delay",
    "synapse_delay_of",
    "_sample_distinct",
    "_lattice_side",
    "_sort_prefix",
    "_shift",
    "_all_targets",
    "_no_targets",
    *rowgen.KIND_GENERATORS.values(),
    "gen_targets",
    "gen_row",
    "gen_in_degree_sources",
    "gen_fixed_total",
    "poisson_count",
]
#: :mod:`.rowgen` compiled: row generation and the counter-based random streams
spec = _compile_module(rowgen, _SPEC_NAMES)


@njit(cache=True, inline="always")
def _select(condition, a, b):
    """``np.where`` for scalars."""
    return a if condition else b


#: what :mod:`.formulas` computes with on scalars (its defaults are numpy's, for arrays)
SCALAR_PRIMITIVES = {"_max": max, "_min": min, "_abs": abs, "_select": _select}
#: :mod:`.formulas` compiled for scalars, inlined into the loops that call them
formula = _compile_module(formulas, formulas.NAMES, SCALAR_PRIMITIVES, inline="always")


def gen_row_for_kind(kind):
    """A compiled ``gen_row`` that only knows topology ``kind`` (faster to compile)."""
    shared = dict(spec)
    for k, name in rowgen.KIND_GENERATORS.items():
        if k != kind:
            shared[name] = spec["_no_targets"]
    shared["gen_targets"] = clone(rowgen.gen_targets, shared, f"gen_targets_kind{kind}")
    return clone(rowgen.gen_row, shared, f"gen_row_kind{kind}")
