"""Sequence models: RWKV-4, RWKV-7, Mamba-1 and Mamba-2 with O(1)-memory recurrent decoding."""

from neurofabric.seq.mamba import Mamba, MambaConfig
from neurofabric.seq.mamba2 import Mamba2, Mamba2Config
from neurofabric.seq.rwkv import RWKV4, RWKVConfig
from neurofabric.seq.rwkv7 import RWKV7, RWKV7Config

__all__ = [
    "RWKV4",
    "RWKV7",
    "Mamba",
    "Mamba2",
    "Mamba2Config",
    "MambaConfig",
    "RWKV7Config",
    "RWKVConfig",
]
