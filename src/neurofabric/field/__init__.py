"""The demand-paged neural field: hash-encoded parameters on sharded sparse files."""

from neurofabric.field.encoding import HashGrid
from neurofabric.field.field import DemandPagedField
from neurofabric.field.optim import ExponentialDecay
from neurofabric.field.params import PRIMES, HashGridSpec
from neurofabric.field.tiers import TierConfig, TieredPages

__all__ = [
    "PRIMES",
    "DemandPagedField",
    "ExponentialDecay",
    "HashGrid",
    "HashGridSpec",
    "TierConfig",
    "TieredPages",
]
