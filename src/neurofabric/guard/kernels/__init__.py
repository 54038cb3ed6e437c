"""Kernels of the event-driven classifier: ``reference`` (python/numpy, the spec) and ``numba_cpu``."""
