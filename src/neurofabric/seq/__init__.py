"""Sequence models: RWKV-4 (and Mamba, to come) with O(1)-memory recurrent decoding."""

from neurofabric.seq.rwkv import RWKV4, RWKVConfig

__all__ = ["RWKV4", "RWKVConfig"]
