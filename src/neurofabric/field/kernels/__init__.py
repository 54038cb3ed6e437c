"""Kernels of the demand-paged field: ``reference`` (numpy, the spec) and ``numba_cpu``."""
