"""Quantization shared by the engines: INT8 / INT4 / INT2 with real bit packing.

>>> import numpy as np
>>> from neurofabric.quant import QuantSpec, quantize
>>> w = np.random.default_rng(0).normal(size=(64, 128)).astype(np.float32)
>>> q = quantize(w, QuantSpec(bits=4, granularity="group", group_size=32))
>>> q.packed.nbytes                 # two 4-bit codes per byte
4096
>>> round(q.compression_ratio, 2)   # float32 bytes / (codes + scales + zero points)
6.4
"""

from neurofabric.quant.packing import pack_bits, packed_nbytes, unpack_bits
from neurofabric.quant.quantize import (
    QuantizedTensor,
    QuantSpec,
    dequantize,
    fake_quantize,
    quantize,
)

__all__ = [
    "QuantSpec",
    "QuantizedTensor",
    "dequantize",
    "fake_quantize",
    "pack_bits",
    "packed_nbytes",
    "quantize",
    "unpack_bits",
]
