"""The demand-paged neural field: hash-encoded parameters on sharded sparse files."""

from neurofabric.field.encoding import HashGrid
from neurofabric.field.params import PRIMES, HashGridSpec

__all__ = ["PRIMES", "HashGrid", "HashGridSpec"]
