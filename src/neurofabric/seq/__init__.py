"""Sequence models: RWKV-4 and Mamba-1 with O(1)-memory recurrent decoding."""

from neurofabric.seq.mamba import Mamba, MambaConfig
from neurofabric.seq.rwkv import RWKV4, RWKVConfig

__all__ = ["RWKV4", "Mamba", "MambaConfig", "RWKVConfig"]
