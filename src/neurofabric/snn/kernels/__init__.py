"""Kernels of the spiking simulator, registered with :mod:`neurofabric.core.backend`:
``reference`` (numpy, the readable spec) and ``numba`` (compiled CPU loops), same names and
semantics. Module paths are strings, so registering imports nothing heavy."""

from neurofabric.core import backend as _backends

_backends.register("snn", "reference", "neurofabric.snn.kernels.reference")
_backends.register("snn", "numba", "neurofabric.snn.kernels.numba_cpu", requires="numba")
_backends.register("snn", "torch", "neurofabric.snn.kernels.torch_step", requires="torch")
