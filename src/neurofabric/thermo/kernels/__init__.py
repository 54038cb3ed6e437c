"""Kernels of the thermodynamic trainer: ``reference`` (numpy, the spec) and ``numba_cpu``,
registered with :mod:`neurofabric.core.backend` as engine "thermo" (by module path, so nothing
is compiled or imported until a backend is resolved)."""

from neurofabric.core import backend as _backends

_backends.register("thermo", "reference", "neurofabric.thermo.kernels.reference")
_backends.register("thermo", "numba", "neurofabric.thermo.kernels.numba_cpu", requires="numba")
