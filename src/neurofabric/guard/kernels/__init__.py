"""Kernels of the event-driven classifier: ``reference`` (python/numpy, the spec) and
``numba_cpu``, registered with :mod:`neurofabric.core.backend` as engine "guard" (by module
path, so nothing is compiled or imported until a backend is resolved)."""

from neurofabric.core import backend as _backends

_backends.register("guard", "reference", "neurofabric.guard.kernels.reference")
_backends.register("guard", "numba", "neurofabric.guard.kernels.numba_cpu", requires="numba")
