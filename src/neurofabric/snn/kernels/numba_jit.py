"""How the numba backend compiles: the disk cache, compiled copies of the pure-Python spec
(:mod:`.rowgen`, :mod:`.formulas`), and variants of a kernel with some of its callees
swapped (a network compiles only the code paths it runs).

Numba compiles a function with the globals it was defined over; :func:`clone` recreates a
function over another globals dict, which is how a spec function gets compiled callees and
how a variant of the step loop gets, say, the COBA neuron update or no-op plasticity.
"""

from pathlib import Path

from numba import njit

from neurofabric.core import numba_cache
from neurofabric.snn.kernels import formulas, rowgen

#: kernel files numba never compiles: editing them leaves the cache alone
_NOT_COMPILED = frozenset({"torch_step.py"})


def kernel_digest(folder: Path) -> str:
    """The hash this package's numba cache is keyed on (``_NOT_COMPILED`` left out)."""
    return numba_cache.kernel_digest(folder, _NOT_COMPILED)


numba_cache.drop_stale_cache(Path(__file__).parent, _NOT_COMPILED)


def clone(fn, shared, qualname=None, **options):
    """``fn`` recreated over the globals ``shared`` and compiled (``options`` go to
    ``njit``, with ``cache=True`` by default); ``qualname`` keeps a variant's entry in
    numba's disk cache apart from the others."""
    options.setdefault("cache", True)
    return njit(**options)(numba_cache.recreated(fn, shared, qualname or fn.__qualname__))


def variant(fn, bindings, qualname, **options):
    """``fn`` compiled with the global names in ``bindings`` bound to other functions (its
    own module's globals otherwise)."""
    options.setdefault("cache", True)
    return njit(**options)(numba_cache.rebound(fn, bindings, qualname))


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
