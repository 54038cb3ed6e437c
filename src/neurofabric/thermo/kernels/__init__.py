"""Kernels of the thermodynamic trainer: ``reference`` (numpy, the spec) and ``numba_cpu``."""
