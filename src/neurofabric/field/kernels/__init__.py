"""Kernels of the demand-paged field (the hash encoding and the DRAM tier's row gather):
``reference`` (numpy, the spec) and ``numba_cpu``, registered with
:mod:`neurofabric.core.backend` as engine "field" (by module path, so nothing is compiled or
imported until a backend is resolved)."""

from neurofabric.core import backend as _backends

_backends.register("field", "reference", "neurofabric.field.kernels.reference")
_backends.register("field", "numba", "neurofabric.field.kernels.numba_cpu", requires="numba")
