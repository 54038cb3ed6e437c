"""Kernels of the sequence models: ``reference`` (numpy loops, the spec), ``numba_cpu`` (the
fused decoding steps and the selective scan) and ``torch_ops`` (the models' WKV in torch).

``reference`` and ``numba_cpu`` are registered with :mod:`neurofabric.core.backend` as engine
"seq" (by module path, so nothing is compiled or imported until a backend is resolved): the
decoders of :mod:`neurofabric.seq.decode` and Mamba's scan resolve their backend there.
"""

from neurofabric.core import backend as _backends

_backends.register("seq", "reference", "neurofabric.seq.kernels.reference")
_backends.register("seq", "numba", "neurofabric.seq.kernels.numba_cpu", requires="numba")
